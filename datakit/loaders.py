"""Load instruction data from local files or Hugging Face datasets onto the examples table.

Sources: jsonl, json (a list of objects, or an object holding one such list), parquet, csv, a local HF
dataset folder (``save_to_disk`` output or a folder of data files) and hub dataset names (where a hub is
reachable). ``columns`` maps our fields (``instruction, input, output, id``) onto the source's names.

Every row is checked the same way whatever the format: broken JSON line, missing or empty field, wrong
type, duplicate id -> one DataError naming the file, the 1-based row (the line number for jsonl) and
the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from datakit.config import DatasetSource
from datakit.errors import DataError
from datakit.schemas import EXAMPLES, check_frame

FIELDS = ("instruction", "input", "output", "id", "tests")
# Optional per-row data a judge needs beyond the reference (``tests``: the code judge's hidden tests, JSON);
# a source without it gets no such column, so the examples table is unchanged for every other domain.
OPTIONAL = ("tests",)
SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}


def example_id(instruction: str, input_text: str) -> str:
    """Stable id for a row that has none: a hash of its instruction and input."""
    return hashlib.sha256(f"{instruction}\x00{input_text}".encode()).hexdigest()[:16]


def resolve_format(src: DatasetSource) -> str:
    if src.format != "auto":
        return src.format
    path = Path(src.path)
    if path.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[path.suffix.lower()]
    if path.is_dir() or not path.exists():
        return "hf"
    raise DataError(src.path, f"cannot tell the format from suffix '{path.suffix}'; set format:")


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    # utf-8-sig: a byte-order mark (Windows tools write one) is read past, as every other tool does.
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    path, f"broken JSON line: {exc.msg} at column {exc.colno}", row=lineno
                ) from exc


def _json_records(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(path, "expected a list of objects, or an object holding exactly one list")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(path, "expected a list of objects")
    yield from enumerate(data, start=1)


def _frame_records(df: pl.DataFrame) -> Iterator[tuple[int, Any]]:
    yield from enumerate(df.iter_rows(named=True), start=1)


def _hf_records(src: DatasetSource) -> Iterator[tuple[int, Any]]:
    import datasets  # heavy import, only for this source kind

    path = Path(src.path)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if src.split not in ds:
                    raise DataError(src.path, f"no split '{src.split}' (has {', '.join(ds)})")
                ds = ds[src.split]
        else:
            ds = datasets.load_dataset(src.path, src.name or None, split=src.split)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise DataError(src.path, f"cannot load as a Hugging Face dataset: {exc}") from exc
    yield from enumerate(ds, start=1)


def iter_records(src: DatasetSource) -> Iterator[tuple[int, Any]]:
    """(1-based row, raw record) pairs from any supported source.

    Raises:
        DataError: for an unreadable file (not the format it claims, not UTF-8, ragged CSV), naming it.
    """
    try:
        yield from _iter_records(src)
    except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as exc:
        raise DataError(src.path, f"cannot be read as {resolve_format(src)}: {exc}") from exc


def _iter_records(src: DatasetSource) -> Iterator[tuple[int, Any]]:
    fmt = resolve_format(src)
    path = Path(src.path)
    if fmt != "hf" and not path.exists():
        raise DataError(path, "not found")
    if fmt == "jsonl":
        yield from _jsonl_records(path)
    elif fmt == "json":
        yield from _json_records(path)
    elif fmt == "parquet":
        yield from _frame_records(pl.read_parquet(path))
    elif fmt == "csv":
        # Everything as text: CSV has no types, and "0042" must stay "0042".
        yield from _frame_records(pl.read_csv(path, infer_schema=False))
    else:
        yield from _hf_records(src)


def _text(record: dict, name: str, column: str, where: str, row: int, *, required: bool) -> str:
    if column not in record or record[column] is None:
        if required:
            raise DataError(where, "missing", row=row, field=column)
        return ""
    value = record[column]
    if not isinstance(value, str):
        raise DataError(
            where, f"wrong type: expected a string, got {type(value).__name__}", row=row, field=column
        )
    if required and not value.strip():
        raise DataError(where, "empty", row=row, field=column)
    return value


def records_to_examples(
    records: Iterable[tuple[int, Any]],
    where: str,
    columns: dict[str, str] | None = None,
    *,
    source: str,
    split: str,
) -> pl.DataFrame:
    """Check raw records and map them onto the examples table."""
    columns = dict(columns or {})
    unknown = set(columns) - set(FIELDS)
    if unknown:
        raise DataError(where, f"columns: unknown target field(s) {sorted(unknown)}; allowed: {list(FIELDS)}")
    col = {name: columns.get(name, name) for name in FIELDS}
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for row, record in records:
        if not isinstance(record, dict):
            raise DataError(where, f"expected an object, got {type(record).__name__}", row=row)
        instruction = _text(record, "instruction", col["instruction"], where, row, required=True)
        input_text = _text(record, "input", col["input"], where, row, required=False)
        output = _text(record, "output", col["output"], where, row, required=True)
        raw_id = record.get(col["id"])
        if raw_id is None:
            rid = example_id(instruction, input_text)
        elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id).strip():
            rid = str(raw_id)
        else:
            raise DataError(
                where,
                f"wrong type or empty: expected a string or integer id, got {raw_id!r}",
                row=row,
                field=col["id"],
            )
        if rid in seen:
            raise DataError(
                where, f"duplicate id {rid!r} (first seen in row {seen[rid]})", row=row, field=col["id"]
            )
        seen[rid] = row
        # Keep a row's own provenance (the synth categories) when the source carries one.
        own_source = record.get("source")
        rows.append(
            {
                "id": rid,
                "instruction": instruction,
                "input": input_text,
                "output": output,
                "source": own_source if isinstance(own_source, str) and own_source else source,
                "split": split,
                **{name: _text(record, name, col[name], where, row, required=False) for name in OPTIONAL},
            }
        )
    if not rows:
        raise DataError(where, "has no rows")
    present = [name for name in OPTIONAL if any(r[name] for r in rows)]
    schema = {**EXAMPLES.schema, **{name: pl.Utf8 for name in present}}
    df = pl.DataFrame([{k: r[k] for k in schema} for r in rows], schema=schema)
    return check_frame(df, EXAMPLES, where)


def load_examples(src: DatasetSource, split: str) -> pl.DataFrame:
    """Load ``src`` as an examples table (see the module docstring)."""
    source = Path(src.path).stem if resolve_format(src) != "hf" else src.path
    return records_to_examples(iter_records(src), src.path, src.columns, source=source, split=split)
