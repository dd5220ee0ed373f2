import polars as pl
import pytest
from conftest import JUDGE_RUBRIC

from datakit.backends import make_backend
from datakit.config import GenerationConfig
from datakit.errors import DataError
from datakit.generate import answered
from datakit.judges import (
    DEFAULT_RUBRIC,
    extract_final_number,
    judge_llm,
    judge_math,
    judge_prompt,
    parse_result,
    parse_score_first,
    prompting,
)

# Answer shapes seen from small instruction models, and the number a grader should read.
ANSWERS = [
    ("She has 3 * 12 = 36 apples.\n#### 36", "36"),
    ("####36", "36"),
    ("#### $1,234", "1234"),
    ("#### 1,234.50", "1234.5"),
    ("#### -7", "-7"),
    ("#### **42**", "42"),
    ("The answer is 42.", "42"),
    ("So the final answer is: **1,234**", "1234"),
    ("Final answer: 12.0", "12"),
    ("Answer = 8 apples", "8"),
    ("\\boxed{3.50}", "3.5"),
    ("First 5 + 6 = 11, then 11 * 2 = 22. The answer is 22 dollars.", "22"),
    ("She bought 3 boxes with 12 eggs each and has 7 left", "7"),
    ("#### 15\nAnswer: 15 cookies. (Some models repeat it: 99 is a typo)", "15"),
    ("The answer is 5 but wait, #### 6", "6"),
    ("3/4 of the cake", "0.75"),
    ("Pages 10-12 are missing, so 3 pages.", "3"),
    ("- 3 boxes\n- 12 apples", "12"),
    ("To answer 3 questions takes 5 minutes each, so 15 minutes total.", "15"),
    ("The answer is -4.", "-4"),
    ("#### " + "1" * 40, "1" * 40),
    ("version v2.5 scored 7", "7"),
    ("I am not sure.", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), ANSWERS)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


# (judge output, score, error fragment). Only the judge's own output is parsed.
RESULTS = [
    ("The response is right. [RESULT] 5", 5, None),
    ("Feedback: ok [RESULT] 4</s>", 4, None),
    ("Good work. [RESULT] (3)", 3, None),
    ("Mostly right. [RESULT] 4/5", 4, None),
    ("Fine [RESULT]: 2", 2, None),
    ("Fine\n[RESULT] Score: 2.", 2, None),
    ("**[RESULT]** 4", 4, None),
    ("[result] 1", 1, None),
    ("Feedback only, no score", None, "no [RESULT] marker"),
    ("Wrong. [RESULT] 7", None, "outside 1-5"),
    ("Wrong. [RESULT] 0", None, "outside 1-5"),
    ("A [RESULT] 3 B [RESULT] 4", None, "2 [RESULT] markers"),
    ("[RESULT] 4 because the answer is long and keeps going", None, "not followed by a lone integer"),
    ("[RESULT] (an integer number between 1 and 5)", None, "not followed by a lone integer"),
    ("The score is 4 out of 5.", None, "no [RESULT] marker"),
    # A judge answering on another scale, or with a sign, is unscored: never mapped onto 1-5.
    ("[RESULT] -3", None, "not followed by a lone integer"),
    ("[RESULT] 4/10", None, "on a 1-10 scale, not 1-5"),
    ("[RESULT] 3 out of 10", None, "on a 1-10 scale, not 1-5"),
    ("Good. [RESULT] 4 out of 5", 4, None),
    ("Good. [RESULT] - 4", 4, None),
]


@pytest.mark.parametrize(("text", "score", "error"), RESULTS)
def test_parse_result(text, score, error):
    got, feedback, err = parse_result(text)
    assert got == score
    if error is None:
        assert err is None
    else:
        assert error in err


SCORE_FIRST = [
    # The continuation after the prefill "[RESULT] ": a leading integer, then the feedback.
    ("4", 4, "", None),
    (" 4\n\nThe final answer matches.", 4, "The final answer matches.", None),
    ("(3) some steps are right", 3, "some steps are right", None),
    ("5/5 correct", 5, "correct", None),
    ("2 out of 5", 2, "", None),
    ("4 out of 10", None, "", "on a 1-10 scale"),
    ("7", None, "", "outside 1-5"),
    ("12 apples", None, "apples", "outside 1-5"),
    ("4.5", None, "4.5", "no score after [RESULT]"),  # not an integer: never rounded
    ("The response is good.", None, "The response is good.", "no score after [RESULT]"),
    ("", None, "", "no score after [RESULT]"),
]


@pytest.mark.parametrize(("text", "score", "feedback", "error"), SCORE_FIRST)
def test_parse_score_first(text, score, feedback, error):
    got, fb, err = parse_score_first(text)
    assert (got, fb) == (score, feedback)
    assert err is None if error is None else error in err


