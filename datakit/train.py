"""Training: M_t -> M_{t+1} with a TRL trainer and a LoRA adapter — the core of the train stage.

Objectives (``train.objective``):
- ``dpo_sft`` (APT): TRL ``DPOTrainer`` with ``loss_type=["sigmoid", "sft"]`` and ``loss_weights=[1, alpha]``:
  DPO's sigmoid loss plus alpha times the NLL of the chosen answer. The reference model is M_t itself (the
  LoRA adapter switched off), so iteration t is pulled away from its own mistakes.
- ``dpo``: the sigmoid loss alone. ``orpo``: TRL's ``ORPOTrainer`` (no reference model).
- ``sft``: TRL's ``SFTTrainer`` on the SFT set (the chosen answers: continued SFT on the same error data).
- ``poft``: PoFT (seeds/003) on the SFT set: TRL's ``SFTTrainer`` with a Bradley-Terry loss against the
  reference models' scores from the score stage (:mod:`datakit.objectives`).
- ``poft_dpo``: PoFT on the SFT set, then DPO (sigmoid) on the pairs from the PoFT model, which is also the
  DPO reference (seeds/003's two-step recipe).

SFT-like phases (``sft``, ``poft``) train on the score stage's table; ``train.keep_top`` keeps the share of it
with the highest reference score (PoFT's preference-score filter, usable with either).

Training data (``train.data``): ``pairs`` (the iteration's preference pairs), or, for the baselines, the whole
domain train set (``domain``) or the domain train set plus as many pool rows (``mixed``); those two have no
rejected side, so they train with SFT (or PoFT when that is the objective).

Every TRL/PEFT key comes from params.yaml as is: ``args`` go to the objective's TRL config, ``dpo``/``orpo``/
``sft`` to that objective's only (``sft`` also to PoFT, which is SFT with another loss), ``lora`` to
``peft.LoraConfig``. datakit sets only what it must: the
losses, the output folder, no checkpoints or reporting, CPU when there is no GPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl

from datakit.backends import compute_dtype
from datakit.config import TrainConfig
from datakit.errors import ConfigError, DatakitError

# The columns of TRL's step logs kept in log.csv ('/' becomes '_' for DVC plots and CSV tools).
LOG_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "learning_rate",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "mean_token_accuracy",
    "tau",
    "r_theta",
    "r_ref",
)

SFT_KINDS = ("sft", "poft")  # phases that train on the SFT set (the score stage's table)


def phases(cfg: TrainConfig) -> list[str]:
    """The trainers that run, in order: 'dpo', 'orpo', 'sft', 'poft' (``poft_dpo``: 'poft' then 'dpo').

    Domain and mixed data have no rejected side: they train with PoFT when the objective is ``poft``, else SFT.

    Raises:
        ConfigError: ``poft_dpo`` without pairs.
    """
    if cfg.data != "pairs":
        if cfg.objective == "poft_dpo":
            raise ConfigError(f"train.objective: poft_dpo needs train.data pairs (DPO), not {cfg.data}")
        return ["poft" if cfg.objective == "poft" else "sft"]
    return {
        "sft": ["sft"],
        "poft": ["poft"],
        "poft_dpo": ["poft", "dpo"],
        "orpo": ["orpo"],
    }.get(cfg.objective, ["dpo"])


def reads_reference_scores(cfg: TrainConfig) -> bool:
    """Whether training reads the score stage's r_ref: a PoFT phase weighs rows by it, ``keep_top < 1`` ranks
    rows by it; DPO, ORPO and plain SFT on every row do not."""
    return "poft" in phases(cfg) or (cfg.keep_top < 1 and any(k in SFT_KINDS for k in phases(cfg)))


def trainer_kind(cfg: TrainConfig) -> str:
    """The trainers as one name: 'dpo', 'orpo', 'sft', 'poft' or 'poft+dpo'."""
    return "+".join(phases(cfg))


def _config_class(kind: str):
    if kind == "dpo":
        from trl import DPOConfig

        return DPOConfig
    if kind == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig
    from trl import SFTConfig

    return SFTConfig


def checkpointing_key(fields: set[str]) -> str:
    """TrainingArguments' name for activation checkpointing: ``activation_checkpointing`` from transformers
    5.20 on, ``gradient_checkpointing`` before (the vLLM CPU build pins transformers below 5.20)."""
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def trl_config(cfg: TrainConfig, output_dir: str | Path, device: str, kind: str | None = None):
    """A phase's TRL config from params: ``args`` + the phase's own section, plus datakit's keys.

    ``kind`` is one of :func:`phases` (default: the last). PoFT takes ``SFTConfig`` and the ``sft`` section.

    Raises:
        ConfigError: naming ``train.<section>.<key>`` for a key the TRL config does not have.
    """
    kind = kind or phases(cfg)[-1]
    section_name = "sft" if kind == "poft" else kind
    cls = _config_class(section_name)
    known = {f.name for f in dataclasses.fields(cls)}
    own = getattr(cfg, section_name)
    for section, values in (("args", cfg.args), (section_name, own)):
        for key in values:
            if key not in known:
                raise ConfigError(f"train.{section}.{key}: not a {cls.__name__} setting")
    on_gpu = device.startswith("cuda")
    kwargs: dict[str, Any] = {
        "report_to": "none",
        # Checkpoints to resume a killed run from (the last one kept): weights, optimizer, scheduler, RNG.
        **(
            {"save_strategy": "steps", "save_steps": cfg.checkpoint_steps, "save_total_limit": 1}
            if cfg.checkpoint_steps
            else {"save_strategy": "no"}
        ),
        "seed": cfg.seed,
        "use_cpu": not on_gpu,
        "bf16": on_gpu,
        checkpointing_key(known): False,  # TRL turns it on; on CPU it only costs time
        **cfg.args,
        **own,
        "output_dir": str(output_dir),
    }
    if kind == "poft" and "bf16" not in own:
        # PoFT weighs the policy's log-likelihood against the references' from the score stage, which computes
        # in the device's dtype (float32 on the CPU): train in that dtype too, or every tau is biased by the
        # bf16 rounding (train.sft.bf16 overrides).
        kwargs["bf16"] = compute_dtype(device, "auto") == "bfloat16"
    if kind == "dpo":
        kwargs["loss_type"] = ["sigmoid", "sft"] if cfg.objective == "dpo_sft" else ["sigmoid"]
        kwargs["loss_weights"] = [1.0, cfg.alpha] if cfg.objective == "dpo_sft" else [1.0]
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"train ({cls.__name__}): {exc}") from exc


def lora_config(cfg: TrainConfig):
    """``peft.LoraConfig(**train.lora)``; None when ``train.lora`` is empty (full fine-tuning)."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig)}
    for key in cfg.lora:
        if key not in known:
            raise ConfigError(f"train.lora.{key}: not a LoraConfig setting")
    try:
        return LoraConfig(**{"task_type": "CAUSAL_LM", **cfg.lora})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"train.lora: {exc}") from exc


