"""evaluate: the reference-match judge, the reference NLL, and the stage on the tiny model."""

import json
import math

import polars as pl
import pytest
import torch

from datakit.evaluate import answer_key, match_score, reference_nll
from datakit.synth import make_general


@pytest.mark.parametrize(
    ("reference", "instruction", "key"),
    [
        ("The next number is 22.", "Continue the sequence: 14, 18, 16, 20, 18, ...", ("text", "22")),
        ("212 °F is 100 °C.", "What is 212 degrees Fahrenheit in Celsius?", ("text", "100")),
        ("1602 is larger.", "Which number is bigger: 195 or 1602?", ("text", "1602")),
        ('The term is "mortgage".', "Name the term: a loan used to buy property.", ("text", "mortgage")),
        ('"walrus" has 4 consonants.', 'How many consonants are in "walrus"?', ("text", "4")),
        ("No, 1430 is not a perfect square.", "Is 1430 a perfect square?", ("yesno", "no")),
        (
            "In increasing order: -43, -41, 29.",
            "Arrange 29, -43, -41 in increasing order.",
            ("text", "-43, -41, 29"),
        ),
        (
            "There are 266 days from 1953-07-12 to 1954-04-04.",
            "Days from 1953-07-12 to 1954-04-04?",
            ("text", "266"),
        ),
        ('{"a": 1}', "Make a JSON object of a=1.", ("text", '{"a": 1}')),
        (
            "Yuki is the shortest.",
            "Omar is taller than Yuki. Who is the shortest?",
            ("text", "Yuki is the shortest"),
        ),
    ],
)
def test_answer_key(reference, instruction, key):
    assert answer_key(reference, instruction) == key


@pytest.mark.parametrize(
    ("response", "score"),
    [
        ("Sure! The next number in the sequence is 22.", 5),
        ("The next number is 222.", 1),  # 22 only as a whole number
        ("The next number is 22.5", 1),
        ("I think it is 20.", 1),
    ],
)
def test_match_score_wants_the_answer_as_whole_tokens(response, score):
    assert match_score(response, "The next number is 22.", "Continue: 14, 18, 16, 20, 18")[0] == score


def test_yes_no_reads_the_first_yes_or_no():
    ref, q = "Yes, 1600 is a perfect square.", "Is 1600 a perfect square?"
    assert match_score("yes. 40 x 40 = 1600", ref, q)[0] == 5
    assert match_score("No, it is not; yes, I am sure.", ref, q)[0] == 1


def test_match_judge_on_the_synthetic_general_split():
    # Every reference matches itself; another answer of the same category rarely does (measured: 2.3%).
    _, rows = make_general(400, 400, seed=7)
    self_ok = sum(
        match_score(r["output"], r["output"], r["instruction"])[0] == 5 for r in rows.iter_rows(named=True)
    )
    assert self_ok >= 0.98 * rows.height
    wrong = total = 0
    for _, group in rows.group_by("source"):
        recs = group.to_dicts()
        for rec, other in zip(recs, recs[1:] + recs[:1], strict=True):
            if other["output"] != rec["output"]:
                total += 1
                wrong += match_score(other["output"], rec["output"], rec["instruction"])[0] == 5
    assert wrong / total < 0.05


def test_reference_nll_is_the_mean_token_nll_of_the_answer(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = pl.DataFrame(
        {
            "instruction": ["How many apples?", "Reverse hello"],
            "input": ["", "now"],
            "output": ["36", "olleh it is"],
        }
    )
    mean, per_row = reference_nll(str(tiny_model), rows, batch_size=2, device="cpu")
    # By hand, row by row, without padding.
    tok = AutoTokenizer.from_pretrained(tiny_model)
    lm = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    total = count = 0
    for r, got in zip(rows.iter_rows(named=True), per_row, strict=True):
        user = r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(r["output"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([p + a])).logits[0, :-1], -1)
        nll = -sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(a))
        assert got == pytest.approx(nll / len(a), rel=1e-4)
        total, count = total + nll, count + len(a)
    assert mean == pytest.approx(total / count, rel=1e-4)
    assert reference_nll(str(tiny_model), rows, batch_size=1, device="cpu")[0] == pytest.approx(
        mean, rel=1e-4
    )


