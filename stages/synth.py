"""synth — make the project's own deterministic data sets (no dataset can be downloaded offline).

Reads: params ``synth`` (the domain family, seed and sizes).
Writes: ``<paths.synth>/math_train.parquet``, ``math_val.parquet``, ``math_test.parquet`` (the domain
``synth.domain``: problems with worked solutions ending in ``#### N``; validation and test come from
templates training never uses), ``pool.parquet`` (general pool, many skill categories),
``general_val.parquet`` and ``general_eval.parquet`` (held out from the pool and from each other), and
``stats.json``.
Run: ``datakit synth`` (``dvc repro synth``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.runlog import summary_line, write_json
from datakit.schemas import EXAMPLES, write_table
from datakit.synth import make_domain, make_general_splits

NAME = "synth"


def run(params: Params) -> dict[str, pl.DataFrame]:
    started = time.perf_counter()
    cfg = params.synth
    domain = make_domain(
        cfg.domain, cfg.math_train, cfg.math_val, cfg.math_test, cfg.seed, cfg.math_max_steps
    )
    general = make_general_splits(cfg.pool, cfg.general_val, cfg.general_eval, cfg.seed)
    frames = (
        domain["train"],
        domain["val"],
        domain["test"],
        general["pool"],
        general["val"],
        general["eval"],
    )
    tables = dict(zip(artifacts.SYNTH_FILES, frames, strict=True))
    for name, df in tables.items():
        write_table(df, artifacts.project_file(params, NAME, f"{name}.parquet"), EXAMPLES)
    stats = {
        name: {
            "rows": df.height,
            "sources": dict(df.group_by("source").len().sort("source").iter_rows()),
        }
        for name, df in tables.items()
    }
    write_json(stats, artifacts.project_file(params, NAME, "stats.json"))
    n = sum(df.height for df in tables.values())
    summary_line(
        "synth",
        rows_in=0,
        rows_out=n,
        failed=0,
        seconds=time.perf_counter() - started,
        extra=", ".join(f"{k} {v.height}" for k, v in tables.items()),
    )
    return tables
