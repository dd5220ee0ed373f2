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
from pathlib import Path

import polars as pl

from datakit.config import Params
from datakit.embed import Embedder
from datakit.errors import bound_failures
from datakit.generate import user_message
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import write_table
from datakit.tags import TAGS, Tagger, TagStats, make_tagger, tag_cache, tag_frame

NAME = "tag"


def output(params: Params) -> Path:
    """The pool's tags (read by index and retrieve)."""
    return Path(params.paths.tag) / "pool_tags.parquet"


def texts(df: pl.DataFrame) -> list[str]:
    """What is tagged and embedded: the user message (instruction, then input)."""
    return [user_message(i, x) for i, x in zip(df["instruction"], df["input"], strict=True)]


def tag_rows(
    params: Params, df: pl.DataFrame, tagger: Tagger, progress: bool, desc: str
) -> tuple[pl.DataFrame, TagStats]:
    """Tag ``df``'s rows through the cache and fail above ``tag.max_failure_rate``."""
    cfg = params.tag
    chunk = params.embed.chunk_size if cfg.tagger == "embedding" else cfg.generation.shard_size
    tags, stats = tag_frame(
        df["id"].to_list(),
        texts(df),
        tagger,
        tag_cache(params.paths.cache, tagger),
        chunk_size=chunk,
        progress=progress,
        desc=desc,
        executor=params.executor,
    )
    bound_failures(
        tags,
        pl.col("tags").is_null(),
        cfg.max_failure_rate,
        f"{desc}: texts could not be tagged (tag.max_failure_rate)",
    )
    return tags, stats


def tag_metrics(tags: pl.DataFrame, stats: TagStats) -> dict:
    flat = tags.select(pl.col("tags").explode().drop_nulls())["tags"]
    counts = flat.value_counts(sort=True, name="n")
    return {
        "rows": tags.height,
        "texts": stats.texts,
        "cached": stats.cached,
        "tagged_now": stats.computed,
        "failed": int(tags["tags"].null_count()),
        "tags_in_use": counts.height,
        "mean_tags_per_row": round(flat.len() / max(tags.height - tags["tags"].null_count(), 1), 3),
        "top_tags": {r["tags"]: r["n"] for r in counts.head(10).iter_rows(named=True)},
    }


def run(params: Params, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    pool = load_examples(params.data.pool, "pool")
    embedder = Embedder(params.embed, params.paths.cache, progress, executor=params.executor)
    tagger = make_tagger(params.tag, embedder, lazy=params.executor.is_ray)
    before = embedder.encoded  # the taxonomy's own texts are not pool rows
    tags, stats = tag_rows(params, pool, tagger, progress, NAME)
    write_table(tags, output(params), TAGS)
    metrics = tag_metrics(tags, stats)
    metrics["embedded_now"] = (
        embedder.encoded - before
    )  # pool texts run through the embedder (embedding tagger)
    write_json(metrics, output(params).parent / "metrics.json")
    summary_line(
        NAME,
        rows_in=pool.height,
        rows_out=tags.height,
        failed=int(tags["tags"].null_count()),
        seconds=time.perf_counter() - started,
        extra=f"{stats.cached} texts from the cache, {stats.computed} tagged now",
    )
    return tags
