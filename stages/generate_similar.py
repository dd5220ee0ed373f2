"""generate_similar — M_t answers the iteration's similar cases, through the generate stage's code path.

Reads: ``<iteration dir>/retrieve/similar_cases.parquet``, the iteration's ``model_in``, params ``generate``.
Writes: ``<iteration dir>/generate_similar/generations.parquet`` (M_t's answers: the rejected side of the
similar-case pairs) and ``summary.json``. Resumable like generate.
Run: ``datakit generate_similar --iteration iter_1`` (``dvc repro generate_similar@iter_1``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.generate import answer, log_summary
from datakit.retrieve import SIMILAR_CASES
from datakit.runlog import write_json
from datakit.schemas import EXAMPLES, GENERATIONS, read_table, write_table
from datakit.shards import clear_work

NAME = "generate_similar"


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it = params.iteration(iteration)
    similar = read_table(artifacts.similar_cases(it), SIMILAR_CASES).select(EXAMPLES.columns)
    out, summary, work = answer(
        params, similar, it.model_in, it.n, name=NAME, desc=f"{NAME} {iteration}", progress=progress
    )
    write_table(out, artifacts.similar_generations(it), GENERATIONS)
    write_json(summary, artifacts.step_file(it, NAME, "summary.json"))
    clear_work(work)
    log_summary(NAME, similar.height, summary, time.perf_counter() - started)
    return out
