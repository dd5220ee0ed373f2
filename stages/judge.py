"""judge — score every answer of M_t 1-5 (math exact match, an LLM judge, or M_t judging itself).

Reads: ``data.domain_train`` (instructions and reference answers), ``<iteration dir>/generate/generations.parquet``,
params ``judge``.
Writes: ``<iteration dir>/judge/judgments.parquet`` and ``metrics.json`` (mean score, score histogram,
unscored share). An LLM judge's unparsable answers are null scores with the error kept; above
``judge.max_failure_rate`` the stage fails (finished shards stay under ``paths.work`` for the rerun).
Run: ``datakit judge --iteration iter_1`` (``dvc repro judge@iter_1``).
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from datakit.backends import Backend, make_backend
from datakit.config import GenerationConfig, Iteration, Params
from datakit.errors import DatakitError, bound_failures
from datakit.generate import answered
from datakit.judges import judge_llm, judge_math, prompting
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, JUDGMENTS, read_table, write_table
from datakit.shards import clear_work, model_fingerprint, run_sharded, work_key
from stages import generate

NAME = "judge"


def output(it: Iteration) -> Path:
    """Where iteration ``it`` keeps its judgments."""
    return Path(it.dir) / NAME / "judgments.parquet"


def judge_rows(
    params: Params,
    examples: pl.DataFrame,
    generations: pl.DataFrame,
    model_in: str,
    *,
    data_path: str,
    where: str | Path,
    name: str,
    desc: str,
    progress: bool = True,
) -> tuple[pl.DataFrame, int, Path | None]:
    """Score ``model_in``'s answers to ``examples`` with the ``judge`` settings (the self judge is
    ``model_in``). ``data_path`` (the examples' file) and ``where`` (the generations') name the file in an
    error. Returns the judgments, the shards resumed, and the work folder to clear (LLM judges)."""
    cfg = params.judge
    rows = answered(examples, generations, where)  # every example answered, or one error naming the file
    if cfg.kind == "math":
        return judge_math(rows, data_path), 0, None
    model = model_in if cfg.kind == "self" else cfg.model
    if not model and not (cfg.generation.backend == "openai" and cfg.generation.openai.model):
        raise DatakitError("judge.model: set the judge model for kind 'llm'")
    backend = make_backend(cfg.generation, model, lazy=params.executor.is_ray)
    label = f"{cfg.kind}:{backend.model}"
    # Everything that goes into the judge prompt or its settings: a change to any re-judges.
    inputs = (
        cfg.rubric,
        cfg.format,
        cfg.retries,
        [examples[c].to_list() for c in ("id", "instruction", "input", "output")],
        generations.select("id", "output", "finish_reason").rows(),
    )
    return grade_sharded(
        params,
        rows,
        backend,
        model,
        cfg.generation,
        inputs,
        label=label,
        retries=cfg.retries,
        name=name,
        desc=desc,
        progress=progress,
        rubric=cfg.rubric,
        **prompting(cfg.format),
    )


def grade_sharded(
    params: Params,
    rows: pl.DataFrame,
    backend: Backend,
    model: str,
    generation: GenerationConfig,
    inputs: tuple,
    *,
    label: str,
    retries: int,
    name: str,
    desc: str,
    progress: bool,
    **prompting,
) -> tuple[pl.DataFrame, int, Path]:
    """``judge_llm`` over an ``answered`` frame in resumable shards under ``paths.work/<name>/<key>``; the key
    covers the grader, its settings and ``inputs`` (whatever else goes into the prompts), so a change to any
    grades afresh. ``prompting`` goes to ``judge_llm`` (rubric, or prompt/parse/prefill). Returns the
    judgments, the shards resumed and the work folder to clear."""
    key = work_key(name, label, model_fingerprint(model), generation.params_hash(), *inputs)
    work = Path(params.paths.work) / name / key

    def grade(shard: pl.DataFrame, bar: tqdm) -> pl.DataFrame:
        return judge_llm(
            shard,
            backend,
            label=label,
            retries=retries,
            seed=generation.seed,
            system_prompt=generation.system_prompt,
            advance=lambda n, _t: bar.update(n),
            **prompting,
        )

    judgments, stats = run_sharded(
        rows, grade, work, generation.shard_size, JUDGMENTS, desc, progress, executor=params.executor
    )
    return judgments, stats.resumed, work


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.judge
    examples = load_examples(params.data.domain_train, "train")
    gen_path = generate.output(it)
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
    out_dir = output(it).parent
    write_table(judgments, output(it), JUDGMENTS)
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
        out_dir / "metrics.json",
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
