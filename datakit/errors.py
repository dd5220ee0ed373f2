"""The one error type a stage stops with: a message naming the file, row and field at fault."""

from __future__ import annotations


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


def bound_failures(failed: int, total: int, limit: float, what: str, first: str) -> None:
    """Fail a stage whose share of failed rows passes ``limit`` (a per-row failure is data until then).

    Args:
        failed: rows that failed; total: rows in all; limit: the allowed share (0-1);
        what: e.g. "generate: rows failed"; first: "id X: why" of the first failed row.
    """
    if failed > limit * total:
        raise DatakitError(
            f"{what}: {failed}/{total} ({failed / max(total, 1):.1%} > limit {limit}); first: {first}"
        )
