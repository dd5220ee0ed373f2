import json

import datasets
import polars as pl
import pytest

from datakit.config import DatasetSource
from datakit.errors import DataError
from datakit.loaders import example_id, load_examples

ROWS = [
    {"question": "What is 2 + 3?", "context": "", "answer": "#### 5", "uid": "q1"},
    {"question": "What is 4 * 5?", "context": "show work", "answer": "#### 20", "uid": "q2"},
]
MAPPING = {"instruction": "question", "input": "context", "output": "answer", "id": "uid"}


def write(tmp_path, fmt, rows=ROWS):
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps({"data": rows}))
    elif fmt == "parquet":
        pl.DataFrame(rows).write_parquet(path)
    elif fmt == "csv":
        pl.DataFrame(rows).write_csv(path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_local_formats_with_column_mapping(tmp_path, fmt):
    df = load_examples(DatasetSource(path=str(write(tmp_path, fmt)), columns=MAPPING), "train")
    assert df["id"].to_list() == ["q1", "q2"]
    assert df["instruction"].to_list() == ["What is 2 + 3?", "What is 4 * 5?"]
    assert df["input"].to_list() == ["", "show work"]
    assert df["output"].to_list() == ["#### 5", "#### 20"]
    assert df["split"].to_list() == ["train", "train"]


def test_hf_dataset_folder_and_dict(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "ds"))
    df = load_examples(DatasetSource(path=str(tmp_path / "ds"), columns=MAPPING), "train")
    assert df["id"].to_list() == ["q1", "q2"]
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dd"))
    df = load_examples(DatasetSource(path=str(tmp_path / "dd"), split="test", columns=MAPPING), "test")
    assert df.height == 2
    with pytest.raises(DataError, match="no split 'train'"):
        load_examples(DatasetSource(path=str(tmp_path / "dd"), columns=MAPPING), "train")


def test_hf_folder_of_data_files(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    write(folder, "jsonl")
    df = load_examples(DatasetSource(path=str(folder), format="hf", columns=MAPPING), "train")
    assert sorted(df["id"].to_list()) == ["q1", "q2"]


def test_missing_id_is_a_stable_hash(tmp_path):
    rows = [{"instruction": "Say hi.", "output": "hi"}]
    df = load_examples(DatasetSource(path=str(write(tmp_path, "jsonl", rows))), "train")
    assert df["id"].to_list() == [example_id("Say hi.", "")]


def test_broken_json_line_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": \n')
    with pytest.raises(DataError) as err:
        load_examples(DatasetSource(path=str(path)), "train")
    assert err.value.row == 3 and "broken JSON line" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"question": "q", "uid": "x"}, "answer", "missing"),
        ({"question": "   ", "answer": "a", "uid": "x"}, "question", "empty"),
        ({"question": "q", "answer": 42, "uid": "x"}, "answer", "wrong type: expected a string, got int"),
        ({"question": ["q"], "answer": "a", "uid": "x"}, "question", "wrong type"),
        ({"question": "q", "answer": "a", "uid": "q1"}, "uid", "duplicate id 'q1' (first seen in row 1)"),
        ({"question": "q", "answer": "a", "uid": 1.5}, "uid", "expected a string or integer id"),
    ],
)
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_malformed_rows_name_file_row_and_field(tmp_path, fmt, row, field, reason):
    path = write(tmp_path, fmt, [ROWS[0], row])
    with pytest.raises(DataError) as err:
        load_examples(DatasetSource(path=str(path), columns=MAPPING), "train")
    assert (err.value.row, err.value.field) == (2, field)
    assert reason in str(err.value) and str(path) in str(err.value)


def test_wrong_type_in_parquet_column(tmp_path):
    path = tmp_path / "d.parquet"
    pl.DataFrame({"instruction": ["a", "b"], "output": [1, 2]}).write_parquet(path)
    with pytest.raises(DataError, match=r"row 1, field 'output': wrong type"):
        load_examples(DatasetSource(path=str(path)), "train")


