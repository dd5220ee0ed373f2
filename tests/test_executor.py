"""The Ray executor: shards run on a real local Ray cluster give what the local loop gives, and resume."""

import json
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import JUDGE_RUBRIC, tiny_params, write_params

from datakit.backends import LazyBackend, make_backend
from datakit.config import EmbedConfig, ExecutorConfig, GenerationConfig, load_params
from datakit.embed import Embedder
from datakit.errors import ConfigError
from datakit.schemas import Table
from datakit.shards import run_sharded
from datakit.tags import EmbeddingTagger, load_taxonomy, tag_frame

ray = pytest.importorskip("ray")

RAY = ExecutorConfig(kind="ray", workers=2, cpus_per_worker=1)
ROWS = Table("rows", {"id": pl.Utf8, "text": pl.Utf8}, required=("id",), unique=("id",))


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """One local cluster (2 CPUs) for the module; the executor joins it instead of starting its own."""
    from datakit.executor import ray_init

    ray_init(RAY)
    yield
    ray.shutdown()


def frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [f"row {i}" for i in range(n)]})


def test_run_sharded_on_ray_matches_local_and_resumes(tmp_path):
    df = frame(23)

    def shout(shard: pl.DataFrame, bar) -> pl.DataFrame:
        bar.update(shard.height)
        return shard.with_columns(pl.col("text").str.to_uppercase())

    local, _ = run_sharded(df, shout, tmp_path / "local", 4, ROWS, "t", progress=False)
    remote, stats = run_sharded(df, shout, tmp_path / "ray", 4, ROWS, "t", progress=False, executor=RAY)
    assert remote.equals(local) and stats.computed == 6 and stats.resumed == 0
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [
        f"shard-{i:05d}.parquet" for i in range(6)
    ]

    # A worker failing on one shard stops the run; the shards that came back are kept and not redone.
    def fails_on_r13(shard: pl.DataFrame, bar) -> pl.DataFrame:
        if "r13" in shard["id"].to_list():
            raise ValueError("worker failed on r13")
        return shout(shard, bar)

    work = tmp_path / "resume"
    with pytest.raises(Exception, match="worker failed on r13"):
        run_sharded(df, fails_on_r13, work, 4, ROWS, "t", progress=False, executor=RAY)
    kept = sorted(p.name for p in work.iterdir())
    assert "shard-00003.parquet" not in kept
    again, stats = run_sharded(df, shout, work, 4, ROWS, "t", progress=False, executor=RAY)
    assert again.equals(local)
    assert stats.resumed == len(kept) and stats.computed == 6 - len(kept)


def test_loaded_backend_is_refused_lazy_one_travels(tiny_model):
    cfg = GenerationConfig(max_new_tokens=6, batch_size=2)
    loaded = make_backend(cfg, str(tiny_model))
    with pytest.raises(TypeError, match="lazy=True"):
        pickle.dumps(loaded)
    lazy = make_backend(cfg, str(tiny_model), lazy=True)
    assert isinstance(lazy, LazyBackend) and lazy.model == str(tiny_model)
    convs = [[{"role": "user", "content": "Add 2 and 3."}], [{"role": "user", "content": "Hi"}]]
    answered = lazy.generate(convs)
    shipped = pickle.loads(pickle.dumps(lazy))  # travels without the model it loaded
    assert shipped._built is None and shipped.generate(convs) == answered == loaded.generate(convs)


