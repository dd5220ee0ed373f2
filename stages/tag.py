"""tag — tag every general-pool instruction with the skills it exercises (``tag.tagger``).

Reads: ``data.pool``, params ``tag`` and ``embed`` (the taxonomy file named by ``tag.taxonomy``).
Writes: ``<paths.tag>/pool_tags.parquet`` (one row per pool example: tags, or null + error) and
``metrics.json`` (rows, cached / newly tagged / failed, tags in use, mean tags per row, the ten most
common tags). Tags go through the cache under ``paths.cache``: a text is tagged once across runs, so after
the pool changes only new or edited rows are tagged. Untaggable rows (llm tagger) are counted; above
``tag.max_failure_rate`` the stage fails, keeping what was tagged in the cache for the rerun.
Run: ``datakit tag`` (``dvc repro tag``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.embed import Embedder
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import write_table
from datakit.tags import TAGS, make_tagger, tag_metrics, tag_rows

NAME = "tag"


def run(params: Params, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    pool = load_examples(params.data.pool, "pool")
    embedder = Embedder(params.embed, params.paths.cache, progress, executor=params.executor)
    tagger = make_tagger(params.tag, embedder, lazy=params.executor.is_ray)
    before = embedder.encoded  # the taxonomy's own texts are not pool rows
    tags, stats = tag_rows(params, pool, tagger, progress, NAME)
    write_table(tags, artifacts.pool_tags(params), TAGS)
    metrics = tag_metrics(tags, stats)
    metrics["embedded_now"] = (
        embedder.encoded - before
    )  # pool texts run through the embedder (embedding tagger)
    write_json(metrics, artifacts.project_file(params, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=pool.height,
        rows_out=tags.height,
        failed=int(tags["tags"].null_count()),
        seconds=time.perf_counter() - started,
        extra=f"{stats.cached} texts from the cache, {stats.computed} tagged now",
    )
    return tags
