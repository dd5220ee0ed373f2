"""assess — I-SHEEP's self-assessment: M_t grades its own (instruction, response) pairs 1-10.

Reads: ``<round dir>/synthesize/instructions.parquet``, ``<round dir>/generate/generations.parquet``, the
round's ``model_in``; params ``assess`` (``prompt``: simple | combined | icl).
Writes: ``<round dir>/assess/assessments.parquet`` (the judgments table, scores 1-10: ``id, score, feedback,
judge, error, raw, ...``) and ``metrics.json`` (mean self-score, histogram, unscored share). The judge's
machinery grades: the answer starts with ``Score:`` (prefilled, so even a small model puts the score first)
and opens with a whole number 1-10 or is a null score with the error; sampled re-asks; resumable shards;
above ``assess.max_failure_rate`` unscored the stage fails.
Run: ``datakit assess --iteration round_1`` (``dvc repro recipes/isheep/dvc.yaml:assess@round_1``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.backends import make_backend
from datakit.config import Params
from datakit.errors import bound_failures
from datakit.generate import answered
from datakit.grading import grade_sharded
from datakit.isheep import ASSESS_PREFILL, INSTRUCTIONS, assess_prompt, parse_self_score, round_of
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, JUDGMENTS, read_table, write_table
from datakit.shards import clear_work

NAME = "assess"


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = round_of(params, iteration), params.assess
    instructions = read_table(artifacts.instructions(it), INSTRUCTIONS)
    generations = read_table(artifacts.generations(it), GENERATIONS)
    rows = answered(instructions, generations, artifacts.generations(it))
    backend = make_backend(cfg.generation, it.model_in, lazy=params.executor.is_ray)
    label = f"self-assess:{cfg.prompt}:{backend.model}"
    scored, resumed, work = grade_sharded(
        params,
        rows,
        backend,
        it.model_in,
        cfg.generation,
        (cfg.retries, rows.select("id", "instruction", "input", "response", "finish_reason").rows()),
        label=label,
        retries=cfg.retries,
        name=NAME,
        desc=f"{NAME} {iteration}",
        progress=progress,
        prompt=lambda r: assess_prompt(cfg.prompt, r["instruction"], r["input"], r["response"] or ""),
        parse=parse_self_score,
        prefill=ASSESS_PREFILL,
    )
    unscored = int(scored["score"].null_count())
    bound_failures(
        scored,
        pl.col("score").is_null(),
        cfg.max_failure_rate,
        f"{NAME}: pairs could not be scored (assess.max_failure_rate)",
    )
    write_table(scored, artifacts.assessments(it), JUDGMENTS)
    scores = scored["score"].drop_nulls()
    metrics = {
        "rows": scored.height,
        "prompt": cfg.prompt,
        "unscored": unscored,
        "unscored_rate": round(unscored / max(scored.height, 1), 4),
        "mean_score": round(float(scores.mean()), 4) if scores.len() else None,
        "score_counts": {str(s): int((scores == s).sum()) for s in range(1, 11)},
    }
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    clear_work(work)
    summary_line(
        NAME,
        rows_in=rows.height,
        rows_out=scored.height,
        failed=unscored,
        seconds=time.perf_counter() - started,
        extra=(f"mean self-score {scores.mean():.2f}, " if scores.len() else "")
        + f"{resumed} shards resumed",
    )
    return scored
