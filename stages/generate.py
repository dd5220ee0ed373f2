"""generate — the iteration's model M_t answers the domain training set.

Reads: ``data.domain_train`` (any supported source), the iteration's ``model_in``, params ``generate``.
Writes: ``<iteration dir>/generate/generations.parquet`` and ``summary.json`` (rows, tokens, tokens/s,
finish reasons). Finished shards are kept under ``paths.work`` until the stage completes, so a killed run
resumes where it stopped.
Run: ``datakit generate --iteration iter_1`` (``dvc repro generate@iter_1``).
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from datakit.backends import make_backend
from datakit.config import Iteration, Params
from datakit.generate import generate_frame
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, write_table
from datakit.shards import clear_work, model_fingerprint, work_key

NAME = "generate"


def output(it: Iteration) -> Path:
    """Where iteration ``it`` keeps its generations (read by judge and select)."""
    return Path(it.dir) / NAME / "generations.parquet"


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.generate
    examples = load_examples(params.data.domain_train, "train")
    key = work_key(
        NAME,
        model_fingerprint(it.model_in),
        cfg.params_hash(),
        it.n,
        examples["id"].to_list(),
        examples["instruction"].to_list(),
        examples["input"].to_list(),
    )
    work = Path(params.paths.work) / NAME / key
    backend = make_backend(cfg, it.model_in)
    gen_started = time.perf_counter()
    out, stats = generate_frame(
        examples, backend, cfg, iteration=it.n, work_dir=work, progress=progress, desc=f"{NAME} {iteration}"
    )
    gen_seconds = time.perf_counter() - gen_started
    out_dir = output(it).parent
    write_table(out, output(it), GENERATIONS)
    tokens = int(out["n_tokens"].sum())
    # Throughput counts only the rows generated in this run, not shards read back from an earlier one.
    fresh_tokens = int(out.filter(pl.col("id").is_in(stats.computed_ids))["n_tokens"].sum())
    tok_s = fresh_tokens / gen_seconds if stats.computed else None
    failed = int((out["finish_reason"] == "error").sum())
    write_json(
        {
            "rows": out.height,
            "failed": failed,
            "new_tokens": tokens,
            "mean_new_tokens": round(tokens / max(out.height, 1), 2),
            "finish_reasons": dict(out.group_by("finish_reason").len().sort("finish_reason").iter_rows()),
            "shards": stats.shards,
            "shards_resumed": stats.resumed,
            "generate_seconds": round(gen_seconds, 2),
            "tokens_per_second": round(tok_s, 2) if tok_s is not None else None,
            "model": backend.model,
            "backend": cfg.backend,
        },
        out_dir / "summary.json",
    )
    clear_work(work)
    summary_line(
        NAME,
        rows_in=examples.height,
        rows_out=out.height,
        failed=failed,
        seconds=time.perf_counter() - started,
        extra=f"{tokens} new tokens, {f'{tok_s:.1f}' if tok_s is not None else '-'} tok/s, {stats.resumed} shards resumed",
    )
    return out
