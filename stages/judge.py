"""judge — score every answer of M_t 1-5 (math exact match, code run against its tests in a sandbox, an LLM
judge, or M_t judging itself).

Reads: ``data.domain_train`` (instructions and reference answers), ``<iteration dir>/generate/generations.parquet``,
params ``judge``.
Writes: ``<iteration dir>/judge/judgments.parquet`` and ``metrics.json`` (mean score, score histogram,
unscored share). An LLM judge's unparsable answers are null scores with the error kept; above
``judge.max_failure_rate`` the stage fails (finished shards stay under ``paths.work`` for the rerun).
Run: ``datakit judge --iteration iter_1`` (``dvc repro judge@iter_1``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.errors import bound_failures
from datakit.grading import judge_rows
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, JUDGMENTS, read_table, write_table
from datakit.shards import clear_work

NAME = "judge"


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.judge
    examples = load_examples(params.data.domain_train, "train")
    gen_path = artifacts.generations(it)
    generations = read_table(gen_path, GENERATIONS)
    judgments, resumed, work = judge_rows(
        params,
        examples,
        generations,
        it.model_in,
        data_path=params.data.domain_train.path,
        where=gen_path,
        name=NAME,
        desc=f"{NAME} {iteration}",
        progress=progress,
    )
    unscored = int(judgments["score"].null_count())
    rate = unscored / max(judgments.height, 1)
    bound_failures(
        judgments,
        pl.col("score").is_null(),
        cfg.max_failure_rate,
        f"{NAME}: answers could not be scored (judge.max_failure_rate)",
    )
    write_table(judgments, artifacts.judgments(it), JUDGMENTS)
    scores = judgments["score"].drop_nulls()
    write_json(
        {
            "rows": judgments.height,
            "unscored": unscored,
            "unscored_rate": round(rate, 4),
            "mean_score": round(float(scores.mean()), 4) if scores.len() else None,
            "score_counts": {str(s): int((scores == s).sum()) for s in range(1, 6)},
            "judge": cfg.kind,
        },
        artifacts.step_file(it, NAME, "metrics.json"),
    )
    if work is not None:
        clear_work(work)
    summary_line(
        NAME,
        rows_in=generations.height,
        rows_out=judgments.height,
        failed=unscored,
        seconds=time.perf_counter() - started,
        extra=(f"mean score {scores.mean():.2f}, " if scores.len() else "") + f"{resumed} shards resumed",
    )
    return judgments
