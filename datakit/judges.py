"""Judges: score each (instruction, response, reference) 1-5 — the core of the judge stage.

- ``math``: exact final-answer match. The final number is read from the response (``#### N``, then
  ``\\boxed{N}``, then "the answer is N", then the last number) and compared numerically with the
  reference's; score 5 on a match, else 1. The extracted value is kept.
- ``llm``: Prometheus-2-style absolute grading by any backend: instruction, response, reference answer and
  a 1-5 rubric in; feedback then ``[RESULT] N`` out. Only the judge's own output is parsed, and it must end
  in exactly one ``[RESULT] N`` with N in 1-5; anything else is a null score with the error kept, re-asked
  (sampled) at most ``retries`` times. A score is never guessed.
- ``self``: the ``llm`` judge served by the policy model M_t itself (the APT paper's weaker ablation).

``judge.format: score_first`` starts the judge's answer with ``[RESULT] `` (a prefill), so the score is its
first token; the Prometheus format (feedback first) is the default.

Input: an ``answered`` frame (``datakit.generate.answered``: examples joined with generations).
Output: judgments.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import polars as pl

from datakit.backends import Backend
from datakit.errors import DataError
from datakit.generate import conversation, user_message
from datakit.schemas import JUDGMENTS

# ---------------------------------------------------------------------------------------------------
# math: final-answer extraction
# ---------------------------------------------------------------------------------------------------

# A number: an optional minus sign glued to the digits (so "- 3 items" and "pages 10-12" read as
# positive), an optional $, thousands separators, decimals, a fraction. Never the tail of a word or number.
_NUM = r"(?<![\w.])(?:-(?=\$?\d))?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?"
_HASHES = re.compile(r"####\s*(?:\*\*)?\s*(" + _NUM + ")")
_BOXED = re.compile(r"\\boxed\{\s*(" + _NUM + r")\s*\}")
# "answer" must be followed by is / = / : , so "To answer 3 questions" is not an answer of 3.
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|=|:)\s*[:=]?\s*(?:\*\*|\$)?\s*(" + _NUM + ")", re.IGNORECASE
)
NUMBER = re.compile(_NUM)  # any number, as the math judge reads one


def to_number(text: str) -> Decimal | None:
    """Parse '1,234', '$12.50', '-3', '3/4' into a Decimal; None if it is not a number."""
    t = text.replace("$", "").replace(",", "").replace(" ", "")
    try:
        if "/" in t:
            num, den = t.split("/")
            return Decimal(num) / Decimal(den) if Decimal(den) != 0 else None
        return Decimal(t)
    except (InvalidOperation, ValueError):
        return None


def extract_final_number(text: str) -> str | None:
    """The final numeric answer in ``text`` (see the module docstring for the order), normalised."""
    for pattern in (_HASHES, _BOXED, _ANSWER_IS, NUMBER):
        found = pattern.findall(text)
        if found:
            value = to_number(found[-1])
            if value is not None:
                return format_number(value)
    return None


def format_number(value: Decimal) -> str:
    """Canonical text of a number: no exponent, no trailing zeros ('12.50' -> '12.5', '12.0' -> '12')."""
    if value == value.to_integral_value():
        # format(), not quantize(): quantize fails past the context's 28 digits, and a looping model can
        # write a 40-digit number.
        return format(value.to_integral_value(), "f")
    return format(value.normalize(), "f")


def reference_answer(output: str) -> str | None:
    """The reference's final answer: the number on its ``#### N`` line, else its last number."""
    return extract_final_number(output)


def _judgments(df: pl.DataFrame, **cols: list) -> pl.DataFrame:
    """A judgments frame for the rows of ``answered`` frame ``df``."""
    base = {"id": df["id"], "model": df["model"], "iteration": df["iteration"]}
    return pl.DataFrame(base | cols, schema=dict(JUDGMENTS.schema)).select(JUDGMENTS.columns)


def _generation_failed(r: dict) -> str | None:
    return f"generation failed: {r['gen_error']}" if r["finish_reason"] == "error" else None


