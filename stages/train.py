"""train — M_t -> M_{t+1}: TRL (DPO + alpha * SFT by default) with a LoRA adapter on M_t.

Reads: ``<iteration dir>/pairs/preference_pairs.parquet`` for the DPO and ORPO phases, and the score
stage's ``<iteration dir>/score/scores.parquet`` (the SFT set with reference scores) for the SFT and PoFT
phases; the iteration's ``model_in`` (an I-SHEEP round: its ``train_from``, the base model or M_t as
``isheep.setting`` says, with the ``isheep.train`` keys merged over ``train``); params ``train``.
Writes, under ``<iteration dir>/train/``: ``adapter/`` (the LoRA adapter), ``log.csv`` (TRL's step logs: loss,
rewards and log-probs of chosen and rejected, PoFT's tau; DVC plots), ``logps.png``, ``tau.csv`` and
``tau.png`` (PoFT: each row's weight as it was trained on, clean vs corrupted rows), ``metrics.json``; and the
merged model M_{t+1} at the iteration's ``model_out`` (the next iteration's ``model_in``).
Run: ``datakit train --iteration iter_1`` (``dvc repro train@iter_1``); ``--iteration round_1`` for I-SHEEP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import polars as pl

from datakit import artifacts
from datakit.backends import pick_device
from datakit.config import Iteration, Params
from datakit.errors import ConfigError, DatakitError
from datakit.models import replace_dir
from datakit.pairs import PREFERENCE_PAIRS
from datakit.plots import pyplot, save_png
from datakit.poft import SCORES, keep_top, tau_summary
from datakit.runlog import summary_line, write_json
from datakit.schemas import read_table, write_text_atomic
from datakit.shards import content_fingerprint
from datakit.train import (
    LAUNCHED,
    SFT_KINDS,
    build_trainer,
    is_main_process,
    log_summary,
    phases,
    save_models,
    step_log,
    trainer_kind,
    trl_config,
)

NAME = "train"
STAMP_FILE = "run.json"  # in the work folder: what its checkpoints belong to (run_stamp)


def phase_input(it: Iteration, kind: str) -> Path:
    """The table phase ``kind`` trains on: the scored SFT set (sft, poft) or the iteration's pairs (dpo, orpo)."""
    return artifacts.scores(it) if kind in SFT_KINDS else artifacts.preference_pairs(it)


def training_rows(params: Params, it: Iteration, kind: str) -> pl.DataFrame:
    """Phase ``kind``'s rows (:func:`phase_input`); of the scored SFT set ``train.keep_top`` keeps the share
    with the highest r_ref."""
    if kind in SFT_KINDS:
        return keep_top(read_table(phase_input(it, kind), SCORES), params.train.keep_top)
    return read_table(phase_input(it, kind), PREFERENCE_PAIRS)


def run_stamp(params: Params, it: Iteration, kinds: list[str]) -> dict:
    """What a run's checkpoints belong to: the train settings, the model trained from (by content) and the
    bytes of the tables it reads. A rerun resumes from checkpoints only when all three are the same."""
    digests = {}
    for path in sorted({phase_input(it, kind) for kind in kinds}):
        digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    stamp = {
        "train": dataclasses.asdict(params.train),
        "model": content_fingerprint(it.start),
        "inputs": digests,
    }
    return json.loads(json.dumps(stamp, default=str))  # as it reads back from run.json (lists, not tuples)


def prepare_work(tmp: Path, stamp: dict) -> None:
    """Keep ``tmp`` (checkpoints, finished phases) when it was made for the same ``stamp``, else start it
    afresh."""
    marker = tmp / STAMP_FILE
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(stamp, sort_keys=True), marker)


def last_checkpoint(out: Path) -> str | None:
    """The newest checkpoint under ``out`` that its run finished writing, or None.

    transformers writes a checkpoint's weights, optimizer and RNG state first and ``trainer_state.json`` last,
    so a checkpoint without a readable one was cut off by a kill; it is removed, and the run resumes from the
    one before (``get_last_checkpoint`` would pick the cut-off one and the resume would fail)."""
    finished = []
    for folder in out.glob("checkpoint-*"):
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        finished.append(folder)
    return str(max(finished, key=lambda f: int(f.name.rsplit("-", 1)[1]))) if finished else None


