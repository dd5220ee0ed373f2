"""Synthetic generators: deterministic, schema-true, leak-free, and every answer checked independently."""

from __future__ import annotations

import contextlib
import io
import operator
import re

import polars as pl
import pytest

from datakit.schemas import EXAMPLES, check_frame
from datakit.synth import make_general, make_math
from datakit.synth.arith import FAMILIES
from datakit.synth.general import CATEGORIES, glossary, number_to_words, to_roman, words_to_number
from datakit.synth.math import MAX_NUMBER, TEMPLATES, normalise

EQ = re.compile(r"(\d+) ([+\-×÷]) (\d+) = (\d+)")
OPS = {"+": operator.add, "-": operator.sub, "×": operator.mul, "÷": operator.truediv}


@pytest.fixture(scope="module")
def math_default() -> tuple[pl.DataFrame, pl.DataFrame]:
    return make_math(300, 150, seed=0)


@pytest.fixture(scope="module")
def general_default() -> tuple[pl.DataFrame, pl.DataFrame]:
    return make_general(5000, 200, seed=0)


def test_determinism() -> None:
    a, b = make_math(40, 20, seed=3), make_math(40, 20, seed=3)
    assert all(x.equals(y) for x, y in zip(a, b, strict=True))
    assert not make_math(40, 20, seed=4)[0].equals(a[0])
    g1, g2 = make_general(200, 50, seed=3), make_general(200, 50, seed=3)
    assert all(x.equals(y) for x, y in zip(g1, g2, strict=True))
    assert not make_general(200, 50, seed=4)[0].equals(g1[0])


def test_sizes_splits_and_schema(math_default, general_default) -> None:
    frames = {"train": math_default[0], "test": math_default[1], "pool": general_default[0]}
    frames["eval"] = general_default[1]
    sizes = {"train": 300, "test": 150, "pool": 5000, "eval": 200}
    for split, df in frames.items():
        assert df.height == sizes[split]
        assert df.columns == EXAMPLES.columns
        check_frame(df, EXAMPLES, "synth")
        assert df["split"].unique().to_list() == [split]
        assert (df["input"] == "").all()
    assert make_math(0, 0, seed=1)[0].height == 0
    check_frame(make_general(0, 0, seed=1)[1], EXAMPLES, "synth")


def test_ids_unique_and_splits_disjoint(math_default, general_default) -> None:
    for (a, b), prefix in ((math_default, "math-"), (general_default, "gen-")):
        both = pl.concat([a, b])
        assert both["id"].n_unique() == both.height
        assert both["id"].str.starts_with(prefix).all()
        assert not {normalise(t) for t in a["instruction"]} & {normalise(t) for t in b["instruction"]}
        assert both["instruction"].map_elements(normalise, return_dtype=pl.Utf8).n_unique() == both.height
    pool = general_default[0]
    cats = pool["source"].str.strip_prefix("general/")
    assert (pool["id"].str.split("-").list.get(1) == cats).all()


def _check_solution(output: str) -> int:
    """Check every step's arithmetic; return the number of steps."""
    lines = output.split("\n")
    final = re.fullmatch(r"#### (\d+)", lines[-1])
    assert final, f"no final '#### <int>' line in {output!r}"
    last = None
    for line in lines[:-1]:
        eqs = EQ.findall(line)
        assert eqs, f"step without a calculation: {line!r}"
        for a, op, b, c in eqs:
            assert OPS[op](int(a), int(b)) == int(c), line
            assert max(int(a), int(b), int(c)) < MAX_NUMBER
            last = int(c)
    assert last == int(final.group(1))
    return len(lines) - 1


def test_math_solutions(math_default) -> None:
    for df in math_default:
        assert df["source"].str.starts_with("math/").all()
        for text, output in zip(df["instruction"], df["output"], strict=True):
            assert text.endswith("?")
            assert all(int(n) < MAX_NUMBER for n in re.findall(r"\d+", text))
            assert 2 <= _check_solution(output) <= 5


def test_math_templates_used(math_default) -> None:
    assert len(TEMPLATES) >= 12
    assert math_default[0]["source"].n_unique() >= 12


