"""datakit report: hand-made metrics of a run where the base and iteration 1 ran and iteration 2 has not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import polars as pl
import pytest
import yaml

from datakit.config import Params, load_params
from datakit.errors import DataError
from datakit.report import baseline_rows, domain_experiments, domain_table, write_report

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTPUTS = [
    "accuracy.png",
    "bad_cases.png",
    "isheep.png",
    "logps.png",
    "report.html",
    "report.md",
    "summary.csv",
    "weakness.png",
]


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


def _params(root: Path) -> Params:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["paths"].update(evaluate_base="data/evaluate_base", report="data/report")
    data["iterations"] = {
        "iter_1": {
            "n": 1,
            "model_in": "data/base_model",
            "model_out": "data/iter_1/train/model",
            "dir": "data/iter_1",
        },
        "iter_2": {
            "n": 2,
            "model_in": "data/iter_1/train/model",
            "model_out": "data/iter_2/train/model",
            "dir": "data/iter_2",
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_params(root / "params.yaml")


def _evaluation(model: str, n: int, domain: float, general: float, nll: float, bad: int) -> dict:
    return {
        "model": model,
        "iteration": n,
        "domain_accuracy": domain,
        "general_accuracy": general,
        "general_nll": nll,
        "train_bad_cases": bad,
        "train_bad_rate": bad / 300,
        "domain_test_rows": 150,
        "general_eval_rows": 200,
        "domain_train_rows": 300,
        "seconds": 12.5,
    }


def _write_run(root: Path) -> None:
    """Base evaluated, iteration 1 run through train and evaluate; iteration 2 not started."""
    _write_json(
        root / "data/evaluate_base/metrics.json", _evaluation("data/base_model", 0, 0.02, 0.45, 2.5, 290)
    )
    it = root / "data/iter_1"
    # select says 291 for the base model, evaluate 290: the report prefers evaluate's own count.
    _write_json(
        it / "select/metrics.json",
        {"bad_cases": 291, "bad_case_rate": 0.97, "judged": 300, "scored": 300, "threshold": "<4"},
    )
    _write_json(
        it / "pairs/metrics.json",
        {
            "pairs": 400,
            "bad_case_pairs": 290,
            "similar_case_pairs": 110,
            "dropped_identical": 1,
            "dropped_no_answer": 0,
        },
    )
    _write_json(
        it / "train/metrics.json",
        {
            "objective": "dpo_sft",
            "trainer": "dpo",
            "data": "pairs",
            "rows": 400,
            "steps": 25,
            "train_loss": 0.55,
            "train_seconds": 30.0,
            "loss_first": 0.693,
            "loss_last": 0.41,
            "logps_chosen_first": -120.5,
            "logps_chosen_last": -80.5,
            "logps_rejected_first": -110.0,
            "logps_rejected_last": -150.0,
        },
    )
    (it / "train/log.csv").write_text(
        "step,epoch,loss,learning_rate,grad_norm,rewards_chosen,rewards_rejected,rewards_margins,"
        "rewards_accuracies,logps_chosen,logps_rejected\n"
        "5,0.2,0.69,1e-5,1.0,0.0,0.0,0.0,0.5,-120.5,-110.0\n"
        "10,0.4,0.55,1e-5,1.0,0.1,-0.1,0.2,0.7,-100.0,-130.0\n"
        "15,0.6,,1e-5,1.0,0.2,-0.2,0.4,0.9,-80.5,-150.0\n"
    )
    _write_json(it / "evaluate/metrics.json", _evaluation("data/iter_1/train/model", 1, 0.09, 0.44, 2.6, 250))
    _write_json(root / "data/ifeval_base/metrics.json", {"prompt_strict": 0.1, "instruction_strict": 0.25})
    _write_json(it / "ifeval/metrics.json", {"prompt_strict": 0.125, "instruction_strict": 0.3})
    # I-SHEEP: round 1 ran, rounds 2 and 3 have not.
    r1 = root / "data/isheep/round_1"
    kept_after = {"length": 118, "banned": 110, "format": 100, "duplicate": 90, "rouge": 80}
    _write_json(
        r1 / "synthesize/metrics.json",
        {"generated": 120, "kept": 80, **{f"kept_after_{k}": v for k, v in kept_after.items()}},
    )
    _write_json(r1 / "assess/metrics.json", {"mean_score": 8.25, "unscored": 12})
    _write_json(r1 / "filter/metrics.json", {"kept": 50})
    _write_json(r1 / "ifeval/metrics.json", {"prompt_strict": 0.15, "instruction_strict": 0.35})
    _write_json(
        r1 / "evaluate/metrics.json", _evaluation("data/isheep/round_1/train/model", 1, 0.03, 0.47, 2.4, 0)
    )


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Params:
    monkeypatch.chdir(tmp_path)
    params = _params(tmp_path)
    _write_run(tmp_path)
    return params


def _line(md: str, start: str) -> str:
    (line,) = [line for line in md.splitlines() if line.startswith(start)]
    return line


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_tables_plots_and_summary(run: Params, tmp_path: Path):
    # tmp_path is no DVC repo: a `dvc exp show` lookup would fail and say so in the report.
    path = write_report(run, baselines=False)

    report = tmp_path / "data/report"
    assert Path(path) == Path("data/report/report.md")
    assert sorted(p.name for p in report.iterdir()) == OUTPUTS  # no temp files left behind
    md = (report / "report.md").read_text()
    assert "dvc exp show" not in md  # baselines=False: no lookup, no line about one
    # domain: 2.0% -> 9.0% = +7.0 points; general: 45.0% -> 44.0% = -1.0 point.
    # No results.parquet here: no paired test, the plain difference; no interval in these metrics.
    base = ["M_1 (base)", "2.0", "—", "45.0", "—", "—", "—", "2.500", "10.0", "—", "25.0", "290"]
    assert _cells(_line(md, "| M_1 (base)")) == base
    assert _cells(_line(md, "| M_2 (after iter_1)")) == [
        "M_2 (after iter_1)",
        "9.0",
        "+7.0",
        "44.0",
        "-1.0",
        "—",
        "—",
        "2.600",
        "12.5",
        "—",
        "30.0",
        "250",
    ]
    assert _cells(_line(md, "| M_3 (after iter_2)")) == ["M_3 (after iter_2) — not run"] + ["—"] * 11
    # I-SHEEP: general accuracy 45.0% -> 47.0% = +2.0 points.
    # Without per-item results the I-SHEEP table shows the shares and the plain differences.
    assert _cells(_line(md, "| base (M_1)")) == ["base (M_1)"] + ["—"] * 5 + [
        "10.0",
        "—",
        "25.0",
        "45.0",
        "—",
        "2.500",
    ]
    assert _cells(_line(md, "| 1 (round_1)")) == [
        "1 (round_1)", "120", "118 / 110 / 100 / 90 / 80", "8.25", "50", "12", "15.0", "—", "35.0", "47.0", "+2.0",
        "2.400",
    ]  # fmt: skip
    assert (
        _cells(_line(md, "| 2 (round_2)"))
        == ["2 (round_2) — not run", "—", " / ".join(["—"] * 5)] + ["—"] * 9
    )
    assert _cells(_line(md, "| 1 (iter_1)")) == [
        "1 (iter_1)",
        "291",
        "400 (290/110)",
        "25",
        "0.693 → 0.410",
        "-120.5 → -80.5",
        "-110.0 → -150.0",
    ]
    assert _cells(_line(md, "| 2 (iter_2)")) == ["2 (iter_2) — not run"] + ["—"] * 6
    assert "could not be read" not in md and "No baseline experiments" not in md  # no lookup, no line
    for name in ("bad_cases.png", "accuracy.png", "logps.png", "isheep.png"):
        assert f"]({name})" in md
        data = (report / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert matplotlib.image.imread(report / name).ndim == 3

    # These hand-written evaluations have no intervals or item counts: each missing key is listed, by file.
    missing = md.split("## Missing metrics")[1].split("\n## ")[0]
    for folder in ("data/evaluate_base", "data/iter_1/evaluate"):
        for key in ("domain_accuracy_low", "general_accuracy_high", "general_accuracy_n"):
            assert f"| {folder}/metrics.json | {key} |" in missing
    for key in ("general_accuracy_low", "general_accuracy_high"):  # the I-SHEEP round's interval
        assert f"| data/isheep/round_1/evaluate/metrics.json | {key} |" in missing
    assert missing.count("| data/") == 14

    page = (report / "report.html").read_text()
    assert page.count("<table>") == 4
    assert '<img src="accuracy.png"' in page
    assert "<td>+7.0</td>" in page  # a figure: right-aligned
    from datakit.report import _html_cell

    assert _html_cell("wrong answer passed") == '<td class="t">wrong answer passed</td>'  # words: left
    assert _html_cell("-0.5 (p=0.83, within noise)") == "<td>-0.5 (p=0.83, within noise)</td>"  # a figure
    assert _html_cell("—") == "<td>—</td>"
    assert page.count('<div class="wide">') == 4  # a wide table scrolls instead of running off the page
    assert "<code>&lt;4</code>" in page  # the threshold, escaped

    summary = pl.read_csv(report / "summary.csv")
    assert summary.columns == [
        "model",
        "label",
        "domain_accuracy",
        "domain_low",
        "domain_high",
        "domain_n",
        "general_accuracy",
        "general_low",
        "general_high",
        "general_n",
        "domain_val_accuracy",
        "general_val_accuracy",
        "general_nll",
        "train_bad_cases",
        "if_prompt_strict",
        "if_instruction_strict",
        "pairs",
        "steps",
    ]
    assert summary["model"].to_list() == ["base", "iter_1", "iter_2"]
    assert summary["domain_accuracy"].to_list() == [0.02, 0.09, None]
    assert summary["train_bad_cases"].to_list() == [290, 250, None]
    assert summary["pairs"].to_list() == [None, 400, None]
    assert summary["steps"].to_list() == [None, 25, None]


def _results(path: Path, sets: dict[str, list[int]]) -> None:
    """evaluate's results.parquet: per set, item i scored 5 (right) or 1 (wrong)."""
    rows = [
        {"set": name, "id": f"{name}-{i}", "response": "", "score": score, "extracted": None,
         "finish_reason": "stop", "n_tokens": 1, "category": None}
        for name, scores in sets.items()
        for i, score in enumerate(scores)
    ]  # fmt: skip
    pl.DataFrame(rows, schema_overrides={"extracted": pl.Utf8, "category": pl.Utf8}).write_parquet(path)


