"""The weakness map: what a model gets wrong per skill tag, and what an iteration fixed or broke.

Every domain item carries the tags the configured tagger gives its instruction (stage ``tag_domain``). An
item with several tags counts under each; an untagged item (the LLM tagger failed on it) under ``untagged``.

- ``tag_groups``: tag -> the ids that carry it.
- ``tag_rates``: per tag, the items graded, how many are wrong, the error rate and its 95% Wilson interval.
- ``tag_changes``: per tag, one model against the next on the same items: both error rates, the change, the
  exact McNemar test, and the verdict (``fixed``: significantly fewer errors, ``worse``: significantly more,
  else ``within noise``).
- ``pair_shares``: per tag, the share of an iteration's preference pairs that carry it (where the training
  data came from).

Intervals and tests come from ``datakit.stats`` (statsmodels).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from datakit.stats import mcnemar_exact, wilson

UNTAGGED = "untagged"
RATES = {
    "tag": pl.Utf8,
    "items": pl.Int64,
    "wrong": pl.Int64,
    "error_rate": pl.Float64,
    "error_low": pl.Float64,
    "error_high": pl.Float64,
}
CHANGES = {
    "tag": pl.Utf8,
    "items": pl.Int64,
    "error_before": pl.Float64,
    "error_after": pl.Float64,
    "error_after_low": pl.Float64,
    "error_after_high": pl.Float64,
    "change_points": pl.Float64,
    "fixed_items": pl.Int64,  # wrong before, right after
    "broken_items": pl.Int64,  # right before, wrong after
    "p": pl.Float64,
    "verdict": pl.Utf8,
}


def tag_groups(tags: pl.DataFrame) -> dict[str, list[str]]:
    """tag -> the ids carrying it (sorted), from a frame with ``id`` and ``tags`` (a list; null = untagged)."""
    groups: dict[str, set[str]] = {}
    for item, item_tags in zip(tags["id"].to_list(), tags["tags"].to_list(), strict=True):
        for tag in item_tags if item_tags else [UNTAGGED]:
            groups.setdefault(tag, set()).add(item)
    return {tag: sorted(ids) for tag, ids in sorted(groups.items())}


def tag_rates(right: Mapping[str, bool], groups: Mapping[str, list[str]]) -> pl.DataFrame:
    """Per tag: items graded (ids in ``right``), wrong ones, error rate and its 95% Wilson interval; most
    errors first."""
    rows = []
    for tag, ids in groups.items():
        graded = [i for i in ids if i in right]
        wrong = sum(1 for i in graded if not right[i])
        low, high = wilson(wrong, len(graded))
        rate = wrong / len(graded) if graded else None
        rows.append((tag, len(graded), wrong, rate, low, high))
    out = pl.DataFrame(rows, schema=RATES, orient="row")
    return out.filter(pl.col("items") > 0).sort(["wrong", "tag"], descending=[True, False])


def tag_changes(
    before: Mapping[str, bool], after: Mapping[str, bool], groups: Mapping[str, list[str]]
) -> pl.DataFrame:
    """Per tag, ``after`` against ``before`` on the items both graded: error rates, the change in points
    (after minus before), items fixed and broken, exact McNemar p and the verdict."""
    rows = []
    for tag, ids in groups.items():
        shared = [i for i in ids if i in before and i in after]
        if not shared:
            continue
        test = mcnemar_exact({i: before[i] for i in shared}, {i: after[i] for i in shared})
        wrong_before = sum(1 for i in shared if not before[i])
        wrong_after = sum(1 for i in shared if not after[i])
        low, high = wilson(wrong_after, len(shared))
        change = 100 * (wrong_after - wrong_before) / len(shared)
        verdict = "within noise"
        if test["significant"]:
            verdict = "fixed" if change < 0 else "worse"
        rows.append(
            (
                tag,
                len(shared),
                wrong_before / len(shared),
                wrong_after / len(shared),
                low,
                high,
                change,
                test["b_only"],
                test["a_only"],
                test["p"],
                verdict,
            )
        )
    return pl.DataFrame(rows, schema=CHANGES, orient="row").sort(["change_points", "tag"])


def pair_shares(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per tag: how many of the pairs carry it and their share of all pairs (a pair with several tags counts
    under each, so shares can sum past 1)."""
    total = pairs.height
    counts: dict[str, int] = {}
    for item_tags in pairs["tags"].to_list():
        for tag in item_tags if item_tags else [UNTAGGED]:
            counts[tag] = counts.get(tag, 0) + 1
    rows = [(tag, n, n / total) for tag, n in counts.items()]
    schema = {"tag": pl.Utf8, "pairs": pl.Int64, "share": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row").sort(["pairs", "tag"], descending=[True, False])