def test_generate_and_judge_stages_on_ray_match_local(project, judge_model):
    """The real generate and (LLM) judge stages: same rows from the Ray executor as from the local one."""
    params = tiny_params(project, Path(load_params("params.yaml").base_model.source))
    params["generate"].update(shard_size=3, max_new_tokens=12)
    params["judge"].update(kind="llm", model=str(judge_model), rubric=JUDGE_RUBRIC)
    params["judge"]["generation"].update(max_new_tokens=6, shard_size=4)
    write_params(project, params)
    from stages import base_model, generate, judge, synth

    synth.run(load_params("params.yaml"))
    base_model.run(load_params("params.yaml"))
    results = {}
    for kind in ("local", "ray"):
        params["executor"] = {"kind": kind, "workers": 2}
        params["paths"]["cache"] = str(project / f"cache_{kind}")  # no answers read back from the other run
        write_params(project, params)
        gens = generate.run(load_params("params.yaml"), "iter_1", progress=False)
        summary = json.loads((project / "data/iter_1/generate/summary.json").read_text())
        judged = judge.run(load_params("params.yaml"), "iter_1", progress=False)
        results[kind] = gens, judged, summary
    (gens_l, judged_l, _), (gens_r, judged_r, sum_r) = results["local"], results["ray"]
    assert gens_r.equals(gens_l) and judged_r.equals(judged_l)
    assert gens_l.height == 12 and sum_r["shards"] == 4 and sum_r["rows_from_cache"] == 0
    assert judged_l["score"].drop_nulls().len() > 0  # the judge model answers "[RESULT] 4"
    assert not list((project / ".datakit/work/generate").glob("*/shard-*")), "work cleared after writing"


def test_embedding_and_tagging_on_ray_match_local(tmp_path):
    texts = [f"Tom has {i} apples and buys {i + 2} more." for i in range(30)] + ["Reverse the word 'ray'."]
    cfg = EmbedConfig(chunk_size=8)
    local = Embedder(cfg, tmp_path / "local", progress=False)
    remote = Embedder(cfg, tmp_path / "ray", progress=False, executor=RAY)
    vl, vr = local.embed(texts), remote.embed(texts)
    assert vr.shape == vl.shape == (31, 384) and np.allclose(vr, vl, atol=1e-5)
    assert remote.encoded == 31 and remote._model is None, "encoded on the workers, counted here"
    # The driver wrote the cache: a second pass encodes nothing.
    again = Embedder(cfg, tmp_path / "ray", progress=False, executor=RAY)
    assert np.array_equal(again.embed(texts), vr) and again.encoded == 0 and again.reused == 31

    taxonomy = load_taxonomy(Path(__file__).parents[1] / "datakit/resources/taxonomy.yaml")
    tagged = {}
    for kind, executor in (("local", None), ("ray", RAY)):
        embedder = Embedder(cfg, None, progress=False, executor=executor)
        tagger = EmbeddingTagger(taxonomy, embedder, top_k=3, min_similarity=0.3)
        ids = [f"t{i}" for i in range(len(texts))]
        tagged[kind], stats = tag_frame(
            ids, texts, tagger, None, chunk_size=8, progress=False, executor=executor
        )
        assert stats.computed == 31 and stats.failed == 0
    assert tagged["ray"].equals(tagged["local"])
    assert "Word Problem" in tagged["ray"]["tags"][0]


def test_executor_settings_are_checked(tmp_path):
    params = tiny_params(tmp_path, tmp_path)
    params["executor"] = {"kind": "spark"}
    with pytest.raises(ConfigError, match="executor.kind: expected one of"):
        load_params(write_params(tmp_path, params))
    params["executor"] = {"kind": "ray", "workers": 0}
    with pytest.raises(ConfigError, match="executor.workers: must be >= 1"):
        load_params(write_params(tmp_path, params))


def test_llm_tagger_on_ray_matches_local(tagger_model):
    """The LLM tagger's lazy backend travels to the workers: same tags (and errors) as the local loop."""
    from datakit.config import TagConfig
    from datakit.tags import make_tagger

    cfg = TagConfig(tagger="llm", model=str(tagger_model), generation=GenerationConfig(max_new_tokens=48))
    texts = ["Tom has 3 boxes.", "Reverse 'hello'.", "Convert 5 km to m.", "What is 2 + 2?", "Name a prime."]
    ids = [f"q{i}" for i in range(len(texts))]
    tagged = {}
    for kind, executor in (("local", None), ("ray", RAY)):
        tagger = make_tagger(cfg, Embedder(EmbedConfig(), None, progress=False), lazy=executor is not None)
        tagged[kind], stats = tag_frame(
            ids, texts, tagger, None, chunk_size=2, progress=False, executor=executor
        )
        assert stats.computed == 5
    assert tagged["ray"].equals(tagged["local"])
    assert tagged["ray"]["tags"].drop_nulls().len() >= 4  # the tagger model answers its training queries
