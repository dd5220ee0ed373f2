"""The one error type a stage stops with: a message naming the file, row and field at fault."""

from __future__ import annotations

import polars as pl


class DatakitError(Exception):
    """A whole-stage failure with one clear, user-facing message (the CLI prints it and exits 1)."""


class ConfigError(DatakitError):
    """params.yaml has an unknown key, a wrong type or an impossible value."""


class DataError(DatakitError):
    """An input table or file is malformed."""

    def __init__(self, file: object, reason: str, row: int | None = None, field: str | None = None):
        self.file, self.row, self.field, self.reason = str(file), row, field, reason
        where = self.file
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {reason}")


class WriteError(DatakitError):
    """An output could not be written (no space, no permission); the file it would replace is untouched."""

    def __init__(self, file: object, exc: BaseException):
        self.file = str(file)
        reason = getattr(exc, "strerror", None) or str(exc)
        super().__init__(
            f"{self.file}: cannot write it ({reason}); the previous file, if any, is left as it was"
        )


def bound_failures(rows: pl.DataFrame, failed: pl.Expr, limit: float, what: str) -> None:
    """Fail a stage whose share of failed rows passes ``limit`` (a per-row failure is data until then).

    Args:
        rows: the stage's rows, with ``id`` and ``error`` columns; failed: which rows failed;
        limit: the allowed share (0-1); what: e.g. "generate: rows failed".

    Raises:
        DatakitError: naming the count, the share, the limit and the first failed row's id and error.
    """
    bad = rows.filter(failed)
    if bad.height > limit * rows.height:
        first = bad.row(0, named=True)
        raise DatakitError(
            f"{what}: {bad.height}/{rows.height} ({bad.height / max(rows.height, 1):.1%} > limit {limit}); "
            f"first: id {first['id']}: {first['error']}"
        )