def test_intervals_and_paired_tests(run: Params, tmp_path: Path):
    """Accuracies with their Wilson interval; differences against the base by the exact McNemar test on the
    items both answered, and said in words."""
    # Domain, 20 items: the base is right on items 0-3, M_2 on items 0-11: 8 items M_2 alone gets right,
    # none the base alone: exact McNemar p = 2 * 0.5**8 = 0.0078125 < 0.05, +8/20 = +40.0 points.
    # General, 20 items: the base right on 0-9, M_2 on 1-10: one discordant item each way, p = 1.0.
    _results(
        tmp_path / "data/evaluate_base/results.parquet",
        {"domain_test": [5] * 4 + [1] * 16, "general_eval": [5] * 10 + [1] * 10},
    )
    _results(tmp_path / "data/iter_1/evaluate/results.parquet",
             {"domain_test": [5] * 12 + [1] * 8, "general_eval": [1] + [5] * 10 + [1] * 9})  # fmt: skip
    for folder, (right, general) in {"data/evaluate_base": (4, 10), "data/iter_1/evaluate": (12, 10)}.items():
        metrics = json.loads((tmp_path / folder / "metrics.json").read_text())
        # Wilson 95% for 4/20: 0.0807-0.4160; 12/20: 0.3866-0.7812; 10/20: 0.2993-0.7007 (statsmodels).
        lo, hi = {4: (0.0807, 0.416), 12: (0.3866, 0.7812)}[right]
        metrics.update(domain_accuracy=right / 20, domain_accuracy_low=lo, domain_accuracy_high=hi,
                       domain_accuracy_n=20, general_accuracy=general / 20, general_accuracy_n=20)  # fmt: skip
        _write_json(tmp_path / folder / "metrics.json", metrics)
    md = Path(write_report(run, baselines=False)).read_text()
    assert _cells(_line(md, "| M_1 (base)"))[1:5] == ["20.0 [8.1–41.6]", "—", "50.0", "—"]
    assert _cells(_line(md, "| M_2 (after iter_1)"))[1:5] == [
        "60.0 [38.7–78.1]",
        "+40.0 (p=0.00781, significant)",
        "50.0",
        "+0.0 (p=1, within noise)",
    ]
    assert "domain test accuracy (%) [95% CI] (n=20)" in md
    assert (
        "M_2 (after iter_1), domain: +40.0 points against the base model on 20 items, a significant gain"
        in md
    )
    assert "M_2 (after iter_1), general: +0.0 points against the base model on 20 items, within noise" in md