def test_score_first_judge_prefills_the_result_marker(tiny_model):
    """The score-first format sends every judge prompt with the answer started at "[RESULT] " (an assistant
    turn the model continues), first pass and re-asks alike, and parses the continuation."""
    backend = make_backend(GenerationConfig(max_new_tokens=4, batch_size=4), str(tiny_model))
    sent = []
    original = backend.generate

    def spying(convs, advance=None, **overrides):
        sent.extend(convs)
        return original(convs, advance, **overrides)

    backend.generate = spying
    ex, gen = frames(["#### 36", "#### 7"], ["#### 36", "#### 8"])
    out = judge_llm(answered(ex, gen), backend, label="self:tiny", retries=1, **prompting("score_first"))
    assert len(sent) >= 2 and all(c[-1] == {"role": "assistant", "content": "[RESULT] "} for c in sent)
    assert all(c[-2]["role"] == "user" and "###Feedback:" in c[-2]["content"] for c in sent)
    # The random tiny model writes no digit first: each row unscored with the score-first error.
    for score, err, raw in zip(out["score"], out["error"], out["raw"], strict=True):
        assert (score is None and "no score after [RESULT]" in err) or (score is not None and err is None), (
            raw
        )
    assert prompting("feedback_first") == {}


def test_feedback_is_the_text_before_the_marker():
    assert parse_result("Feedback: The final answer matches. [RESULT] 5") == (
        5,
        "The final answer matches.",
        None,
    )


def test_prompt_always_carries_the_reference_and_rubric():
    text = judge_prompt("What is 2+2?", "5", "2 + 2 = 4\n#### 4")
    assert "###Reference Answer (Score 5):\n2 + 2 = 4\n#### 4" in text
    assert DEFAULT_RUBRIC in text and "###Response to evaluate:\n5" in text
    no_ref = judge_prompt("Write a poem.", "Roses.", None)
    assert "Reference Answer" not in no_ref and "a reference answer" not in no_ref
    # The rubric itself mentions "[RESULT]": that is why only the judge's output is ever parsed.
    assert "[RESULT]" in text and parse_result("Right. [RESULT] 4")[0] == 4


def frames(responses, references):
    """Literal examples and generations tables (M_t = 'm', iteration 1)."""
    n = len(responses)
    ids = [f"r{i}" for i in range(n)]
    ex = pl.DataFrame({"id": ids, "instruction": ["q"] * n, "input": [""] * n, "output": references})
    gen = pl.DataFrame(
        {
            "id": ids,
            "output": responses,
            "finish_reason": ["stop"] * n,
            "error": pl.Series([None] * n, dtype=pl.Utf8),
            "model": ["m"] * n,
            "iteration": [1] * n,
        }
    )
    return ex, gen


def test_judge_math_scores_5_or_1_and_keeps_the_extracted_value():
    ex, gen = frames(["... #### 36", "The answer is 35.", "no idea", "#### 36.0"], ["#### 36"] * 4)
    out = judge_math(answered(ex, gen))
    assert out["score"].to_list() == [5, 1, 1, 5]
    assert out["extracted"].to_list() == ["36", "35", None, "36"]
    assert out["feedback"][2] == "expected 36, found no number"
    assert out["error"].null_count() == 4


def test_judge_math_reference_without_number_names_the_source_row():
    ex, gen = frames(["#### 1", "#### 2", "#### 3"], ["#### 1", "no number here", "#### 3"])
    with pytest.raises(DataError) as err:
        judge_math(
            answered(ex, gen.reverse()), "train.jsonl"
        )  # generations in another order than the examples
    assert (err.value.row, err.value.field) == (2, "output") and "train.jsonl" in str(err.value)


def test_judgments_keep_the_examples_order():
    ex, gen = frames(["#### 1", "#### 9", "#### 3"], ["#### 1", "#### 2", "#### 3"])
    out = judge_math(answered(ex, gen.reverse()))
    assert out["id"].to_list() == ["r0", "r1", "r2"] and out["score"].to_list() == [5, 1, 5]
    assert out["model"].to_list() == ["m"] * 3 and out["iteration"].to_list() == [1] * 3


def test_failed_generations_are_unscored_not_bad():
    ex, gen = frames(["#### 1", ""], ["#### 1", "#### 2"])
    gen = gen.with_columns(
        finish_reason=pl.Series(["stop", "error"]), error=pl.Series([None, "APIConnectionError: down"])
    )
    out = judge_math(answered(ex, gen))
    assert out["score"].to_list() == [5, None]
    assert out["error"].to_list() == [None, "generation failed: APIConnectionError: down"]


