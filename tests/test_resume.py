"""Kill and resume, every long stage: SIGKILL the real stage process at a random point after some work is
done, run it again, and check that

- nothing the stage declares as an output (dvc.yaml ``outs``) was left by the killed run;
- the rerun recomputed no finished shard and no cached row (spied on the shard and cache writers);
- the rerun's outputs equal an uninterrupted run's, and its scratch shards are gone.

generate has its own test (test_generate.py) and train resumes from checkpoints (test_train.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import ROOT, tiny_params, write_params
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

import datakit.shards
from datakit.cache import PartCache
from datakit.cli import app

DATAKIT = str(Path(sys.executable).parent / "datakit")
# Each stage is killed at one random point; three each under the soak profile (HYPOTHESIS_PROFILE=soak).
SEEDS = (0, 1, 2) if os.environ.get("HYPOTHESIS_PROFILE") == "soak" else (0,)


def _cli(*args: str) -> None:
    result = CliRunner().invoke(app, [*args, "--no-progress"] if _takes_progress(args[0]) else list(args))
    assert result.exit_code == 0, f"datakit {' '.join(args)}: {result.output}\n{result.exception!r}"


def _takes_progress(command: str) -> bool:
    return command not in ("synth", "base_model", "select", "pairs", "sft_set", "rounds", "iterations")


def _build(root: Path, model: Path, stages: list[tuple[str, ...]], **sections) -> Path:
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, root / name)
    for name in ("stages", "datakit"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = tiny_params(root, model)
    params["synth"].update(math_train=40, math_val=4, math_test=12, pool=120, general_val=6, general_eval=24)
    params["generate"].update(shard_size=2, max_new_tokens=12)
    params["judge"]["generation"].update(shard_size=2)
    params["tag"]["generation"].update(shard_size=4, max_new_tokens=32)
    params["embed"].update(chunk_size=4)
    params["score"].update(chunk_size=4, always=True)  # APT's objective reads no r_ref: score it anyway
    params["evaluate"]["nll_batch_size"] = 4
    for section, values in sections.items():
        for name, value in values.items():
            if isinstance(value, dict):
                params[section][name].update(value)
            else:
                params[section][name] = value
    write_params(root, params)
    with contextlib.chdir(root):
        for args in stages:
            _cli(*args)
    return root


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, tiny_model) -> Path:
    """A project with its data and base model and nothing else."""
    return _build(tmp_path_factory.mktemp("fresh"), tiny_model, [("synth",), ("base_model",)])


@pytest.fixture(scope="module")
def iterated(tmp_path_factory, tiny_model) -> Path:
    """A project through iteration 1's SFT set: what generate_similar, judge and score read."""
    steps = [("synth",), ("base_model",), ("tag",), ("index",)]
    steps += [(s, "--iteration", "iter_1") for s in ("generate", "judge", "select", "retrieve")]
    steps += [(s, "--iteration", "iter_1") for s in ("generate_similar", "pairs", "sft_set")]
    root = _build(tmp_path_factory.mktemp("iterated"), tiny_model, steps)
    # generate_similar's answers are in the generation cache now: drop it so the test runs have work to do.
    shutil.rmtree(root / ".datakit" / "cache" / "generations")
    return root


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, sheep_model) -> Path:
    """An I-SHEEP project (one round) from a model taught to list tasks, through round 1's responses."""
    from conftest import SHEEP_SEEDS

    root = tmp_path_factory.mktemp("seeded")
    seeds = [{"instruction": i, "input": x, "output": "ok"} for i, x in SHEEP_SEEDS]
    (root / "seeds.jsonl").write_text("".join(json.dumps(s) + "\n" for s in seeds))
    return _build(
        root,
        sheep_model,
        [("synth",), ("base_model",), ("rounds", "1")],
        isheep={"seeds": "seeds.jsonl"},
        synthesize={
            "prompts": 16,
            "examples": 2,
            "new_per_prompt": 3,
            "generation": {"max_new_tokens": 48, "batch_size": 2, "shard_size": 1},
        },
        assess={"generation": {"max_new_tokens": 4, "batch_size": 2, "shard_size": 2}},
    )


