"""retrieve — pull the iteration's similar cases from the pool index (``retrieve.strategy``, default tag).

Reads: ``<iteration dir>/select/bad_cases.parquet``, ``<paths.index>/lancedb`` (refused when it was built with
another tagger or embedder), params ``retrieve``, ``tag``, ``embed``, ``index``.
Writes, under ``<iteration dir>/retrieve/``: ``bad_case_tags.parquet`` (the bad cases' tags, through the
tag cache, so a text already tagged in an earlier iteration is not tagged again), ``similar_cases.parquet``
(pool rows with similarity, strategy, query and the bad cases that pulled them), ``metrics.json``
(counts, similarity, guard, tag agreement), ``tag_distribution.csv`` and ``tag_distribution.png`` (tag
shares of bad cases vs retrieved rows).
Run: ``datakit retrieve --iteration iter_1`` (``dvc repro retrieve@iter_1``).
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.embed import Embedder
from datakit.errors import DataError
from datakit.index import index_meta, open_index
from datakit.plots import pyplot, save_png
from datakit.retrieve import SIMILAR_CASES, Searcher, diagnostics, guard_count, retrieve, tag_distribution
from datakit.runlog import summary_line, write_json
from datakit.schemas import BAD_CASES, read_table, write_table, write_text_atomic
from datakit.tags import TAGS, make_tagger, tag_rows, tag_texts

NAME = "retrieve"


def plot_tags(dist: pl.DataFrame, path: Path, title: str, top: int = 25) -> None:
    """Horizontal bars: each tag's share among bad cases and among retrieved rows."""
    plt = pyplot()
    df = dist.head(top).reverse()
    fig, ax = plt.subplots(figsize=(8, 0.3 * max(df.height, 4) + 1.2))
    y = range(df.height)
    ax.barh([i + 0.2 for i in y], df["bad_share"], height=0.4, label="bad cases")
    ax.barh([i - 0.2 for i in y], df["similar_share"], height=0.4, label="similar cases")
    ax.set_yticks(list(y), df["tag"].to_list(), fontsize=8)
    ax.set_xlabel("share of tag assignments")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_png(fig, path)


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = params.iteration(iteration), params.retrieve
    bad_path = artifacts.bad_cases(it)
    bad = read_table(bad_path, BAD_CASES)
    embedder = Embedder(params.embed, params.paths.cache, progress, executor=params.executor)
    tagger = make_tagger(params.tag, embedder, lazy=params.executor.is_ray)
    built = index_meta(artifacts.index_dir(params))
    for what, ours in (("tagger", tagger.fingerprint), ("embedder", embedder.fingerprint)):
        if built.get(what) != ours:
            raise DataError(
                artifacts.index_dir(params),
                f"the index was built with {what} {built.get(what)}, this run's is {ours}: "
                "rerun `datakit tag` and `datakit index` after changing tag or embed settings",
            )
    bad_tags, tag_stats = tag_rows(params, bad, tagger, progress, f"{NAME} {iteration}: tag bad cases")
    write_table(bad_tags, artifacts.bad_case_tags(it), TAGS)
    vecs = embedder.embed(tag_texts(bad), desc="embed bad cases")
    table = open_index(artifacts.index_dir(params))
    search = Searcher(table, params.index, cfg.guard_threshold)
    tags = bad_tags["tags"].to_list()
    similar = retrieve(bad["id"].to_list(), tags, vecs, search, cfg)
    write_table(similar, artifacts.similar_cases(it), SIMILAR_CASES)
    dist = tag_distribution(tags, similar)
    write_text_atomic(dist.write_csv(), artifacts.step_file(it, NAME, "tag_distribution.csv"))
    plot_tags(
        dist,
        artifacts.step_file(it, NAME, "tag_distribution.png"),
        f"{iteration}: tags of bad vs similar cases ({cfg.strategy})",
    )
    metrics = diagnostics(tags, similar, guard_count(table, cfg.guard_threshold))
    metrics.update(
        strategy=cfg.strategy,
        scale=cfg.scale,
        bad_cases_tagged_now=tag_stats.computed,
        bad_cases_tags_from_cache=tag_stats.cached,
        embedded_now=embedder.encoded,  # texts run through the embedder here (none once cached)
    )
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=bad.height,
        rows_out=similar.height,
        failed=metrics["untagged_bad_cases"],
        seconds=time.perf_counter() - started,
        extra=f"{cfg.strategy} strategy, mean similarity {metrics['mean_similarity']}, "
        f"{metrics['guard_dropped_pool_rows']} pool rows behind the guard",
    )
    return similar
