"""train — M_t -> M_{t+1}: TRL (DPO + alpha * SFT by default) with a LoRA adapter on M_t.

Reads: ``<iteration dir>/pairs/preference_pairs.parquet`` (``train.data: pairs``; the domain and mixed
baselines read ``data.domain_train`` and ``data.pool`` instead), the iteration's ``model_in``, params ``train``.
Writes, under ``<iteration dir>/train/``: ``adapter/`` (the LoRA adapter), ``log.csv`` (TRL's step logs: loss,
rewards and log-probs of chosen and rejected; DVC plots), ``metrics.json``; and the merged model M_{t+1} at
the iteration's ``model_out`` (the next iteration's ``model_in``).
Run: ``datakit train --iteration iter_1`` (``dvc repro train@iter_1``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from datakit.backends import pick_device
from datakit.config import Iteration, Params
from datakit.errors import DatakitError
from datakit.loaders import load_examples
from datakit.models import replace_dir
from datakit.pairs import PREFERENCE_PAIRS
from datakit.plots import pyplot, save_png
from datakit.runlog import summary_line, write_json
from datakit.schemas import read_table, write_text_atomic
from datakit.train import build_trainer, examples_as_sft, log_summary, save_models, step_log, trainer_kind
from stages import pairs

NAME = "train"


def folder(it: Iteration) -> Path:
    return Path(it.dir) / NAME


def training_rows(params: Params, it: Iteration) -> pl.DataFrame:
    """What ``train.data`` names: the iteration's pairs, the domain train set, or domain + as many pool rows."""
    cfg = params.train
    if cfg.data == "pairs":
        return read_table(pairs.output(it), PREFERENCE_PAIRS)
    domain = load_examples(params.data.domain_train, "train")
    if cfg.data == "mixed":
        pool = load_examples(params.data.pool, "pool")
        domain = pl.concat([domain, pool.sample(min(domain.height, pool.height), seed=cfg.seed)])
    return examples_as_sft(domain, params.generate.system_prompt)


def plot_logps(log: pl.DataFrame, path: Path, title: str) -> None:
    """Chosen and rejected log-probs per step (APT's Figure 5); the loss when the objective logs no log-probs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    columns = [c for c in ("logps_chosen", "logps_rejected") if c in log.columns] or ["loss"]
    for col in columns:
        if col in log.columns:
            ax.plot(log["step"], log[col], label=col.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("log-prob (sum over answer tokens)" if columns[0] != "loss" else "loss")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def run(params: Params, iteration: str, progress: bool = True) -> dict:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.train
    rows = training_rows(params, it)
    if rows.is_empty():
        raise DatakitError(f"train {iteration}: no training rows ({cfg.data}); nothing to learn from")
    device = pick_device(cfg.device)
    out_dir, model_out = folder(it), Path(it.model_out)
    work = Path(params.paths.work) / NAME
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=work, prefix=f"{iteration}-"))
    try:
        trainer = build_trainer(cfg, it.model_in, rows, tmp / "trainer", device)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        result = trainer.train()
        log = step_log(trainer.state.log_history)
        out_dir.mkdir(parents=True, exist_ok=True)
        model_out.parent.mkdir(parents=True, exist_ok=True)
        lora = bool(cfg.lora)
        save_models(trainer, trainer.processing_class, tmp / "adapter" if lora else None, tmp / "model")
        replace_dir(tmp / "model", model_out)
        if lora:
            replace_dir(tmp / "adapter", out_dir / "adapter")
        else:
            (out_dir / "adapter").mkdir(
                exist_ok=True
            )  # full fine-tuning: no adapter; DVC still tracks the folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_text_atomic(log.write_csv(), out_dir / "log.csv")
    plot_logps(log, out_dir / "logps.png", f"{iteration}: {trainer_kind(cfg)} on {cfg.data}")
    metrics = {
        "objective": "sft" if trainer_kind(cfg) == "sft" else cfg.objective,
        "trainer": trainer_kind(cfg),
        "data": cfg.data,
        "rows": rows.height,
        "trainable_parameters": trainable,
        "steps": int(result.global_step),
        "train_loss": round(float(result.training_loss), 5),
        "train_seconds": round(float(result.metrics.get("train_runtime", 0.0)), 2),
        "device": device,
        "model_in": it.model_in,
        "model_out": it.model_out,
        **log_summary(log),
    }
    write_json(metrics, out_dir / "metrics.json")
    trend = ""
    if "logps_chosen_first" in metrics:
        trend = (
            f", chosen log-prob {metrics['logps_chosen_first']:.1f} -> {metrics['logps_chosen_last']:.1f}, "
            f"rejected {metrics['logps_rejected_first']:.1f} -> {metrics['logps_rejected_last']:.1f}"
        )
    summary_line(
        NAME,
        rows_in=rows.height,
        rows_out=metrics["steps"],
        failed=0,
        seconds=time.perf_counter() - started,
        extra=f"{metrics['trainer']} on {cfg.data}, loss {metrics.get('loss_first', float('nan')):.3f} -> "
        f"{metrics.get('loss_last', float('nan')):.3f}{trend}",
    )
    return metrics
