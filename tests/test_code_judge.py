"""The code judge: code extraction, comparison in the judge's process, fake passes, and the synth code
domain's references (every one passes; mutated ones fail)."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from datakit.code_judge import extract_code, judge_code, same
from datakit.config import SandboxConfig
from datakit.errors import DataError
from datakit.loaders import records_to_examples
from datakit.sandbox import namespaces_available
from datakit.synth import make_domain
from datakit.synth.code import TEMPLATES, held_out, mutants

CFG = SandboxConfig(timeout_s=5.0, cpu_s=2, memory_mb=256, file_kb=64)
TESTS = json.dumps({"entry": "add", "calls": [[1, 2], [-1, 1], [0, 0]], "expected": [3, 0, 0]})


def answered(responses: list[str], tests: str | list[str] = TESTS, finish: str = "stop") -> pl.DataFrame:
    n = len(responses)
    tests = tests if isinstance(tests, list) else [tests] * n
    return pl.DataFrame(
        {
            "row": list(range(1, n + 1)),
            "id": [f"t{i}" for i in range(n)],
            "output": ["```python\ndef add(a, b):\n    return a + b\n```"] * n,
            "tests": tests,
            "response": responses,
            "finish_reason": [finish] * n,
            "gen_error": [None] * n,
            "model": ["m"] * n,
            "iteration": [1] * n,
        },
        schema_overrides={"iteration": pl.Int64, "row": pl.Int64, "gen_error": pl.Utf8},
    )


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (
            "Sure!\n```python\ndef add(a, b):\n    return a + b\n```\nDone.",
            "def add(a, b):\n    return a + b\n",
        ),
        (
            "```\ndef helper():\n    pass\n```\n```py\ndef add(a, b):\n    return b + a\n```",
            "def add(a, b):\n    return b + a\n",
        ),
        ("```python\nx = 1\n```", "x = 1\n"),  # no block defines it: the first block
        ("def add(a, b):\n    return a + b", "def add(a, b):\n    return a + b"),  # bare
        (
            "```python\ndef add(a, b):\n    return a +",
            "def add(a, b):\n    return a +",
        ),  # cut by the token cap
    ],
)
def test_extract_code(response, code):
    assert extract_code(response, "add") == code


@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [
        (3, 3, True),
        (3.0, 3, True),  # int and float compare as numbers
        (0.1 + 0.2, 0.3, True),
        (True, 1, False),  # but True is not 1
        (1, True, False),
        ("3", 3, False),
        ([1, 2], {"__tuple__": [1, 2]}, False),  # a list is not a tuple
        ({"__map__": {"a": 1}}, {"__map__": {"a": 1.0}}, True),
        ({"__map__": {"a": 1}}, {"__map__": {"a": 1, "b": 2}}, False),
        (None, 0, False),
        (10**400, 1.5, False),  # an int too large for a float (a model's answer did this)
        (10**400, 10**400, True),
        (10**17 + 1, 10**17, False),  # ints compare exactly, not within 1e-9
    ],
)
def test_same(got, want, ok):
    assert same(got, want) is ok


def test_right_and_wrong_answers_are_scored_with_feedback():
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    crash = "```python\ndef add(a, b):\n    return a + c\n```"
    syntax = "```python\ndef add(a, b)\n    return a + b\n```"
    out = judge_code(answered([right, wrong, crash, syntax, "I cannot help with that."]), CFG, progress=False)
    assert out["score"].to_list() == [5, 1, 1, 1, 1]
    fb = out["feedback"].to_list()
    assert fb[0] == "passed 3/3"
    assert fb[1] == "passed 1/3; first failure: add(1, 2) returned -1, expected 3"  # add(0, 0) passes
    assert fb[2].startswith("passed 0/3; first failure: add(1, 2) raised NameError: name 'c' is not defined")
    assert fb[3].startswith("passed 0/3: the code did not load: SyntaxError")
    assert json.loads(out["raw"][1])["passed"] == 1 and json.loads(out["raw"][1])["total"] == 3
    assert out["extracted"][0] == "def add(a, b):\n    return a + b\n"


FAKES = {
    "always-equal object": "class E:\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return E()\n",
    "int subclass equal to all": "class I(int):\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return I(7)\n",
    "sys.exit(0) before the checks": "import sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n",
    "os._exit(0) in the call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "printing OK": "print('OK')\nprint('All tests passed')\ndef add(a, b):\n    print('PASS')\n    return None\n",
    "patched builtins": (
        "import builtins, json\nbuiltins.isinstance = lambda *a: True\nbuiltins.type = lambda *a: int\n"
        'json.dumps = lambda *a, **k: \'{"i": 0, "value": "ok"}\'\ndef add(a, b):\n    return \'ok\'\n'
    ),
    "forged result lines": (
        "import os\nfor fd in range(3, 10):\n    try:\n"
        '        os.write(fd, b\'{"load": null}\\n{"i": 0, "value": 3}\\n{"i": 1, "value": 0}\\n\''
        ' b\'{"i": 2, "value": 0}\\n{"done": 3}\\n\')\n    except OSError:\n        pass\n'
        "def add(a, b):\n    raise SystemExit(0)\n"
    ),
}


@pytest.mark.parametrize("name", list(FAKES))
def test_fake_passes_fail(name):
    out = judge_code(answered([f"```python\n{FAKES[name]}```"]), CFG, progress=False)
    assert out["score"].to_list() == [1], out["feedback"][0]


def test_a_failed_generation_is_unscored_not_run():
    out = judge_code(answered(["whatever"], finish="error"), CFG, progress=False)
    assert out["score"].to_list() == [None]
    assert out["error"][0].startswith("generation failed")


def test_missing_or_malformed_tests_are_one_clear_error():
    with pytest.raises(DataError, match=r"data.parquet.*'tests' column"):
        judge_code(answered(["x"]).drop("tests"), CFG, where="data.parquet", progress=False)
    bad = answered(["x", "y"], tests=[TESTS, json.dumps({"entry": "add", "calls": [[1]], "expected": []})])
    with pytest.raises(DataError, match=r"data.parquet.*row 2.*tests"):
        judge_code(bad, CFG, where="data.parquet", progress=False)


def test_the_loader_keeps_a_tests_column_only_where_the_source_has_one(tmp_path):
    plain = records_to_examples(
        [(1, {"instruction": "q", "output": "a"})], "f.jsonl", source="f", split="train"
    )
    assert "tests" not in plain.columns
    mapped = records_to_examples(
        [(1, {"instruction": "q", "output": "a", "checks": TESTS})],
        "f.jsonl",
        {"tests": "checks"},
        source="f",
        split="train",
    )
    assert mapped["tests"].to_list() == [TESTS]
    with pytest.raises(DataError, match=r"f.jsonl.*row 1.*checks"):
        records_to_examples(
            [(1, {"instruction": "q", "output": "a", "checks": [1]})],
            "f.jsonl",
            {"tests": "checks"},
            source="f",
            split="x",
        )


# ------------------------------------------------------------------------------------ the code domain
@pytest.fixture(scope="module")
def code_domain():
    return make_domain("code", 120, 30, 60, seed=7)


def test_code_domain_is_deterministic_and_disjoint_by_instance(code_domain):
    again = make_domain("code", 120, 30, 60, seed=7)
    for split in ("train", "val", "test"):
        assert code_domain[split].equals(again[split])
    assert {k: v.height for k, v in code_domain.items()} == {"train": 120, "val": 30, "test": 60}
    # held-out instances only in val and test: the function and its parameters never seen in training
    train_sources = set(code_domain["train"]["source"])
    assert len(train_sources) == len(TEMPLATES)  # every template is trained on
    signature = re.compile(r"function `([^`]*)` that (.*)\.\n")
    seen = {signature.search(t).groups() for t in code_domain["train"]["instruction"]}
    for split in ("val", "test"):
        held = {signature.search(t).groups() for t in code_domain[split]["instruction"]}
        assert not held & seen


def test_every_reference_passes_in_the_judge(code_domain):
    frames = pl.concat([code_domain[s] for s in ("train", "val", "test")])
    rows = frames.with_row_index("row", offset=1).with_columns(
        response=pl.col("output"),
        finish_reason=pl.lit("stop"),
        gen_error=pl.lit(None, pl.Utf8),
        model=pl.lit("ref"),
        iteration=pl.lit(0, pl.Int64),
    )
    out = judge_code(rows, CFG, progress=False)
    assert out["score"].to_list() == [5] * frames.height, out.filter(pl.col("score") != 5)[
        "feedback"
    ].to_list()


def test_mutated_references_fail(code_domain):
    tasks = code_domain["test"].unique(subset="source", keep="first", maintain_order=True)
    kinds, _ids, tests, responses = [], [], [], []
    for r in tasks.iter_rows(named=True):
        source = r["output"].removeprefix("```python\n").removesuffix("```")
        for kind, mutant in mutants(source).items():
            kinds.append(kind)
            responses.append(f"```python\n{mutant}```")
            tests.append(r["tests"])
    out = judge_code(answered(responses, tests=tests), CFG, progress=False)
    killed = sum(s == 1 for s in out["score"])
    # every template gives at least one mutant, and the hidden tests catch nearly all of them (a mutant can
    # be equivalent, e.g. `>=` where the boundary value never occurs)
    assert len(responses) >= len(TEMPLATES) and killed >= 0.9 * len(responses), (killed, len(responses))


def test_held_out_is_a_stable_property_of_the_instance():
    assert held_out(("caesar", 3, "caesar")) == held_out(("caesar", 3, "caesar"))
    shares = [held_out(("t", i)) for i in range(2000)]
    assert 0.25 < sum(shares) / len(shares) < 0.35


@pytest.mark.skipif(namespaces_available() is not None, reason="needs the namespaces isolation")
def test_judge_records_the_isolation_it_ran_under():
    out = judge_code(answered(["```python\ndef add(a, b):\n    return a + b\n```"]), CFG, progress=False)
    assert json.loads(out["raw"][0])["isolation"] == "namespaces"
