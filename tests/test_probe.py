"""datakit probe: the base model on candidate domain families, graded by the exact math judge."""

import polars as pl
import pytest
from typer.testing import CliRunner

from datakit.cli import app
from datakit.config import load_params
from datakit.errors import ConfigError
from datakit.probe import markdown, probe
from datakit.synth import make_domain


def test_probe_grades_the_training_problems_synth_writes(project):
    params = load_params("params.yaml")
    assert CliRunner().invoke(app, ["base_model"]).exit_code == 0
    table, answers = probe(params, params.paths.base_model, ["times", "add_sub"], 5, progress=False)
    assert table["domain"].to_list() == ["times", "add_sub"] and table["n"].to_list() == [5, 5]
    # The probe's problems are synth's own training problems (the same stream), in the same order.
    first = make_domain("times", 5, 0, 0, params.synth.seed)["train"]
    assert answers.filter(pl.col("domain") == "times")["id"].to_list() == first["id"].to_list()
    for r in table.iter_rows(named=True):
        graded = answers.filter(pl.col("domain") == r["domain"])
        assert r["right"] == int((graded["score"] == 5).sum()) and r["accuracy"] == r["right"] / 5
        assert 0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1
    assert set(answers["score"].to_list()) <= {1, 5}
    md = markdown(table)
    assert md.count("\n") == 4 and "| `times` |" in md and "| train | 5 |" in md


def test_probe_test_split_and_bad_arguments(project):
    params = load_params("params.yaml")
    assert CliRunner().invoke(app, ["base_model"]).exit_code == 0
    table, answers = probe(params, params.paths.base_model, ["times"], 3, progress=False, split="test")
    held = set(make_domain("times", 0, 0, 3, params.synth.seed)["test"]["id"])
    assert table["split"].to_list() == ["test"] and set(answers["id"]) == held
    with pytest.raises(ConfigError, match="unknown domains \\['algebra'\\]"):
        probe(params, params.paths.base_model, ["algebra"], 3)
    with pytest.raises(ConfigError, match="split must be train or test"):
        probe(params, params.paths.base_model, ["times"], 3, split="val")


def test_probe_command_writes_its_table(project):
    runner = CliRunner()
    assert runner.invoke(app, ["base_model"]).exit_code == 0
    result = runner.invoke(app, ["probe", "--domains", "bare", "--n", "4", "--out", "out", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert pl.read_csv(project / "out/probe.csv")["n"].to_list() == [4]
    assert (project / "out/probe.md").read_text().startswith("| domain |")
    bad = runner.invoke(app, ["probe", "--domains", "algebra", "--no-progress"])
    assert bad.exit_code == 1 and "unknown domains ['algebra']" in bad.output
    assert pl.read_parquet(project / "out/answers.parquet").height == 4