def _outs(root: Path, stage: str, key: str | None) -> list[Path]:
    """What dvc.yaml (or the I-SHEEP recipe's) declares stage ``stage`` writes, for item ``key`` (no key: the
    base model's ``<stage>_base`` where there is one)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    dvcfile = ROOT / ("recipes/isheep/dvc.yaml" if key and key.startswith("round") else "dvc.yaml")
    stages = yaml.safe_load(dvcfile.read_text())["stages"]
    spec = stages[f"{stage}_base"] if key is None and f"{stage}_base" in stages else stages[stage]
    body = spec.get("do", spec)
    item = (params["rounds"] if key and key.startswith("round") else params["iterations"]).get(key or "", {})
    out = []
    for entry in body.get("outs", []) + body.get("metrics", []):
        text = entry if isinstance(entry, str) else next(iter(entry))
        text = text.split("#")[0].strip()
        for name, value in (item or {}).items():
            text = text.replace(f"${{item.{name}}}", str(value))
        for section, values in params.items():
            if isinstance(values, dict):
                for name, value in values.items():
                    text = text.replace(f"${{{section}.{name}}}", str(value))
        assert "${" not in text, text
        out.append(root / text)
    return out


def _work_files(root: Path) -> set[Path]:
    return {p.resolve() for p in (root / ".datakit" / "work").rglob("shard-*.parquet")}


def _cached(root: Path) -> dict[Path, set[str]]:
    """Every cache folder's keys."""
    out: dict[Path, set[str]] = {}
    for part in (root / ".datakit" / "cache").rglob("part-*.parquet"):
        out.setdefault(part.parent.resolve(), set()).update(pl.read_parquet(part, columns=["key"])["key"])
    return out


def _done(root: Path, watch: str) -> int:
    if watch == "shards":
        return len(_work_files(root))
    return sum(1 for _ in (root / ".datakit" / "cache" / watch).rglob("part-*.parquet"))


