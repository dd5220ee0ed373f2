import polars as pl
import pytest

from datakit.errors import ConfigError
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
GENERATIONS = pl.DataFrame({"id": IDS, "output": [f"ans {i}" for i in IDS]})
JUDGMENTS = pl.DataFrame(
    {"id": IDS, "score": [1, 2, 3, 4, 5, None], "feedback": ["f"] * 6},
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
    bad = select_bad_cases(EXAMPLES, GENERATIONS, JUDGMENTS, threshold, iteration=2)
    assert bad["id"].to_list() == expected
    assert bad.columns == BAD_CASES.columns
    assert bad["response"].to_list() == [f"ans {i}" for i in expected]
    assert bad["output"].to_list() == [f"ref {i}" for i in expected]
    assert set(bad["iteration"].to_list()) <= {2}


@pytest.mark.parametrize("text", ["4", "<6", "less than 4", "<0", ""])
def test_bad_threshold_names_the_setting(text):
    with pytest.raises(ConfigError, match="select.threshold"):
        parse_threshold(text)
