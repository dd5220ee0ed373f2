"""generate_similar — M_t answers the iteration's similar cases, through the generate stage's code path.

Reads: ``<iteration dir>/retrieve/similar_cases.parquet``, the iteration's ``model_in``, params ``generate``.
Writes: ``<iteration dir>/generate_similar/generations.parquet`` (M_t's answers: the rejected side of the
similar-case pairs) and ``summary.json``. Resumable like generate.
Run: ``datakit generate_similar --iteration iter_1`` (``dvc repro generate_similar@iter_1``).
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from datakit.config import Iteration, Params
from datakit.retrieve import SIMILAR_CASES
from datakit.runlog import write_json
from datakit.schemas import EXAMPLES, GENERATIONS, read_table, write_table
from datakit.shards import clear_work
from stages import generate, retrieve

NAME = "generate_similar"


def output(it: Iteration) -> Path:
    """Where iteration ``it`` keeps M_t's answers to its similar cases (read by pairs)."""
    return Path(it.dir) / NAME / "generations.parquet"


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it = params.iteration(iteration)
    similar = read_table(retrieve.output(it), SIMILAR_CASES).select(EXAMPLES.columns)
    out, summary, work = generate.answer(
        params, similar, it.model_in, it.n, name=NAME, desc=f"{NAME} {iteration}", progress=progress
    )
    write_table(out, output(it), GENERATIONS)
    write_json(summary, output(it).parent / "summary.json")
    clear_work(work)
    generate.log_summary(NAME, similar.height, summary, time.perf_counter() - started)
    return out
