"""Evaluation cores: the reference-match judge for general answers, and the NLL of reference answers.

- ``judge_match``: general retention accuracy without an LLM judge. A row of the synthetic pool is judged by
  its category's rule (``datakit.general_judge``: what the answer is, and how an answer may state it). Any
  other row by the generic rule: the reference's answer is read from
  the reference itself (see ``answer_key``): a leading yes/no; all of a JSON reference; else its last quoted
  span, or else its first number, that the instruction does not already contain; else what follows its
  last colon; else its first number or quoted span; else the whole reference. A response is right (5) when it contains that answer as a whole token
  sequence (yes/no: when its first yes or no agrees), else wrong (1). It is strict where the reference is
  free text, so it under-counts rather than flatters, the same way for every model compared.
- ``reference_nll``: mean negative log-likelihood per token of the reference answers given their prompts
  (the chat template's assistant turn): a retention measure that needs no judge at all.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import polars as pl

from datakit.config import VLLMConfig
from datakit.general_judge import check, describe, key_for
from datakit.generate import conversation, user_message
from datakit.judges import NUMBER
from datakit.schemas import JUDGMENTS, Table

if TYPE_CHECKING:
    from datakit.logprobs import Engine

EVAL_RESULTS = Table(
    "eval_results",
    {
        "set": pl.Utf8,
        "id": pl.Utf8,
        "response": pl.Utf8,
        "score": pl.Int64,
        "extracted": pl.Utf8,
        "finish_reason": pl.Utf8,
        "n_tokens": pl.Int64,
        "category": pl.Utf8,
    },
    required=("set", "id"),
    doc={
        "set": "domain_test | domain_val | general_eval | general_val | domain_train",
        "category": "the item's source (general/<category>, <domain>/<template>): per-category accuracy",
        "response": "the evaluated model's answer",
        "score": "the judge's 1-5 score (math or llm for the domain, match or llm for general); null = unscored",
        "extracted": "what the judge read from the answer (math: the final number; match: the expected answer)",
    },
)

_QUOTED = re.compile(r'"([^"\n]+)"|`([^`\n]+)`')
_YESNO = re.compile(r"\b(yes|no)\b")


def _norm(text: str) -> str:
    return " ".join(text.lower().replace('"', " ").replace("`", " ").split())


def _contains(haystack: str, needle: str) -> bool:
    """``needle`` occurs in ``haystack`` as whole tokens (case, quotes and spacing ignored)."""
    n = _norm(needle).strip(" .")
    if not n:
        return False
    return re.search(r"(?<![\w.-])" + re.escape(n) + r"(?![\w-]|\.\d)", _norm(haystack)) is not None


def answer_key(reference: str, instruction: str) -> tuple[str, str]:
    """The answer a response must contain: ``(kind, value)``, kind 'yesno' or 'text' (see module doc)."""
    ref = reference.strip()
    lead = re.match(r"\s*(yes|no)\b", ref, flags=re.IGNORECASE)
    if lead:
        return "yesno", lead.group(1).lower()
    if ref[:1] in "[{":
        return "text", ref  # structured output (JSON): all of it
    quoted = [a or b for a, b in _QUOTED.findall(ref)]
    numbers = NUMBER.findall(ref)
    for candidates, pick in ((quoted, -1), (numbers, 0)):
        new = [c for c in candidates if not _contains(instruction, c)]
        if new:
            return "text", new[pick]
    if ":" in ref and ref.rsplit(":", 1)[1].strip(" ."):
        return "text", ref.rsplit(":", 1)[1].strip(" .")
    for candidates in (numbers, quoted):
        if candidates:
            return "text", candidates[0]
    return "text", ref.rstrip(".")


def match_score(response: str, reference: str, instruction: str) -> tuple[int, str]:
    """(5 or 1, the expected answer) for one response."""
    kind, value = answer_key(reference, instruction)
    if kind == "yesno":
        first = _YESNO.search(response.lower())
        return (5 if first and first.group(1) == value else 1), value
    return (5 if _contains(response, value) else 1), value


def general_score(response: str, reference: str, instruction: str, source: str | None) -> tuple[int, str]:
    """(5 or 1, the expected answer): by the row's category rule (``datakit.general_judge``) for a row of the
    synthetic pool (``source`` = general/<category>), else by ``match_score``."""
    category = source.split("/", 1)[1] if source and source.startswith("general/") else None
    key = key_for(category, reference, instruction) if category else None
    if key is None:
        return match_score(response, reference, instruction)
    return (5 if check(key, response) else 1), describe(key)


def judge_match(rows: pl.DataFrame) -> pl.DataFrame:
    """Reference-match judgments for an ``answered`` frame (``general_score`` per row); a failed generation
    is an unscored row."""
    out = {
        k: [] for k in ("id", "score", "feedback", "judge", "error", "extracted", "raw", "model", "iteration")
    }
    for r in rows.iter_rows(named=True):
        failed = r["finish_reason"] == "error" or r["response"] is None
        score, expected = (
            (None, None)
            if failed
            else general_score(r["response"], r["output"], r["instruction"], r.get("source"))
        )
        out["id"].append(r["id"])
        out["score"].append(score)
        out["feedback"].append("" if failed else f"expected {expected!r}")
        out["judge"].append("match")
        out["error"].append(r["gen_error"] or "generation failed" if failed else None)
        out["extracted"].append(expected)
        out["raw"].append(None)
        out["model"].append(r["model"])
        out["iteration"].append(r["iteration"])
    return pl.DataFrame(out, schema=dict(JUDGMENTS.schema))


def reference_nll(
    model: str,
    examples: pl.DataFrame,
    *,
    system_prompt: str = "",
    batch_size: int = 16,
    device: str = "auto",
    engine: Engine = "transformers",
    dtype: str = "auto",
    vllm: VLLMConfig | None = None,
) -> tuple[float, list[float]]:
    """Token-weighted mean NLL of ``examples``' reference outputs under ``model``, and each row's mean, on
    ``engine`` (:mod:`datakit.logprobs`).

    Each row is the chat-templated prompt (as generate sends it) followed by the reference; only the
    reference's tokens are scored.
    """
    from datakit.logprobs import Scorer

    scorer = Scorer(model, engine, device=device, dtype=dtype, batch_size=batch_size, vllm=vllm)
    tok = scorer.tokenizer
    seqs: list[tuple[list[int], int]] = []
    for instruction, input_text, output in zip(
        examples["instruction"], examples["input"], examples["output"], strict=True
    ):
        conv = conversation(user_message(instruction, input_text), system_prompt)
        prompt = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(output, add_special_tokens=False)["input_ids"]
        seqs.append((p_ids + a_ids, len(p_ids)))
    scored = scorer.logps(seqs)
    per_row = [-s / n if n else math.nan for s, n in scored]
    total, count = sum(s for s, _ in scored), sum(n for _, n in scored)
    return (-total / count if count else math.nan), per_row