def judge_math(df: pl.DataFrame, where: str = "examples") -> pl.DataFrame:
    """Exact final-answer judge: 5 when the response's final number equals the reference's, else 1.

    ``df`` is an ``answered`` frame (examples with M_t's answers). A row whose generation failed gets a
    null score and the generation's error (it is not a bad case).
    """
    scores, feedback, errors, extracted = [], [], [], []
    for r in df.iter_rows(named=True):
        ref = reference_answer(r["output"])
        if ref is None:
            raise DataError(
                where, "reference answer has no number to compare with", row=r["row"], field="output"
            )
        failed = _generation_failed(r)
        got = None if failed else extract_final_number(r["response"] or "")
        ok = got is not None and to_number(got) == to_number(ref)
        scores.append(None if failed else 5 if ok else 1)
        errors.append(failed)
        extracted.append(got)
        feedback.append(
            "" if failed else f"expected {ref}, got {got}" if got else f"expected {ref}, found no number"
        )
    n = df.height
    return _judgments(
        df,
        score=scores,
        feedback=feedback,
        judge=["math"] * n,
        error=errors,
        extracted=extracted,
        raw=[None] * n,
    )


# ---------------------------------------------------------------------------------------------------
# llm: Prometheus-2-style absolute grading
# ---------------------------------------------------------------------------------------------------

DEFAULT_RUBRIC = """[Is the response correct and complete with respect to the reference answer?]
Score 1: The response is wrong, irrelevant or missing; its final answer contradicts the reference.
Score 2: The response addresses the task but its final answer is wrong; most of its reasoning is flawed.
Score 3: The response is partly right: some correct steps or facts, but the final answer is wrong or missing.
Score 4: The final answer matches the reference, with minor flaws in the explanation or format.
Score 5: The final answer matches the reference and the response is correct, clear and complete."""

_HEAD = """###Task Description:
An instruction (might include an Input inside it), a response to evaluate, {ref_intro}and a score rubric representing an evaluation criterion are given.
1. Write a detailed feedback that assesses the quality of the response strictly based on the given score rubric, not evaluating in general.
2. After writing a feedback, write a score that is an integer between 1 and 5. You should refer to the score rubric.
3. The output format should look as follows: "(write a feedback for criteria) [RESULT] (an integer number between 1 and 5)"
4. Please do not generate any other opening, closing, and explanations.

###The instruction to evaluate:
{instruction}

###Response to evaluate:
{response}
"""
_REFERENCE = """
###Reference Answer (Score 5):
{reference}
"""
_TAIL = """
###Score Rubrics:
{rubric}

###Feedback: """


def judge_prompt(instruction: str, response: str, reference: str | None, rubric: str = "") -> str:
    """The absolute-grading prompt. The reference section is present whenever there is a reference."""
    has_ref = bool(reference and reference.strip())
    text = _HEAD.format(
        ref_intro="a reference answer that gets a score of 5, " if has_ref else "",
        instruction=instruction,
        response=response,
    )
    if has_ref:
        text += _REFERENCE.format(reference=reference)
    return text + _TAIL.format(rubric=rubric or DEFAULT_RUBRIC)


_MARKER = re.compile(r"\[\s*RESULT\s*\]", re.IGNORECASE)
# What may follow the marker: the score, optionally "Score:", parentheses, a scale ("/5", "out of 5"), bold,
# and closing noise. A dash only as a separator ("[RESULT] - 4"): "[RESULT] -3" is a negative number.
_AFTER = re.compile(
    r"^(?:[\s*:]|-(?=\s))*(?:score\s*[:=]?\s*)?\(?\s*(\d+)\s*\)?\s*(?:(?:/|out of)\s*(\d+))?"
    r"[\s*.\"'`]*(?:</s>|<\|im_end\|>|<\|eot_id\|>)?\s*$",
    re.IGNORECASE,
)


def parse_result(text: str, top: int = 5) -> tuple[int | None, str, str | None]:
    """Parse a judge's own output into (score, feedback, error).

    The output must contain exactly one ``[RESULT]`` marker, followed by an integer 1-``top`` and nothing
    else but closing punctuation. Feedback is the text before the marker.
    """
    markers = list(_MARKER.finditer(text or ""))
    if not markers:
        return None, (text or "").strip(), "no [RESULT] marker"
    if len(markers) > 1:
        return None, text.strip(), f"{len(markers)} [RESULT] markers, expected exactly one"
    marker = markers[0]
    feedback = text[: marker.start()].rstrip(" *\n").strip().removeprefix("Feedback:").strip()
    m = _AFTER.match(text[marker.end() :])
    if not m:
        return None, feedback, f"[RESULT] is not followed by a lone integer: {text[marker.end() :][:40]!r}"
    score = int(m.group(1))
    if m.group(2) is not None and int(m.group(2)) != top:
        return None, feedback, f"score {score} is on a 1-{m.group(2)} scale, not 1-{top}"
    if not 1 <= score <= top:
        return None, feedback, f"score {score} is outside 1-{top}"
    return score, feedback, None


