"""The offline instruction-following evaluation: each constraint checker, loose scoring, the prompt file."""

import json

import polars as pl
import pytest

from datakit.errors import DataError
from datakit.ifeval import CHECKS, check, check_loose, load_prompts, score, summarize

# (kind, args, a response that follows it, one that does not)
CASES = [
    ("min_words", {"n": 5}, "one two three four five", "one two three four"),
    ("max_words", {"n": 3}, "one two three", "one two three four"),
    ("bullets", {"n": 2}, "Intro\n* first\n- second", "* only one"),
    ("include", {"words": ["river", "Stone"]}, "A stone in the River.", "A stone in the sea."),
    ("exclude", {"words": ["very"]}, "It is everywhere.", "It is very good."),
    ("lowercase", {}, "all small here.", "Not all small."),
    ("uppercase", {}, "ALL CAPS, 100%.", "ALL CAPS but one."),
    ("json", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("end_with", {"phrase": "That is all."}, "Done.\nThat is all.", "That is all. Or is it?"),
    ("start_with", {"phrase": "My answer is"}, "my answer is yes", "Well, my answer is yes"),
    ("no_commas", {}, "No commas here.", "One, two."),
    ("quoted", {}, '"All of it in quotes."', '"Half" of it.'),
    ("title", {}, "<<A Title>>\nText.", "<A Title>\nText."),
    ("paragraphs", {"n": 2}, "First.\n\nSecond.", "First.\nStill first."),
    ("max_sentences", {"n": 2}, "One. Two!", "One. Two. Three."),
    ("placeholders", {"n": 2}, "Meet at [place] on [date].", "Meet at [place] soon."),
    ("postscript", {"marker": "P.S."}, "Hello.\n\nP.S. Bye.", "Hello. PS bye."),
    ("highlights", {"n": 1}, "This is *important* text.", "Nothing stands out."),
    ("keyword_count", {"word": "tea", "n": 2}, "Tea, then more tea.", "Tea once; teapot."),
]


def test_every_kind_has_a_case():
    assert {c[0] for c in CASES} == set(CHECKS)


@pytest.mark.parametrize(("kind", "args", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_checker_tells_a_following_response_from_one_that_does_not(kind, args, good, bad):
    assert check(kind, good, args) is True
    assert check(kind, bad, args) is False


def test_empty_response_follows_no_negative_constraint():
    for kind in ("exclude", "lowercase", "no_commas", "max_words", "max_sentences"):
        args = {"words": ["x"]} if kind == "exclude" else {"n": 3} if kind.startswith("max") else {}
        assert check(kind, "", args) is False, kind


def test_loose_accepts_what_a_first_line_or_markdown_hid():
    # A chatty first line breaks "start with"; a bold title breaks "lowercase" only through the asterisks.
    chatty = "Sure, here it is:\nmy answer is no"
    assert not check("start_with", chatty, {"phrase": "My answer is"})
    assert check_loose("start_with", chatty, {"phrase": "My answer is"})
    assert check_loose("json", 'Here you go:\n{"a": 1}', {})
    assert not check_loose("json", "no json at all", {})


def test_builtin_prompts_load_and_cover_every_kind():
    prompts = load_prompts("datakit/resources/ifeval.jsonl")
    assert prompts.height >= 100 and prompts["id"].n_unique() == prompts.height
    kinds = {i["kind"] for spec in prompts["instructions"] for i in json.loads(spec)}
    assert kinds == set(CHECKS)


def write_lines(tmp_path, *rows):
    path = tmp_path / "if.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_bad_prompt_lines_name_the_row_and_field(tmp_path):
    good = {"id": "a", "prompt": "Say hi.", "instructions": [{"kind": "lowercase"}]}
    with pytest.raises(DataError, match=r"row 2.*instructions\[0\].*unknown kind 'shout'"):
        load_prompts(write_lines(tmp_path, good, {**good, "id": "b", "instructions": [{"kind": "shout"}]}))
    with pytest.raises(DataError, match=r"row 1.*instructions\[0\].*min_words takes \['n'\], got \['m'\]"):
        load_prompts(write_lines(tmp_path, {**good, "instructions": [{"kind": "min_words", "m": 3}]}))
    with pytest.raises(DataError, match=r"row 2.*not valid JSON"):
        load_prompts(write_lines(tmp_path, good, "{oops"))
    with pytest.raises(DataError, match=r"row 1.*prompt.*missing or empty"):
        load_prompts(write_lines(tmp_path, {**good, "prompt": ""}))


def test_score_and_summarize_count_prompts_and_instructions(tmp_path):
    prompts = load_prompts(
        write_lines(
            tmp_path,
            {"id": "a", "prompt": "p", "instructions": [{"kind": "lowercase"}, {"kind": "no_commas"}]},
            {"id": "b", "prompt": "p", "instructions": [{"kind": "max_words", "n": 2}]},
            {"id": "c", "prompt": "p", "instructions": [{"kind": "start_with", "phrase": "Yes"}]},
        )
    )
    results = score(prompts, {"a": "yes, lower", "b": "two words", "c": "Well:\nYes indeed"})
    assert results["followed_strict"].to_list() == [[True, False], [True], [False]]
    assert results["prompt_loose"].to_list() == [False, True, True]
    metrics = summarize(results)
    # Strict: prompts 1/3 (b), instructions 2/4; loose adds c: prompts 2/3, instructions 3/4.
    assert metrics["prompt_strict"] == round(1 / 3, 4) and metrics["instruction_strict"] == 0.5
    assert metrics["prompt_loose"] == round(2 / 3, 4) and metrics["instruction_loose"] == 0.75
    assert metrics["by_kind"] == {"lowercase": 1.0, "max_words": 1.0, "no_commas": 0.0, "start_with": 0.0}
    assert isinstance(results, pl.DataFrame) and results.height == 3
