import polars as pl
import pytest

from datakit.errors import DataError
from datakit.schemas import EXAMPLES, JUDGMENTS, read_table, write_table


def examples(**cols):
    base = {
        "id": ["a", "b"],
        "instruction": ["Add 1 and 2.", "Add 2 and 3."],
        "input": ["", ""],
        "output": ["#### 3", "#### 5"],
        "source": ["t", "t"],
        "split": ["train", "train"],
    }
    return pl.DataFrame(base | cols)


def test_round_trip_keeps_declared_order_and_extra_columns(tmp_path):
    df = examples().with_columns(note=pl.lit("x")).select(["note", *EXAMPLES.columns])
    path = write_table(df, tmp_path / "ex.parquet", EXAMPLES)
    back = read_table(path, EXAMPLES)
    assert back.columns == [*EXAMPLES.columns, "note"]
    assert back["output"].to_list() == ["#### 3", "#### 5"]


def test_reports_every_column_difference(tmp_path):
    df = examples().drop("split").with_columns(pl.col("id").cast(pl.Categorical))
    with pytest.raises(DataError) as err:
        write_table(df, tmp_path / "ex.parquet", EXAMPLES)
    msg = str(err.value)
    assert "missing column 'split'" in msg and "column 'id' is Categorical" in msg
    assert "ex.parquet" in msg


@pytest.mark.parametrize(
    ("cols", "field", "row"),
    [
        ({"output": ["#### 3", "  "]}, "output", 2),
        ({"instruction": [None, "x"]}, "instruction", 1),
        ({"id": ["a", "a"]}, "id", 2),
    ],
)
def test_row_rules_name_row_and_field(tmp_path, cols, field, row):
    with pytest.raises(DataError) as err:
        write_table(examples(**cols), tmp_path / "ex.parquet", EXAMPLES)
    assert err.value.field == field and err.value.row == row
    assert f"row {row}, field '{field}'" in str(err.value)


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = write_table(examples(), tmp_path / "ex.parquet", EXAMPLES)
    before = path.read_bytes()
    with pytest.raises(DataError):
        write_table(examples(id=["a", "a"]), path, EXAMPLES)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ex.parquet"]  # no temp file left behind


def test_all_null_column_is_cast_not_rejected(tmp_path):
    df = pl.DataFrame(
        {
            "id": ["a"],
            "score": [None],
            "feedback": ["?"],
            "judge": ["llm"],
            "error": ["no [RESULT]"],
            "extracted": [None],
            "raw": ["..."],
            "model": ["m"],
            "iteration": [1],
        }
    )
    back = read_table(write_table(df, tmp_path / "j.parquet", JUDGMENTS), JUDGMENTS)
    assert back.schema["score"] == pl.Int64 and back["score"].to_list() == [None]


def test_read_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="nothing.parquet: not found"):
        read_table(tmp_path / "nothing.parquet", EXAMPLES)
