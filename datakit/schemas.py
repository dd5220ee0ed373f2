"""Declared table schemas and the one checked read/write helper every stage uses.

Column names are a contract shared with later stages and with users' own tools: columns may be added,
never renamed. Every table is parquet; writes are atomic (temp file + rename) so DVC never caches a
half-written table and a killed stage leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from datakit.errors import DataError, WriteError


@dataclass(frozen=True)
class Table:
    """A named table contract: column dtypes plus the columns that must never be null or empty."""

    name: str
    schema: Mapping[str, pl.DataType]
    required: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    extra_ok: bool = True
    doc: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.schema)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=dict(self.schema))


EXAMPLES = Table(
    "examples",
    {
        "id": pl.Utf8,
        "instruction": pl.Utf8,
        "input": pl.Utf8,
        "output": pl.Utf8,
        "source": pl.Utf8,
        "split": pl.Utf8,
    },
    required=("id", "instruction", "output"),
    unique=("id",),
    doc={
        "id": "stable row id (given by the source, or a hash of instruction + input)",
        "instruction": "the task text shown to the model",
        "input": "optional extra input appended to the instruction ('' when none)",
        "output": "reference answer",
        "source": "where the row came from (generator category, file name, dataset name)",
        "split": "train / test / pool / eval",
    },
)

GENERATIONS = Table(
    "generations",
    {
        "id": pl.Utf8,
        "prompt": pl.Utf8,
        "output": pl.Utf8,
        "model": pl.Utf8,
        "iteration": pl.Int64,
        "gen_params_hash": pl.Utf8,
        "n_tokens": pl.Int64,
        "finish_reason": pl.Utf8,
        "error": pl.Utf8,
    },
    required=("id", "prompt", "model", "finish_reason"),
    unique=("id",),
    doc={
        "id": "id of the example answered",
        "prompt": "the user message sent (instruction, then input)",
        "output": "the model's answer",
        "model": "model path or name that answered",
        "iteration": "APT iteration t of the answering model M_t (0 outside an iteration)",
        "gen_params_hash": "hash of the generation settings, so answers from other settings are never mixed",
        "n_tokens": "number of generated tokens",
        "finish_reason": "'stop' (end of sequence), 'length' (hit max_new_tokens) or 'error'",
        "error": "why the row failed (finish_reason 'error'), else null",
    },
)

JUDGMENTS = Table(
    "judgments",
    {
        "id": pl.Utf8,
        "score": pl.Int64,
        "feedback": pl.Utf8,
        "judge": pl.Utf8,
        "error": pl.Utf8,
        "extracted": pl.Utf8,
        "raw": pl.Utf8,
        "model": pl.Utf8,
        "iteration": pl.Int64,
    },
    required=("id", "judge"),
    unique=("id",),
    doc={
        "id": "id of the example judged",
        "score": "1-5; null when the judge's answer could not be parsed",
        "feedback": "the judge's reasoning (LLM judges) or a short explanation (exact judges)",
        "judge": "judge kind and model",
        "error": "why the score is null, else null",
        "extracted": "the final answer the math judge read from the response (null if none)",
        "raw": "the judge's raw output, kept for audit",
        "model": "the model whose answer was judged (M_t)",
        "iteration": "APT iteration t of that model",
    },
)

BAD_CASES = Table(
    "bad_cases",
    {
        **EXAMPLES.schema,
        "response": pl.Utf8,
        "score": pl.Int64,
        "feedback": pl.Utf8,
        "model": pl.Utf8,
        "iteration": pl.Int64,
    },
    required=("id", "instruction", "output", "score"),
    unique=("id",),
    doc={"response": "M_t's answer that was judged bad", "score": "its judge score", "model": "M_t"},
)


def check_frame(df: pl.DataFrame, table: Table, path: str | Path) -> pl.DataFrame:
    """Check ``df`` against ``table``; return it with the declared columns first.

    Rows in messages are 1-based.

    Raises:
        DataError: naming the file and every column that is missing or of the wrong dtype, or the first
            row that breaks a required/unique rule.
    """
    problems = []
    for name, dtype in table.schema.items():
        if name not in df.columns:
            problems.append(f"missing column '{name}' ({dtype})")
        elif df.schema[name] != dtype and df.schema[name] != pl.Null:
            problems.append(f"column '{name}' is {df.schema[name]}, expected {dtype}")
    extra = [c for c in df.columns if c not in table.schema]
    if extra and not table.extra_ok:
        problems.append(f"unexpected columns {extra}")
    if problems:
        raise DataError(path, f"does not match the '{table.name}' table: " + "; ".join(problems))
    df = df.with_columns(pl.col(c).cast(t) for c, t in table.schema.items() if df.schema[c] == pl.Null)
    for name in table.required:
        col = df[name]
        bad = col.is_null()
        if col.dtype == pl.Utf8:
            bad = bad | (col.str.strip_chars() == "")
        if bad.any():
            raise DataError(path, "is null or empty", row=int(bad.arg_max()) + 1, field=name)
    for name in table.unique:
        dup = ~df[name].is_first_distinct()  # flags the repeat, not the first occurrence
        if dup.any():
            row = int(dup.arg_max())
            raise DataError(path, f"duplicate value {df[name][row]!r}", row=row + 1, field=name)
    return df.select(table.columns + extra)


def atomic_path(path: str | Path, suffix: str = "") -> tuple[int, str]:
    """A temp file next to ``path`` (same filesystem, so ``os.replace`` is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")


def atomic_write(path: str | Path, write) -> Path:
    """``write(fd, tmp)`` into a temp file next to ``path`` (its open descriptor and name), then rename it over
    ``path``. A failed write (no space,
    no permission, a file size limit) raises WriteError naming ``path``, leaves what was there untouched and
    removes the temp file."""
    tmp = None
    try:
        fd, tmp = atomic_path(path)
        write(fd, tmp)
        os.replace(tmp, path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise WriteError(path, exc) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return Path(path)


def write_parquet_atomic(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as parquet through a temp file and a rename (no schema check)."""

    def write(fd: int, tmp: str) -> None:
        os.close(fd)
        df.write_parquet(tmp)

    return atomic_write(path, write)


def write_table(df: pl.DataFrame, path: str | Path, table: Table) -> Path:
    """Check ``df`` against ``table`` and write it as parquet atomically."""
    return write_parquet_atomic(check_frame(df, table, path), path)


def read_table(path: str | Path, table: Table) -> pl.DataFrame:
    """Read a parquet table and check it against ``table``."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"not found (expected a '{table.name}' table)")
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(path, f"cannot be read as parquet: {exc}") from exc
    return check_frame(df, table, path)


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write a small text file (metrics JSON, YAML) atomically."""

    def write(fd: int, tmp: str) -> None:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)
