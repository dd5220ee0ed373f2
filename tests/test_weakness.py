"""The weakness map on literal frames, each number derived by hand in a comment."""

import polars as pl
import pytest

from datakit.weakness import UNTAGGED, pair_shares, tag_changes, tag_groups, tag_rates

TAGS = pl.DataFrame(
    {
        "id": ["a", "b", "c", "d", "e", "f"],
        "tags": [["Rate"], ["Rate", "Word"], ["Word"], ["Word"], None, ["Rate"]],
    },
    schema={"id": pl.Utf8, "tags": pl.List(pl.Utf8)},
)


def test_groups_count_an_item_under_each_of_its_tags_and_untagged_ones_apart():
    assert tag_groups(TAGS) == {"Rate": ["a", "b", "f"], UNTAGGED: ["e"], "Word": ["b", "c", "d"]}


def test_rates_with_their_wilson_intervals():
    # Rate: a wrong, b right, f wrong -> 2 of 3 wrong = 0.6667. Word: b right, c wrong, d (not graded) -> 1 of
    # 2. untagged: e right -> 0 of 1. Wilson 95% for 2/3: centre (2 + 1.96^2/2) / (3 + 1.96^2) = 3.9208 /
    # 6.8415 = 0.5731, half-width 1.96 * sqrt(2 * 1 / 3 + 1.96^2 / 4) / 6.8415 = 1.96 * 1.1349 / 6.8415 = 0.3251
    # -> [0.2077, 0.9385].
    right = {"a": False, "b": True, "c": False, "e": True, "f": False}
    rates = tag_rates(right, tag_groups(TAGS))
    assert rates["tag"].to_list() == ["Rate", "Word", UNTAGGED]  # most errors first
    assert rates["items"].to_list() == [3, 2, 1] and rates["wrong"].to_list() == [2, 1, 0]
    assert rates["error_rate"].to_list() == pytest.approx([2 / 3, 0.5, 0.0])
    assert rates.row(0, named=True)["error_low"] == pytest.approx(0.2077, abs=1e-4)
    assert rates.row(0, named=True)["error_high"] == pytest.approx(0.9385, abs=1e-4)


def test_changes_are_paired_per_tag_with_an_exact_mcnemar_verdict():
    # 12 items tagged "Times" and 4 tagged "Words"; before: every Times item wrong, Words all right.
    # after: 11 of the 12 Times items right (11 fixed, 0 broken: exact McNemar p = 2 * 0.5^11 = 0.000977,
    # significant -> "fixed", error 1.0 -> 1/12 = -91.67 points); Words: 1 broken of 4 (p = 1.0 -> "within
    # noise", +25 points).
    ids_t, ids_w = [f"t{i}" for i in range(12)], [f"w{i}" for i in range(4)]
    tags = pl.DataFrame(
        {"id": ids_t + ids_w, "tags": [["Times"]] * 12 + [["Words"]] * 4},
        schema={"id": pl.Utf8, "tags": pl.List(pl.Utf8)},
    )
    before = {i: False for i in ids_t} | {i: True for i in ids_w}
    after = {i: i != "t0" for i in ids_t} | {i: i != "w0" for i in ids_w}
    changes = tag_changes(before, after, tag_groups(tags)).rows_by_key("tag", named=True, unique=True)
    times, words = changes["Times"], changes["Words"]
    assert (times["items"], times["fixed_items"], times["broken_items"]) == (12, 11, 0)
    assert times["error_before"] == 1.0 and times["error_after"] == pytest.approx(1 / 12)
    assert times["change_points"] == pytest.approx(-91.6667, abs=1e-3)
    assert times["p"] == pytest.approx(2 * 0.5**11) and times["verdict"] == "fixed"
    assert (words["fixed_items"], words["broken_items"], words["p"]) == (0, 1, 1.0)
    assert words["change_points"] == pytest.approx(25.0) and words["verdict"] == "within noise"


