"""Training: M_t -> M_{t+1} with a TRL trainer and a LoRA adapter — the core of the train stage.

Objectives (``train.objective``):
- ``dpo_sft`` (APT): TRL ``DPOTrainer`` with ``loss_type=["sigmoid", "sft"]`` and ``loss_weights=[1, alpha]``:
  DPO's sigmoid loss plus alpha times the NLL of the chosen answer. The reference model is M_t itself (the
  LoRA adapter switched off), so iteration t is pulled away from its own mistakes.
- ``dpo``: the sigmoid loss alone. ``orpo``: TRL's ``ORPOTrainer`` (no reference model).
- ``sft``: TRL's ``SFTTrainer`` on the chosen answers only (continued SFT on the same error data).

Training data (``train.data``): ``pairs`` (the iteration's preference pairs), or, for the baselines, the whole
domain train set (``domain``) or the domain train set plus as many pool rows (``mixed``); those two have no
rejected side, so they always train with SFT.

Every TRL/PEFT key comes from params.yaml as is: ``args`` go to the objective's TRL config, ``dpo``/``orpo``/
``sft`` to that objective's only, ``lora`` to ``peft.LoraConfig``. datakit sets only what it must: the
losses, the output folder, no checkpoints or reporting, CPU when there is no GPU.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import polars as pl

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
)


def trainer_kind(cfg: TrainConfig) -> str:
    """Which TRL trainer runs: 'dpo', 'orpo' or 'sft' (domain and mixed data always train with SFT)."""
    if cfg.data != "pairs" or cfg.objective == "sft":
        return "sft"
    return "orpo" if cfg.objective == "orpo" else "dpo"


def _config_class(kind: str):
    if kind == "dpo":
        from trl import DPOConfig

        return DPOConfig
    if kind == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig
    from trl import SFTConfig

    return SFTConfig


def trl_config(cfg: TrainConfig, output_dir: str | Path, device: str):
    """The objective's TRL config from params: ``args`` + the objective's own section, plus datakit's keys.

    Raises:
        ConfigError: naming ``train.<section>.<key>`` for a key the TRL config does not have.
    """
    kind = trainer_kind(cfg)
    cls = _config_class(kind)
    known = {f.name for f in dataclasses.fields(cls)}
    own = getattr(cfg, kind)
    for section, values in (("args", cfg.args), (kind, own)):
        for key in values:
            if key not in known:
                raise ConfigError(f"train.{section}.{key}: not a {cls.__name__} setting")
    on_gpu = device.startswith("cuda")
    kwargs: dict[str, Any] = {
        "report_to": "none",
        "save_strategy": "no",
        "seed": cfg.seed,
        "use_cpu": not on_gpu,
        "bf16": on_gpu,
        "activation_checkpointing": False,  # TRL turns it on; on CPU it only costs time
        **cfg.args,
        **own,
        "output_dir": str(output_dir),
    }
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
    """Prompt-completion rows (TRL's conversational form) from pairs (``prompt, chosen``)."""
    return df.select("prompt", pl.col("chosen").alias("completion"))


def examples_as_sft(examples: pl.DataFrame, system_prompt: str = "") -> pl.DataFrame:
    """Prompt-completion rows from an examples table (the domain and mixed baselines)."""
    from datakit.pairs import messages

    return pl.DataFrame(
        {
            "prompt": [
                messages(i, x, system_prompt)
                for i, x in zip(examples["instruction"], examples["input"], strict=True)
            ],
            "completion": [[{"role": "assistant", "content": o}] for o in examples["output"]],
        }
    )


def load_policy(model: str, device: str):
    """M_t and its tokenizer for training (float32 on CPU, bfloat16 on a GPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    except OSError as exc:
        raise DatakitError(f"model '{model}': cannot load ({exc})") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


def build_trainer(cfg: TrainConfig, model: str, rows: pl.DataFrame, output_dir: str | Path, device: str):
    """The TRL trainer for ``cfg.objective`` over ``rows`` (pairs, or prompt-completion rows for SFT)."""
    from datasets import Dataset

    kind = trainer_kind(cfg)
    args = trl_config(cfg, output_dir, device)
    peft_config = lora_config(cfg)
    lm, tokenizer = load_policy(model, device)
    if kind == "sft":
        data = rows if "completion" in rows.columns else sft_rows(rows)
        from trl import SFTTrainer

        trainer_cls = SFTTrainer
    else:
        data = rows.select("prompt", "chosen", "rejected")
        if kind == "orpo":
            from trl.experimental.orpo import ORPOTrainer

            trainer_cls = ORPOTrainer
        else:
            from trl import DPOTrainer

            trainer_cls = DPOTrainer
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


def save_models(trainer, tokenizer, adapter_dir: Path | None, model_dir: Path) -> None:
    """Write the adapter (when LoRA was used) and the merged model M_{t+1} (safetensors + tokenizer)."""
    model = trainer.model
    if adapter_dir is not None:
        model.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
