"""pairs — the iteration's preference pairs: bad cases and similar cases, chosen vs M_t's answer.

Reads: ``<iteration dir>/select/bad_cases.parquet``, ``<iteration dir>/retrieve/bad_case_tags.parquet`` and
``similar_cases.parquet``, ``<iteration dir>/generate_similar/generations.parquet``, params ``generate``
(its system prompt is part of every prompt).
Writes: ``<iteration dir>/pairs/preference_pairs.parquet`` (TRL's ``prompt, chosen, rejected`` plus
``prompt_id, id, origin, score, tags, iteration``) and ``metrics.json`` (pairs per origin, pairs dropped
because chosen equals rejected or the answer failed).
Run: ``datakit pairs --iteration iter_1`` (``dvc repro pairs@iter_1``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.pairs import PREFERENCE_PAIRS, build_pairs
from datakit.retrieve import SIMILAR_CASES
from datakit.runlog import summary_line, write_json
from datakit.schemas import BAD_CASES, GENERATIONS, read_table, write_table
from datakit.tags import TAGS

NAME = "pairs"


def run(params: Params, iteration: str) -> pl.DataFrame:
    started = time.perf_counter()
    it = params.iteration(iteration)
    bad = read_table(artifacts.bad_cases(it), BAD_CASES)
    bad_tags = read_table(artifacts.bad_case_tags(it), TAGS)
    similar = read_table(artifacts.similar_cases(it), SIMILAR_CASES)
    answers = read_table(artifacts.similar_generations(it), GENERATIONS)
    pairs, stats = build_pairs(
        bad,
        bad_tags,
        similar,
        answers,
        iteration=it.n,
        system_prompt=params.generate.system_prompt,
        where=str(artifacts.similar_generations(it)),
    )
    write_table(pairs, artifacts.preference_pairs(it), PREFERENCE_PAIRS)
    write_json(stats, artifacts.step_file(it, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=bad.height + similar.height,
        rows_out=pairs.height,
        failed=stats["dropped_no_answer"],
        seconds=time.perf_counter() - started,
        extra=f"{stats['bad_case_pairs']} from bad cases, {stats['similar_case_pairs']} from similar cases, "
        f"{stats['dropped_identical']} dropped (chosen = rejected)",
    )
    return pairs
