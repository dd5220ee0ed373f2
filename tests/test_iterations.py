"""`datakit iterations N`: the explicit iteration items of params.yaml."""

import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from datakit.cli import app
from datakit.config import load_params
from datakit.errors import ConfigError
from datakit.iterations import iteration_block, write_iterations


def test_each_iteration_starts_from_the_previous_ones_model_out():
    items = yaml.safe_load(iteration_block(3, "models/base"))["iterations"]
    assert items == {
        "iter_1": {
            "n": 1,
            "model_in": "models/base",
            "model_out": "data/iter_1/train/model",
            "dir": "data/iter_1",
        },
        "iter_2": {
            "n": 2,
            "model_in": "data/iter_1/train/model",
            "model_out": "data/iter_2/train/model",
            "dir": "data/iter_2",
        },
        "iter_3": {
            "n": 3,
            "model_in": "data/iter_2/train/model",
            "model_out": "data/iter_3/train/model",
            "dir": "data/iter_3",
        },
    }


def test_growing_n_keeps_the_earlier_items_text_so_dvc_reruns_nothing_of_them():
    two, three = iteration_block(2, "data/base_model"), iteration_block(3, "data/base_model")
    assert three.startswith(two)
    with pytest.raises(ConfigError, match="at least 1"):
        iteration_block(0, "data/base_model")


def test_write_replaces_only_the_block_and_keeps_comments(tmp_path):
    original = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(original)
    write_iterations(path, 3)
    text = path.read_text()
    head = original[: original.index("\niterations:")]
    assert text.startswith(head) and "# DPO temperature" in text
    params = load_params(path)
    assert list(params.iterations) == ["iter_1", "iter_2", "iter_3"]
    assert params.iterations["iter_3"].model_in == params.iterations["iter_2"].model_out
    write_iterations(path, 1)
    assert list(load_params(path).iterations) == ["iter_1"] and load_params(path).train == params.train


def test_block_in_the_middle_of_the_file_and_the_base_model_path(tmp_path):
    path = tmp_path / "params.yaml"
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["paths"]["base_model"] = "models/m1"
    iterations = data.pop("iterations")
    path.write_text(yaml.safe_dump({"iterations": iterations, **data}, sort_keys=False))
    write_iterations(path, 2)
    params = load_params(path)
    assert params.iterations["iter_1"].model_in == "models/m1" and params.select.threshold == "<4"


def test_cli_writes_the_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = CliRunner().invoke(app, ["iterations", "4"])
    assert result.exit_code == 0 and "iter_4:" in result.output
    assert len(load_params(tmp_path / "params.yaml").iterations) == 4
    assert CliRunner().invoke(app, ["iterations", "0"]).exit_code == 2
