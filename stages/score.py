"""score — PoFT's reference scores: each reference model's mean log-prob per answer token on the SFT set.

Reads: ``<iteration dir>/sft_set/sft.parquet`` (an I-SHEEP round: ``<round dir>/filter/kept.parquet``, with
``isheep.setting: total_base`` every round's so far), the reference models (params ``score.references``: ``base``
is ``paths.base_model``, ``earlier`` every earlier iteration's trained model M_2..M_t, anything else a local
path or hub id), params ``score``.
Writes: ``<iteration dir>/score/scores.parquet`` (the SFT set plus ``r_ref``, ``r_refs``, ``ref_tokens``) and
``metrics.json`` (mean r_ref over clean and corrupted rows, rows scored vs read from the cache). Scores live in a
content-addressed cache under ``paths.cache/poft_scores``: each (model, row) is scored once, ever.
Run: ``datakit score --iteration iter_1`` (``dvc repro score@iter_1``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import polars as pl

from datakit import artifacts
from datakit.config import Iteration, Params
from datakit.errors import ConfigError
from datakit.poft import SCORES, SFT_SET, aggregate, score_model
from datakit.runlog import summary_line, write_json
from datakit.schemas import read_table, write_table
from datakit.train import reads_reference_scores

NAME = "score"


def sft_input(params: Params, it: Iteration) -> list[Path]:
    """The SFT set(s) iteration ``it`` scores: its sft_set stage's, or an I-SHEEP round's kept pairs (with
    ``isheep.setting: total_base``, those of every round so far)."""
    if it.recipe != "isheep":
        return [artifacts.sft_set(it)]
    if params.isheep.setting != "total_base":
        return [artifacts.kept(it)]
    rounds = sorted((r for r in params.rounds.values() if r.n <= it.n), key=lambda r: r.n)
    return [artifacts.kept(dataclasses.replace(r, recipe="isheep")) for r in rounds]


def references(params: Params, it: Iteration) -> list[str]:
    """``score.references`` resolved for iteration ``it``, duplicates removed, order kept."""
    out: list[str] = []
    for ref in params.score.references:
        if ref == "base":
            out.append(params.paths.base_model)
        elif ref == "earlier":
            steps = params.rounds if it.recipe == "isheep" else params.iterations
            out.extend(other.model_out for other in steps.values() if other.n < it.n)
        else:
            out.append(ref)
    out = list(dict.fromkeys(out))
    if not out:
        raise ConfigError(f"score.references: no model for {it.dir} ({params.score.references})")
    for ref in out:
        # A hub id is 'name' or 'org/name'; anything else that is not on disk is a missing local model.
        if not Path(ref).exists() and (ref.startswith(("/", ".", "~")) or ref.count("/") != 1):
            raise ConfigError(f"score.references: model '{ref}' not found (for {it.dir})")
    return out


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.score
    sources = sft_input(params, it)
    rows = pl.concat([read_table(path, SFT_SET) for path in sources])
    skipped = not cfg.always and not reads_reference_scores(params.train)
    models = [] if skipped else references(params, it)  # skipped: the SFT set passes through unscored
    logps, counts, reused = [], [], 0
    for model in models:
        scored, cached = score_model(
            model,
            rows,
            batch_size=cfg.batch_size,
            max_length=cfg.max_length,
            device=cfg.device,
            engine=cfg.engine,
            dtype=cfg.dtype,
            vllm=cfg.vllm,
            chunk_size=cfg.chunk_size,
            cache_root=params.paths.cache,
            progress=progress,
            where=", ".join(map(str, sources)),
        )
        logps.append(scored["logp"].to_numpy())
        counts.append(scored["n_tokens"].to_numpy())
        reused += cached
    if skipped:
        out = rows.with_columns(
            r_ref=pl.lit(None, dtype=pl.Float64),
            r_refs=pl.lit(None, dtype=pl.List(pl.Float64)),
            ref_tokens=pl.lit(None, dtype=pl.List(pl.Int64)),
        )
    else:
        n = np.stack(counts, axis=1) if rows.height else np.zeros((0, len(models)), dtype=np.int64)
        r = np.stack(logps, axis=1) / n if rows.height else np.zeros((0, len(models)))
        out = rows.with_columns(
            r_ref=pl.Series(aggregate(r, cfg.aggregate), dtype=pl.Float64),
            r_refs=pl.Series(r.tolist(), dtype=pl.List(pl.Float64)),
            ref_tokens=pl.Series(n.tolist(), dtype=pl.List(pl.Int64)),
        )
    write_table(out, artifacts.scores(it), SCORES)
    metrics = {
        "rows": out.height,
        "references": models,
        "aggregate": cfg.aggregate,
        "scored": len(models) * rows.height - reused,
        "from_cache": reused,
    }
    if skipped:
        metrics["skipped"] = (
            f"train.objective {params.train.objective} (keep_top {params.train.keep_top}) reads no r_ref; "
            "score.always: true scores anyway"
        )
    for name, flag in (("clean", False), ("corrupted", True)):
        part = out.filter(pl.col("corrupted") == flag)["r_ref"].drop_nulls()
        if part.len():
            metrics[f"r_ref_{name}_mean"] = round(float(part.mean()), 5)
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=rows.height,
        rows_out=out.height,
        failed=0,
        seconds=time.perf_counter() - started,
        extra=metrics.get("skipped")
        or f"{len(models)} reference(s), {metrics['scored']} scored, {reused} from cache",
    )
    return out
