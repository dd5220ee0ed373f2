"""The judge audit: a model judge against the exact judge on the same answers (datakit/judge_audit.py,
stages/judge_audit.py)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from datakit.judge_audit import audit_frame, audit_metrics, confusion, disagreements


def judgments(rows: list[tuple[str, int | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"id": pl.Utf8, "score": pl.Int64}, orient="row")


def audit(rows: list[tuple[bool, bool | None]]) -> pl.DataFrame:
    """An audit frame from (exact_bad, judge_bad) per answer; the scores follow (1 or 5; None unscored)."""
    return pl.DataFrame(
        [
            (f"r{i:02d}", 1 if e else 5, None if j is None else 2 if j else 5, e, j)
            for i, (e, j) in enumerate(rows)
        ],
        schema={
            "id": pl.Utf8,
            "exact_score": pl.Int64,
            "judge_score": pl.Int64,
            "exact_bad": pl.Boolean,
            "judge_bad": pl.Boolean,
        },
        orient="row",
    )


def test_audit_frame_pairs_the_two_judges_at_the_threshold():
    exact = judgments([("a", 5), ("b", 1), ("c", 1), ("d", 5), ("e", None)])
    judged = judgments([("a", 4), ("b", 2), ("c", None), ("d", 1), ("e", 3)])
    out = audit_frame(exact, judged, "<4")
    # e has no truth (its generation failed): left out. Under '<4': a right and passed (4), b wrong and
    # called bad (2), c wrong and unscored, d right and called bad (1).
    assert out.rows() == [
        ("a", 5, 4, False, False),
        ("b", 1, 2, True, True),
        ("c", 1, None, True, None),
        ("d", 5, 1, False, True),
    ]
    # '=1': b's 2 is no bad case any more.
    assert audit_frame(exact, judged, "=1")["judge_bad"].to_list() == [False, False, None, True]


# 3 both bad, 1 wrong but passed, 2 right but called bad, 4 both fine; then 1 wrong and 1 right unscored.
TABLE = (
    [(True, True)] * 3
    + [(True, False)]
    + [(False, True)] * 2
    + [(False, False)] * 4
    + [(True, None), (False, None)]
)


def test_confusion_counts_each_judge_score_against_right_and_wrong():
    frame = audit(TABLE)
    # judge_bad True -> score 2, False -> 5: score 2 holds 3 wrong + 2 right, score 5 holds 1 wrong + 4 right,
    # unscored 1 + 1; scores 1, 3, 4 are empty rows.
    assert confusion(frame).rows() == [
        ("1", 0, 0),
        ("2", 3, 2),
        ("3", 0, 0),
        ("4", 0, 0),
        ("5", 1, 4),
        ("unscored", 1, 1),
    ]


def test_audit_metrics_against_hand_derived_values():
    m = audit_metrics(audit(TABLE))
    assert m["rows"] == 12 and m["scored"] == 10 and m["unscored"] == 2
    assert m["unscored_rate"] == round(2 / 12, 4)
    assert m["table"] == {"both_bad": 3, "exact_only": 1, "judge_only": 2, "both_ok": 4}
    # Agreement 7/10; Wilson: centre (7 + 1.96^2/2) / (10 + 1.96^2) = 0.6445, half-width
    # 1.96 * sqrt(10 * 0.7 * 0.3 + 1.96^2 / 4) / (10 + 1.96^2) = 0.2477 -> [0.3968, 0.8922].
    assert m["agreement"] == 0.7
    assert m["agreement_low"] == pytest.approx(0.3968, abs=1e-4)
    assert m["agreement_high"] == pytest.approx(0.8922, abs=1e-4)
    # Kappa: p_o = 0.7; the exact judge calls 4/10 bad, the judge 5/10, so p_e = 0.4 * 0.5 + 0.6 * 0.5 = 0.5
    # and kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4. Its standard error (Fleiss, Cohen, Everitt) from the shares
    # p11 .3, p12 .1, p21 .2, p22 .4 (rows: exact bad/ok; margins .4/.6, columns .5/.5):
    #   A = .3 (1 - (.4 + .5) .6)^2 + .4 (1 - (.6 + .5) .6)^2 = .06348 + .04624 = .10972
    #   B = .6^2 (.1 (.5 + .6)^2 + .2 (.5 + .4)^2) = .36 * .283 = .10188
    #   C = (.4 - .5 * .6)^2 = .01
    #   var = (A + B - C) / (10 (1 - .5)^2) = .08064, se = .28397; 95%: .4 -+ 1.96 * .28397 = [-0.1566, 0.9566].
    assert m["kappa"] == pytest.approx(0.4, abs=1e-4)
    assert m["kappa_low"] == pytest.approx(-0.1566, abs=1e-4)
    assert m["kappa_high"] == pytest.approx(0.9566, abs=1e-4)
    # 5 answers called bad, 2 of them right: 0.4 false. 5 wrong answers (4 scored + 1 unscored), 1 passed and
    # 1 unscored never become bad cases: 2/5 missed.
    assert (m["judge_bad"], m["false_bad"], m["false_bad_share"]) == (5, 2, 0.4)
    assert (m["exact_wrong"], m["missed"], m["missed_share"]) == (5, 2, 0.4)


def test_kappa_is_none_when_chance_agreement_is_total_and_shares_without_denominator_are_none():
    # Both judges call every answer fine: agreement 1, but kappa is 0/0.
    m = audit_metrics(audit([(False, False)] * 4))
    assert m["agreement"] == 1.0 and m["kappa"] is None and m["kappa_low"] is None
    assert m["false_bad_share"] is None and m["missed_share"] is None
    # Every answer wrong, the judge passes all: p_o = 0, p_e = 1 * 0 + 0 * 1 = 0, kappa = 0.
    m = audit_metrics(audit([(True, False)] * 4))
    assert m["kappa"] == 0.0 and m["missed_share"] == 1.0 and m["false_bad_share"] is None
    empty = audit_metrics(audit([]))
    assert empty["rows"] == 0 and empty["agreement"] is None and empty["kappa"] is None


def test_disagreements_put_right_answers_called_bad_first():
    frame = audit(TABLE)
    details = pl.DataFrame({"id": frame["id"], "response": [f"answer {i}" for i in range(frame.height)]})
    out = disagreements(frame, details, limit=3)
    # r04, r05 right but called bad; then r03 wrong but passed; r10 (wrong, unscored) is past the limit.
    assert out["id"].to_list() == ["r04", "r05", "r03"]
    assert out["disagreement"].to_list() == ["right answer called bad"] * 2 + ["wrong answer passed"]
    assert out["response"].to_list() == ["answer 4", "answer 5", "answer 3"]
    assert disagreements(frame, details, limit=10)["id"].to_list() == ["r04", "r05", "r03", "r10"]


def _two_answers_right(project, judge_model, threshold: str = "<4"):
    """The tiny pipeline up to generate, with an llm judge that always answers [RESULT] 4, an audit of 8 of
    the 12 answers (seed 3), and two of the sampled answers made right (the tiny model's are all wrong)."""
    import yaml
    from conftest import JUDGE_RUBRIC, write_params

    from datakit.config import load_params
    from stages import base_model, generate, judge_audit, synth

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["judge"].update(
        kind="llm",
        model=str(judge_model),
        rubric=JUDGE_RUBRIC,
        generation={**params["judge"]["generation"], "max_new_tokens": 12},
    )
    params["judge_audit"].update(kind="llm", rows=8, seed=3, examples=4)
    params["select"]["threshold"] = threshold
    write_params(project, params)
    p = load_params("params.yaml")
    base_model.run(p)
    synth.run(p)
    generate.run(p, "iter_1", progress=False)
    gens_path = project / "data/iter_1/generate/generations.parquet"
    train = pl.read_parquet(project / "data/synth/math_train.parquet")
    sample = judge_audit.sample(train, 8, 3)
    made_right = sample["id"].to_list()[:2]
    refs = dict(zip(train["id"], train["output"], strict=True))
    pl.read_parquet(gens_path).with_columns(
        output=pl.when(pl.col("id").is_in(made_right))
        .then(pl.col("id").replace_strict(refs, default=None))
        .otherwise(pl.col("output"))
    ).write_parquet(gens_path)
    return p, train, sample, made_right


def test_judge_audit_stage_checks_an_llm_judge_on_a_sample(project, judge_model, capsys):
    """The stage on the tiny pipeline: the judge never calls a bad case (4 is not below 4), so every wrong
    answer is missed and none is called bad by mistake; the report shows it."""
    from pathlib import Path

    from datakit.judge_audit import JUDGE_AUDIT
    from datakit.report import write_report
    from datakit.schemas import read_table
    from stages import judge_audit

    p, train, sample, made_right = _two_answers_right(project, judge_model)
    capsys.readouterr()
    out = judge_audit.run(p, "iter_1", progress=False)
    read_table(project / "data/iter_1/judge_audit/audit.parquet", JUDGE_AUDIT)  # the declared schema
    assert out["id"].to_list() == sample["id"].to_list()  # the seeded sample, in file order
    assert out.filter(pl.col("id").is_in(made_right))["exact_score"].to_list() == [5, 5]
    assert out.filter(~pl.col("id").is_in(made_right))["exact_bad"].all()
    assert out["judge"][0] == f"llm:{judge_model}"
    m = json.loads((project / "data/iter_1/judge_audit/metrics.json").read_text())
    scored = out.filter(pl.col("judge_score").is_not_null())
    assert set(scored["judge_score"]) == {4}  # the judge's one answer
    # 6 wrong answers, none called bad: every one missed; no bad case, so no false one.
    assert (m["rows"], m["exact_wrong"], m["missed"], m["judge_bad"]) == (8, 6, 6, 0)
    assert m["missed_share"] == 1.0 and m["false_bad_share"] is None
    assert m["confusion"]["4"] == {
        "wrong": int(scored["exact_bad"].sum()),
        "right": int((~scored["exact_bad"]).sum()),
    }
    assert m["judge"] == f"llm:{judge_model}" and m["threshold"] == "<4"
    # No right answer is called bad, so the 4 examples kept are wrong answers passed (or left unscored).
    assert len(m["examples"]) == 4
    assert {e["disagreement"] for e in m["examples"]} <= {"wrong answer passed", "wrong answer unscored"}
    assert all(e["id"] not in made_right and e["response"] for e in m["examples"])
    assert "judge_audit: 8 in, 8 out" in capsys.readouterr().err
    # The sample changes with the seed, and the stage keeps no work behind.
    assert judge_audit.sample(train, 8, 4)["id"].to_list() != sample["id"].to_list()
    assert not list((project / ".datakit/work/judge_audit").glob("*"))

    report = Path(write_report(p, baselines=False)).read_text()
    section = report[report.index("## Judge audit") :]
    assert f"| 1 (iter_1) | llm:{judge_model} | 8 (6 wrong) |" in section
    assert "| 0/0 | 6/6 (100%) |" in section  # no bad case called; all 6 errors missed
    assert "| 4 | " + f"{m['confusion']['4']['wrong']} / {m['confusion']['4']['right']} |" in section
    assert section.count("wrong answer passed") + section.count("wrong answer unscored") == 3


def test_select_with_a_model_judge_counts_bad_cases_the_exact_judge_calls_right(project, judge_model):
    """Part of APT's lineage: with threshold '<5' every answer the [RESULT] 4 judge scores is a bad case,
    the two right ones included; select says so next to its count, and the report shows it."""
    from pathlib import Path

    from datakit.report import write_report
    from stages import judge, select

    p, _, _, made_right = _two_answers_right(project, judge_model, threshold="<5")
    judgments = judge.run(p, "iter_1", progress=False)
    bad = select.run(p, "iter_1")
    m = json.loads((project / "data/iter_1/select/metrics.json").read_text())
    scored = set(judgments.filter(pl.col("score").is_not_null())["id"])
    assert m["bad_cases"] == bad.height == len(scored)
    assert m["bad_cases_exact_right"] == len(scored & set(made_right))
    assert m["bad_cases_exact_right"] >= 1
    report = Path(write_report(p, baselines=False)).read_text()
    assert f"| {bad.height} ({m['bad_cases_exact_right']} right by the exact judge) |" in report


def test_select_with_the_exact_judge_writes_no_exact_count(project):
    from datakit.config import load_params
    from stages import base_model, generate, judge, select, synth

    p = load_params("params.yaml")
    base_model.run(p)
    synth.run(p)
    generate.run(p, "iter_1", progress=False)
    judge.run(p, "iter_1", progress=False)
    select.run(p, "iter_1")
    assert "bad_cases_exact_right" not in json.loads(
        (project / "data/iter_1/select/metrics.json").read_text()
    )


def test_judge_audit_refuses_a_domain_without_numbers(project):
    from datakit.config import load_params
    from datakit.errors import DataError
    from stages import base_model, generate, judge_audit, synth

    p = load_params("params.yaml")
    base_model.run(p)
    synth.run(p)
    generate.run(p, "iter_1", progress=False)
    train_path = project / "data/synth/math_train.parquet"
    train = pl.read_parquet(train_path)
    train.with_columns(output=pl.lit("a word answer")).write_parquet(train_path)
    with pytest.raises(DataError, match=r"math_train.parquet.*row 1.*output.*no number"):
        judge_audit.run(p, "iter_1", progress=False)
