"""datakit sweep / ablations: the experiment grids, and a real sweep as DVC experiments in a temp repo, resumed,
then read back by the report with the setting chosen on validation."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from dvcrepo import BIN, init_repo, sh

from datakit.config import load_params
from datakit.errors import DatakitError
from datakit.report import matched_budget, read_baselines, sweep_choice, write_report
from datakit.sweep import ablation_grid, run_all, sweep_grid


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    return load_params(path)


def test_sweep_grid_matches_budget_across_runs(params):
    grid = sweep_grid(params, ["apt", "domain-sft"], [1e-4, 1e-3], [1, 2], [0.1, 0.5])
    apt = [e for e in grid if e.name.startswith("sweep-apt-")]
    sft = [e for e in grid if e.name.startswith("sweep-domain-sft-")]
    # beta only where the objective is a DPO one on the pairs; every run sees the same lr x epochs.
    assert len(apt) == 8 and len(sft) == 4
    assert apt[0].name == "sweep-apt-lr0.0001-ep1-b0.1"
    assert apt[0].settings["train.objective"] == params.train.objective == "dpo_sft"
    assert {e.settings["train.dpo.beta"] for e in apt} == {"0.1", "0.5"}
    assert all("train.dpo.beta" not in e.settings and e.settings["train.data"] == "domain" for e in sft)
    lr_ep = {(e.settings["train.args.learning_rate"], e.settings["train.args.num_train_epochs"]) for e in apt}
    assert lr_ep == {
        (e.settings["train.args.learning_rate"], e.settings["train.args.num_train_epochs"]) for e in sft
    }
    assert sft[-1].command() == [
        "dvc", "exp", "run", "--temp", "-n", "sweep-domain-sft-lr0.001-ep2",
        "-S", "train.objective=sft", "-S", "train.data=domain",
        "-S", "train.args.learning_rate=0.001", "-S", "train.args.num_train_epochs=2",
        "evaluate@iter_1",
    ]  # fmt: skip
    # One beta: no beta suffix in the names.
    assert sweep_grid(params, ["apt"], [3e-4], [1], [0.1])[0].name == "sweep-apt-lr0.0003-ep1"
    with pytest.raises(DatakitError, match="unknown run.*nope.*known: apt"):
        sweep_grid(params, ["apt", "nope"], [1e-4], [1], [0.1])


def test_ablations_are_one_parameter_away_except_the_threshold():
    grid = ablation_grid()
    assert len({e.name for e in grid}) == len(grid) == 9
    for e in grid:
        if "threshold" in e.name:
            assert e.settings["judge.kind"] == "self" and len(e.settings) == 2
        else:
            assert len(e.settings) == 1
    strategies = {e.settings["retrieve.strategy"] for e in grid if "retrieve.strategy" in e.settings}
    assert strategies == {"none", "mean", "cluster", "tag"} - {
        load_params(ROOT / "params.yaml").retrieve.strategy
    }


# A stand-in for evaluate@iter_1 that trains nothing: it writes the metrics the report reads, its accuracy a
# function of the learning rate (validation favours 0.001, test does not: the choice must follow validation).
EVALUATE = """
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
lr = p["train"]["args"]["learning_rate"]
if lr == 0.5:
    raise SystemExit("diverged")
val = {0.001: 0.40, 0.0001: 0.30}.get(lr, 0.35)
test = {0.001: 0.31, 0.0001: 0.36}.get(lr, 0.33)
os.makedirs("data/iter_1/evaluate", exist_ok=True)
json.dump({"domain_accuracy": test, "general_accuracy": 0.2, "domain_val_accuracy": val,
           "general_val_accuracy": 0.2}, open("data/iter_1/evaluate/metrics.json", "w"))