def test_instruction_following_and_isheep_rounds_carry_intervals_and_paired_tests(
    run: Params, tmp_path: Path
):
    """Each I-SHEEP round's instruction following and general accuracy with their Wilson intervals, and its
    difference from the base model on the same prompts and items (exact McNemar)."""
    from datakit.ifeval import IFEVAL_RESULTS
    from datakit.schemas import write_table

    def ifeval(path: Path, followed: list[bool]) -> None:
        n = len(followed)
        write_table(
            pl.DataFrame(
                {
                    "id": [f"if-{i}" for i in range(n)],
                    "prompt": ["p"] * n,
                    "response": ["r"] * n,
                    "kinds": [["k"]] * n,
                    "followed_strict": [[f] for f in followed],
                    "followed_loose": [[f] for f in followed],
                    "prompt_strict": followed,
                    "prompt_loose": followed,
                }
            ),  # fmt: skip
            path,
            IFEVAL_RESULTS,
        )

    # IF, 20 prompts: the base follows 0-1, round 1 follows 0-9: 8 discordant one way, p = 0.0078125.
    ifeval(tmp_path / "data/ifeval_base/results.parquet", [True] * 2 + [False] * 18)
    ifeval(tmp_path / "data/isheep/round_1/ifeval/results.parquet", [True] * 10 + [False] * 10)
    # General, 20 items: the base right on 0-9, round 1 on 1-10: one discordant item each way, p = 1.
    _results(tmp_path / "data/evaluate_base/results.parquet", {"general_eval": [5] * 10 + [1] * 10})
    _results(tmp_path / "data/isheep/round_1/evaluate/results.parquet",
             {"general_eval": [1] + [5] * 10 + [1] * 9})  # fmt: skip
    md = Path(write_report(run, baselines=False)).read_text()
    base, round_1 = _cells(_line(md, "| base (M_1)")), _cells(_line(md, "| 1 (round_1)"))
    # Wilson 95% (statsmodels): 2/20 0.0279-0.3010; 10/20 0.2993-0.7007.
    assert base[6:8] == ["10.0 [2.8–30.1]", "—"]
    assert round_1[6:8] == ["50.0 [29.9–70.1]", "+40.0 (p=0.00781, significant)"]
    assert round_1[10] == "+0.0 (p=1, within noise)"
    assert "IF prompt-level strict (%, n=20) [95% CI]" in md
    # The APT table pairs instruction following the same way: M_2 follows prompts 1-2 where the base did 0-1.
    ifeval(tmp_path / "data/iter_1/ifeval/results.parquet", [False] + [True] * 2 + [False] * 17)
    md = Path(write_report(run, baselines=False)).read_text()
    assert _cells(_line(md, "| M_2 (after iter_1)"))[8:10] == ["10.0 [2.8–30.1]", "+0.0 (p=1, within noise)"]
    assert "IF prompt-level (%) [95% CI] (n=20)" in md