def test_math_large_and_limit() -> None:
    train, test = make_math(2700, 300, seed=11)
    both = pl.concat([train, test])
    assert both.height == 3000
    assert both["instruction"].map_elements(normalise, return_dtype=pl.Utf8).n_unique() == 3000
    with pytest.raises(ValueError, match="at most"):
        make_math(10**7, 0, seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        make_math(-1, 10, seed=0)


def test_general_balance() -> None:
    pool, _ = make_general(2000, 100, seed=5)
    counts = pool["source"].value_counts()
    assert len(CATEGORIES) >= 12 and counts.height >= 12
    assert counts["count"].max() <= 0.2 * pool.height


def _rows(df: pl.DataFrame, category: str) -> pl.DataFrame:
    return df.filter(pl.col("source") == f"general/{category}")


def test_python_answers_match_execution(general_default) -> None:
    rows = _rows(general_default[0], "python")
    assert rows.height > 100
    for text, output in zip(rows["instruction"], rows["output"], strict=True):
        code = re.search(r"```python\n(.*?)\n```", text, re.S).group(1)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(code, {})  # generated by the project itself, run with normal builtins as a cross-check
        assert output == f"It prints `{buf.getvalue().rstrip()}`."


def test_number_words_round_trip(general_default) -> None:
    for n in [*range(0, 1200), 2000, 10_001, 99_999, 100_000, 123_456, 1_000_000, 7_654_321, 999_999_999]:
        assert words_to_number(number_to_words(n)) == n
    assert number_to_words(1205) == "one thousand two hundred five"
    assert number_to_words(42) == "forty-two"
    assert words_to_number("one hundred and five") == 105
    rows = _rows(general_default[0], "number_words")
    for output in rows["output"]:
        n, w = (
            re.fullmatch(r'(\d+) in words is "(.+)"\.', output).groups()
            if output[0].isdigit()
            else (re.fullmatch(r'"(.+)" is (\d+)\.', output).groups()[::-1])
        )
        assert words_to_number(w) == int(n) and number_to_words(int(n)) == w


def test_glossary_and_definitions(general_default) -> None:
    terms = dict(glossary())
    assert len(terms) >= 60
    definitions = set(terms.values())
    rows = _rows(general_default[0], "definition")
    assert rows.height > 100 and rows["output"].is_in(list(definitions)).all()
    for output in _rows(general_default[0], "term_lookup")["output"]:
        assert re.fullmatch(r'The term is "(.+)"\.', output).group(1) in terms


def test_roman_numerals() -> None:
    assert [to_roman(n) for n in (1, 4, 9, 14, 40, 90, 400, 1994, 3999)] == [
        "I",
        "IV",
        "IX",
        "XIV",
        "XL",
        "XC",
        "CD",
        "MCMXCIV",
        "MMMCMXCIX",
    ]


def test_max_steps_caps_the_worked_steps() -> None:
    train, test = make_math(200, 50, seed=5, max_steps=2)
    for df in (train, test):
        steps = df["output"].str.count_matches("\n")  # one line per step, then the #### line
        assert steps.max() <= 2
    assert train["source"].n_unique() >= 8  # still many templates
    assert make_math(40, 10, seed=5)[0].equals(make_math(40, 10, seed=5, max_steps=5)[0])
    with pytest.raises(ValueError, match="max_steps must be 2-5"):
        make_math(10, 5, seed=5, max_steps=1)


# --- the domain families (datakit.synth.arith) ------------------------------------------------------------


def test_make_domain_holds_out_whole_templates_for_val_and_test():
    from datakit.synth import make_domain
    from datakit.synth.arith import FAMILIES

    splits = make_domain("numbers", 300, 100, 200, seed=5)
    assert {k: v.height for k, v in splits.items()} == {"train": 300, "val": 100, "test": 200}
    templates = {k: set(v["source"].str.split("/").list.get(1)) for k, v in splits.items()}
    heldout = set(FAMILIES["numbers"].heldout)
    assert templates["val"] <= heldout and templates["test"] <= heldout
    assert not templates["train"] & heldout  # training never sees a held-out template
    assert templates["test"] == heldout == templates["val"]  # in turn: every held-out one is tested
    # Validation and test are one draw split at random: the same template mix, up to sampling noise.
    mix = {k: splits[k]["source"].value_counts(normalize=True).sort("source") for k in ("val", "test")}
    assert (mix["val"]["proportion"] - mix["test"]["proportion"]).abs().max() < 0.12
    instructions = {k: set(v["instruction"]) for k, v in splits.items()}
    assert not instructions["train"] & instructions["test"] and not instructions["val"] & instructions["test"]
    assert all(s == k for k, v in splits.items() for s in v["split"])


@pytest.mark.parametrize("domain", FAMILIES)  # the arithmetic ones; code has tests/test_code_judge.py
def test_every_family_gives_checkable_problems(domain):
    """200 train problems (the probe's size) per family, each reference ending in '#### N' whose N the math
    judge reads back, and N is what the worked step computes."""
    from datakit.judges import reference_answer
    from datakit.synth import make_domain

    train = make_domain(domain, 200, 0, 0, seed=1, max_steps=2)["train"]
    assert train.height == 200 and train["id"].n_unique() == 200
    for out in train["output"]:
        *steps, last = out.split("\n")
        assert last.startswith("#### ") and reference_answer(out) == last[5:]
        assert last[5:] in steps[-1]  # the last worked step states the answer
        for a, op, b, c in EQ.findall(out):  # and every equation in the steps is true
            assert OPS[op](int(a), int(b)) == int(c), out


def test_make_domain_is_deterministic_and_checks_its_arguments():
    from datakit.synth import make_domain

    a, b = make_domain("numbers", 40, 10, 20, seed=3), make_domain("numbers", 40, 10, 20, seed=3)
    assert all(a[k].equals(b[k]) for k in a)
    assert not make_domain("numbers", 40, 10, 20, seed=4)["train"].equals(a["train"])
    # Train does not depend on the evaluation sizes: the probe (train only) sees synth's training problems.
    assert make_domain("numbers", 40, 0, 0, seed=3)["train"].equals(a["train"])
    assert make_domain("numbers", 0, 10, 20, seed=3)["test"].equals(a["test"])
    with pytest.raises(ValueError, match="unknown domain 'algebra'"):
        make_domain("algebra", 1, 1, 1, seed=0)
    with pytest.raises(ValueError, match="ran out of unique problems"):
        make_domain("bare", 0, 0, 5000, seed=0)


def test_general_validation_split_is_disjoint_and_leaves_eval_as_it_was():
    from datakit.synth import make_general_splits

    old_pool, old_eval = make_general(500, 100, seed=2)
    splits = make_general_splits(500, 60, 100, seed=2)
    assert splits["eval"].equals(old_eval)  # eval is drawn first: adding a validation split keeps it
    keys = {k: {normalise(t) for t in v["instruction"]} for k, v in splits.items()}
    assert not keys["val"] & keys["eval"] and not keys["val"] & keys["pool"]
    assert make_general_splits(500, 0, 100, seed=2)["pool"].equals(old_pool)
