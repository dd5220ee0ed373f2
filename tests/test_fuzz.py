"""Property-based fuzzing of every loader and parser that reads what another tool or a model wrote.

The only outcomes allowed: a parsed value, or the project's own error (DataError / ConfigError) naming the
file (and the row and field where there is one); never another exception, a hang or a silent drop.
Derandomized with a bounded example count so CI stays fast and repeatable; a local soak runs many more:

    HYPOTHESIS_PROFILE=soak pytest tests/test_fuzz.py
"""

import json
import os
import tempfile
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from datakit.config import DatasetSource, load_params
from datakit.errors import ConfigError, DataError
from datakit.isheep import parse_instructions, parse_self_score
from datakit.judges import extract_final_number, parse_result, to_number
from datakit.loaders import load_examples
from datakit.tags import parse_tags

settings.register_profile(
    "ci", max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("soak", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Text a model or a tool might write: anything, with the characters these parsers look for made likely.
MARKUP = st.sampled_from(
    ["[RESULT]", "####", "\\boxed{", "}", "The answer is", "Score:", "/10", "out of 10", "Input:", "Output:",
     "1.", "2)", "- ", "**3.**", "Task 4:", "[", "]", "{", '"tag": "', '"', ",", "\n", "\r\n", "\ufeff",
     "1,234", "-3", "3/0", "1e999", "9" * 60, " ", "\x00", "é", "🙂"]
)  # fmt: skip
TEXT = st.lists(st.one_of(st.text(max_size=20), MARKUP), max_size=30).map("".join)


@given(TEXT)
@example("[RESULT] 4 [RESULT] 5")
@example("Feedback: fine [RESULT] 9")
def test_judge_result_parser(text):
    score, feedback, error = parse_result(text)
    assert isinstance(feedback, str)
    assert (score is None) != (error is None)
    assert score is None or 1 <= score <= 5


@given(TEXT)
@example("#### 3/0")
@example("The answer is " + "9" * 80)
@example("1e999999999")
def test_final_number_extractor(text):
    value = extract_final_number(text)
    assert value is None or to_number(value) is not None  # what it returns reads back as a number


@given(TEXT)
@example('[{"tag": "math"}, ["nested"]] trailing [')
@example('"tag": "cut off')
@example('"tag":"\r"')  # a salvaged tag of whitespace only: found by the soak profile
def test_tag_parser(text):
    tags, error = parse_tags(text)
    assert (tags is None) != (error is None)
    assert tags is None or (tags and all(isinstance(t, str) and t.strip() for t in tags))


@given(TEXT, st.booleans())
def test_isheep_instruction_parser(text, truncated):
    tasks = parse_instructions(text, truncated)
    assert all(isinstance(i, str) and i and isinstance(x, str) for i, x in tasks)


@given(TEXT)
@example("10/10 great")
@example("0 out of 10")
def test_isheep_score_parser(text):
    score, feedback, error = parse_self_score(text)
    assert isinstance(feedback, str) and (score is None) != (error is None)
    assert score is None or 1 <= score <= 10


# --- loaders: arbitrary bytes, and truncations and corruptions of valid files --------------------------

GOOD = [{"id": "a", "instruction": "Add 2 and 3.", "input": "", "output": "#### 5"}] * 1 + [
    {"id": "b", "instruction": "Name a colour.", "input": "", "output": "Blue."}
]


def _valid_bytes(fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in GOOD).encode()
    if fmt == "json":
        return json.dumps(GOOD).encode()
    if fmt == "csv":
        return pl.DataFrame(GOOD).write_csv().encode()
    with tempfile.TemporaryDirectory() as tmp:
        pl.DataFrame(GOOD).write_parquet(Path(tmp) / "x.parquet")
        return (Path(tmp) / "x.parquet").read_bytes()


def _mutated(fmt: str):
    valid = _valid_bytes(fmt)
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    flipped = st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)).map(
        lambda p: valid[: p[0]] + bytes([p[1]]) + valid[p[0] + 1 :]
    )
    return st.one_of(st.binary(max_size=300), cut, flipped, st.just(valid))


def _load_or_own_error(path: Path) -> None:
    try:
        df = load_examples(DatasetSource(path=str(path)), "train")
    except DataError as exc:
        assert str(path) in str(exc)  # names the file
        return
    assert df.height >= 1 and df["instruction"].str.strip_chars().str.len_chars().min() > 0


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_loaders_on_arbitrary_and_damaged_files(tmp_path, fmt):
    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(_mutated(fmt))
    def check(data):
        path = tmp_path / f"data.{fmt}"
        path.write_bytes(data)
        _load_or_own_error(path)

    check()


# Records with wrong types, huge and empty fields, odd characters: a row is loaded whole or named.
VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
    st.just(""), st.just(" "), st.just("x" * 100_000), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
RECORD = st.fixed_dictionaries(
    {}, optional={k: VALUE for k in ("id", "instruction", "input", "output", "source")}
)


def test_jsonl_records_of_any_shape(tmp_path):
    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.one_of(RECORD, VALUE), max_size=5))
    def check(records):
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        try:
            df = load_examples(DatasetSource(path=str(path)), "train")
        except DataError as exc:
            assert str(path) in str(exc)
            return
        # Loaded: every record was an object with non-empty text fields, and none was dropped.
        assert df.height == len(records)

    check()


# --- the config builder: any YAML document, and the real params.yaml with one key changed ---------------

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _keys(data, prefix=()):
    for k, v in data.items():
        if isinstance(v, dict) and v:
            yield from _keys(v, (*prefix, k))
        else:
            yield (*prefix, k)


KEYS = sorted(_keys({k: v for k, v in PARAMS.items() if k not in ("iterations", "rounds")}))


def _load_or_config_error(path: Path) -> None:
    try:
        load_params(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_config_builder_on_any_document(tmp_path):
    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.one_of(st.binary(max_size=200), TEXT.map(str.encode)))
    def check(data):
        path = tmp_path / "params.yaml"
        path.write_bytes(data)
        _load_or_config_error(path)

    check()


def test_config_builder_with_one_value_changed(tmp_path):
    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.sampled_from(KEYS), VALUE)
    def check(key, value):
        data = json.loads(json.dumps(PARAMS))
        node = data
        for part in key[:-1]:
            node = node[part]
        node[key[-1]] = value
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        _load_or_config_error(path)

    check()