def test_wilson_matches_statsmodels():
    from datakit.stats import wilson

    # 4 of 20: p = 0.2, n = 20, z = 1.96 (z² = 3.8415): centre (0.2 + z²/40) / (1 + z²/20) = 0.29604 / 1.19207
    # = 0.24834; half-width z * sqrt(0.2 * 0.8 / 20 + z² / 1600) / 1.19207 = 1.96 * 0.10199 / 1.19207 = 0.16768.
    lo, hi = wilson(4, 20)
    assert (round(lo, 4), round(hi, 4)) == (0.0807, 0.416)
    assert wilson(0, 0) == (0.0, 1.0)


def test_bad_cases_fall_back_to_select(run: Params, tmp_path: Path):
    """Without evaluate's own count, the base model's bad cases are what iteration 1's select found."""
    base = tmp_path / "data/evaluate_base/metrics.json"
    metrics = json.loads(base.read_text())
    del metrics["train_bad_cases"]
    _write_json(base, metrics)
    write_report(run, baselines=False)
    assert pl.read_csv(tmp_path / "data/report/summary.csv")["train_bad_cases"].to_list() == [291, 250, None]


def test_nothing_run_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    md = Path(write_report(_params(tmp_path), baselines=False)).read_text()
    assert "M_1 (base) — not run" in md
    assert (tmp_path / "data/report/logps.png").read_bytes().startswith(PNG_MAGIC)