def test_a_significant_rise_in_errors_is_worse_and_ungraded_items_do_not_count():
    # 8 items right before, wrong after: p = 2 * 0.5^8 = 0.0078 -> "worse", +100 points. The item graded only
    # before is left out of the pairing.
    ids = [f"x{i}" for i in range(8)]
    tags = pl.DataFrame(
        {"id": [*ids, "only-before"], "tags": [["Units"]] * 9},
        schema={"id": pl.Utf8, "tags": pl.List(pl.Utf8)},
    )
    before = {i: True for i in ids} | {"only-before": True}
    after = {i: False for i in ids}
    row = tag_changes(before, after, tag_groups(tags)).row(0, named=True)
    assert (row["items"], row["broken_items"], row["verdict"]) == (8, 8, "worse")
    assert row["p"] == pytest.approx(2 * 0.5**8) and row["change_points"] == pytest.approx(100.0)


def test_pair_shares_count_each_tag_of_a_pair():
    # 4 pairs: Rate on 3 of them (0.75), Word on 1 (0.25), one untagged pair (0.25).
    pairs = pl.DataFrame(
        {"tags": [["Rate"], ["Rate", "Word"], ["Rate"], None]}, schema={"tags": pl.List(pl.Utf8)}
    )
    shares = pair_shares(pairs)
    assert shares.rows() == [("Rate", 3, 0.75), ("Word", 1, 0.25), (UNTAGGED, 1, 0.25)]


def test_weakness_stages_on_a_tiny_project_and_the_reports_map(project):
    """tag_domain tags every domain item once; weakness --base counts the base model's errors per tag from
    its evaluation; the report lists what an iteration fixed, paired per tag: here M_2's evaluation is the
    base model's with every item of the most common tag made right by hand (n items, all fixed: p = 2 *
    0.5^n)."""
    from datakit.config import load_params
    from datakit.report import write_report
    from datakit.schemas import read_table
    from datakit.tags import TAGS
    from stages import base_model, evaluate, synth, tag_domain, weakness

    p = load_params("params.yaml")
    synth.run(p)
    base_model.run(p)
    evaluate.run(p, None, progress=False)
    tags = tag_domain.run(p, progress=False)
    assert tags.height == 12 + 4 + 6  # domain train, validation and test, once each
    assert read_table(project / "data/tag/domain_tags.parquet", TAGS)["id"].is_unique().all()
    rates = weakness.run(p, None, progress=False)

    results = pl.read_parquet(project / "data/evaluate_base/results.parquet")
    test = results.filter(pl.col("set") == "domain_test")
    groups = tag_groups(tags.filter(pl.col("id").is_in(test["id"].implode())))
    wrong = dict(zip(test["id"], test["score"] < 4, strict=True))  # the random model: every answer wrong
    got = rates.filter(pl.col("set") == "domain_test").rows_by_key("tag", named=True, unique=True)
    assert set(got) == set(groups)
    for tag, ids in groups.items():
        assert (got[tag]["items"], got[tag]["wrong"]) == (len(ids), sum(wrong[i] for i in ids))
    general = rates.filter(pl.col("set") == "general_eval")
    assert general["items"].sum() == 12 and not general["tag"].str.starts_with("general/").any()

    # M_2: the base evaluation with every test item of the most common tag answered right.
    top = max(groups, key=lambda t: (len(groups[t]), t))
    fixed = results.with_columns(
        score=pl.when((pl.col("set") == "domain_test") & pl.col("id").is_in(groups[top]))
        .then(5)
        .otherwise(pl.col("score"))
    )
    (project / "data/iter_1/evaluate").mkdir(parents=True)
    fixed.write_parquet(project / "data/iter_1/evaluate/results.parquet")
    (project / "data/iter_1/evaluate/metrics.json").write_text('{"domain_accuracy": 0.5}')
    (project / "data/iter_1/pairs").mkdir(parents=True)
    from datakit.pairs import PREFERENCE_PAIRS
    from datakit.schemas import write_table

    write_table(
        PREFERENCE_PAIRS.empty(), project / "data/iter_1/pairs/preference_pairs.parquet", PREFERENCE_PAIRS
    )
    weakness.run(p, "iter_1", progress=False)
    write_report(p, baselines=False)
    md = (project / "data/report/report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 1 (iter_1): M_1 → M_2"))
    n = len(groups[top])
    assert f"{top} 100→0% (n = {n}, p = {2 * 0.5**n:.2g})" in row
    assert (project / "data/report/weakness.png").read_bytes()[:4] == b"\x89PNG"
