"""The code judge (``judge.kind: code``): run the model's function against the row's hidden tests.

Each row carries ``tests`` (JSON: ``entry``, the function to call; ``calls``, argument lists; ``expected``,
the results in the sandbox harness's encoding). The code is taken from the answer (the fenced block that
defines ``entry``, else the first fenced block, else the bare answer), run in ``datakit.sandbox`` one fresh
process per answer, and every result compared here, in the judge's process, with the expected one: 5 when
all pass, else 1. ``feedback`` says how many passed and the first failure (or which limit killed it) with
the tail of what it printed; ``raw`` keeps the counts as JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from datakit.config import SandboxConfig
from datakit.errors import DataError
from datakit.judges import _generation_failed, _judgments
from datakit.sandbox import Outcome, Sandbox
from datakit.synth.code import decode

FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)  # an unclosed block (a cut answer) runs to the end
SHOWN = 160  # characters of a value quoted in feedback


def extract_code(response: str, entry: str) -> str:
    """The code in ``response``: the fenced block defining ``entry``, else the first fenced block, else the
    whole answer (a bare function)."""
    blocks = FENCE.findall(response)
    defines = re.compile(rf"^\s*def\s+{re.escape(entry)}\s*\(", re.M)
    for body in blocks:
        if defines.search(body):
            return body
    return blocks[0] if blocks else response


def same(got: Any, want: Any) -> bool:
    """Whether two harness-encoded values are equal: types exact (True is not 1), except int and float,
    which compare as numbers within 1e-9."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, int) and isinstance(got, int):
        return got == want  # exact, however large
    if isinstance(want, int | float) and isinstance(got, int | float):
        try:
            return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
        except OverflowError:  # an int beyond any float: not close to a float
            return False
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, dict):
        return (
            isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
        )
    return type(got) is type(want) and got == want


def parse_tests(text: str | None, where: str, row: int) -> dict[str, Any]:
    """The row's tests, checked.

    Raises:
        DataError: naming the file, row and field ``tests`` when they are missing or malformed.
    """
    try:
        tests = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise DataError(where, f"not JSON: {exc}", row=row, field="tests") from exc
    if not (
        isinstance(tests, dict)
        and isinstance(tests.get("entry"), str)
        and isinstance(tests.get("calls"), list)
        and isinstance(tests.get("expected"), list)
        and len(tests["calls"]) == len(tests["expected"]) > 0
        and all(isinstance(c, list) for c in tests["calls"])
    ):
        raise DataError(
            where,
            "expected {'entry': name, 'calls': [[args...], ...], 'expected': [...]} with one expected value per "
            "call",
            row=row,
            field="tests",
        )
    return tests


def verdict(outcome: Outcome, tests: dict[str, Any]) -> tuple[int, int, str]:
    """(tests passed, total, feedback) of one candidate's outcome."""
    total = len(tests["calls"])
    if outcome.load_error is not None:
        return 0, total, f"passed 0/{total}: the code did not load: {outcome.load_error}"
    passed, first = 0, ""
    for args, want, got in zip(tests["calls"], tests["expected"], outcome.results, strict=False):
        call = f"{tests['entry']}({', '.join(repr(a) for a in args)})"[:SHOWN]
        if got is not None and got[0] == "value" and same(got[1], want):
            passed += 1
            continue
        if first:
            continue
        expected = repr(decode(want))[:SHOWN]
        if got is None:
            first = f"{call} never returned" + (
                f" (killed by the {outcome.killed})" if outcome.killed else ""
            )
        elif got[0] == "raise":
            first = f"{call} raised {got[1][:SHOWN]}, expected {expected}"
        else:
            first = f"{call} returned {repr(decode(got[1]))[:SHOWN]}, expected {expected}"
    text = f"passed {passed}/{total}" + (f"; first failure: {first}" if first else "")
    return passed, total, text


def judge_code(
    df: pl.DataFrame, cfg: SandboxConfig, where: str = "examples", progress: bool = True
) -> pl.DataFrame:
    """Score each answer of ``answered`` frame ``df`` by running it against its row's ``tests``.

    Raises:
        DataError: when ``df`` has no ``tests`` column, or a row's tests are malformed (file, row, field).
    """
    if "tests" not in df.columns:
        raise DataError(
            where,
            "has no 'tests' column: judge.kind code runs each answer against its row's tests "
            "(synth.domain: code writes them; a file of your own maps its column with columns: {tests: ...})",
            field="tests",
        )
    rows = list(df.iter_rows(named=True))
    tests = [parse_tests(r["tests"], where, r["row"]) for r in rows]
    failed = [_generation_failed(r) for r in rows]
    codes = [extract_code(r["response"] or "", t["entry"]) for r, t in zip(rows, tests, strict=False)]
    todo = [i for i, f in enumerate(failed) if f is None]
    with Sandbox(cfg) as sandbox, tqdm(total=len(todo), desc="code judge", disable=not progress) as bar:
        outcomes = sandbox.run_many(
            [(codes[i], tests[i]["entry"], tests[i]["calls"]) for i in todo], on_done=lambda: bar.update(1)
        )
    by_row: dict[int, Outcome] = dict(zip(todo, outcomes, strict=False))
    scores, feedback, raw = [], [], []
    for i, t in enumerate(tests):
        if failed[i] is not None:
            scores.append(None)
            feedback.append("")
            raw.append(None)
            continue
        outcome = by_row[i]
        passed, total, text = verdict(outcome, t)
        if outcome.stderr.strip() and passed < total:
            text += f"\nstderr: {outcome.stderr.strip()[-300:]}"
        scores.append(5 if passed == total else 1)
        feedback.append(text)
        raw.append(
            json.dumps(
                {
                    "passed": passed,
                    "total": total,
                    "killed": outcome.killed,
                    "load_error": outcome.load_error,
                    "seconds": round(outcome.seconds, 3),
                    "isolation": sandbox.isolation,
                }
            )
        )
    return _judgments(
        df,
        score=scores,
        feedback=feedback,
        judge=["code"] * df.height,
        error=failed,
        extracted=codes,
        raw=raw,
    )