def test_baselines_outside_a_repo(run: Params, tmp_path: Path):
    md = Path(write_report(run, baselines=True)).read_text()
    line = _line(md, "Baselines could not be read")
    assert "NotDvcRepoError" in line
    assert "not inside of a DVC repository" in line
    assert pl.read_csv(tmp_path / "data/report/summary.csv")["model"].to_list() == [
        "base",
        "iter_1",
        "iter_2",
    ]


def test_invalid_json_names_the_file(run: Params, tmp_path: Path):
    bad = Path("data/iter_1/train/metrics.json")
    (tmp_path / bad).write_text('{"steps": 25,')
    with pytest.raises(DataError, match="not valid JSON") as exc:
        write_report(run, baselines=False)
    assert Path(exc.value.file) == bad


def test_baseline_rows_from_exp_show(run: Params, tmp_path: Path):
    """The flat rows of dvc.api.exp_show() (shape taken from dvc 3.67): experiments only, labelled by params."""
    common = {
        "Created": "09:28 PM",
        "Executor": None,
        "State": None,
        "parent": None,
        "data/evaluate_base/metrics.json:domain_accuracy": 0.02,
        "train.data": "pairs",
    }
    experiments = [
        {**common, "Experiment": None, "rev": "workspace", "typ": "baseline", "Created": None,
         "data/iter_1/evaluate/metrics.json:domain_accuracy": 0.09, "train.objective": "dpo_sft"},
        {**common, "Experiment": None, "rev": "master", "typ": "baseline",
         "data/iter_1/evaluate/metrics.json:domain_accuracy": 0.09, "train.objective": "dpo_sft",
         "train.args.learning_rate": 0.0003, "paths.evaluate_base": "None"},
        # Its own setting (the learning rate) is shown; a key its commit lacks (the experiment ran with an
        # uncommitted params.yaml that had a newer section) is not one of its settings, whether exp_show
        # leaves the commit's cell out or fills it with "None".
        {**common, "Experiment": "continued-sft", "rev": "62186a8", "typ": "branch_commit",
         "data/iter_1/evaluate/metrics.json:domain_accuracy": 0.05,
         "data/iter_1/evaluate/metrics.json:general_accuracy": 0.4,
         "data/iter_1/evaluate/metrics.json:train_bad_cases": 270.0,
         "data/iter_1/train/metrics.json:steps": 30.0,
         "general_nll": 2.7, "train.objective": "sft", "train.args.learning_rate": 0.001,
         "paths.weakness_base": "data/weakness_base", "paths.evaluate_base": "data/evaluate_base"},
        # Still running (or killed): dvc shows its parent's metrics, which are not its own.
        {**common, "Experiment": "lr-1e-3", "rev": "f91209f", "typ": "branch_commit", "State": "Running",
         "data/iter_1/evaluate/metrics.json:domain_accuracy": 0.09, "train.objective": "dpo_sft"},
        # An experiment on another pipeline (I-SHEEP): iteration 1's metrics are its commit's own.
        {**common, "Experiment": "r1-ppl", "rev": "abcdef0", "typ": "branch_base",
         "data/iter_1/evaluate/metrics.json:domain_accuracy": 0.09, "train.objective": "dpo_sft"},
        # evaluate@iter_1 not run in this one: not a baseline to compare.
        {**common, "Experiment": "half-done", "rev": "1234567", "typ": "branch_base",
         "data/iter_1/evaluate/metrics.json:domain_accuracy": None, "train.objective": "sft"},
    ]  # fmt: skip
    (row,) = baseline_rows(experiments, run, tmp_path)
    assert row.model == "continued-sft"
    assert row.label == "continued-sft (sft on pairs, train.args.learning_rate=0.001)"
    assert row.settings == (("train.args.learning_rate", "0.001"),)
    assert (row.domain_accuracy, row.general_accuracy, row.general_nll) == (0.05, 0.4, 2.7)
    assert (row.train_bad_cases, row.steps, row.pairs, row.index) == (270, 30, None, None)


