"""sft_set — the SFT view of an iteration's training data, optionally corrupted for PoFT's noise study.

Reads what ``train.data`` names: ``<iteration dir>/pairs/preference_pairs.parquet`` (the chosen answers),
or ``data.domain_train`` (plus as many ``data.pool`` rows for ``mixed``); params ``sft_set``.
Writes: ``<iteration dir>/sft_set/sft.parquet`` (``id, prompt, completion, origin, corrupted, corruption``)
and ``metrics.json`` (rows, corrupted rows per kind). With ``sft_set.noise: 0`` (the default) it is the clean
set. The sft/poft objectives train on it, through the score stage.
Run: ``datakit sft_set --iteration iter_1`` (``dvc repro sft_set@iter_1``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Iteration, Params
from datakit.loaders import load_examples
from datakit.pairs import PREFERENCE_PAIRS
from datakit.poft import SFT_SET, corrupt
from datakit.runlog import summary_line, write_json
from datakit.schemas import read_table, write_table
from datakit.train import examples_as_sft, sft_rows

NAME = "sft_set"


def clean_rows(params: Params, it: Iteration) -> pl.DataFrame:
    """What ``train.data`` names, as SFT rows: the pairs' chosen answers, the domain train set, or domain +
    as many pool rows (sampled with ``train.seed``)."""
    cfg = params.train
    if cfg.data == "pairs":
        return sft_rows(read_table(artifacts.preference_pairs(it), PREFERENCE_PAIRS))
    system = params.generate.system_prompt
    domain = examples_as_sft(load_examples(params.data.domain_train, "train"), system, "domain")
    if cfg.data == "mixed":
        pool = load_examples(params.data.pool, "pool")
        sample = pool.sample(min(domain.height, pool.height), seed=cfg.seed)
        domain = pl.concat([domain, examples_as_sft(sample, system, "pool")])
    return domain


def run(params: Params, iteration: str) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.sft_set
    rows = corrupt(clean_rows(params, it), cfg.noise, cfg.swap_share, cfg.char_rate, cfg.seed)
    write_table(rows, artifacts.sft_set(it), SFT_SET)
    kinds = rows["corruption"].value_counts()
    counts = dict(zip(kinds["corruption"].to_list(), kinds["count"].to_list(), strict=True))
    metrics = {
        "rows": rows.height,
        "data": params.train.data,
        "noise": cfg.noise,
        "corrupted": int(rows["corrupted"].sum()),
        "corrupted_swap": counts.get("swap", 0),
        "corrupted_chars": counts.get("chars", 0),
    }
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=rows.height,
        rows_out=rows.height,
        failed=0,
        seconds=time.perf_counter() - started,
        extra=f"{params.train.data}, {metrics['corrupted']} corrupted "
        f"({metrics['corrupted_swap']} swapped answers, {metrics['corrupted_chars']} character edits)",
    )
    return rows
