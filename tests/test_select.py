import polars as pl
import pytest

from datakit.config import SelectConfig, build
from datakit.errors import ConfigError, DataError
from datakit.generate import answered
from datakit.schemas import BAD_CASES
from datakit.select import parse_threshold, select_bad_cases

IDS = ["a", "b", "c", "d", "e", "f"]
EXAMPLES = pl.DataFrame(
    {
        "id": IDS,
        "instruction": [f"q{i}" for i in IDS],
        "input": [""] * 6,
        "output": [f"ref {i}" for i in IDS],
        "source": ["s"] * 6,
        "split": ["train"] * 6,
    }
)
GENERATIONS = pl.DataFrame(
    {
        "id": IDS,
        "output": [f"ans {i}" for i in IDS],
        "finish_reason": ["stop"] * 6,
        "error": pl.Series([None] * 6, dtype=pl.Utf8),
        "model": ["m"] * 6,
        "iteration": [2] * 6,
    }
)
JUDGMENTS = pl.DataFrame(
    {
        "id": IDS,
        "score": [1, 2, 3, 4, 5, None],
        "feedback": ["f"] * 6,
        "model": ["m"] * 6,
        "iteration": [2] * 6,
    },
    schema_overrides={"score": pl.Int64},
)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        ("<4", ["a", "b", "c"]),
        ("=1", ["a"]),
        ("<3", ["a", "b"]),
        ("<=2", ["a", "b"]),
        ("< 5", ["a", "b", "c", "d"]),
    ],
)
def test_threshold_picks_bad_cases_and_never_unscored_rows(threshold, expected):
    bad = select_bad_cases(answered(EXAMPLES, GENERATIONS), JUDGMENTS.reverse(), threshold)
    assert bad["id"].to_list() == expected
    assert bad.columns == BAD_CASES.columns
    assert bad["response"].to_list() == [f"ans {i}" for i in expected]
    assert bad["output"].to_list() == [f"ref {i}" for i in expected]
    assert bad["iteration"].to_list() == [2] * len(expected) and bad["model"].to_list() == ["m"] * len(
        expected
    )


def test_judgments_of_other_answers_or_missing_rows_are_refused():
    stale = JUDGMENTS.with_columns(model=pl.Series(["m"] * 3 + ["older"] * 3))
    with pytest.raises(DataError) as err:
        select_bad_cases(answered(EXAMPLES, GENERATIONS), stale, "<4", "judgments.parquet")
    assert err.value.row == 4
    assert "judged answers of older (iteration 2), but the generations are from m" in str(err.value)
    with pytest.raises(DataError, match=r"judgments.parquet: has no judgment for 2 rows \(first id 'e'\)"):
        select_bad_cases(answered(EXAMPLES, GENERATIONS), JUDGMENTS.head(4), "<4", "judgments.parquet")


@pytest.mark.parametrize("text", ["4", "<6", "less than 4", "<0", ""])
def test_bad_threshold_is_refused_when_params_load(text):
    with pytest.raises(ValueError, match="threshold: expected an operator"):
        parse_threshold(text)
    with pytest.raises(ConfigError, match="select.threshold: expected an operator"):
        build(SelectConfig, {"threshold": text}, "select")
