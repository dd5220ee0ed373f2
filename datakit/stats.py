"""Intervals and paired tests for accuracies, from statsmodels (never hand-written formulas).

- ``wilson``: the 95% Wilson score interval of k right out of n (``proportion_confint``).
- ``mcnemar_exact``: the exact McNemar test of two models graded on the same items: only the items one
  got right and the other wrong count (b and c); the p-value is the two-sided binomial test of b against
  b + c at 1/2 (``statsmodels.stats.contingency_tables.mcnemar(exact=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping

ALPHA = 0.05  # 95% intervals; a difference is called significant at p < ALPHA


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of the share k / n; (0, 1) when there are no items."""
    if n == 0:
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=ALPHA, method="wilson")
    return float(lo), float(hi)


def mcnemar_exact(a: Mapping[str, bool], b: Mapping[str, bool]) -> dict:
    """Paired comparison of two models' right/wrong on the items both were graded on (by id).

    Returns:
        ``n`` (shared items), ``a_only`` (a right, b wrong), ``b_only``, ``diff`` (accuracy of b minus a on
        the shared items), ``p`` (exact McNemar, two-sided; 1.0 when no item is discordant) and
        ``significant`` (p < ALPHA).
    """
    ids = sorted(set(a) & set(b))
    a_only = sum(1 for i in ids if a[i] and not b[i])
    b_only = sum(1 for i in ids if b[i] and not a[i])
    both = sum(1 for i in ids if a[i] and b[i])
    neither = len(ids) - a_only - b_only - both
    if a_only + b_only == 0:
        p = 1.0
    else:
        from statsmodels.stats.contingency_tables import mcnemar

        p = float(mcnemar([[both, a_only], [b_only, neither]], exact=True).pvalue)
    diff = (b_only - a_only) / len(ids) if ids else 0.0
    return {"n": len(ids), "a_only": a_only, "b_only": b_only, "diff": diff, "p": p, "significant": p < ALPHA}
