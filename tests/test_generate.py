"""The generate stage: transformers backend on the tiny model, resume after kill -9, openai against a
real server (vllm: test_vllm.py)."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import tiny_params, write_params
from openai_server import serve_openai

from datakit.backends import make_backend
from datakit.config import GenerationConfig, OpenAIConfig, load_params
from datakit.errors import DatakitError
from datakit.generate import conversation, generate_frame, user_message
from datakit.schemas import GENERATIONS, check_frame, read_table

QUESTIONS = [
    "How many apples?",
    "Reverse the string hello please",
    "What is the capital of France?",
    "Tom has 3 boxes",
    "Convert 5 kilometres to metres now, thanks",
]


def examples(n=5):
    qs = (QUESTIONS * (n // len(QUESTIONS) + 1))[:n]
    return pl.DataFrame(
        {
            "id": [f"e{i}" for i in range(n)],
            "instruction": [f"{q} ({i})" for i, q in enumerate(qs)],
            "input": ["" if i % 2 else "extra input" for i in range(n)],
            "output": ["#### 1"] * n,
            "source": ["t"] * n,
            "split": ["train"] * n,
        }
    )


def test_user_message_and_conversation():
    assert user_message("Do it.", "") == "Do it."
    assert user_message("Do it.", "data") == "Do it.\n\ndata"
    assert conversation("hi", "be brief") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


def test_generate_frame_keeps_input_order_and_records_tokens(tiny_model, tmp_path):
    cfg = GenerationConfig(batch_size=3, max_new_tokens=7, shard_size=4)
    ex = examples(9)
    out, stats = generate_frame(
        ex, make_backend(cfg, str(tiny_model)), cfg, iteration=3, work_dir=tmp_path, progress=False
    )
    check_frame(out, GENERATIONS, "out")
    assert out["id"].to_list() == ex["id"].to_list()
    assert out["prompt"][0] == "How many apples? (0)\n\nextra input"
    assert stats.shards == 3 and stats.computed == 3 and stats.resumed == 0
    assert set(out["iteration"]) == {3} and out["gen_params_hash"].n_unique() == 1
    assert all(1 <= n <= 7 for n in out["n_tokens"])
    # A row that used its whole budget stopped for 'length'; one that ended early for 'stop'.
    assert ((out["n_tokens"] == 7) == (out["finish_reason"] == "length")).all()
    assert out["output"].n_unique() > 1


def test_batching_does_not_change_greedy_answers(tiny_model, tmp_path):
    ex = examples(6)
    answers = []
    for bs in (1, 4):
        cfg = GenerationConfig(batch_size=bs, max_new_tokens=10, shard_size=100)
        out, _ = generate_frame(
            ex,
            make_backend(cfg, str(tiny_model)),
            cfg,
            iteration=1,
            work_dir=tmp_path / str(bs),
            progress=False,
        )
        answers.append(out["output"].to_list())
    assert answers[0] == answers[1]


def test_finished_shards_are_read_back_not_recomputed(tiny_model, tmp_path):
    cfg = GenerationConfig(batch_size=2, max_new_tokens=5, shard_size=2)
    backend = make_backend(cfg, str(tiny_model))
    first, _ = generate_frame(examples(6), backend, cfg, iteration=1, work_dir=tmp_path, progress=False)
    # Remove one finished shard: only that one is recomputed; the others are read back untouched.
    redone = pl.read_parquet(tmp_path / "shard-00001.parquet")["id"].to_list()
    (tmp_path / "shard-00001.parquet").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*.parquet")}
    again, stats = generate_frame(examples(6), backend, cfg, iteration=1, work_dir=tmp_path, progress=False)
    assert (stats.resumed, stats.computed) == (2, 1) and stats.computed_ids == redone
    assert {p: (tmp_path / p).stat().st_mtime_ns for p in mtimes} == mtimes
    assert again.equals(first)


def test_generate_resumes_after_kill_9(project):
    """Kill the real CLI mid-stage; the rerun reads every finished shard back and recomputes none."""
    params = tiny_params(project, Path(load_params("params.yaml").base_model.source))
    params["synth"]["math_train"] = 48
    params["generate"].update(batch_size=2, shard_size=2, max_new_tokens=24)
    write_params(project, params)
    from stages import base_model, synth

    base_model.run(load_params("params.yaml"))
    synth.run(load_params("params.yaml"))
    cmd = [str(Path(sys.executable).parent / "datakit"), "generate", "--iteration", "iter_1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    work = project / ".datakit" / "work" / "generate"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(work.glob("*/shard-*.parquet"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(work.glob("*/shard-*.parquet"))
    assert 3 <= len(finished) < 24, "the stage must be killed half way"
    assert not (project / "data/iter_1/generate/generations.parquet").exists()

    from stages import generate

    out = generate.run(load_params("params.yaml"), "iter_1", progress=False)
    summary = json.loads((project / "data/iter_1/generate/summary.json").read_text())
    assert summary["shards_resumed"] == len(finished) and summary["shards"] == 24
    assert out.height == 48
    assert not any(work.iterdir()), "shards are removed once the stage's output is written"

    # Same answers as an uninterrupted run, made from nothing: no shards and no generation cache (the
    # resumed run filled it, so a rerun here would read its own answers back).
    shutil.rmtree(project / ".datakit" / "cache" / "generations")
    fresh = generate.run(load_params("params.yaml"), "iter_1", progress=False)
    summary = json.loads((project / "data/iter_1/generate/summary.json").read_text())
    assert summary["rows_from_cache"] == 0 and summary["shards_resumed"] == 0
    assert fresh["output"].to_list() == out["output"].to_list()


def test_changing_the_model_or_the_settings_discards_the_kept_shards(project, tiny_model, judge_model):
    """Shards left by a killed run are read back only by a run with the same model, settings and rows."""
    from datakit.generate import answer

    params = load_params("params.yaml")
    ex = examples(10)
    kept = answer(params, ex, str(tiny_model), 1, name="g", desc="g", progress=False)[1]
    assert (kept["shards"], kept["shards_resumed"]) == (2, 0)
    settings = dataclasses.replace(
        params,
        generate=dataclasses.replace(params.generate, max_new_tokens=params.generate.max_new_tokens + 1),
    )
    for p, model, rows in (
        (params, str(judge_model), ex),  # another model
        (settings, str(tiny_model), ex),  # other generation settings
        (params, str(tiny_model), examples(10).with_columns(input=pl.lit("other"))),  # other prompts
    ):
        assert answer(p, rows, model, 1, name="g", desc="g", progress=False)[1]["shards_resumed"] == 0
    # Unchanged: the kept shards are read back (the generation cache, which would answer first, is emptied).
    shutil.rmtree(project / ".datakit" / "cache" / "generations")
    again = answer(params, ex, str(tiny_model), 1, name="g", desc="g", progress=False)[1]
    assert (again["shards_resumed"], again["rows_from_cache"]) == (2, 0)


def test_openai_backend_against_a_real_server_matches_transformers(tiny_model, tmp_path):
    ex = examples(5)
    local_cfg = GenerationConfig(batch_size=5, max_new_tokens=9)
    backend = make_backend(local_cfg, str(tiny_model))
    local, _ = generate_frame(
        ex, backend, local_cfg, iteration=1, work_dir=tmp_path / "local", progress=False
    )
    with serve_openai(tiny_model) as (base_url, model_name):
        served = OpenAIConfig(base_url=base_url, model=model_name, max_concurrency=3)
        cfg = GenerationConfig(backend="openai", max_new_tokens=9, openai=served)
        remote, _ = generate_frame(
            ex, make_backend(cfg, ""), cfg, iteration=1, work_dir=tmp_path / "remote", progress=False
        )
    assert remote["output"].to_list() == local["output"].to_list()
    assert remote["finish_reason"].to_list() == local["finish_reason"].to_list()
    assert remote["n_tokens"].to_list() == local["n_tokens"].to_list()
    assert remote["model"][0] == str(tiny_model)


def test_openai_failures_are_recorded_bounded_and_retried_on_rerun(tmp_path, tiny_model):
    dead = OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0, timeout_s=2)
    cfg = GenerationConfig(backend="openai", max_new_tokens=4, max_failure_rate=0.5, openai=dead)
    with pytest.raises(DatakitError, match=r"5/5 \(100.0% > limit 0.5\); first: id e0: APIConnectionError"):
        generate_frame(
            examples(5), make_backend(cfg, ""), cfg, iteration=1, work_dir=tmp_path, progress=False
        )
    # The failed rows were still written as a shard (recorded, not lost)...
    shard = read_table(tmp_path / "shard-00000.parquet", GENERATIONS)
    assert shard["finish_reason"].to_list() == ["error"] * 5 and shard["error"].null_count() == 0
    # ...and the next run does not read them back: the shard is generated again (here by a working backend).
    ok = GenerationConfig(max_new_tokens=4)
    out, stats = generate_frame(
        examples(5), make_backend(ok, str(tiny_model)), ok, iteration=1, work_dir=tmp_path, progress=False
    )
    assert (stats.resumed, stats.computed) == (0, 1)
    assert out["finish_reason"].is_in(["stop", "length"]).all()


def test_openai_key_comes_from_the_named_env_var(monkeypatch):
    monkeypatch.setenv("MY_SERVER_KEY", "sk-test-123")
    backend = make_backend(
        GenerationConfig(backend="openai", openai=OpenAIConfig(api_key_env="MY_SERVER_KEY", model="m")), ""
    )
    assert backend.client.api_key == "sk-test-123"


def test_vllm_without_the_package_is_one_clear_error(tiny_model):
    """Without vllm installed (the tests that run it are in test_vllm.py)."""
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(DatakitError, match=r"needs vllm: pip install 'datakit\[vllm\]' on a CUDA GPU"):
        make_backend(GenerationConfig(backend="vllm"), str(tiny_model))


def test_generation_cache_answers_the_same_model_and_prompts_once(tiny_model, tmp_path):
    import shutil

    from datakit.generate import generation_cache

    cfg = GenerationConfig(batch_size=2, max_new_tokens=5, shard_size=2)
    backend = make_backend(cfg, str(tiny_model))
    cache = generation_cache(tmp_path / "cache", cfg, str(tiny_model))
    first, stats = generate_frame(
        examples(4), backend, cfg, iteration=1, work_dir=tmp_path / "w1", progress=False, cache=cache
    )
    assert (stats.cached, stats.computed) == (0, 2)
    # Another stage (new work folder), a copy of the same model, two more prompts: only those two run.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    again, stats = generate_frame(
        examples(6),
        make_backend(cfg, str(copy)),
        cfg,
        iteration=2,
        work_dir=tmp_path / "w2",
        progress=False,
        cache=generation_cache(tmp_path / "cache", cfg, str(copy)),
    )
    assert (stats.cached, stats.computed_ids) == (4, ["e4", "e5"])
    assert again["id"].to_list() == [f"e{i}" for i in range(6)]
    assert again.head(4).select("output", "n_tokens").equals(first.select("output", "n_tokens"))
    assert again["iteration"].to_list() == [2] * 6
    # Other weights, other settings, or sampling: no cache (or another one).
    other = generation_cache(tmp_path / "cache", GenerationConfig(max_new_tokens=6), str(tiny_model))
    assert other is not None and other.root != cache.root
    assert generation_cache(tmp_path / "cache", GenerationConfig(temperature=0.7), str(tiny_model)) is None
    assert generation_cache(tmp_path / "cache", GenerationConfig(backend="openai"), str(tiny_model)) is None