def test_an_experiment_on_another_domain_is_its_own_table_not_a_baseline(run: Params, tmp_path: Path):
    """`make code-domain`: the domain changed, so its iteration 1 is compared with its own base model, on its
    own items, never with this run's."""
    evaluate, base = "data/iter_1/evaluate/metrics.json", "data/evaluate_base/metrics.json"
    common = {
        "Created": None,
        "Executor": None,
        "State": None,
        "parent": None,
        "train.objective": "dpo_sft",
        "train.data": "pairs",
    }
    experiments = [
        {**common, "Experiment": None, "rev": "workspace", "typ": "baseline", "synth.domain": "times",
         "judge.kind": "math", f"{evaluate}:domain_accuracy": 0.9, f"{base}:domain_accuracy": 0.3},
        {**common, "Experiment": "code-domain", "rev": "c0de000", "typ": "branch_commit", "synth.domain": "code",
         "judge.kind": "code", f"{base}:domain_accuracy": 0.04, f"{base}:domain_accuracy_low": 0.02,
         f"{base}:domain_accuracy_high": 0.07, f"{base}:domain_accuracy_n": 250,
         f"{evaluate}:domain_accuracy": 0.1, f"{evaluate}:domain_accuracy_low": 0.07,
         f"{evaluate}:domain_accuracy_high": 0.14, f"{evaluate}:domain_accuracy_n": 250},
    ]  # fmt: skip
    # the base model gets items 0-1 right, APT items 0-4: 3 discordant, all for APT (exact McNemar p = 0.25)
    results = {
        "data/evaluate_base/results.parquet": {"domain_test": {str(i): i < 2 for i in range(10)}},
        "data/iter_1/evaluate/results.parquet": {"domain_test": {str(i): i < 5 for i in range(10)}},
    }
    assert baseline_rows(experiments, run, tmp_path) == []
    (code,) = domain_experiments(experiments, run, tmp_path, lambda rev, path: results[path])
    assert code.name == "code-domain"
    assert code.settings == (("synth.domain", "code"), ("judge.kind", "code"))
    assert code.tests["domain"]["p"] == pytest.approx(0.25) and code.tests["general"] is None
    (row,) = domain_table([code]).rows
    assert row[:5] == (
        "code-domain",
        "synth.domain=code, judge.kind=code",
        "4.0 [2.0–7.0] (n=250)",
        "10.0 [7.0–14.0] (n=250)",
        "+30.0 (p=0.25, within noise)",
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_baselines_from_a_real_experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A tmp git + DVC repo whose evaluate@iter_1 stage writes a domain accuracy from train.objective."""
    from dvc.cli import main as dvc_main

    monkeypatch.chdir(tmp_path)
    params = _params(tmp_path)
    _write_run(tmp_path)
    Path("evaluate.py").write_text(
        "import json, yaml\n"
        "objective = yaml.safe_load(open('params.yaml'))['train']['objective']\n"
        "metrics = {'domain_accuracy': {'sft': 0.05}.get(objective, 0.09), 'general_accuracy': 0.4}\n"
        "json.dump(metrics, open('data/iter_1/evaluate/metrics.json', 'w'))\n"
        "import polars as pl\n"
        "right = {'sft': 3}.get(objective, 9)\n"
        "pl.DataFrame({'set': ['domain_test'] * 10, 'id': [str(i) for i in range(10)],\n"
        "              'score': [5 if i < right else 1 for i in range(10)]}).write_parquet(\n"
        "    'data/iter_1/evaluate/results.parquet')\n"
    )
    Path("dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "evaluate": {
                        "foreach": {"iter_1": {"dir": "data/iter_1"}},
                        "do": {
                            "cmd": f"{sys.executable} evaluate.py",
                            "deps": ["evaluate.py"],
                            "params": ["train.objective"],
                            "outs": ["${item.dir}/evaluate/results.parquet"],
                            "metrics": [{"${item.dir}/evaluate/metrics.json": {"cache": False}}],
                        },
                    }
                }
            }
        )
    )
    Path(".gitignore").write_text("data/report/\n")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for name in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{name}_NAME", "t")
        monkeypatch.setenv(f"{name}_EMAIL", "t@t")
    subprocess.run(["git", "init", "-q"], check=True)
    assert dvc_main(["init", "-q"]) == 0
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "commit", "-qm", "run"], check=True)
    # In-process (no second dvc import): the stage runs with this interpreter as its subprocess.
    assert (
        dvc_main(["exp", "run", "-q", "-n", "continued-sft", "-S", "train.objective=sft", "evaluate@iter_1"])
        == 0
    )

    # APT's own iteration 1 in the workspace: right on items 0-8 of 10. The baseline's results are read from
    # the experiment's commit (DVC cache): right on 0-2. 6 items APT alone gets right, none the other way:
    # exact McNemar p = 2 * 0.5**6 = 0.03125, APT minus baseline = +60.0 points.
    pl.DataFrame(
        {"set": ["domain_test"] * 10, "id": [str(i) for i in range(10)], "score": [5] * 9 + [1]}
    ).write_parquet("data/iter_1/evaluate/results.parquet")
    write_report(params, baselines=True)
    summary = pl.read_csv("data/report/summary.csv")
    assert summary["model"].to_list() == ["base", "iter_1", "iter_2", "continued-sft"]
    assert summary["label"][3] == "continued-sft (sft on pairs)"
    assert summary["domain_accuracy"][3] == 0.05
    md = Path("data/report/report.md").read_text()
    models, versus = [line for line in md.splitlines() if line.startswith("| continued-sft")]
    assert _cells(models)[1:3] == ["5.0", "+3.0"]  # the base model has no per-item results here
    assert _cells(versus)[1] == "+60.0 (p=0.0312, significant)"
    assert "could not be read" not in md


def test_compare_two_evaluations_per_set(tmp_path: Path):
    """`datakit compare`: per set, both accuracies on the shared items, b minus a and the exact McNemar test."""
    from datakit.errors import DataError
    from datakit.report import compare_table, evaluation_at

    def results(folder: str, right_test: int, right_val: int) -> None:
        rows = [("domain_test", str(i), 5 if i < right_test else 1) for i in range(10)]
        rows += [("domain_val", str(i), 5 if i < right_val else 1) for i in range(4)]
        (tmp_path / folder).mkdir()
        pl.DataFrame(rows, schema=["set", "id", "score"], orient="row").write_parquet(
            tmp_path / folder / "results.parquet"
        )

    results("a", 9, 2)
    results("b", 3, 2)
    table = compare_table(evaluation_at(str(tmp_path / "a"), "<4"), evaluation_at(str(tmp_path / "b"), "<4"))
    test, val = table.rows(named=True)
    assert (test["set"], test["items"], test["only a right"], test["only b right"]) == (
        "domain_test",
        10,
        6,
        0,
    )
    assert test["b - a (points)"] == -60.0 and test["p (exact McNemar)"] == "0.0312"
    assert test["verdict"] == "significant" and test["a (%) [95% CI]"].startswith("90.0 [")
    assert (val["b - a (points)"], val["p (exact McNemar)"], val["verdict"]) == (0.0, "1", "within noise")
    with pytest.raises(DataError, match="nowhere.*no evaluation results here"):
        evaluation_at(str(tmp_path / "nowhere"), "<4")
