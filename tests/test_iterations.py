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


def test_an_iterations_own_train_keys_apply_to_it_alone_and_carry_on_to_new_ones(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    write_iterations(params, 1)
    text = params.read_text().replace(
        "    dir: data/iter_1 ", "    train: {args: {learning_rate: 0.001}}\n    dir: data/iter_1 "
    )
    params.write_text(text)
    write_iterations(params, 2)  # iteration 1's keys are kept; iteration 2 does not inherit iteration 1's
    p = load_params(params)
    assert p.iterations["iter_1"].train == {"args": {"learning_rate": 0.001}}
    assert p.iterations["iter_2"].train == {}
    later = {"args": {"learning_rate": 3e-5}, "dpo": {"beta": 0.2}}
    params.write_text(
        params.read_text().replace(
            "    dir: data/iter_2 ",
            "    train: {args: {learning_rate: 3.0e-05}, dpo: {beta: 0.2}}\n    dir: data/iter_2 ",
        )
    )
    write_iterations(params, 4)  # iterations 3 and 4 take iteration 2's keys: the later-iteration settings
    p = load_params(params)
    assert p.iterations["iter_4"].train == p.iterations["iter_3"].train == later

    merged = p.for_step("iter_3").train
    assert merged.args["learning_rate"] == 3e-5 and merged.dpo["beta"] == 0.2
    assert merged.args["num_train_epochs"] == p.train.args["num_train_epochs"]  # the rest from train
    assert merged.lora == p.train.lora and merged.objective == p.train.objective
    assert p.for_step("iter_1").train.args["learning_rate"] == 0.001
    assert (
        load_params(ROOT / "params.yaml").for_step("iter_1").train == load_params(ROOT / "params.yaml").train
    )


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ("{data: domain}", "iterations.iter_2.train.data: set train.data for every iteration"),
        ("{alpah: 1}", "iterations.iter_2.train.alpah"),
        ("{alpha: lots}", "iterations.iter_2.train.alpha"),
    ],
)
def test_a_bad_iteration_train_key_is_one_error_naming_it(tmp_path, over, message):
    import re

    params = tmp_path / "params.yaml"
    text = re.sub(r"^    train: .*\n", "", (ROOT / "params.yaml").read_text(), flags=re.MULTILINE)
    params.write_text(text.replace("    dir: data/iter_2 ", f"    train: {over}\n    dir: data/iter_2 ", 1))
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_params(params)


def test_check_lets_trl_validate_an_iterations_own_train_keys(tmp_path, monkeypatch):
    import re

    text = re.sub(r"^    train: .*\n", "", (ROOT / "params.yaml").read_text(), flags=re.MULTILINE)
    bad = text.replace(
        "    dir: data/iter_2 ", "    train: {args: {learning_rat: 0.1}}\n    dir: data/iter_2 ", 1
    )
    (tmp_path / "params.yaml").write_text(bad)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 1 and "learning_rat" in result.output
    (tmp_path / "params.yaml").write_text(text)
    ok = CliRunner().invoke(app, ["check"])
    assert ok.exit_code == 0 and "2 iteration(s)" in ok.output, ok.output
