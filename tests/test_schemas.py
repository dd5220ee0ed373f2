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


# A full disk and a read-only one, for real: a 256 KiB tmpfs mounted in a private mount namespace
# (`unshare -rm`: no root needed where user namespaces are allowed, and nothing visible outside).
FILESYSTEM_SCRIPT = r"""
import json, os, subprocess, sys
import polars as pl
from datakit.errors import WriteError
from datakit.schemas import write_parquet_atomic, write_text_atomic

d = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", d], check=True)
table, text = os.path.join(d, "t.parquet"), os.path.join(d, "m.json")
write_parquet_atomic(pl.DataFrame({"x": [1, 2, 3]}), table)
write_text_atomic('{"v": 1}', text)
before = {p: open(p, "rb").read() for p in (table, text)}
out = {}
noise = pl.DataFrame({"x": [os.urandom(64).hex() for _ in range(20000)]})  # ~2.6 MB, does not compress
for case, attempts in (
    ("full", [lambda: write_parquet_atomic(noise, table), lambda: write_text_atomic("x" * 400_000, text)]),
    ("read-only", [lambda: write_parquet_atomic(pl.DataFrame({"x": [9]}), table),
                   lambda: write_text_atomic("{}", text)]),
):
    if case == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", d], check=True)
    for attempt in attempts:
        try:
            attempt()
            out.setdefault(case, []).append("written")
        except WriteError as exc:
            out.setdefault(case, []).append(str(exc))
out["intact"] = all(open(p, "rb").read() == b for p, b in before.items())
out["files"] = sorted(os.listdir(d))
print(json.dumps(out))
"""


def test_full_and_read_only_disks_keep_the_previous_files(tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user and mount namespaces here: {probe.stderr.decode()[:80]}")
    (tmp_path / "disk").mkdir()
    (tmp_path / "fs.py").write_text(FILESYSTEM_SCRIPT)
    run = subprocess.run(
        ["unshare", "-rm", sys.executable, str(tmp_path / "fs.py"), str(tmp_path / "disk")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    disk = tmp_path / "disk"
    (table_full, text_full), (table_ro, text_ro) = out["full"], out["read-only"]
    assert table_full.startswith(f"{disk}/t.parquet: cannot write it (") and "No space left" in text_full
    assert "Read-only file system" in table_ro and text_ro.startswith(f"{disk}/m.json: cannot write it (")
    assert out["intact"] and out["files"] == ["m.json", "t.parquet"]  # no temp file left behind