def _train_phase(cfg, kind: str, model: str, rows: pl.DataFrame, tmp: Path, device: str) -> tuple:
    """Train phase ``kind``, from its last checkpoint in ``tmp`` when a killed run left one; (trainer, its
    record: steps, loss, seconds, the step it resumed from, the step log, PoFT's tau log)."""
    if rows.is_empty():
        raise DatakitError(f"train ({kind}): no training rows ({cfg.data}); nothing to learn from")
    out = tmp / f"trainer-{kind}"
    trainer = build_trainer(cfg, model, rows, out, device, kind)
    last = last_checkpoint(out) if out.is_dir() else None
    if last and kind == "poft":
        trainer.resume_tau_log(last)
    result = trainer.train(resume_from_checkpoint=last)
    record = {
        "steps": int(result.global_step),
        "loss": float(result.training_loss),
        "seconds": float(result.metrics.get("train_runtime", 0.0)),
        "resumed_from_step": int(Path(last).name.rsplit("-", 1)[1]) if last else 0,
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "log": [e for e in trainer.state.log_history if "loss" in e and "step" in e],
        "tau": getattr(trainer, "tau_log", None),
    }
    return trainer, record


def _tau_frame(tau: list[dict], rows: pl.DataFrame) -> pl.DataFrame:
    return (
        pl.DataFrame(tau, schema={k: TAU_LOG[k] for k in ("row", "step", "tau", "r_theta")})
        .join(
            rows.select("id", "corrupted", "corruption").with_row_index("row").cast({"row": pl.Int64}),
            on="row",
            how="left",
        )
        .select(list(TAU_LOG))
    )


# tau.csv: one line per (row, step) a PoFT phase trained on.
TAU_LOG = {
    "step": pl.Int64,
    "row": pl.Int64,
    "id": pl.Utf8,
    "corrupted": pl.Boolean,
    "corruption": pl.Utf8,
    "tau": pl.Float64,
    "r_theta": pl.Float64,
}