SCORE_FIRST = "[RESULT] "  # the prefill of the score-first format: the judge's answer starts at its score
_LEADING = re.compile(r"^\s*\(?\s*(\d+)\s*\)?(?!\s*[.,]\d)(?:\s*(?:/|out of)\s*(\d+))?")


def parse_score_first(text: str, top: int = 5) -> tuple[int | None, str, str | None]:
    """Parse the continuation of a score-first answer (the prefill ``[RESULT] `` comes before it): a leading
    integer 1-``top``, then the feedback if any."""
    m = _LEADING.match(text or "")
    if not m:
        return None, (text or "").strip(), f"no score after {SCORE_FIRST.strip()}: {(text or '')[:40]!r}"
    score = int(m.group(1))
    feedback = text[m.end() :].strip()
    if m.group(2) is not None and int(m.group(2)) != top:
        return None, feedback, f"score {score} is on a 1-{m.group(2)} scale, not 1-{top}"
    if not 1 <= score <= top:
        return None, feedback, f"score {score} is outside 1-{top}"
    return score, feedback, None


def prompting(judge_format: str) -> dict:
    """``judge_llm``'s keywords for a judge answer format: ``feedback_first`` (Prometheus: feedback, then
    ``[RESULT] N``; the default) or ``score_first`` (the answer is started with ``[RESULT] `` for the judge,
    so a model too small to keep the format still gives a score as its first token; its feedback follows)."""
    if judge_format == "score_first":
        return {"prefill": SCORE_FIRST, "parse": parse_score_first}
    return {}


def judge_llm(
    df: pl.DataFrame,
    backend: Backend,
    *,
    label: str,
    rubric: str = "",
    retries: int = 2,
    seed: int = 0,
    system_prompt: str = "",
    advance=None,
    prompt=None,
    parse=None,
    prefill: str = "",
) -> pl.DataFrame:
    """Grade every response with ``backend``; unparsable answers are re-asked (sampled) up to ``retries`` times.

    ``df`` is an ``answered`` frame. Rows whose generation failed are not sent to the judge: null score,
    the generation's error. ``prompt`` (row -> text), ``parse`` (answer -> (score, feedback, error)) and
    ``prefill`` (the start of the answer) replace the Prometheus prompt and its ``[RESULT] N`` parser (I-SHEEP's
    self-assessment grades 1-10 with its own).
    """
    rows = list(df.iter_rows(named=True))
    parsed: list[tuple[int | None, str, str | None]] = [(None, "", _generation_failed(r)) for r in rows]
    raw: list[str] = [""] * len(rows)
    if prompt is None:

        def prompt(r: dict) -> str:
            return judge_prompt(
                user_message(r["instruction"], r["input"]), r["response"] or "", r["output"], rubric
            )

    prompts = {i: prompt(r) for i, r in enumerate(rows) if _generation_failed(r) is None}
    if advance is not None and len(prompts) < len(rows):
        advance(len(rows) - len(prompts), 0)
    parse = parse or parse_result
    start = [{"role": "assistant", "content": prefill}] if prefill else []  # the answer continues this
    pending = list(prompts)
    for attempt in range(retries + 1):
        if not pending:
            break
        # The first pass uses the configured (usually greedy) settings; a greedy re-ask would repeat
        # itself, so retries sample with a fresh seed.
        overrides = {} if attempt == 0 else {"temperature": 0.7, "seed": seed + attempt}
        outs = backend.generate(
            [conversation(prompts[i], system_prompt) + start for i in pending],
            advance if attempt == 0 else None,
            **overrides,
        )
        still = []
        for i, out in zip(pending, outs, strict=True):
            raw[i] = out.text
            parsed[i] = parse(out.text) if out.finish_reason != "error" else (None, "", out.error)
            if parsed[i][0] is None:
                still.append(i)
        pending = still
    return _judgments(
        df,
        score=[p[0] for p in parsed],
        feedback=[p[1] for p in parsed],
        judge=[label] * df.height,
        error=[p[2] for p in parsed],
        extracted=[None] * df.height,
        raw=raw,
    )
