"""tag_domain — tag every domain item (train, validation, test) with the skills it exercises, once.

Reads: ``data.domain_train``, ``data.domain_val`` (when set), ``data.domain_test``, params ``tag`` and
``embed`` (the same tagger as the pool's, through the same cache).
Writes: ``<paths.tag>/domain_tags.parquet`` (one row per domain item: tags, or null + error) and
``domain_metrics.json`` (rows, cached / newly tagged / failed, tags in use). The weakness stages read it to
give each model's error rate per tag.
Run: ``datakit tag_domain`` (``dvc repro tag_domain``).
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

NAME = "tag_domain"


def run(params: Params, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    sources = [
        (params.data.domain_train, "train"),
        (params.data.domain_val, "val"),
        (params.data.domain_test, "test"),
    ]
    items = pl.concat([load_examples(src, split) for src, split in sources if src is not None])
    embedder = Embedder(params.embed, params.paths.cache, progress, executor=params.executor)
    tagger = make_tagger(params.tag, embedder, lazy=params.executor.is_ray)
    tags, stats = tag_rows(params, items, tagger, progress, NAME)
    write_table(tags, artifacts.domain_tags(params), TAGS)
    metrics = tag_metrics(tags, stats)
    write_json(metrics, artifacts.project_file(params, NAME, "domain_metrics.json"))
    summary_line(
        NAME,
        rows_in=items.height,
        rows_out=tags.height,
        failed=int(tags["tags"].null_count()),
        seconds=time.perf_counter() - started,
        extra=f"{stats.cached} texts from the cache, {stats.computed} tagged now, {metrics['tags_in_use']} tags",
    )
    return tags
