"""ifeval — instruction following, checked by code (offline IFEval): prompt- and instruction-level accuracy.

Reads: the model (``--iteration``: the iteration's or round's ``model_out``; ``--base``: the base model),
``ifeval.path`` (the built-in 120-prompt set by default), params ``generate`` (the answers' settings, with
``ifeval.max_new_tokens``) and ``ifeval``.
Writes, under ``<iteration or round dir>/ifeval/`` (``paths.ifeval_base`` for the base model): ``results.parquet``
(each prompt, the answer, which instructions it follows, strict and loose) and ``metrics.json``
(``prompt_strict``, ``instruction_strict``, ``prompt_loose``, ``instruction_loose``, accuracy per kind).
Run: ``datakit ifeval --iteration iter_1`` / ``datakit ifeval --base``
(``dvc repro ifeval@iter_1`` / ``dvc repro ifeval_base``).
"""

from __future__ import annotations

import dataclasses
import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.generate import answer
from datakit.ifeval import IFEVAL_RESULTS, load_prompts, score, summarize
from datakit.runlog import summary_line, write_json
from datakit.schemas import write_table
from datakit.shards import clear_work

NAME = "ifeval"


def run(params: Params, iteration: str | None, progress: bool = True) -> dict:
    started = time.perf_counter()
    model, n, folder = artifacts.evaluation(params, iteration, NAME)
    prompts = load_prompts(params.ifeval.path)
    examples = prompts.select("id", instruction="prompt", input=pl.lit(""))
    answering = dataclasses.replace(
        params, generate=dataclasses.replace(params.generate, max_new_tokens=params.ifeval.max_new_tokens)
    )
    label = iteration or "base"
    gens, summary, work = answer(
        answering, examples, model, n, name=NAME, desc=f"{NAME} {label}", progress=progress
    )
    responses = dict(zip(gens["id"], gens["output"].fill_null(""), strict=True))
    results = score(prompts, responses)
    metrics = {**summarize(results), "model": model, "generate_seconds": summary["generate_seconds"]}
    write_table(results, artifacts.file_in(folder, NAME, "results.parquet"), IFEVAL_RESULTS)
    write_json(metrics, artifacts.file_in(folder, NAME, "metrics.json"))
    clear_work(work)
    summary_line(
        NAME,
        rows_in=prompts.height,
        rows_out=results.height,
        failed=summary["failed"],
        seconds=time.perf_counter() - started,
        extra=f"prompt-level strict {metrics['prompt_strict']:.3f}, instruction-level strict "
        f"{metrics['instruction_strict']:.3f} ({label})",
    )
    return metrics
