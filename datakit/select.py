"""Pick bad cases: rows whose judge score matches the threshold — the core of the select stage.

Input: examples, generations, judgments (aligned on ``id``). Output: bad_cases (the example, M_t's
response, its score and feedback). Rows with a null score (unparsable judge answer) are never bad cases:
they are counted, not guessed.
"""

from __future__ import annotations

import operator
import re

import polars as pl

from datakit.errors import ConfigError
from datakit.schemas import BAD_CASES

_OPS = {
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "==": operator.eq,
    ">": operator.gt,
    ">=": operator.ge,
}
_THRESHOLD = re.compile(r"^\s*(<=|>=|==|<|>|=)\s*([1-5])\s*$")


def parse_threshold(text: str) -> tuple[str, int]:
    """'<4' -> ('<', 4). Raises ConfigError naming select.threshold."""
    m = _THRESHOLD.match(text)
    if not m:
        raise ConfigError(
            f"select.threshold: expected an operator and a score 1-5 such as '<4', '=1', '<3'; got {text!r}"
        )
    return m.group(1), int(m.group(2))


def threshold_expr(text: str) -> pl.Expr:
    op, value = parse_threshold(text)
    return _OPS[op](pl.col("score"), value)


def select_bad_cases(
    examples: pl.DataFrame, generations: pl.DataFrame, judgments: pl.DataFrame, threshold: str, iteration: int
) -> pl.DataFrame:
    """Join the three tables and keep the rows whose score matches ``threshold``."""
    df = (
        examples.join(generations.select("id", response="output"), on="id", how="inner")
        .join(judgments.select("id", "score", "feedback"), on="id", how="inner")
        .filter(pl.col("score").is_not_null() & threshold_expr(threshold))
        .with_columns(iteration=pl.lit(iteration, dtype=pl.Int64))
    )
    return df.select(BAD_CASES.columns)
