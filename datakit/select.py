"""Pick bad cases: rows whose judge score matches the threshold — the core of the select stage.

Input: examples, generations, judgments (aligned on ``id``). Output: bad_cases (the example, M_t's
response, its score and feedback). Rows with a null score (unparsable judge answer) are never bad cases:
they are counted, not guessed.
"""

from __future__ import annotations

import operator
import re
from pathlib import Path

import polars as pl

from datakit.errors import DataError
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
    """'<4' -> ('<', 4). Raises ValueError, which the config loader reports as a ConfigError."""
    m = _THRESHOLD.match(text)
    if not m:
        raise ValueError(
            f"threshold: expected an operator and a score 1-5 such as '<4', '=1', '<3'; got {text!r}"
        )
    return m.group(1), int(m.group(2))


def threshold_expr(text: str) -> pl.Expr:
    op, value = parse_threshold(text)
    return _OPS[op](pl.col("score"), value)


def select_bad_cases(
    df: pl.DataFrame, judgments: pl.DataFrame, threshold: str, where: str | Path = "judgments"
) -> pl.DataFrame:
    """Keep the rows of ``answered`` frame ``df`` whose score matches ``threshold``, in their order.

    Raises:
        DataError: when the judgments do not cover the generations, or judged another model's answers
            (a stale table: rerun judge).
    """
    scores = judgments.select("id", "score", "feedback", judged_model="model", judged_iteration="iteration")
    df = df.join(scores, on="id", how="left", maintain_order="left")
    unjudged = df.filter(pl.col("judged_model").is_null())
    if unjudged.height:
        raise DataError(
            where, f"has no judgment for {unjudged.height} rows (first id {unjudged['id'][0]!r}); rerun judge"
        )
    stale = df.filter(
        (pl.col("judged_model") != pl.col("model")) | (pl.col("judged_iteration") != pl.col("iteration"))
    )
    if stale.height:
        r = stale.row(0, named=True)
        raise DataError(
            where,
            f"judged answers of {r['judged_model']} (iteration {r['judged_iteration']}), but the generations are "
            f"from {r['model']} (iteration {r['iteration']}); rerun judge",
            row=r["row"],
        )
    bad = df.filter(pl.col("score").is_not_null() & threshold_expr(threshold))
    return bad.select(BAD_CASES.columns)
