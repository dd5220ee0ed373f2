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

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.generate import answer, log_summary
from datakit.loaders import load_examples
from datakit.runlog import write_json
from datakit.schemas import GENERATIONS, read_table, write_table
from datakit.shards import clear_work

NAME = "generate"


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it = params.iteration(iteration)
    if it.recipe == "isheep":
        from datakit.isheep import INSTRUCTIONS

        examples = read_table(artifacts.instructions(it), INSTRUCTIONS)
    else:
        examples = load_examples(params.data.domain_train, "train")
    out, summary, work = answer(
        params, examples, it.model_in, it.n, name=NAME, desc=f"{NAME} {iteration}", progress=progress
    )
    write_table(out, artifacts.generations(it), GENERATIONS)
    write_json(summary, artifacts.step_file(it, NAME, "summary.json"))
    clear_work(work)
    log_summary(NAME, examples.height, summary, time.perf_counter() - started)
    return out
