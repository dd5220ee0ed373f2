"""The judge audit: how far a model judge agrees with the exact judge on a verifiable domain.

APT trusts its judge to say which answers are bad. On a domain whose answers an exact judge can check, that
judge is the truth a model judge (``llm``, or ``self``: the policy judging itself) is checked against, on the
same answers, at the bad-case threshold APT selects with.

- ``audit_frame``: one row per answer both judges saw: the exact score, the judge's score (null when its
  answer could not be parsed), and whether each calls the answer a bad case.
- ``confusion``: the judge's score (1-5, or unscored) against the exact verdict (right/wrong).
- ``audit_metrics``: rows, unscored rate, agreement at the threshold (95% Wilson interval), Cohen's kappa
  with its 95% interval (statsmodels), the share of the judge's bad cases that are right answers
  (``false_bad``), the share of wrong answers that would not become bad cases (``missed``: scored above the
  threshold, or unscored, since an unscored answer is never selected).
- ``disagreements``: the answers the two judges disagree on, most informative first.

Kappa and agreement are over the answers the judge scored; the unscored ones are counted apart.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from datakit.errors import DataError
from datakit.schemas import Table
from datakit.select import threshold_expr
from datakit.stats import wilson

AUDIT = {
    "id": pl.Utf8,
    "exact_score": pl.Int64,
    "judge_score": pl.Int64,
    "exact_bad": pl.Boolean,
    "judge_bad": pl.Boolean,  # null when the judge's answer could not be parsed
}
JUDGE_AUDIT = Table(
    "judge_audit",
    {
        **AUDIT,
        "instruction": pl.Utf8,
        "response": pl.Utf8,
        "reference": pl.Utf8,
        "extracted": pl.Utf8,
        "feedback": pl.Utf8,
        "error": pl.Utf8,
        "judge": pl.Utf8,
    },
    required=("id", "exact_score", "exact_bad", "judge"),
    unique=("id",),
    doc={
        "exact_score": "the exact judge's score (5 right, 1 wrong): the truth",
        "judge_score": "the audited judge's 1-5 score; null when its answer could not be parsed",
        "exact_bad": "the exact score matches select.threshold (the answer is wrong)",
        "judge_bad": "the judge's score matches select.threshold (it would be a bad case); null = unscored",
        "extracted": "the final number the exact judge read from the response",
        "feedback": "the audited judge's feedback",
        "error": "why the audited judge's score is null",
        "judge": "the audited judge (kind:model)",
    },
)
UNSCORED = "unscored"


def audit_frame(exact: pl.DataFrame, judged: pl.DataFrame, threshold: str) -> pl.DataFrame:
    """Pair the exact judge's and the model judge's judgments (``id``, ``score``) of the same answers.

    Answers the exact judge could not score (their generation failed) are left out: there is no truth to
    check against. ``exact_bad`` and ``judge_bad`` apply the bad-case ``threshold`` to each score.
    """
    rule = threshold_expr(threshold)
    truth = exact.filter(pl.col("score").is_not_null()).select("id", exact_score="score", exact_bad=rule)
    model = judged.select("id", judge_score="score", judge_bad=rule)
    out = truth.join(model, on="id", how="inner", maintain_order="left")
    return out.select(list(AUDIT)).cast(AUDIT)


def confusion(audit: pl.DataFrame) -> pl.DataFrame:
    """Counts per judge score (``1``..``5``, ``unscored``) of the answers the exact judge calls wrong and
    right (``wrong``, ``right``); every row is present, zeros included."""
    labels = [str(s) for s in range(1, 6)] + [UNSCORED]
    scored = audit.with_columns(
        label=pl.col("judge_score").cast(pl.Utf8).fill_null(UNSCORED),
    )
    rows = []
    for label in labels:
        part = scored.filter(pl.col("label") == label)
        wrong = int(part["exact_bad"].sum())
        rows.append((label, wrong, part.height - wrong))
    return pl.DataFrame(
        rows, schema={"judge_score": pl.Utf8, "wrong": pl.Int64, "right": pl.Int64}, orient="row"
    )


def _kappa(
    both_bad: int, exact_only: int, judge_only: int, both_ok: int
) -> tuple[float, float, float] | None:
    """Cohen's kappa and its 95% interval from the 2x2 table; None when it is undefined (both judges give
    one verdict to every answer, so chance agreement is already 1)."""
    n = both_bad + exact_only + judge_only + both_ok
    exact_bad, judge_bad = both_bad + exact_only, both_bad + judge_only
    expected = (exact_bad * judge_bad + (n - exact_bad) * (n - judge_bad)) / (n * n) if n else 1.0
    if n == 0 or math.isclose(expected, 1.0):
        return None
    from statsmodels.stats.inter_rater import cohens_kappa

    # statsmodels' interval: kappa +- z(0.975) * its asymptotic standard error (Fleiss, Cohen and Everitt)
    with np.errstate(invalid="ignore", divide="ignore"):  # its z-test divides by 0 when kappa is 0 and exact
        res = cohens_kappa([[both_bad, exact_only], [judge_only, both_ok]])
    return float(res.kappa), float(res.kappa_low), float(res.kappa_upp)


def audit_metrics(audit: pl.DataFrame) -> dict:
    """The audit's figures (see the module docstring); shares are None where their denominator is 0."""
    n = audit.height
    scored = audit.filter(pl.col("judge_bad").is_not_null())
    ex, jb = scored["exact_bad"], scored["judge_bad"]
    both_bad = int((ex & jb).sum())
    exact_only = int((ex & ~jb).sum())
    judge_only = int((~ex & jb).sum())
    both_ok = int((~ex & ~jb).sum())
    agree = both_bad + both_ok
    unscored = n - scored.height
    wrong = int(audit["exact_bad"].sum())
    unscored_wrong = int(audit.filter(pl.col("judge_bad").is_null())["exact_bad"].sum())
    missed = exact_only + unscored_wrong
    kappa = _kappa(both_bad, exact_only, judge_only, both_ok)
    agree_low, agree_high = wilson(agree, scored.height)
    judge_bad = both_bad + judge_only

    def share(k: int, d: int) -> float | None:
        return round(k / d, 4) if d else None

    return {
        "rows": n,
        "exact_wrong": wrong,
        "unscored": unscored,
        "unscored_rate": share(unscored, n),
        "scored": scored.height,
        "table": {
            "both_bad": both_bad,
            "exact_only": exact_only,
            "judge_only": judge_only,
            "both_ok": both_ok,
        },
        "agreement": share(agree, scored.height),
        "agreement_low": round(agree_low, 4) if scored.height else None,
        "agreement_high": round(agree_high, 4) if scored.height else None,
        "kappa": None if kappa is None else round(kappa[0], 4),
        "kappa_low": None if kappa is None else round(kappa[1], 4),
        "kappa_high": None if kappa is None else round(kappa[2], 4),
        "judge_bad": judge_bad,
        "false_bad": judge_only,
        "false_bad_share": share(judge_only, judge_bad),
        "missed": missed,
        "missed_share": share(missed, wrong),
    }


