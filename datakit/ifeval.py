"""Instruction-following evaluation that runs offline: prompts with verifiable constraints, checked by code.

The held-out set (``datakit/resources/ifeval.jsonl``, or ``ifeval.path``) is IFEval-shaped: each line is
``{"id", "prompt", "instructions": [{"kind": ..., <its arguments>}]}``. Every instruction kind below is a
pure function of the response. Scores follow IFEval (Zhou et al., 2023):

- instruction level: the share of all instructions the responses follow;
- prompt level: the share of prompts whose every instruction is followed;
- strict: the response as written; loose: the response also passes if it does after dropping its first
  line, its last line or both, or after removing markdown ``*`` (IFEval's loose variants).

Input: the prompt table and the model's generations. Output: one row per prompt (``IFEVAL_RESULTS``) and
the metrics (``summarize``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from datakit.errors import DataError
from datakit.schemas import Table

DEFAULT_PROMPTS = Path(__file__).parent / "resources" / "ifeval.jsonl"

IFEVAL_RESULTS = Table(
    "ifeval results",
    {
        "id": pl.Utf8,
        "prompt": pl.Utf8,
        "response": pl.Utf8,
        "kinds": pl.List(pl.Utf8),
        "followed_strict": pl.List(pl.Boolean),
        "followed_loose": pl.List(pl.Boolean),
        "prompt_strict": pl.Boolean,
        "prompt_loose": pl.Boolean,
    },
)

_WORD = re.compile(r"\b[\w'-]+\b")
_BULLET = re.compile(r"^\s*[*-]\s+\S", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def _json_body(text: str) -> str:
    body = text.strip()
    fence = re.match(r"^```(?:json)?\s*\n?(.*?)\n?```$", body, flags=re.DOTALL | re.IGNORECASE)
    return fence.group(1).strip() if fence else body


def _is_json(text: str) -> bool:
    try:
        json.loads(_json_body(text))
    except ValueError:
        return False
    return True


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


# kind -> (check(response, **args), the arguments it needs). Each check answers: does the response follow it?
CHECKS: dict[str, tuple[Callable[..., bool], tuple[str, ...]]] = {
    "min_words": (lambda r, n: len(words(r)) >= n, ("n",)),
    "max_words": (lambda r, n: 0 < len(words(r)) <= n, ("n",)),
    "bullets": (lambda r, n: len(_BULLET.findall(r)) == n, ("n",)),
    "include": (lambda r, words: all(_has_word(r, w) for w in words), ("words",)),
    "exclude": (lambda r, words: bool(r.strip()) and not any(_has_word(r, w) for w in words), ("words",)),
    "lowercase": (lambda r: bool(r.strip()) and r == r.lower(), ()),
    "uppercase": (lambda r: bool(re.search(r"[A-Za-z]", r)) and r == r.upper(), ()),
    "json": (_is_json, ()),
    "end_with": (lambda r, phrase: r.strip().endswith(phrase), ("phrase",)),
    "start_with": (lambda r, phrase: r.strip().lower().startswith(phrase.lower()), ("phrase",)),
    "no_commas": (lambda r: bool(r.strip()) and "," not in r, ()),
    "quoted": (lambda r: len(r.strip()) > 1 and r.strip()[0] == '"' and r.strip()[-1] == '"', ()),
    "title": (lambda r: re.search(r"<<[^\n]+>>", r) is not None, ()),
    "paragraphs": (lambda r, n: len(_paragraphs(r)) == n, ("n",)),
    "max_sentences": (lambda r, n: 0 < len(_SENTENCE_END.findall(r.strip() + " ")) <= n, ("n",)),
    "placeholders": (lambda r, n: len(re.findall(r"\[[^\[\]\n]+\]", r)) >= n, ("n",)),
    "postscript": (
        lambda r, marker: re.search(rf"^\s*{re.escape(marker)}", r, flags=re.MULTILINE) is not None,
        ("marker",),
    ),
    "highlights": (lambda r, n: len(re.findall(r"\*[^\n*]+\*", r)) >= n, ("n",)),
    "keyword_count": (
        lambda r, word, n: len(re.findall(rf"(?<!\w){re.escape(word)}(?!\w)", r, flags=re.IGNORECASE)) >= n,
        ("word", "n"),
    ),
}


def check(kind: str, response: str, args: dict) -> bool:
    """Whether ``response`` follows instruction ``kind`` with ``args`` (strict)."""
    fn, _ = CHECKS[kind]
    return bool(fn(response, **args))


def loose_variants(response: str) -> list[str]:
    """IFEval's loose variants: the response without its first line, last line or both, each also without ``*``."""
    lines = response.split("\n")
    base = [
        response,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return base + [b.replace("*", "") for b in base]


def check_loose(kind: str, response: str, args: dict) -> bool:
    return any(check(kind, v, args) for v in loose_variants(response))


def _args(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != "kind"}


def load_prompts(path: str | Path | None = None) -> pl.DataFrame:
    """The evaluation prompts, each instruction checked for a known kind and its arguments.

    Returns ``id, prompt, instructions`` (instructions: the JSON text of the list, one per row). A bad line
    stops with the file, line and field.
    """
    path = Path(path or DEFAULT_PROMPTS)
    if not path.exists():
        raise DataError(path, "not found")
    ids, prompts, specs = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not valid JSON: {exc.msg}", row=n) from exc
        for key in ("id", "prompt", "instructions"):
            if not row.get(key):
                raise DataError(path, "missing or empty", row=n, field=key)
        if not isinstance(row["instructions"], list):
            raise DataError(path, "expected a list of instructions", row=n, field="instructions")
        for i, item in enumerate(row["instructions"]):
            field = f"instructions[{i}]"
            kind = item.get("kind") if isinstance(item, dict) else None
            if kind not in CHECKS:
                raise DataError(
                    path, f"unknown kind {kind!r} (known: {', '.join(CHECKS)})", row=n, field=field
                )
            needed = CHECKS[kind][1]
            if set(_args(item)) != set(needed):
                raise DataError(
                    path,
                    f"{kind} takes {list(needed) or 'no arguments'}, got {sorted(_args(item))}",
                    row=n,
                    field=field,
                )
        ids.append(str(row["id"]))
        prompts.append(row["prompt"])
        specs.append(json.dumps(row["instructions"], ensure_ascii=False))
    if len(set(ids)) != len(ids):
        raise DataError(path, "ids are not unique", field="id")
    return pl.DataFrame({"id": ids, "prompt": prompts, "instructions": specs})


def score(prompts: pl.DataFrame, responses: dict[str, str]) -> pl.DataFrame:
    """One result row per prompt: which of its instructions the response follows, strict and loose."""
    rows = []
    for r in prompts.iter_rows(named=True):
        items = json.loads(r["instructions"])
        response = responses[r["id"]]
        strict = [check(i["kind"], response, _args(i)) for i in items]
        loose = [check_loose(i["kind"], response, _args(i)) for i in items]
        rows.append(
            {
                "id": r["id"],
                "prompt": r["prompt"],
                "response": response,
                "kinds": [i["kind"] for i in items],
                "followed_strict": strict,
                "followed_loose": loose,
                "prompt_strict": all(strict),
                "prompt_loose": all(loose),
            }
        )
    return pl.DataFrame(rows, schema=IFEVAL_RESULTS.schema)


def summarize(results: pl.DataFrame) -> dict:
    """IFEval's four accuracies, and the strict instruction-level accuracy of each kind."""
    kinds = results.select(
        pl.col("kinds").explode(), pl.col("followed_strict").explode(), pl.col("followed_loose").explode()
    )
    per_kind = kinds.group_by("kinds").agg(pl.col("followed_strict").mean(), pl.len()).sort("kinds")
    return {
        "prompts": results.height,
        "instructions": kinds.height,
        "prompt_strict": round(float(results["prompt_strict"].mean() or 0.0), 4),
        "instruction_strict": round(float(kinds["followed_strict"].mean() or 0.0), 4),
        "prompt_loose": round(float(results["prompt_loose"].mean() or 0.0), 4),
        "instruction_loose": round(float(kinds["followed_loose"].mean() or 0.0), 4),
        "by_kind": {k: round(float(v), 4) for k, v, _ in per_kind.iter_rows()},
    }