def test_evaluate_stage_writes_metrics_for_base_and_refuses_a_missing_model(project):
    from typer.testing import CliRunner

    from datakit.cli import app

    runner = CliRunner()
    for cmd in (["synth"], ["base_model"]):
        assert runner.invoke(app, cmd).exit_code == 0
    result = runner.invoke(app, ["evaluate", "--base", "--no-progress"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((project / "data/evaluate_base/metrics.json").read_text())
    assert metrics["iteration"] == 0 and metrics["model"] == "data/base_model"
    assert (metrics["domain_test_rows"], metrics["general_eval_rows"], metrics["domain_train_rows"]) == (
        6,
        12,
        12,
    )
    # A random model: no domain answer right, every train problem a bad case; the NLL is near log(vocab).
    assert metrics["domain_accuracy"] == 0.0 and metrics["train_bad_cases"] == 12
    assert 4.0 < metrics["general_nll"] < 8.0 and not math.isnan(metrics["general_nll"])
    results = pl.read_parquet(project / "data/evaluate_base/results.parquet")
    assert results.group_by("set").len().sort("set").rows() == [
        ("domain_test", 6),
        ("domain_train", 12),
        ("domain_val", 4),
        ("general_eval", 12),
        ("general_val", 6),
    ]
    # Every accuracy with its item count and 95% Wilson interval: 0 of 6 right -> [0, 0.3903].
    assert (
        metrics["domain_accuracy_n"],
        metrics["domain_val_accuracy_n"],
        metrics["general_val_accuracy_n"],
    ) == (
        6,
        4,
        6,
    )
    assert (metrics["domain_accuracy_low"], metrics["domain_accuracy_high"]) == (0.0, 0.3903)
    # The category column: the domain's templates and the general pool's categories, for per-category rates.
    assert results.filter(pl.col("set") == "general_eval")["category"].str.starts_with("general/").all()
    assert results.filter(pl.col("set") == "domain_test")["category"].str.starts_with("times/").all()
    # The domain-train answers went to the generation cache: iteration 1's generate reads them all back.
    result = runner.invoke(app, ["generate", "--iteration", "iter_1", "--no-progress"])
    summary = json.loads((project / "data/iter_1/generate/summary.json").read_text())
    assert result.exit_code == 0 and summary["rows_from_cache"] == 12
    # Exactly one of --base / --iteration; an iteration whose model was not trained yet is one clear error.
    assert runner.invoke(app, ["evaluate"]).exit_code == 2
    missing = runner.invoke(app, ["evaluate", "--iteration", "iter_1"])
    assert missing.exit_code == 1 and "data/iter_1/train/model" in missing.output


def test_evaluate_counts_answers_known_to_be_right(project, tiny_model, tmp_path):
    """A model taught the reference answers of half the domain test items and of some general items: the
    evaluation counts exactly those right, with their intervals, and every other answer wrong."""
    import yaml
    from conftest import write_params
    from tiny import build_tiny_model, train_to_answers

    from datakit.config import load_params
    from datakit.evaluate import judge_match
    from datakit.generate import answered
    from datakit.loaders import load_examples
    from datakit.stats import wilson
    from stages import evaluate, synth

    synth.run(load_params("params.yaml"))
    test = load_examples(load_params("params.yaml").data.domain_test, "test")
    general = load_examples(load_params("params.yaml").data.general_eval, "eval")
    short = general.filter(pl.col("output").str.len_chars() < 24).head(3)  # short answers: a quick lesson
    taught = [*test.head(3).iter_rows(named=True), *short.iter_rows(named=True)]
    model = build_tiny_model(tmp_path / "taught", seed=4)
    cases = [([{"role": "user", "content": r["instruction"]}], r["output"]) for r in taught]
    train_to_answers(model, cases, steps=120)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["base_model"]["source"] = str(model)
    params["paths"]["base_model"] = str(model)
    params["generate"]["max_new_tokens"] = 32
    params["evaluate"]["train_bad_cases"] = False
    write_params(project, params)

    metrics = evaluate.run(load_params("params.yaml"), None, progress=False)
    results = pl.read_parquet(project / "data/evaluate_base/results.parquet")
    test_right = results.filter(pl.col("set") == "domain_test").sort("id")
    right_ids = set(test_right.filter(pl.col("score") >= 4)["id"])
    assert right_ids == set(test.head(3)["id"])  # the taught ones, and only those
    assert metrics["domain_accuracy"] == 0.5 and metrics["domain_accuracy_n"] == 6
    low, high = wilson(3, 6)
    assert (metrics["domain_accuracy_low"], metrics["domain_accuracy_high"]) == (
        round(low, 4),
        round(high, 4),
    )
    # General: most taught items are right (a 2-layer model may garble one), and the stage's accuracy is the
    # match judge's share over the very answers it kept.
    eval_rows = results.filter(pl.col("set") == "general_eval")
    right = set(eval_rows.filter(pl.col("score") >= 4)["id"])
    assert len(set(short["id"]) & right) >= 2
    gens = eval_rows.select("id", output="response", finish_reason="finish_reason").with_columns(
        error=pl.lit(None, pl.Utf8), model=pl.lit("taught"), iteration=pl.lit(0, pl.Int64)
    )
    rejudged = judge_match(answered(general, gens, "results"))
    assert metrics["general_accuracy"] == round((rejudged["score"] >= 4).sum() / general.height, 4)