def test_judge_llm_on_a_real_model_keeps_raw_output_and_nulls_unparsable(tiny_model):
    # The tiny random model never writes a valid "[RESULT] N": every row must come back unscored with the
    # error and the raw output kept, after the configured number of sampled re-asks.
    backend = make_backend(GenerationConfig(max_new_tokens=6, batch_size=4), str(tiny_model))
    calls = []
    original = backend.generate

    def counting(convs, advance=None, **overrides):
        calls.append((len(convs), overrides))
        return original(convs, advance, **overrides)

    backend.generate = counting
    ex, gen = frames(["a", "b", "c"], ["#### 1", "#### 2", "#### 3"])
    out = judge_llm(answered(ex, gen), backend, label="llm:tiny", retries=2)
    assert out["score"].null_count() == 3
    assert out["error"].null_count() == 0 and out["raw"].str.len_chars().min() > 0
    assert [n for n, _ in calls] == [3, 3, 3]
    assert calls[0][1] == {} and calls[1][1]["temperature"] == 0.7 and calls[2][1]["seed"] == 2
    assert out["judge"].to_list() == ["llm:tiny"] * 3


def _prepared_project(project, **judge):
    """synth + base_model + generate on the tiny model, then the given judge settings."""
    import yaml
    from conftest import write_params

    from datakit.config import load_params
    from stages import base_model, generate, synth

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["judge"].update(judge)
    write_params(project, params)
    p = load_params("params.yaml")
    base_model.run(p)
    synth.run(p)
    generate.run(p, "iter_1", progress=False)
    return p


def test_self_judge_stage_records_unscored_rows_and_enforces_the_bound(project, capsys):
    import json

    import yaml
    from conftest import write_params

    from datakit.config import load_params
    from datakit.errors import DatakitError
    from stages import judge

    p = _prepared_project(project, kind="self", retries=1, max_failure_rate=0.1)
    with pytest.raises(
        DatakitError,
        match=r"answers could not be scored \(judge.max_failure_rate\): 12/12 \(100.0% > limit 0.1\)",
    ):
        judge.run(p, "iter_1", progress=False)
    assert not (project / "data/iter_1/judge/judgments.parquet").exists()
    # The finished judge shards were kept, so the rerun with a looser bound does not judge again.
    shards = list((project / ".datakit/work/judge").glob("*/shard-*.parquet"))
    assert len(shards) == 3
    capsys.readouterr()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["judge"]["max_failure_rate"] = 1.0
    write_params(project, params)
    out = judge.run(load_params("params.yaml"), "iter_1", progress=False)
    summary = capsys.readouterr().err
    assert "judge: 12 in, 12 out, 12 failed" in summary and "3 shards resumed" in summary
    assert out["score"].null_count() == 12 and out["judge"][0] == "self:data/base_model"
    metrics = json.loads((project / "data/iter_1/judge/metrics.json").read_text())
    assert metrics["unscored"] == 12 and metrics["mean_score"] is None


def test_changing_what_decides_a_grade_discards_the_kept_shards(project, tiny_model, judge_model, capsys):
    """A failed LLM-judge run keeps its shards; a rerun resumes them only when the rubric, the judge model,
    its generation settings and the answers are all the same as theirs."""
    import yaml
    from conftest import write_params

    from datakit.config import load_params
    from datakit.errors import DatakitError
    from stages import judge

    p = _prepared_project(project, kind="llm", model=str(tiny_model), retries=0, max_failure_rate=0.1)
    with pytest.raises(DatakitError, match="could not be scored"):
        judge.run(p, "iter_1", progress=False)
    assert len(list((project / ".datakit/work/judge").glob("*/shard-*.parquet"))) == 3
    kept = yaml.safe_load((project / "params.yaml").read_text())
    kept["judge"]["max_failure_rate"] = 1.0
    answers = project / "data/iter_1/generate/generations.parquet"
    original = pl.read_parquet(answers)

    def resumed(change) -> int:
        params = yaml.safe_load(yaml.safe_dump(kept))
        change(params)
        write_params(project, params)
        capsys.readouterr()
        judge.run(load_params("params.yaml"), "iter_1", progress=False)
        original.write_parquet(answers)
        return int(capsys.readouterr().err.split(" shards resumed")[0].rsplit(" ", 1)[1])

    def rubric(params):
        params["judge"]["rubric"] = "Score 1-5, strictly."

    def judge_model_changed(params):
        params["judge"]["model"] = str(judge_model)

    def settings(params):
        params["judge"]["generation"]["max_new_tokens"] = 9

    def other_answers(params):
        original.with_columns(output=pl.col("output") + " more").write_parquet(answers)

    for change in (rubric, judge_model_changed, settings, other_answers):
        assert resumed(change) == 0, change.__name__
    assert resumed(lambda params: None) == 3  # unchanged: the first run's shards are read back