"""


def test_a_sweep_runs_resumes_and_the_report_chooses_on_validation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["paths"].update(evaluate_base="data/evaluate_base", report="data/report")
    data["train"]["args"].update(learning_rate=0.0003, num_train_epochs=1)  # the lineage's own: off the grid
    data["iterations"] = {
        "iter_1": {"n": 1, "model_in": "m0", "model_out": "data/iter_1/train/model", "dir": "data/iter_1"}
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "evaluate.py").write_text(EVALUATE)
    stage = {
        "foreach": {"iter_1": {"dir": "data/iter_1"}},
        "do": {
            "cmd": f"{sys.executable} evaluate.py",
            "deps": ["evaluate.py"],
            "params": ["train"],
            "metrics": [{"${item.dir}/evaluate/metrics.json": {"cache": False}}],
        },
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    (tmp_path / ".gitignore").write_text("data/report/\n")
    init_repo(tmp_path)
    sh(str(BIN / "dvc"), "repro", cwd=tmp_path)
    sh("git", "add", "-A", cwd=tmp_path)
    sh("git", "commit", "-qm", "run", cwd=tmp_path)
    params = load_params("params.yaml")
    grid = sweep_grid(params, ["apt"], [1e-4, 1e-3], [1], [0.1])
    dvc = str(BIN / "dvc")

    assert run_all(grid[:1], dvc=dvc, echo=lambda _: None) == ["sweep-apt-lr0.0001-ep1"]
    said = []
    # Started again over the whole grid (a sweep killed after its first run): only the rest runs.
    assert run_all(grid, dvc=dvc, echo=said.append) == ["sweep-apt-lr0.001-ep1"]
    assert "sweep-apt-lr0.0001-ep1: done already, skipped" in said[0]
    assert run_all(grid, dvc=dvc, echo=lambda _: None) == []
    assert json.loads(Path("data/iter_1/evaluate/metrics.json").read_text())["domain_accuracy"] == 0.33

    rows, _, error = read_baselines(params)
    assert error is None and {r.model for r in rows} == {e.name for e in grid}
    by_name = {r.model: r for r in rows}
    assert dict(by_name["sweep-apt-lr0.001-ep1"].settings) == {"train.args.learning_rate": "0.001"}
    assert "train.args.learning_rate=0.001" in by_name["sweep-apt-lr0.001-ep1"].label
    (chosen, other) = sweep_choice(rows)["apt"]
    assert (chosen.model, other.model) == ("sweep-apt-lr0.001-ep1", "sweep-apt-lr0.0001-ep1")
    write_report(params, baselines=True)
    md = Path("data/report/report.md").read_text()
    tuning = [line for line in md.splitlines() if line.startswith("| apt |")]
    assert len(tuning) == 3 and "chosen" in tuning[0] and "lr 0.001 x 1 epochs" in tuning[0]
    # The lineage's own iteration 1 is APT's point at params.yaml's setting (validation 35%, between the two).
    assert "lr 0.0003 x 1 epochs" in tuning[1] and "| 35.0 |" in tuning[1]
    assert "lr 0.0001 x 1 epochs" in tuning[2]  # the grid point from the name, whatever the commit's values
    # One run only: its points are the grid. Another run at one point of it: the budgets are not matched.
    assert (
        "Every run trained at the same points (learning rate x epochs: 0.0001 x 1, 0.0003 x 1, 0.001 x 1)"
        in md
    )
    other = [dataclasses.replace(by_name["sweep-apt-lr0.001-ep1"], model="sweep-domain-sft-lr0.001-ep1")]
    runs = sweep_choice(rows + other)
    assert matched_budget(runs).endswith(
        "domain-sft lacks 0.0001 x 1. A run's choice is among its own points only."
    )

    with pytest.raises(DatakitError, match="experiment sweep-apt-lr0.5-ep1 failed: .*learning_rate=0.5"):
        run_all(sweep_grid(params, ["apt"], [0.5], [1], [0.1]), dvc=dvc, echo=lambda _: None)


def test_outside_a_dvc_repository_the_sweep_stops_with_one_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a DVC repository: dvc exp list itself fails
    with pytest.raises(DatakitError, match="dvc exp list failed"):
        run_all(ablation_grid(), dvc=str(BIN / "dvc"), echo=lambda _: None)