def plot_tau(taus: pl.DataFrame, path: Path, title: str) -> None:
    """Histogram of each row's PoFT weight tau, clean vs corrupted rows."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if taus.is_empty():
        ax.text(0.5, 0.5, "no PoFT phase: no weights", ha="center", va="center", transform=ax.transAxes)
    for name, flag in (("clean", False), ("corrupted", True)):
        values = taus.filter(pl.col("corrupted") == flag)["tau"].to_list()
        if values:
            ax.hist(values, bins=30, range=(0, 1), alpha=0.6, label=f"{name} ({len(values)} row-steps)")
    ax.set_xlabel("tau = sigmoid(r_ref - r_theta), the row's weight on its CE gradient")
    ax.set_ylabel("row-steps")
    ax.set_title(title, fontsize=10)
    if not taus.is_empty():
        ax.legend()
    fig.tight_layout()
    save_png(fig, path)


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
    data = "isheep" if it.recipe == "isheep" else cfg.data  # what the SFT set was made of
    kinds = phases(cfg)
    device = pick_device(cfg.device)
    if "poft" in kinds:
        seen = trl_config(cfg, params.paths.work, device, "poft").max_length
        if seen != params.score.max_length:
            raise ConfigError(
                f"score.max_length ({params.score.max_length}) must equal train.sft.max_length ({seen}): PoFT "
                "compares the references' and the model's log-likelihood of the same tokens"
            )
    out_dir, model_out = artifacts.step_dir(it, NAME), Path(it.model_out)
    # One folder every process of a launched run shares: the main process saves each phase's model
    # there and the others load it for the next phase. It outlives a killed run (checkpoints, finished
    # phases) and goes once M_{t+1} is written.
    main = is_main_process()
    tmp = Path(params.paths.work) / NAME / iteration
    if main:
        prepare_work(tmp, run_stamp(params, it, kinds))
    tmp.mkdir(parents=True, exist_ok=True)
    records, rows_in, taus = [], {}, None
    model = it.start  # M_t; an I-SHEEP round may start from the base model instead (isheep.setting)
    lora = bool(cfg.lora)
    for kind in kinds:
        rows = training_rows(params, it, kind)
        rows_in[kind] = rows.height
        done, saved = tmp / f"phase-{kind}.json", tmp / f"model-{kind}"
        if done.exists() and saved.is_dir():  # finished by a run that was killed later
            records.append(json.loads(done.read_text()))
        else:
            trainer, record = _train_phase(cfg, kind, model, rows, tmp, device)
            if main:
                save_models(
                    trainer, trainer.processing_class, tmp / f"adapter-{kind}" if lora else None, saved
                )
                write_text_atomic(json.dumps(record), done)
                shutil.rmtree(tmp / f"trainer-{kind}", ignore_errors=True)  # its checkpoints are spent
            trainer.accelerator.wait_for_everyone()
            records.append(record)
        if kind == "poft":
            taus = _tau_frame(records[-1]["tau"], rows)
        model = str(saved)  # the next phase starts from (and is referenced to) this one
    if not main:  # the main process writes the stage's outputs
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    offset, parts = 0, []
    for kind, record in zip(kinds, records, strict=True):  # steps count on across phases
        part = step_log(record["log"]).with_columns(phase=pl.lit(kind))
        parts.append(part.with_columns(pl.col("step") + offset))
        offset += int(part["step"].max() or 0)
    log = pl.concat(parts, how="diagonal_relaxed")
    write_text_atomic(log.write_csv(), artifacts.step_file(it, NAME, "log.csv"))
    plot_logps(log, artifacts.step_file(it, NAME, "logps.png"), f"{iteration}: {trainer_kind(cfg)} on {data}")
    if taus is None:  # no PoFT phase: the files exist (DVC outputs), empty
        taus = pl.DataFrame(schema=TAU_LOG)
    write_text_atomic(taus.select(list(TAU_LOG)).write_csv(), artifacts.step_file(it, NAME, "tau.csv"))
    plot_tau(
        taus,
        artifacts.step_file(it, NAME, "tau.png"),
        f"{iteration}: PoFT weights over training ({trainer_kind(cfg)} on {data})",
    )
    tau_stats = tau_summary(taus) if taus.height else {}
    metrics = {
        "objective": cfg.objective if kinds != ["sft"] else "sft",
        "trainer": trainer_kind(cfg),
        "data": data,
        "rows": sum(rows_in.values()),
        **{f"rows_{kind}": n for kind, n in rows_in.items()},
        "keep_top": cfg.keep_top,
        "trainable_parameters": records[-1]["trainable"],
        "steps": sum(r["steps"] for r in records),
        "train_loss": round(records[-1]["loss"], 5),
        "train_seconds": round(sum(r["seconds"] for r in records), 2),
        # > 0: a killed run was resumed from the checkpoint at this step (of the phase it was in)
        "resumed_from_step": max(r["resumed_from_step"] for r in records),
        "device": device,
        # `accelerate launch` (train.accelerate) and its process count; python = a plain run
        "launcher": "accelerate" if os.environ.get(LAUNCHED) else "python",
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
        "model_in": it.start,
        "model_out": it.model_out,
        **log_summary(log.drop("phase")),
        **tau_stats,
    }
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    # The models last: until they are moved out, a killed run resumes with every phase done.
    model_out.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(tmp / f"model-{kinds[-1]}", model_out)
    if cfg.lora:
        replace_dir(tmp / f"adapter-{kinds[-1]}", artifacts.step_file(it, NAME, "adapter"))
    else:
        (artifacts.step_file(it, NAME, "adapter")).mkdir(
            exist_ok=True
        )  # full fine-tuning: no adapter; DVC tracks it
    shutil.rmtree(tmp, ignore_errors=True)
    trend = ""
    if "logps_chosen_first" in metrics:
        trend = (
            f", chosen log-prob {metrics['logps_chosen_first']:.1f} -> {metrics['logps_chosen_last']:.1f}, "
            f"rejected {metrics['logps_rejected_first']:.1f} -> {metrics['logps_rejected_last']:.1f}"
        )
    if "tau_clean_mean" in metrics:
        trend += f", mean tau clean {metrics['tau_clean_mean']:.3f}"
        if "tau_corrupted_mean" in metrics:
            trend += f" / corrupted {metrics['tau_corrupted_mean']:.3f}"
    summary_line(
        NAME,
        rows_in=metrics["rows"],
        rows_out=metrics["steps"],
        failed=0,
        seconds=time.perf_counter() - started,
        extra=f"{metrics['trainer']} on {data}, loss {metrics.get('loss_first', float('nan')):.3f} -> "
        f"{metrics.get('loss_last', float('nan')):.3f}{trend}",
    )
    return metrics
