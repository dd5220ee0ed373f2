"""Deterministic synthetic data: nothing can be downloaded, so the project writes its own examples.

Both generators are pure functions of their arguments: the same sizes and seed give identical frames
(one ``random.Random(seed)``, never the global random state). Rows follow the ``EXAMPLES`` table.
Held-out rows are drawn first, then the training/pool rows from the same stream against one shared set
of normalised instructions, so no held-out instruction can reappear in the other split.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TypeVar

import polars as pl

from datakit.schemas import EXAMPLES
from datakit.synth import arith as _arith
from datakit.synth import code as _code
from datakit.synth import general as _general
from datakit.synth import math as _math

T = TypeVar("T")

__all__ = ["DOMAINS", "make_domain", "make_general", "make_general_splits", "make_math"]

# synth.domain: the arithmetic families (datakit.synth.arith), and code (datakit.synth.code)
DOMAINS = (*_arith.FAMILIES, "code")

# Same purpose as math.MAX_UNIQUE: refuse absurd sizes up front instead of grinding.
MAX_GENERAL = 200_000


def _check_sizes(fn: str, cap: int, **sizes: int) -> None:
    for name, n in sizes.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{fn}: {name} must be a non-negative integer, got {n!r}")
    total = sum(sizes.values())
    if total > cap:
        raise ValueError(f"{fn}: asked for {total} unique rows, but it can produce at most {cap}")


def _row_id(prefix: str, instruction: str, input_: str = "") -> str:
    # A content hash, so a problem keeps its id whatever position or split it lands in.
    digest = hashlib.sha1(f"{instruction}\n{input_}".encode()).hexdigest()[:10]
    return f"{prefix}-{digest}"


def _frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema=dict(EXAMPLES.schema)) if rows else EXAMPLES.empty()
    if df["id"].is_duplicated().any():  # a 40-bit hash collision: practically never, but never silent
        raise ValueError("synthetic ids collided; use a different seed")
    return df.select(EXAMPLES.columns)


def make_math(n_train: int, n_test: int, seed: int, max_steps: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Multi-step arithmetic word problems with worked solutions ending in ``#### <answer>``.

    Returns (train, test) with ``split`` = "train" / "test" and ``source`` = "math/<template>".
    ``max_steps`` (2-5) caps the worked steps per problem, for an easier domain.

    Raises:
        ValueError: for negative sizes, or when more unique problems are asked for than can be made.
    """
    _check_sizes("make_math", _math.MAX_UNIQUE, n_train=n_train, n_test=n_test)
    if not 2 <= max_steps <= 5:
        raise ValueError(f"make_math: max_steps must be 2-5, got {max_steps}")
    rng = random.Random(seed)
    seen: set[str] = set()
    frames = {}
    for split, n in (("test", n_test), ("train", n_train)):
        problems = _math.generate(n, rng, seen, max_steps)
        rng.shuffle(problems)
        frames[split] = _frame(
            [
                {
                    "id": _row_id(f"math-{split}", p.text),
                    "instruction": p.text,
                    "input": "",
                    "output": p.solution(),
                    "source": f"math/{p.template}",
                    "split": split,
                }
                for p in problems
            ]
        )
    _disjoint(frames["train"], frames["test"])
    return frames["train"], frames["test"]


def make_domain(
    domain: str, n_train: int, n_val: int, n_test: int, seed: int, max_steps: int = 5
) -> dict[str, pl.DataFrame]:
    """Problems of family ``domain`` (``datakit.synth.arith.FAMILIES``) with worked solutions ending in
    ``#### <answer>``: ``{"train", "val", "test"}`` frames, ``split`` = the key, ``source`` =
    ``<domain>/<template>``.

    Validation and test come from the family's held-out templates only (disjoint items), train from the
    others, so no test problem shares a template or an instruction with a training one. ``max_steps``
    caps the worked steps (``multistep`` only; the other families have one).

    Raises:
        ValueError: for an unknown domain, negative sizes, or more unique problems than the templates make.
    """
    if domain == "code":
        return make_code(n_train, n_val, n_test, seed)
    if domain not in _arith.FAMILIES:
        raise ValueError(f"make_domain: unknown domain {domain!r} (known: {', '.join(DOMAINS)})")
    _check_sizes("make_domain", _math.MAX_UNIQUE, n_train=n_train, n_val=n_val, n_test=n_test)
    if not 1 <= max_steps <= 5:
        raise ValueError(f"make_domain: max_steps must be 1-5, got {max_steps}")
    family = _arith.FAMILIES[domain]
    seen: set[str] = set()
    # Two streams: the training problems do not depend on the evaluation sizes (nor the reverse), so a
    # bigger test split or `datakit probe` draws the very problems synth trains on.
    held_rng, train_rng = random.Random(f"{seed}/heldout"), random.Random(f"{seed}/train")
    # Validation and test are one draw from the held-out templates, split at random, so they have the same
    # template mix (a small held-out template running out early would otherwise leave it to test alone).
    held = _arith.generate(family, "test", n_test + n_val, held_rng, seen, max_steps)
    held_rng.shuffle(held)
    drawn = {"test": held[:n_test], "val": held[n_test:]}
    drawn["train"] = _arith.generate(family, "train", n_train, train_rng, seen, max_steps)
    train_rng.shuffle(drawn["train"])
    frames = {}
    for split, problems in drawn.items():
        frames[split] = _frame(
            [
                {
                    "id": _row_id(f"{domain}-{split}", p.text),
                    "instruction": p.text,
                    "input": "",
                    "output": p.solution(),
                    "source": f"{domain}/{p.template}",
                    "split": split,
                }
                for p in problems
            ]
        )
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        _disjoint(frames[a], frames[b])
    return frames


