"""generate — the iteration's model M_t answers the domain training set (I-SHEEP: the round's instructions).

Reads: ``data.domain_train`` (any supported source), or for an I-SHEEP round its
``synthesize/instructions.parquet``; the iteration's ``model_in``, params ``generate``.
Writes: ``<iteration dir>/generate/generations.parquet`` and ``summary.json`` (rows, tokens, tokens/s,
finish reasons). Greedy answers of a local model come from the generation cache when this model was
already asked these prompts (evaluate answers domain train with the model the next iteration starts
from). Finished shards are kept under ``paths.work`` until the stage completes, so a killed run
resumes where it stopped.
Run: ``datakit generate --iteration iter_1`` (``dvc repro generate@iter_1``); ``--iteration round_1`` for I-SHEEP.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from datakit.backends import Backend, make_backend
from datakit.config import Iteration, Params
from datakit.generate import generate_frame, generation_cache
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, read_table, write_table
from datakit.shards import clear_work, model_fingerprint, work_key

NAME = "generate"


def output(it: Iteration) -> Path:
    """Where iteration ``it`` keeps its generations (read by judge and select)."""
    return Path(it.dir) / NAME / "generations.parquet"


def answer(
    params: Params,
    examples: pl.DataFrame,
    model: str,
    n: int,
    *,
    name: str,
    desc: str,
    progress: bool = True,
    backend: Backend | None = None,
) -> tuple[pl.DataFrame, dict, Path]:
    """``model`` answers ``examples`` with the ``generate`` settings: resumable shards under
    ``paths.work/<name>/``, greedy answers through the generation cache.

    Returns:
        The generations, their summary (rows, tokens, throughput, finish reasons) and the work folder
        (the caller clears it once its outputs are written).
    """
    cfg = params.generate
    key = work_key(
        name,
        model_fingerprint(model),
        cfg.params_hash(),
        n,
        examples["id"].to_list(),
        examples["instruction"].to_list(),
        examples["input"].to_list(),
    )
    work = Path(params.paths.work) / name / key
    backend = backend or make_backend(cfg, model, lazy=params.executor.is_ray)
    gen_started = time.perf_counter()
    out, stats = generate_frame(
        examples,
        backend,
        cfg,
        iteration=n,
        work_dir=work,
        progress=progress,
        desc=desc,
        cache=generation_cache(params.paths.cache, cfg, model),
        executor=params.executor,
    )
    gen_seconds = time.perf_counter() - gen_started
    tokens = int(out["n_tokens"].sum())
    # Throughput counts only the rows generated in this run, not shards or cache rows read back.
    fresh_tokens = int(out.filter(pl.col("id").is_in(stats.computed_ids))["n_tokens"].sum())
    tok_s = fresh_tokens / gen_seconds if stats.computed else None
    summary = {
        "rows": out.height,
        "failed": int((out["finish_reason"] == "error").sum()),
        "new_tokens": tokens,
        "mean_new_tokens": round(tokens / max(out.height, 1), 2),
        "finish_reasons": dict(out.group_by("finish_reason").len().sort("finish_reason").iter_rows()),
        "shards": stats.shards,
        "shards_resumed": stats.resumed,
        "rows_from_cache": stats.cached,
        "generate_seconds": round(gen_seconds, 2),
        "tokens_per_second": round(tok_s, 2) if tok_s is not None else None,
        "model": backend.model,
        "backend": cfg.backend,
    }
    return out, summary, work


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it = params.iteration(iteration)
    if it.recipe == "isheep":
        from datakit.isheep import INSTRUCTIONS
        from stages import synthesize  # synthesize generates through answer() below

        examples = read_table(synthesize.output(it), INSTRUCTIONS)
    else:
        examples = load_examples(params.data.domain_train, "train")
    out, summary, work = answer(
        params, examples, it.model_in, it.n, name=NAME, desc=f"{NAME} {iteration}", progress=progress
    )
    write_table(out, output(it), GENERATIONS)
    write_json(summary, output(it).parent / "summary.json")
    clear_work(work)
    log_summary(NAME, examples.height, summary, time.perf_counter() - started)
    return out


def log_summary(name: str, rows_in: int, summary: dict, seconds: float) -> None:
    tok_s = summary["tokens_per_second"]
    summary_line(
        name,
        rows_in=rows_in,
        rows_out=summary["rows"],
        failed=summary["failed"],
        seconds=seconds,
        extra=f"{summary['new_tokens']} new tokens, {f'{tok_s:.1f}' if tok_s is not None else '-'} tok/s, "
        f"{summary['shards_resumed']} shards resumed, {summary['rows_from_cache']} rows from the cache",
    )