def test_unknown_format_and_bad_mapping(tmp_path):
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_examples(DatasetSource(path=str(tmp_path / "d.txt")), "train")
    with pytest.raises(DataError, match="unknown target field"):
        load_examples(
            DatasetSource(path=str(write(tmp_path, "jsonl")), columns={"prompt": "question"}), "train"
        )
    with pytest.raises(DataError, match="not found"):
        load_examples(DatasetSource(path=str(tmp_path / "absent.jsonl")), "train")


def test_hub_name_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"openai/gsm8k: cannot load as a Hugging Face dataset"):
        load_examples(DatasetSource(path="openai/gsm8k", name="main"), "train")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("d.parquet", b"this is not parquet", "cannot be read as parquet"),
        ("d.jsonl", b'{"instruction": "\xff\xfe", "output": "x"}\n', "cannot be read as jsonl"),
        ("d.csv", b"instruction,output\na,b\nc,d,e,f\n", "cannot be read as csv"),
    ],
)
def test_unreadable_files_are_one_clear_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=reason) as err:
        load_examples(DatasetSource(path=str(path)), "train")
    assert str(path) in str(err.value)


# Files as other tools write them (each must load as the same three rows).
TOOL_ROWS = [
    {"id": "a", "instruction": "Say hi,\nthen stop.", "input": "", "output": 'He said "hi".'},
    {"id": "b", "instruction": "Two words", "input": "x, y", "output": "é ✓"},
    {"id": "c", "instruction": "Last", "input": "", "output": "done"},
]


def _jsonl(rows, newline="\n", trailing=True) -> str:
    text = newline.join(json.dumps(r, ensure_ascii=False) for r in rows)
    return text + (newline if trailing else "")


def _csv(rows, newline="\n") -> str:
    import csv
    import io

    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator=newline)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write_tool_file(path, tool: str) -> str:
    """Writes TOOL_ROWS as ``tool`` would; returns the file name written under ``path``."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    text_files = {
        "jsonl-bom.jsonl": ("\ufeff" + _jsonl(TOOL_ROWS)).encode(),
        "jsonl-crlf.jsonl": _jsonl(TOOL_ROWS, "\r\n").encode(),
        "jsonl-no-final-newline.jsonl": _jsonl(TOOL_ROWS, trailing=False).encode(),
        "json-bom.json": ("\ufeff" + json.dumps(TOOL_ROWS, ensure_ascii=False)).encode(),
        "csv-bom-crlf.csv": ("\ufeff" + _csv(TOOL_ROWS, "\r\n")).encode(),
        "csv-quoted-newlines.csv": _csv(TOOL_ROWS).encode(),
        "csv-no-final-newline.csv": _csv(TOOL_ROWS).rstrip("\n").encode(),
    }
    if tool in text_files:
        (path / tool).write_bytes(text_files[tool])
    elif tool == "pandas.parquet":
        pd.DataFrame(TOOL_ROWS).set_index("id", drop=False).to_parquet(path / tool)  # the index is stored too
    elif tool == "pyarrow.parquet":
        pq.write_table(pa.Table.from_pylist(TOOL_ROWS), path / tool)
    elif tool == "datasets.jsonl":
        datasets.Dataset.from_list(TOOL_ROWS).to_json(path / tool)
    elif tool == "pandas-records.json":
        pd.DataFrame(TOOL_ROWS).to_json(path / tool, orient="records", force_ascii=False)
    else:
        raise AssertionError(tool)
    return tool


@pytest.mark.parametrize(
    "tool",
    [
        "jsonl-bom.jsonl",
        "jsonl-crlf.jsonl",
        "jsonl-no-final-newline.jsonl",
        "json-bom.json",
        "csv-bom-crlf.csv",
        "csv-quoted-newlines.csv",
        "csv-no-final-newline.csv",
        "pandas.parquet",
        "pyarrow.parquet",
        "datasets.jsonl",
        "pandas-records.json",
    ],
)
def test_files_as_real_tools_write_them(tmp_path, tool):
    name = _write_tool_file(tmp_path, tool)
    df = load_examples(DatasetSource(path=str(tmp_path / name)), "train")
    got = df.select("id", "instruction", "input", "output").to_dicts()
    assert got == TOOL_ROWS
