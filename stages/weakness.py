"""weakness — one model's error rate per skill tag: the weakness map, a row of it per model.

Reads: the model's evaluation (``--iteration iter_t``: ``<dir>/evaluate/results.parquet``, M_{t+1};
``--base``: ``<paths.evaluate_base>/results.parquet``), ``<paths.tag>/domain_tags.parquet`` (tag_domain), the
iteration's ``pairs/preference_pairs.parquet`` (iterations only), params ``select`` (what counts as wrong).
Writes, under ``<dir>/weakness/`` (``paths.weakness_base`` for the base model): ``rates.csv`` (per evaluated
set and tag: items, wrong, error rate and its 95% Wilson interval; the general sets per category instead of
per tag), ``pair_shares.csv`` (iterations: per tag, the share of this iteration's pairs carrying it, where
the training data came from) and ``metrics.json`` (tags, the worst tags on domain test). The report draws every model's
rates as a heat map and lists, per iteration, the tags it fixed and the ones it made worse (paired on the same
items).
Run: ``datakit weakness --iteration iter_1`` / ``datakit weakness --base`` (``dvc repro weakness@iter_1``).
"""

from __future__ import annotations

import time

import polars as pl

from datakit import artifacts
from datakit.config import Params
from datakit.pairs import PREFERENCE_PAIRS
from datakit.report import read_correct
from datakit.runlog import summary_line, write_json
from datakit.schemas import read_table, write_text_atomic
from datakit.tags import TAGS
from datakit.weakness import pair_shares, tag_groups, tag_rates

NAME = "weakness"


def category_groups(results: pl.DataFrame, name: str) -> dict[str, list[str]]:
    """A general set's items by category (``general/<category>`` -> ``<category>``)."""
    rows = results.filter(pl.col("set") == name)
    out: dict[str, list[str]] = {}
    for item, category in zip(rows["id"].to_list(), rows["category"].to_list(), strict=True):
        out.setdefault((category or "?").removeprefix("general/"), []).append(item)
    return dict(sorted(out.items()))


def run(params: Params, iteration: str | None, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    _, _, eval_dir = artifacts.evaluation(params, iteration)
    results_path = artifacts.file_in(eval_dir, "evaluate", "results.parquet")
    right = read_correct(results_path, params.select.threshold, results_path)
    results = pl.read_parquet(results_path, columns=["set", "id", "category"])
    groups = tag_groups(read_table(artifacts.domain_tags(params), TAGS))
    parts = []
    for name, graded in sorted(right.items()):
        by = groups if name.startswith("domain") else category_groups(results, name)
        parts.append(tag_rates(graded, by).with_columns(set=pl.lit(name)))
    rates = pl.concat(parts).select("set", pl.exclude("set"))
    out = artifacts.weakness_dir(params, iteration)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(rates.write_csv(), artifacts.file_in(out, NAME, "rates.csv"))
    shares = pl.DataFrame(schema={"tag": pl.Utf8, "pairs": pl.Int64, "share": pl.Float64})
    if iteration is not None:  # the base model was trained on no pairs
        pairs_path = artifacts.preference_pairs(params.iteration(iteration))
        pairs = read_table(pairs_path, PREFERENCE_PAIRS)
        if pairs.height:
            shares = pair_shares(pairs)
        write_text_atomic(shares.write_csv(), artifacts.file_in(out, NAME, "pair_shares.csv"))
    test = rates.filter(pl.col("set") == "domain_test").sort("error_rate", descending=True)
    metrics = {
        "tags": rates.filter(pl.col("set").str.starts_with("domain"))["tag"].n_unique(),
        "worst_test_tags": {r["tag"]: round(r["error_rate"], 4) for r in test.head(5).iter_rows(named=True)},
        "pairs_top_tags": {r["tag"]: round(r["share"], 4) for r in shares.head(5).iter_rows(named=True)},
    }
    write_json(metrics, artifacts.file_in(out, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=results.height,
        rows_out=rates.height,
        failed=0,
        seconds=time.perf_counter() - started,
        extra=f"{iteration or 'base'}: {metrics['tags']} domain tags, worst on test: "
        + ", ".join(f"{t} {100 * r:.0f}%" for t, r in list(metrics["worst_test_tags"].items())[:3]),
    )
    return rates
