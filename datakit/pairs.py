"""Preference pairs from an iteration's mistakes — the core of the pairs stage (frames in, frame out).

- A bad case gives (its instruction, chosen = the reference answer, rejected = M_t's answer).
- A similar case gives (the pool instruction, chosen = the pool answer, rejected = M_t's answer to it).

Columns are TRL's conversational ``prompt, chosen, rejected`` (lists of ``{role, content}`` messages) plus
``prompt_id`` (hash of the prompt text), ``id`` (the source row), ``origin`` (bad_case | similar_case),
``score`` (the judge's score of the rejected answer; null for similar cases, which are not judged), ``tags``
and ``iteration``. A pair whose chosen equals its rejected (after trimming) teaches nothing and is dropped;
so is one whose rejected answer failed to generate. Both are counted.
"""

from __future__ import annotations

import polars as pl

from datakit.cache import text_hash
from datakit.errors import DataError
from datakit.generate import conversation, user_message
from datakit.schemas import Table

MESSAGE = pl.Struct({"role": pl.Utf8, "content": pl.Utf8})

PREFERENCE_PAIRS = Table(
    "preference_pairs",
    {
        "prompt": pl.List(MESSAGE),
        "chosen": pl.List(MESSAGE),
        "rejected": pl.List(MESSAGE),
        "prompt_id": pl.Utf8,
        "id": pl.Utf8,
        "origin": pl.Utf8,
        "score": pl.Int64,
        "tags": pl.List(pl.Utf8),
        "iteration": pl.Int64,
    },
    required=("prompt", "chosen", "rejected", "prompt_id", "id", "origin"),
    doc={
        "prompt": "the user turn (and the system prompt, if generate.system_prompt is set), TRL conversational",
        "chosen": "one assistant message: the reference (bad case) or the pool answer (similar case)",
        "rejected": "one assistant message: M_t's answer",
        "prompt_id": "sha256 of the prompt text (32 hex digits)",
        "id": "the bad case's or the pool row's id",
        "origin": "bad_case | similar_case",
        "score": "the judge's score of the rejected answer (bad cases); null for similar cases",
        "tags": "the instruction's tags",
        "iteration": "t: the pairs come from M_t's answers",
    },
)


def messages(instruction: str, input_text: str, system_prompt: str = "") -> list[dict[str, str]]:
    """The prompt side of a pair: exactly the conversation the generate stage sent to M_t."""
    return conversation(user_message(instruction, input_text), system_prompt)


def _side(texts: list[str]) -> pl.Series:
    return pl.Series([[{"role": "assistant", "content": t}] for t in texts], dtype=pl.List(MESSAGE))


def _pairs(rows: pl.DataFrame, origin: str, iteration: int, system_prompt: str) -> pl.DataFrame:
    """rows: ``id, instruction, input, output (chosen), response (rejected), score, tags``."""
    prompts = [messages(i, x, system_prompt) for i, x in zip(rows["instruction"], rows["input"], strict=True)]
    return pl.DataFrame(
        {
            "prompt": pl.Series(prompts, dtype=pl.List(MESSAGE)),
            "chosen": _side(rows["output"].to_list()),
            "rejected": _side(rows["response"].to_list()),
            "prompt_id": [text_hash("\x00".join(m["content"] for m in p)) for p in prompts],
            "id": rows["id"],
            "origin": [origin] * rows.height,
            "score": rows["score"].cast(pl.Int64),
            "tags": rows["tags"].cast(pl.List(pl.Utf8)),
            "iteration": pl.Series([iteration] * rows.height, dtype=pl.Int64),
        }
    )


def build_pairs(
    bad_cases: pl.DataFrame,
    bad_tags: pl.DataFrame,
    similar: pl.DataFrame,
    similar_answers: pl.DataFrame,
    *,
    iteration: int,
    system_prompt: str = "",
    where: str = "similar-case generations",
) -> tuple[pl.DataFrame, dict]:
    """Pairs from the bad cases (BAD_CASES with ``bad_tags``: ``id, tags``) and the similar cases
    (SIMILAR_CASES with ``similar_answers``: M_t's GENERATIONS for them).

    Returns:
        The PREFERENCE_PAIRS frame (bad cases first, each part in its input order) and counts.

    Raises:
        DataError: when a similar case has no answer in ``similar_answers`` (a stale table; name: ``where``).
    """
    bad = bad_cases.join(bad_tags.select("id", "tags"), on="id", how="left", maintain_order="left")
    bad = bad.with_columns(failed=pl.col("response").is_null())
    missing = similar.join(similar_answers, on="id", how="anti")
    if missing.height:
        raise DataError(
            where,
            f"has no answer for {missing.height} similar cases (first id {missing['id'][0]!r}); "
            "rerun generate_similar",
        )
    sim = similar.join(
        similar_answers.select("id", "finish_reason", response="output"),
        on="id",
        how="left",
        maintain_order="left",
    ).with_columns(
        score=pl.lit(None, pl.Int64),
        failed=(pl.col("finish_reason") == "error") | pl.col("response").is_null(),
    )
    parts, stats = [], {}
    for origin, rows in (("bad_case", bad), ("similar_case", sim)):
        same = rows["output"].str.strip_chars() == rows["response"].str.strip_chars()
        stats[f"{origin}_no_answer"] = int(rows["failed"].sum())
        stats[f"{origin}_identical"] = int((same & ~rows["failed"]).sum())
        keep = rows.filter(~pl.col("failed") & ~same.fill_null(False))
        stats[f"{origin}_pairs"] = keep.height
        parts.append(_pairs(keep, origin, iteration, system_prompt))
    pairs = pl.concat(parts)
    stats.update(
        pairs=pairs.height,
        dropped_identical=stats["bad_case_identical"] + stats["similar_case_identical"],
        dropped_no_answer=stats["bad_case_no_answer"] + stats["similar_case_no_answer"],
    )
    return pairs, stats
