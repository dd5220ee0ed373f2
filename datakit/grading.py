"""Grading loops every model-graded stage runs (judge, judge_audit, evaluate's LLM judge, I-SHEEP's assess).

- ``judge_rows``: score a model's answers to examples with the ``judge`` settings (math: exact; llm/self:
  a model judge in resumable shards).
- ``grade_sharded``: ``judge_llm`` over an ``answered`` frame in resumable shards keyed by everything that
  decides a grade.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from datakit.backends import Backend, make_backend
from datakit.code_judge import judge_code
from datakit.config import GenerationConfig, Params
from datakit.errors import DatakitError
from datakit.generate import answered
from datakit.judges import judge_llm, judge_math, prompting
from datakit.schemas import JUDGMENTS
from datakit.shards import model_fingerprint, run_sharded, work_key


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
    if cfg.kind == "code":
        return judge_code(rows, cfg.code, data_path, progress), 0, None
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