def sft_rows(df: pl.DataFrame) -> pl.DataFrame:
    """The SFT set of pairs: ``id, prompt, completion`` (the chosen answer), ``origin``."""
    return df.select("id", "prompt", pl.col("chosen").alias("completion"), "origin")


def examples_as_sft(examples: pl.DataFrame, system_prompt: str = "", origin: str = "domain") -> pl.DataFrame:
    """The SFT set of an examples table (the domain and mixed baselines): ``id, prompt, completion, origin``."""
    from datakit.pairs import MESSAGE, messages

    return pl.DataFrame(
        {
            "id": examples["id"],
            "prompt": [
                messages(i, x, system_prompt)
                for i, x in zip(examples["instruction"], examples["input"], strict=True)
            ],
            "completion": [[{"role": "assistant", "content": o}] for o in examples["output"]],
            "origin": [origin] * examples.height,
        },
        schema={"id": pl.Utf8, "prompt": pl.List(MESSAGE), "completion": pl.List(MESSAGE), "origin": pl.Utf8},
    )


def load_policy(model: str, device: str):
    """M_t and its tokenizer for training (float32 on CPU, bfloat16 on a GPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, compute_dtype(device, "auto"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    except OSError as exc:
        raise DatakitError(f"model '{model}': cannot load ({exc})") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


def build_trainer(
    cfg: TrainConfig,
    model: str,
    rows: pl.DataFrame,
    output_dir: str | Path,
    device: str,
    kind: str | None = None,
):
    """The TRL trainer of phase ``kind`` (default: the objective's last) over ``rows``: pairs for dpo/orpo,
    an SFT set (``prompt, completion``; PoFT also ``r_ref``) for sft/poft."""
    from datasets import Dataset

    kind = kind or phases(cfg)[-1]
    args = trl_config(cfg, output_dir, device, kind)
    peft_config = lora_config(cfg)
    lm, tokenizer = load_policy(model, device)
    if kind in SFT_KINDS:
        data = rows if "completion" in rows.columns else sft_rows(rows)
        if kind == "poft":
            if "r_ref" not in data.columns or data["r_ref"].null_count():
                raise DatakitError(
                    "train (poft): every row needs r_ref, the score stage's reference score (rerun the score "
                    "stage with this train.objective: it scores only for objectives that read r_ref)"
                )
            data = data.select("prompt", "completion", pl.col("r_ref").alias("ref_score")).with_row_index(
                "row"
            )
            from datakit.objectives import PoftTrainer

            trainer_cls = PoftTrainer
        else:
            data = data.select("prompt", "completion")
            from datakit.objectives import GroupedSFTTrainer

            trainer_cls = GroupedSFTTrainer
    else:
        data = rows.select("prompt", "chosen", "rejected")
        if kind == "orpo":
            from datakit.objectives import grouped_orpo_trainer

            trainer_cls = grouped_orpo_trainer()
        else:
            from datakit.objectives import GroupedDPOTrainer

            trainer_cls = GroupedDPOTrainer
    dataset = Dataset.from_list(data.to_dicts())
    return trainer_cls(
        model=lm, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )


def step_log(log_history: list[dict]) -> pl.DataFrame:
    """TRL's per-step logs (``trainer.state.log_history``) as a frame: one row per logged step."""
    rows = [
        {k.replace("/", "_"): float(entry[k]) for k in LOG_COLUMNS if k in entry}
        for entry in log_history
        if "loss" in entry and "step" in entry
    ]
    if not rows:
        return pl.DataFrame({"step": []}, schema={"step": pl.Int64})
    return pl.DataFrame(rows).with_columns(pl.col("step").cast(pl.Int64))


def log_summary(log: pl.DataFrame) -> dict:
    """First and last fifth of the logged steps, averaged, for each logged quantity (the trend in numbers)."""
    out: dict[str, Any] = {"logged_steps": log.height}
    if not log.height:
        return out
    k = max(1, math.ceil(log.height / 5))
    for col in log.columns:
        if col in ("step", "epoch", "learning_rate", "grad_norm"):
            continue
        values = log[col].drop_nulls()
        if values.len():
            out[f"{col}_first"] = round(float(values.head(k).mean()), 5)
            out[f"{col}_last"] = round(float(values.tail(k).mean()), 5)
    return out


LAUNCHED = "DATAKIT_ACCELERATE_CHILD"  # set in the processes `accelerate launch` starts for the train stage


def accelerate_launch(config: str, argv: list[str]) -> int:
    """Run ``datakit <argv>`` under ``accelerate launch --config_file <config>``; its exit status.

    Raises:
        ConfigError: when ``config`` (``train.accelerate``) is not a file.
    """
    if not Path(config).is_file():
        raise ConfigError(f"train.accelerate: {config}: no such accelerate config file")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "-m", "datakit.cli"]
    return subprocess.run([*cmd, *argv], env={**os.environ, LAUNCHED: "1"}, check=False).returncode


def is_main_process() -> bool:
    """True in a plain run and in rank 0 of a launched one (before any trainer exists to ask)."""
    return int(os.environ.get("RANK", "0")) == 0


def save_models(trainer, tokenizer, adapter_dir: Path | None, model_dir: Path) -> None:
    """Write the adapter (when LoRA was used) and the merged model M_{t+1} (safetensors + tokenizer)."""
    model = trainer.model
    if adapter_dir is not None:
        model.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
