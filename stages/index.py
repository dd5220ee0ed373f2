"""index — build the LanceDB tag index over the general pool, once for every iteration.

Reads: ``data.pool``, ``<paths.tag>/pool_tags.parquet``, ``data.domain_test`` and ``data.domain_val`` (for
the contamination guard: settings are chosen on validation, so it is kept out of training too), params
``index`` and ``embed``.
Writes: ``<paths.index>/lancedb`` (table ``pool``: id, instruction, input, output, source, tags, text_hash,
test_similarity, vector; cosine metric; an ANN index at ``index.ann_min_rows`` rows or more) and
``metrics.json`` (rows, rows embedded now vs read from the embedding cache, ANN or exact, untagged rows,
pool rows equal to a test item). Embeddings go through the cache under ``paths.cache``, so a rebuild after
the pool changes embeds only the new or edited rows.
Run: ``datakit index`` (``dvc repro index``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.cache import text_hash
from datakit.config import Params
from datakit.embed import Embedder
from datakit.errors import DataError
from datakit.index import build_index, guard_similarity
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import read_table
from datakit.tags import TAGS, tag_texts

NAME = "index"


def pool_with_tags(params: Params) -> pl.DataFrame:
    """The pool joined with its tags (and the tagger that made them); tags from another pool version are
    one clear error."""
    pool = load_examples(params.data.pool, "pool")
    tags_path = artifacts.pool_tags(params)
    tags = read_table(tags_path, TAGS)
    pool = pool.with_columns(text_hash=pl.Series([text_hash(t) for t in tag_texts(pool)], dtype=pl.Utf8))
    joined = pool.with_row_index("_row", offset=1).join(
        tags.select("id", pl.col("text_hash").alias("tagged_hash"), "tags", "tagger"),
        on="id",
        how="left",
        maintain_order="left",
    )
    missing = joined.filter(pl.col("tagged_hash").is_null())
    stale = joined.filter(pl.col("tagged_hash") != pl.col("text_hash"))
    for bad, why in ((missing, "has no tags"), (stale, "was tagged from a different text")):
        if bad.height:
            row, id_ = bad["_row"][0], bad["id"][0]
            raise DataError(tags_path, f"pool row {row} (id {id_!r}) {why}: rerun `datakit tag`", field="id")
    return joined.drop("_row", "tagged_hash")


def run(params: Params, progress: bool = True) -> dict:
    started = time.perf_counter()
    pool = pool_with_tags(params)
    test = load_examples(params.data.domain_test, "test")
    if params.data.domain_val is not None:
        test = pl.concat([test, load_examples(params.data.domain_val, "val")])
    embedder = Embedder(params.embed, params.paths.cache, progress, executor=params.executor)
    pool_texts, test_texts = tag_texts(pool), tag_texts(test)
    vectors = embedder.embed(pool_texts, desc="embed pool")
    embedded_pool, reused_pool = embedder.encoded, embedder.reused
    test_vecs = embedder.embed(test_texts, desc="embed domain test")
    sims = guard_similarity(vectors, pool_texts, test_vecs, test_texts)
    tagger = pool["tagger"].unique().sort().to_list()
    info = build_index(
        artifacts.index_dir(params),
        pool.with_columns(test_similarity=pl.Series(sims)),
        vectors,
        params.index,
        meta={"embedder": embedder.fingerprint, "tagger": ",".join(tagger)},
    )
    metrics = {
        "rows": info.rows,
        "dim": info.dim,
        "embedded_now": embedded_pool,
        "embedded_from_cache": reused_pool,
        "index": info.index_type,
        "untagged_rows": int(pool["tags"].null_count()),
        "test_duplicates": int((sims >= 1.0).sum()),
        "duplicate_texts": pool.height - pool["text_hash"].n_unique(),  # retrieve keeps one row per text
        "max_test_similarity": round(float(sims.max()), 4) if len(sims) else None,
    }
    write_json(metrics, artifacts.project_file(params, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=pool.height,
        rows_out=info.rows,
        failed=0,
        seconds=time.perf_counter() - started,
        extra=f"{embedded_pool} pool rows embedded now, {reused_pool} from the cache, {info.index_type} search",
    )
    return metrics