def test_llm_judge_served_over_the_openai_backend(project, tiny_model):
    from openai_server import serve_openai

    from stages import judge

    with serve_openai(tiny_model) as (base_url, model_name):
        generation = {
            "backend": "openai",
            "max_new_tokens": 6,
            "openai": {"base_url": base_url, "model": model_name},
        }
        p = _prepared_project(project, kind="llm", retries=0, max_failure_rate=1.0, generation=generation)
        out = judge.run(p, "iter_1", progress=False)
    assert out.height == 12 and out["judge"][0] == f"llm:{model_name}"
    assert out["raw"].str.len_chars().min() > 0  # the server's answers were kept for audit
    assert (out["error"] == "no [RESULT] marker").sum() + out["score"].is_not_null().sum() == 12


def test_judge_llm_scores_with_a_model_that_answers_the_format(judge_model):
    backend = make_backend(GenerationConfig(max_new_tokens=12, batch_size=4), str(judge_model))
    calls = []
    original = backend.generate

    def counting(convs, advance=None, **overrides):
        calls.append(len(convs))
        return original(convs, advance, **overrides)

    backend.generate = counting
    ex, gen = frames(["Tom has 36 apples. #### 36", "#### 7", "no idea"], ["#### 36", "#### 8", "#### 2"])
    out = judge_llm(answered(ex, gen), backend, label="llm:judge", retries=2, rubric=JUDGE_RUBRIC)
    assert out["score"].to_list() == [4, 4, 4] and out["error"].null_count() == 3
    assert out["raw"].to_list() == ["[RESULT] 4"] * 3 and out["feedback"].to_list() == [""] * 3
    assert calls == [3]  # parsed on the first pass: no re-asks


@pytest.mark.parametrize("retries", [0, 1])
def test_judge_llm_re_asks_only_the_unparsed_rows_of_a_mixed_batch(judge_model, retries):
    """The real judge model answers "[RESULT] 4"; on the first pass its answer to one row in the middle is
    replaced by an unparsable one. Only that row is asked again, and its score lands on its own row."""
    from dataclasses import replace

    backend = make_backend(GenerationConfig(max_new_tokens=12, batch_size=4), str(judge_model))
    calls = []
    original = backend.generate

    def first_pass_garbles_the_wobble_row(convs, advance=None, **overrides):
        calls.append((len(convs), overrides))
        outs = original(convs, advance, **overrides)
        if overrides:
            return outs
        return [
            replace(o, text="I cannot decide.") if "wobble" in c[-1]["content"] else o
            for c, o in zip(convs, outs, strict=True)
        ]

    backend.generate = first_pass_garbles_the_wobble_row
    ex, gen = frames(["#### 36", "#### 7", "#### 2"], ["#### 36", "wobble #### 8", "#### 2"])
    out = judge_llm(answered(ex, gen), backend, label="llm:judge", retries=retries, rubric=JUDGE_RUBRIC)
    if retries:
        assert [n for n, _ in calls] == [3, 1] and calls[1][1]["temperature"] == 0.7
        assert out["score"].to_list() == [4, 4, 4] and out["error"].null_count() == 3
        assert out["raw"].to_list() == ["[RESULT] 4"] * 3  # the re-ask's answer replaced the garbled one
    else:
        assert [n for n, _ in calls] == [3]
        assert out["score"].to_list() == [4, None, 4]
        assert out["error"].to_list() == [None, "no [RESULT] marker", None]
        assert out["raw"].to_list() == ["[RESULT] 4", "I cannot decide.", "[RESULT] 4"]


def test_llm_judge_stage_then_select(project, judge_model):
    import json

    from datakit.config import load_params
    from stages import select

    _prepared_project(
        project, kind="llm", model=str(judge_model), rubric=JUDGE_RUBRIC, generation={"max_new_tokens": 12}
    )
    from stages import judge

    p = load_params("params.yaml")
    judgments = judge.run(p, "iter_1", progress=False)
    # The trained judge answers "[RESULT] 4"; a 2-layer model may still lose the format on an odd prompt
    # (within judge.max_failure_rate 0.1): such a row must be null with its error and raw output kept.
    scored = judgments.filter(pl.col("score").is_not_null())
    assert (
        set(scored["score"]) == {4} and scored.height >= 11 and judgments["judge"][0] == f"llm:{judge_model}"
    )
    unscored = judgments.filter(pl.col("score").is_null())
    assert unscored["error"].null_count() == 0 and unscored["raw"].is_not_null().all()
    metrics = json.loads((project / "data/iter_1/judge/metrics.json").read_text())
    assert metrics["mean_score"] == 4.0 and metrics["score_counts"]["4"] == scored.height
    assert metrics["unscored"] == unscored.height
    assert select.run(p, "iter_1").height == 0  # 4 is not below 4, and unscored rows are never bad cases
    assert json.loads((project / "data/iter_1/select/metrics.json").read_text())["bad_case_rate"] == 0.0
