"""export: artifact tables as Hugging Face datasets with a lineage card, on a real `dvc repro` in a tmp repo."""

import dataclasses
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from test_pairs import answers, bad_cases, bad_tags, similar
from typer.testing import CliRunner

from datakit.cli import app
from datakit.errors import DataError, DatakitError
from datakit.export import export, file_md5
from datakit.isheep import FILTERED
from datakit.pairs import PREFERENCE_PAIRS, build_pairs
from datakit.schemas import GENERATIONS, write_table

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
PAIRS = "data/iter_1/pairs/preference_pairs.parquet"
FILTER = "data/isheep/round_1/filter/pairs.parquet"
COPY = "import shutil, sys, pathlib\npathlib.Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)\nshutil.copy(*sys.argv[1:])\n"


def sh(*cmd: str, cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


def pairs() -> pl.DataFrame:
    """The real pairs code path on test_pairs' cases: b1, b2 and p1 (3 pairs; the others teach nothing)."""
    return build_pairs(bad_cases(), bad_tags(), similar(), answers(), iteration=1)[0]


def filtered() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["r1-1", "r1-2"],
            "score": [9, 3],
            "ppl": [None, None],
            "empty": [False, False],
            "kept": [True, False],
            "reason": [None, "score 3 < 8"],
            "cluster": [None, None],
        },
        schema=FILTERED.schema,
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git + DVC repo whose `dvc repro` wrote pairs@iter_1 (dvc.yaml) and filter@round_1 (a recipe with
    wdir ../.., as recipes/isheep): each stage copies a frame in frames/ to its out."""
    root = tmp_path_factory.mktemp("repo")
    params = {
        "generate": {"system_prompt": "", "max_new_tokens": 8},
        "filter": {"strategy": "score", "threshold": 8},
        "iterations": {"iter_1": {"n": 1, "model_in": "data/base_model", "dir": "data/iter_1"}},
        "rounds": {"round_1": {"n": 1, "model_in": "data/base_model", "dir": "data/isheep/round_1"}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "copy.py").write_text(COPY)
    (root / "frames").mkdir()
    write_table(pairs(), root / "frames/pairs_iter_1.parquet", PREFERENCE_PAIRS)
    write_table(filtered(), root / "frames/filtered_round_1.parquet", FILTERED)
    (root / "data/base_model").mkdir(parents=True)
    (root / "data/base_model/config.json").write_text("{}")
    pipeline = {
        "stages": {
            "pairs": {
                "foreach": "${iterations}",
                "do": {
                    "cmd": "python copy.py frames/pairs_${key}.parquet ${item.dir}/pairs/preference_pairs.parquet",
                    "deps": ["copy.py", "frames/pairs_${key}.parquet", "${item.model_in}"],
                    "params": ["generate.system_prompt"],
                    "outs": ["${item.dir}/pairs/preference_pairs.parquet"],
                },
            }
        }
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    recipe = {
        "vars": ["../../params.yaml"],
        "stages": {
            "filter": {
                "foreach": "${rounds}",
                "do": {
                    "wdir": "../..",
                    "cmd": "python copy.py frames/filtered_${key}.parquet ${item.dir}/filter/pairs.parquet",
                    "deps": ["copy.py", "frames/filtered_${key}.parquet"],
                    "params": ["filter"],
                    "outs": ["${item.dir}/filter/pairs.parquet"],
                },
            }
        },
    }
    (root / "recipes/isheep").mkdir(parents=True)
    (root / "recipes/isheep/dvc.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    sh("git", "init", "-q", cwd=root)
    sh("git", "config", "user.email", "ci@example.com", cwd=root)
    sh("git", "config", "user.name", "ci", cwd=root)
    sh(str(BIN / "dvc"), "init", "-q", cwd=root)
    sh(str(BIN / "dvc"), "repro", "-q", cwd=root)
    sh(str(BIN / "dvc"), "repro", "-q", "recipes/isheep/dvc.yaml", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "repro", cwd=root)
    return root


def card(folder: Path) -> dict:
    from huggingface_hub import DatasetCard

    return DatasetCard.load(folder / "README.md").data.to_dict()


def test_pairs_round_trip_with_their_lineage(repo, tmp_path):
    out = tmp_path / "pairs_iter_1"
    export(repo / PAIRS, out, progress=False)
    from datasets import load_dataset, load_from_disk

    ds = load_from_disk(str(out))
    assert_frame_equal(pl.from_arrow(ds.data.table), pairs())
    assert_frame_equal(pl.read_parquet(out / "data/train-00000-of-00001.parquet"), pairs())
    files = {"train": str(out / "data/train-*.parquet")}
    assert (
        load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "c"))["train"].to_list()
        == ds.to_list()
    )

    meta = card(out)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["pairs@iter_1"]
    lineage = meta["datakit"]
    assert lineage["git"] == {"commit": sh("git", "rev-parse", "HEAD", cwd=repo), "dirty": False}
    stage = lineage["stage"]
    assert (stage["name"], stage["lock_file"], stage["cmd"]) == ("pairs@iter_1", "dvc.lock", lock["cmd"])
    assert stage["out"] == {"path": PAIRS, "md5": file_md5(repo / PAIRS), "matches_lock": True}
    assert stage["out"]["md5"] == lock["outs"][0]["md5"]
    assert {d["path"]: d["md5"] for d in stage["deps"]} == {d["path"]: d["md5"] for d in lock["deps"]}
    assert stage["params"] == {"params.yaml": {"generate.system_prompt": ""}}
    assert stage["params_sections"] == {
        "params.yaml": {"generate": {"system_prompt": "", "max_new_tokens": 8}}
    }
    assert stage["params_match_lock"] is True
    # pairs have an iteration column, no model column: the model is iterations.iter_1.model_in, its md5 the lock's
    assert (lineage["iteration"], lineage["model"]) == (1, "data/base_model")
    assert lineage["model_md5"] == next(d["md5"] for d in lock["deps"] if d["path"] == "data/base_model")
    assert lineage["model_md5"].endswith(".dir")
    assert (lineage["table"], lineage["num_rows"], lineage["split"]) == ("preference_pairs", 3, "train")
    assert list(lineage["columns"]) == PREFERENCE_PAIRS.columns
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
    ]
    assert meta["dataset_info"]["splits"] == [
        {"name": "train", "num_bytes": ds.data.nbytes, "num_examples": 3}
    ]
    body = (out / "README.md").read_text()
    assert "| stage | `pairs@iter_1` in `dvc.lock` |" in body and lock["outs"][0]["md5"] in body
    assert "bad_case \\| similar_case" in body  # a column doc with a pipe stays inside its table cell


def test_a_recipe_lock_with_wdir_gives_the_round_and_its_model(repo, tmp_path):
    export(repo / FILTER, tmp_path / "f", progress=False)
    lineage = card(tmp_path / "f")["datakit"]
    stage = lineage["stage"]
    assert (stage["name"], stage["lock_file"], stage["wdir"]) == (
        "filter@round_1",
        "recipes/isheep/dvc.lock",
        ".",
    )
    assert stage["out"]["matches_lock"] is True
    assert stage["params"] == {"params.yaml": {"filter": {"strategy": "score", "threshold": 8}}}
    # FILTERED has neither column: both come from rounds.round_1
    assert (lineage["iteration"], lineage["model"], lineage["table"]) == (
        1,
        "data/base_model",
        "filtered pairs",
    )


def test_a_changed_file_and_tree_are_flagged(repo, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    write_table(pairs().head(2), copy / PAIRS, PREFERENCE_PAIRS)  # changed after the lock
    (copy / "copy.py").write_text(COPY + "# edited\n")  # a tracked file: the tree is dirty
    export(copy / PAIRS, tmp_path / "out", progress=False)
    lineage = card(tmp_path / "out")["datakit"]
    assert lineage["stage"]["out"]["matches_lock"] is False and lineage["git"]["dirty"] is True
    assert "**no: the file changed since the lock**" in (tmp_path / "out/README.md").read_text()


def test_an_artifact_without_lineage_still_exports(tmp_path):
    src = tmp_path / "loose/generate/generations.parquet"  # not in git, no dvc.lock above it
    rows = pl.DataFrame(
        {
            "id": ["a", "b"],
            "prompt": ["Add 2 and 3.", "Double 4."],
            "output": ["5", "8"],
            "model": ["data/iter_1/train/model"] * 2,
            "iteration": [2, 2],
            "gen_params_hash": ["h", "h"],
            "n_tokens": [1, 1],
            "finish_reason": ["stop", "stop"],
            "error": [None, None],
        },
        schema=GENERATIONS.schema,
    )
    write_table(rows, src, GENERATIONS)
    result = export(src, tmp_path / "out", split="validation", progress=False)
    lineage = card(tmp_path / "out")["datakit"]
    assert (lineage["stage"], lineage["git"], lineage["table"]) == (None, None, "generations")
    assert (lineage["iteration"], lineage["model"]) == (2, "data/iter_1/train/model")  # from the columns
    assert result["num_rows"] == 2
    assert_frame_equal(pl.read_parquet(tmp_path / "out/data/validation-00000-of-00001.parquet"), rows)
    assert "**no recorded lineage**" in (tmp_path / "out/README.md").read_text()
    write_table(rows, tmp_path / "misc.parquet", GENERATIONS)  # not in the layout: exported unchecked
    assert export(tmp_path / "misc.parquet", tmp_path / "misc", progress=False)["table"] is None
    assert "not a declared datakit table (not checked)" in (tmp_path / "misc/README.md").read_text()


def test_bad_inputs_name_the_file(repo, tmp_path):
    missing = tmp_path / "gone/pairs/preference_pairs.parquet"
    with pytest.raises(DataError, match=f"{missing}: not found"):
        export(missing, tmp_path / "a")
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet")
    with pytest.raises(DataError, match=f"{text}: cannot be read as parquet"):
        export(text, tmp_path / "b")
    broken = tmp_path / "pairs/preference_pairs.parquet"  # its place says: a preference_pairs table
    broken.parent.mkdir()
    pairs().drop("chosen").write_parquet(broken)
    with pytest.raises(
        DataError, match=f"{broken}: does not match the 'preference_pairs' table: missing column 'chosen'"
    ):
        export(broken, tmp_path / "c")
    with pytest.raises(DatakitError, match="unknown table 'pears'"):
        export(repo / PAIRS, tmp_path / "d", table="pears")
    with pytest.raises(DatakitError, match="split 'my split' is not a valid split name"):
        export(repo / PAIRS, tmp_path / "e", split="my split")
    assert not any((tmp_path / name).exists() for name in "abcde")  # nothing written


def test_an_existing_folder_is_kept_unless_overwrite(repo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DatakitError, match="exists and is not empty .pass --overwrite"):
        export(repo / PAIRS, out)
    assert os.listdir(out) == ["keep.txt"]
    export(repo / PAIRS, out, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "README.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left beside it


def test_push_without_a_token_fails_before_writing(repo, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no `hf auth login` token either
    with pytest.raises(DatakitError, match="export --push me/pairs: no Hugging Face token .set HF_TOKEN"):
        export(repo / PAIRS, tmp_path / "out", push="me/pairs")
    assert not (tmp_path / "out").exists()


def test_cli_exports_and_reports_errors_in_one_line(repo, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["export", str(repo / PAIRS), str(tmp_path / "out"), "--split", "test", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == f"{repo / PAIRS}: 3 rows (preference_pairs), stage pairs@iter_1 (dvc.lock) -> {tmp_path / 'out'}\n"
    )
    assert (tmp_path / "out/data/test-00000-of-00001.parquet").exists()
    result = runner.invoke(app, ["export", str(tmp_path / "nope.parquet"), str(tmp_path / "x")])
    assert (result.exit_code, result.output) == (1, f"error: {tmp_path / 'nope.parquet'}: not found\n")
    assert runner.invoke(app, ["export", "--help"]).exit_code == 0


def test_exported_pairs_train_trl_dpo_unchanged(repo, tiny_model, tmp_path):
    """The folder is TRL's input as is: load_from_disk straight into DPOTrainer, one step, a finite loss."""
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from datakit.train import checkpointing_key

    export(repo / PAIRS, tmp_path / "pairs", progress=False)
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=128,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        # as datakit.train: TRL turns it on, on CPU it only costs time
        **{checkpointing_key({f.name for f in dataclasses.fields(DPOConfig)}): False},
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=args,
        train_dataset=load_from_disk(str(tmp_path / "pairs")),
        processing_class=AutoTokenizer.from_pretrained(tiny_model),
    )
    result = trainer.train()
    assert trainer.state.global_step == 1
    assert math.isfinite(result.training_loss)
