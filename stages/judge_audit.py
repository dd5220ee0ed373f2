"""judge_audit — check a model judge against the exact judge on the same answers of M_t.

On a domain whose answers an exact judge can check (the math judge: every reference ends in a number), grade
a seeded sample of M_t's domain-train answers (``judge_audit.rows``) twice: with the exact judge, the truth,
and with the audited judge (``judge_audit.kind``: ``self``, M_t judging itself, or ``llm``, any model on any
backend; the rubric and the rest of the settings come from ``judge``). Both verdicts are taken at the bad-case
threshold APT selects with (``select.threshold``).

Reads: ``data.domain_train``, ``<iteration dir>/generate/generations.parquet``, M_t (the self judge), params
``judge``, ``judge_audit``, ``select.threshold``.
Writes: ``<iteration dir>/judge_audit/audit.parquet`` (per answer: both scores and verdicts, the answer and the
judge's feedback) and ``metrics.json`` (agreement and Cohen's kappa with 95% intervals, the share of the
judge's bad cases that are right answers, the share of wrong answers it misses, the unscored rate, the
confusion matrix of its score against right/wrong, and a few disagreements). The judge's unparsable answers
never fail the stage: their rate is one of the figures. Shards resume like the judge stage's.
Run: ``datakit judge_audit --iteration iter_1`` (``dvc repro judge_audit@iter_1``).
"""

from __future__ import annotations

import dataclasses
import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.generate import answered
from datakit.grading import judge_rows
from datakit.judge_audit import JUDGE_AUDIT, audit_frame, audit_metrics, confusion, disagreements
from datakit.judges import judge_math
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, read_table, write_table
from datakit.shards import clear_work

NAME = "judge_audit"
EXAMPLE_CHARS = 400  # an example's texts are cut to this many characters in metrics.json


def sample(examples: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    """``rows`` examples drawn with ``seed``, in their file order (all of them when ``rows`` is 0 or more
    than there are)."""
    if rows == 0 or rows >= examples.height:
        return examples
    picked = examples.with_row_index("_at").sample(n=rows, seed=seed).sort("_at")
    return picked.drop("_at")


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.judge_audit
    data_path = params.data.domain_train.path
    examples = sample(load_examples(params.data.domain_train, "train"), cfg.rows, cfg.seed)
    gen_path = artifacts.generations(it)
    generations = read_table(gen_path, GENERATIONS)
    rows = answered(examples, generations, gen_path)
    exact = judge_math(rows, data_path)  # the truth: one error naming the row if a reference has no number
    audited = dataclasses.replace(params, judge=cfg.judge(params.judge))
    judged, resumed, work = judge_rows(
        audited,
        examples,
        generations,
        it.model_in,
        data_path=data_path,
        where=gen_path,
        name=NAME,
        desc=f"{NAME} {iteration}",
        progress=progress,
    )
    audit = audit_frame(exact, judged, params.select.threshold)
    label = judged["judge"][0] if judged.height else cfg.kind
    details = (
        rows.select("id", "instruction", "response", reference="output")
        .join(exact.select("id", "extracted"), on="id")
        .join(judged.select("id", "feedback", "error"), on="id")
    )
    table = audit.join(details, on="id", how="left", maintain_order="left").with_columns(judge=pl.lit(label))
    write_table(table, artifacts.step_file(it, NAME, "audit.parquet"), JUDGE_AUDIT)
    metrics = audit_metrics(audit)
    examples_out = disagreements(audit, details, cfg.examples).with_columns(
        pl.col(c).map_elements(_cut, return_dtype=pl.Utf8)
        for c in ("instruction", "response", "reference", "feedback")
    )
    write_json(
        {
            "judge": label,
            "threshold": params.select.threshold,
            **metrics,
            "confusion": {
                r["judge_score"]: {"wrong": r["wrong"], "right": r["right"]}
                for r in confusion(audit).iter_rows(named=True)
            },
            "examples": examples_out.to_dicts(),
        },
        artifacts.step_file(it, NAME, "metrics.json"),
    )
    if work is not None:
        clear_work(work)
    kappa = metrics["kappa"]
    summary_line(
        NAME,
        rows_in=rows.height,
        rows_out=audit.height,
        failed=metrics["unscored"],
        seconds=time.perf_counter() - started,
        extra=f"{label}: kappa {'—' if kappa is None else f'{kappa:.2f}'}, "
        f"{metrics['false_bad']} right answers called bad, {metrics['missed']} of {metrics['exact_wrong']} "
        f"errors missed, {resumed} shards resumed",
    )
    return table
