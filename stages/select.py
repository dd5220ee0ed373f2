"""select — keep M_t's bad cases: answers whose judge score matches ``select.threshold`` ('<4' default).

Reads: ``data.domain_train``, ``<iteration dir>/generate/generations.parquet``, ``<iteration dir>/judge/judgments.parquet``.
Writes: ``<iteration dir>/select/bad_cases.parquet`` and ``metrics.json`` (bad-case count and rate; with a
model judge (``llm``, ``self``) on a domain an exact judge can check, also how many bad cases the exact judge
calls right: training data that comes from the judge's mistakes).
Run: ``datakit select --iteration iter_1`` (``dvc repro select@iter_1``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.generate import answered
from datakit.judge_audit import exact_right
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import BAD_CASES, GENERATIONS, JUDGMENTS, read_table, write_table
from datakit.select import select_bad_cases

NAME = "select"


def run(params: Params, iteration: str) -> pl.DataFrame:
    started = time.perf_counter()
    it = params.iteration(iteration)
    examples = load_examples(params.data.domain_train, "train")
    generations = read_table(artifacts.generations(it), GENERATIONS)
    rows = answered(examples, generations, artifacts.generations(it))
    judgments = read_table(artifacts.judgments(it), JUDGMENTS)
    bad = select_bad_cases(rows, judgments, params.select.threshold, artifacts.judgments(it))
    write_table(bad, artifacts.bad_cases(it), BAD_CASES)
    scored = int(judgments["score"].is_not_null().sum())
    metrics = {
        "judged": judgments.height,
        "scored": scored,
        "bad_cases": bad.height,
        "bad_case_rate": round(bad.height / max(scored, 1), 4),
        "threshold": params.select.threshold,
    }
    if params.judge.kind in ("llm", "self"):  # a model judge, checked by the exact one where it can
        right = exact_right(rows.filter(pl.col("id").is_in(bad["id"].implode())))
        if right is not None:
            metrics["bad_cases_exact_right"] = right
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=judgments.height,
        rows_out=bad.height,
        failed=judgments.height - scored,
        seconds=time.perf_counter() - started,
        extra=f"bad-case rate {bad.height / max(scored, 1):.1%}",
    )
    return bad