def make_code(n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, pl.DataFrame]:
    """Programming tasks (``datakit.synth.code``): ``{"train", "val", "test"}`` frames with the examples
    columns plus ``tests`` (JSON: the entry function, the argument lists, the expected results), ``output``
    the reference solution in a fenced block, ``source`` = ``code/<template>``.

    Validation and test take held-out template instances only, train the others (no instance on both
    sides); every reference is run at generation time and checked against the template's oracle.

    Raises:
        ValueError: for negative sizes, or more tasks than the templates have instances.
    """
    _check_sizes("make_code", _math.MAX_UNIQUE, n_train=n_train, n_val=n_val, n_test=n_test)
    used: set[tuple] = set()
    held_rng, train_rng = random.Random(f"{seed}/code/heldout"), random.Random(f"{seed}/code/train")
    held = _code.generate(n_test + n_val, "test", held_rng, used)
    held_rng.shuffle(held)
    drawn = {"test": held[:n_test], "val": held[n_test:]}
    drawn["train"] = _code.generate(n_train, "train", train_rng, used)
    train_rng.shuffle(drawn["train"])
    frames = {}
    for split, tasks in drawn.items():
        rows = []
        for t in tasks:
            expected = t.expected()
            instruction = t.instruction(expected)
            rows.append(
                {
                    "id": _row_id(f"code-{split}", instruction),
                    "instruction": instruction,
                    "input": "",
                    "output": f"```python\n{t.source}```",
                    "source": f"code/{t.template}",
                    "split": split,
                    "tests": t.tests(expected),
                }
            )
        frames[split] = (
            pl.DataFrame(rows, schema={**EXAMPLES.schema, "tests": pl.Utf8})
            if rows
            else (EXAMPLES.empty().with_columns(tests=pl.lit(None, pl.Utf8)))
        )
        if frames[split]["id"].is_duplicated().any():
            raise ValueError("synthetic ids collided; use a different seed")
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        _disjoint(frames[a], frames[b])
    return frames


def take_in_turn(
    names: list[str], n: int, draw_new: Callable[[str], T | None], max_stall: int, what: str
) -> list[T]:
    """``n`` items drawn from ``names`` in turn (``draw_new(name)``: a new item, or None for a repeat), so the
    result is balanced; a name that gives ``max_stall`` repeats in a row is used up and the others go on.

    Raises:
        ValueError: when every name is used up first (``what`` names the generator in the message).
    """
    active = names[:]
    out: list[T] = []
    i = 0
    while len(out) < n:
        if not active:
            raise ValueError(f"{what}: ran out of new items after {len(out)}")
        name = active[i % len(active)]
        i += 1
        for _ in range(max_stall):
            item = draw_new(name)
            if item is not None:
                out.append(item)
                break
        else:
            active.remove(name)
    return out


def _general_rows(n: int, split: str, rng: random.Random, seen: set[str]) -> list[dict[str, str]]:
    """``n`` rows new to ``seen``, categories taken in turn so the split is balanced (a small category, the
    glossary ones, is used up and the others keep filling the split)."""
    names = list(_general.CATEGORIES)
    rng.shuffle(names)

    def draw_new(cat: str) -> dict[str, str] | None:
        instruction, output = _general.draw(rng, cat)
        key = _math.normalise(instruction)
        if key in seen:
            return None
        seen.add(key)
        return {
            "id": _row_id(f"gen-{cat}", instruction),
            "instruction": instruction,
            "input": "",
            "output": output,
            "source": f"general/{cat}",
            "split": split,
        }

    rows = take_in_turn(names, n, draw_new, _math.MAX_STALL, "make_general: the categories")
    rng.shuffle(rows)
    return rows


def make_general(n_pool: int, n_eval: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A pool of short verifiable tasks over many skill categories, and a held-out eval split.

    Returns (pool, eval) with ``split`` = "pool" / "eval" and ``source`` = "general/<category>".

    Raises:
        ValueError: for negative sizes, or when more unique items are asked for than can be made.
    """
    splits = make_general_splits(n_pool, 0, n_eval, seed)
    return splits["pool"], splits["eval"]


def make_general_splits(n_pool: int, n_val: int, n_eval: int, seed: int) -> dict[str, pl.DataFrame]:
    """``make_general`` with a validation split too: ``{"pool", "val", "eval"}``, pairwise disjoint.

    Eval is drawn first, then validation, then the pool, so adding a validation split leaves eval as it
    was (and ``n_val=0`` gives exactly ``make_general``'s pool).
    """
    _check_sizes("make_general", MAX_GENERAL, n_pool=n_pool, n_val=n_val, n_eval=n_eval)
    rng = random.Random(seed)
    seen: set[str] = set()
    out = {}
    for split, n in (("eval", n_eval), ("val", n_val), ("pool", n_pool)):
        out[split] = _frame(_general_rows(n, split, rng, seen)) if n or split != "val" else EXAMPLES.empty()
    for a, b in (("pool", "eval"), ("pool", "val"), ("val", "eval")):
        _disjoint(out[a], out[b])
    return out


def _disjoint(a: pl.DataFrame, b: pl.DataFrame) -> None:
    # Guaranteed by the shared ``seen`` set; checked again because a leak would silently inflate scores.
    keys = {_math.normalise(t) for t in a["instruction"]}
    if any(_math.normalise(t) in keys for t in b["instruction"]):
        raise AssertionError("synthetic splits share an instruction")
    if set(a["id"]) & set(b["id"]):
        raise ValueError("synthetic ids collided across splits; use a different seed")