def disagreements(audit: pl.DataFrame, details: pl.DataFrame, limit: int) -> pl.DataFrame:
    """Up to ``limit`` answers the judges disagree on, with ``details`` (by ``id``: the instruction, the
    answer, the judge's feedback...) joined on: right answers called bad first (the ones that become
    training data by mistake), then wrong answers passed, then unscored wrong answers; in id order within
    each."""
    kind = (
        pl.when(~pl.col("exact_bad") & pl.col("judge_bad"))
        .then(pl.lit("right answer called bad"))
        .when(pl.col("exact_bad") & ~pl.col("judge_bad"))
        .then(pl.lit("wrong answer passed"))
        .when(pl.col("exact_bad") & pl.col("judge_bad").is_null())
        .then(pl.lit("wrong answer unscored"))
    )
    order = {"right answer called bad": 0, "wrong answer passed": 1, "wrong answer unscored": 2}
    found = (
        audit.with_columns(disagreement=kind)
        .filter(pl.col("disagreement").is_not_null())
        .with_columns(rank=pl.col("disagreement").replace_strict(order, return_dtype=pl.Int64))
        .sort("rank", "id")
        .drop("rank")
        .head(limit)
    )
    return found.join(details, on="id", how="left", maintain_order="left")


def exact_right(rows: pl.DataFrame) -> int | None:
    """How many of the answers in ``answered`` frame ``rows`` (say, an LLM judge's bad cases) the exact judge
    calls right; None when the domain has no exact judge (a reference without a final number)."""
    from datakit.judges import judge_math

    try:
        scores = judge_math(rows)["score"]
    except DataError:
        return None
    return int((scores == 5).sum())