def _kill_midway(root: Path, args: tuple[str, ...], watch: str, at: int, baseline: int) -> None:
    """Start ``datakit <args>`` and SIGKILL it once ``at`` new shards (or cache parts under ``watch``) exist."""
    proc = subprocess.Popen(
        [DATAKIT, *args, "--no-progress"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while _done(root, watch) < baseline + at:
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "no progress in 300 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def _spied(monkeypatch):
    """Record every shard written and every row offered to a cache while the block runs."""
    shards: list[Path] = []
    offered: dict[Path, set[str]] = {}
    write = datakit.shards.write_table
    put = PartCache.put

    def spy_write(df, path, table):
        shards.append(Path(path).resolve())
        return write(df, path, table)

    def spy_put(self, rows):
        offered.setdefault(self.root.resolve(), set()).update(rows["key"].to_list())
        return put(self, rows)

    monkeypatch.setattr(datakit.shards, "write_table", spy_write)
    monkeypatch.setattr(PartCache, "put", spy_put)
    yield shards, offered
    monkeypatch.undo()


def _tables(paths: list[Path]) -> dict[str, pl.DataFrame]:
    """The stage's data: its parquet tables, and the LanceDB index's tables."""
    out = {}
    for path in paths:
        if path.name == "lancedb":
            import lancedb

            db = lancedb.connect(path)
            for name in db.table_names():
                out[name] = pl.from_arrow(db.open_table(name).to_arrow())
        for file in sorted(path.rglob("*.parquet")) if path.is_dir() else [path]:
            if file.suffix == ".parquet":
                out[file.name] = pl.read_parquet(file)
    return out


def _widen_round(path: Path, n: int) -> None:
    """The model lists the same few tasks for every prompt: number variants of them so that assess has
    ``n`` rows to grade in several shards."""
    from datakit.isheep import INSTRUCTIONS
    from datakit.schemas import read_table, write_table

    kept = read_table(path, INSTRUCTIONS)
    rows = pl.concat([kept] * (n // kept.height + 1)).head(n).with_row_index("k")
    wide = rows.with_columns(
        id=pl.col("id") + "-" + pl.col("k").cast(pl.Utf8),
        instruction=pl.col("instruction") + " (" + pl.col("k").cast(pl.Utf8) + ")",
    ).drop("k")
    write_table(wide, path, INSTRUCTIONS)


# stage, iteration/round key (None = a whole-pool or base-model stage), extra CLI args, what the kill waits
# for (shards under paths.work, or parts of one cache), the project it starts from, setup in the copy.
CASES = [
    ("generate_similar", "iter_1", (), "shards", "iterated", {}),
    (
        "judge",
        "iter_1",
        (),
        "shards",
        "iterated",
        {"judge": {"kind": "llm", "retries": 0, "max_failure_rate": 1.0}},
    ),
    ("score", "iter_1", (), "poft_scores", "iterated", {}),
    ("evaluate", None, ("--base",), "shards", "fresh", {}),
    ("ifeval", None, ("--base",), "shards", "fresh", {}),
    ("tag", None, (), "embeddings", "fresh", {}),
    ("tag", None, (), "tags", "fresh", {"tag": {"tagger": "llm", "max_failure_rate": 1.0, "retries": 0}}),
    ("index", None, (), "embeddings", "fresh", {}),
    ("synthesize", "round_1", (), "shards", "seeded", {}),
    ("assess", "round_1", (), "shards", "seeded", {"assess": {"max_failure_rate": 1.0}}),
]


def _ids(case) -> str:
    stage, _, _, watch, _, over = case
    return f"{stage}-{over['tag']['tagger']}" if "tag" in over else stage


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_killed_stage_resumes_to_the_uninterrupted_output(case, seed, request, tmp_path, monkeypatch):
    stage, key, extra, watch, start, over = case
    source = request.getfixturevalue(start)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = (stage, *(("--iteration", key) if key else ()), *extra)
    for root in (killed, clean):
        shutil.copytree(source, root, symlinks=True)
        params = yaml.safe_load((root / "params.yaml").read_text())
        for section, values in over.items():
            params[section].update(values)
        if stage in ("judge",):
            params["judge"]["model"] = params["base_model"]["source"]
        if stage == "tag" and over.get("tag", {}).get("tagger") == "llm":
            params["tag"]["model"] = str(request.getfixturevalue("tagger_model"))
        write_params(root, params)
        with contextlib.chdir(root):
            if stage == "index":
                _cli("tag")
                shutil.rmtree(root / ".datakit" / "cache" / "embeddings")  # index embeds the pool afresh
            if stage == "assess":
                _cli("synthesize", "--iteration", key)
                _widen_round(root / "data/isheep" / key / "synthesize/instructions.parquet", 16)
                _cli("generate", "--iteration", key)
    outs = _outs(killed, stage, key)
    for root in (killed, clean):  # as dvc repro does before it runs a stage
        for path in _outs(root, stage, key):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    at = random.Random(f"{stage}-{watch}-{seed}").randint(1, 3)
    _kill_midway(killed, args, watch, at, baseline=_done(killed, watch))
    left = [p for p in outs if p.exists()]
    assert not left, f"the killed run left outputs a reader could take for finished: {left}"
    finished, cached = _work_files(killed), _cached(killed)
    assert finished or cached, "nothing was done before the kill"

    with contextlib.chdir(killed), _spied(monkeypatch) as (rewritten, offered):
        _cli(*args)
    assert not set(rewritten) & finished, "a finished shard was computed again"
    for folder, keys in offered.items():
        assert not keys & cached.get(folder, set()), f"cached rows computed again ({folder.name})"
    assert not _work_files(killed), "the rerun leaves no scratch shards"

    with contextlib.chdir(clean):
        _cli(*args)
    resumed, fresh_run = _tables(outs), _tables(_outs(clean, stage, key))
    assert resumed and resumed.keys() == fresh_run.keys()
    for name, table in resumed.items():
        # Embeddings encoded in other batches may differ in the last float bits; everything else is exact.
        assert_frame_equal(table, fresh_run[name], check_exact=False, rtol=1e-5, atol=1e-6)
