"""The tag, index and retrieve stages on a tiny project: real MiniLM, real LanceDB, real parquet caches."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_params, write_params

from datakit.config import load_params
from datakit.errors import DataError
from datakit.index import open_index
from datakit.schemas import BAD_CASES, EXAMPLES, read_table, write_table
from stages import index as index_stage
from stages import retrieve as retrieve_stage
from stages import synth as synth_stage
from stages import tag as tag_stage


def metrics(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def indexed(project) -> Path:
    """The tiny project with synth, tag and index run once."""
    params = load_params()
    synth_stage.run(params)
    tag_stage.run(params, progress=False)
    index_stage.run(params, progress=False)
    return project


def write_bad_cases(project: Path, n: int = 5, examples: pl.DataFrame | None = None) -> pl.DataFrame:
    """Make iteration 1's bad cases by hand: the first ``n`` train problems (or ``examples``), answered wrong."""
    if examples is None:
        examples = read_table(project / "data/synth/math_train.parquet", EXAMPLES).head(n)
    bad = examples.with_columns(
        response=pl.lit("I think 7."),
        score=pl.lit(1, pl.Int64),
        feedback=pl.lit("wrong"),
        model=pl.lit("m"),
        iteration=pl.lit(1, pl.Int64),
    )
    write_table(bad, project / "data/iter_1/select/bad_cases.parquet", BAD_CASES)
    return bad


def test_index_embeds_only_new_or_changed_rows(indexed):
    project = indexed
    tagged = metrics(project / "data/tag/metrics.json")
    assert (tagged["tagged_now"], tagged["embedded_now"]) == (60, 60)
    # The embedding tagger embedded the pool; the index reads those vectors from the cache.
    first = metrics(project / "data/index/metrics.json")
    assert (first["rows"], first["embedded_now"], first["embedded_from_cache"]) == (60, 0, 60)

    # Unchanged pool, rebuilt: nothing re-tagged or re-embedded.
    params = load_params()
    tag_stage.run(params, progress=False)
    index_stage.run(params, progress=False)
    assert metrics(project / "data/tag/metrics.json")["tagged_now"] == 0
    assert metrics(project / "data/tag/metrics.json")["embedded_now"] == 0
    assert metrics(project / "data/index/metrics.json")["embedded_now"] == 0

    # The pool changes: 2 rows dropped, 1 edited, 3 added -> exactly 4 texts tagged and embedded.
    pool_path = project / "data/synth/pool.parquet"
    pool = read_table(pool_path, EXAMPLES)
    edited = pool.slice(2).with_columns(
        instruction=pl.when(pl.col("id") == pool["id"][2])
        .then(pl.lit("Spell the word 'harbour' backwards."))
        .otherwise(pl.col("instruction"))
    )
    new = pool.head(3).with_columns(
        id=pl.Series(["new-1", "new-2", "new-3"]),
        instruction=pl.Series(
            ["How many days are in 3 weeks?", "Write 14 in Roman numerals.", "What is 15% of 80?"]
        ),
    )
    write_table(pl.concat([edited, new]), pool_path, EXAMPLES)
    tag_stage.run(params, progress=False)
    index_stage.run(params, progress=False)
    tagged = metrics(project / "data/tag/metrics.json")
    assert (tagged["tagged_now"], tagged["embedded_now"], tagged["cached"]) == (4, 4, 57)
    m = metrics(project / "data/index/metrics.json")
    assert (m["rows"], m["embedded_now"], m["embedded_from_cache"]) == (61, 0, 61)

    table = open_index(project / "data/index/lancedb").to_polars().collect()
    assert sorted(table["id"]) == sorted(edited["id"].to_list() + ["new-1", "new-2", "new-3"])
    assert table.filter(pl.col("id") == "new-2")["tags"].to_list()[0]  # tagged
    from datakit.embed import Embedder

    row = table.filter(pl.col("id") == pool["id"][2])
    assert row["instruction"][0] == "Spell the word 'harbour' backwards."
    fresh = Embedder(params.embed, None, progress=False).embed(["Spell the word 'harbour' backwards."])[0]
    np.testing.assert_allclose(np.asarray(row["vector"][0].to_list()), fresh, atol=1e-5)


def test_index_refuses_tags_of_another_pool(indexed):
    pool_path = indexed / "data/synth/pool.parquet"
    pool = read_table(pool_path, EXAMPLES)
    changed_id = pool["id"][4]
    write_table(
        pool.with_columns(
            instruction=pl.when(pl.col("id") == changed_id)
            .then(pl.lit("Edited."))
            .otherwise(pl.col("instruction"))
        ),
        pool_path,
        EXAMPLES,
    )
    with pytest.raises(DataError) as err:
        index_stage.run(load_params(), progress=False)
    assert err.value.file.endswith("data/tag/pool_tags.parquet") and changed_id in str(err.value)
    assert "rerun `datakit tag`" in str(err.value)


def test_retrieve_stage_writes_cases_metrics_and_plot(indexed):
    project = indexed
    bad = write_bad_cases(project)
    params = load_params()  # the paper's tag strategy, whatever the default
    params = dataclasses.replace(params, retrieve=dataclasses.replace(params.retrieve, strategy="tag"))
    similar = retrieve_stage.run(params, "iter_1", progress=False)
    out = project / "data/iter_1/retrieve"
    assert (
        read_table(out / "similar_cases.parquet", retrieve_stage.SIMILAR_CASES).height == similar.height > 0
    )
    bad_tags = pl.read_parquet(out / "bad_case_tags.parquet")
    assert bad_tags["id"].to_list() == bad["id"].to_list() and bad_tags["tags"].null_count() == 0
    m = metrics(out / "metrics.json")
    assert m["bad_cases"] == 5 and m["similar_cases"] == similar.height and m["bad_cases_tagged_now"] == 5
    assert m["strategy"] == "tag" and 0 < m["mean_similarity"] <= 1
    # Each tag query keeps at most |B_t| rows, so no more rows than tag assignments.
    assert similar.height <= sum(len(t) for t in bad_tags["tags"].to_list())
    assert set(similar["bad_case_ids"].explode()) <= set(bad["id"])
    assert (out / "tag_distribution.png").read_bytes()[:4] == b"\x89PNG"
    dist = pl.read_csv(out / "tag_distribution.csv")
    assert dist["bad_cases"].sum() == sum(len(t) for t in bad_tags["tags"].to_list())

    # The next iteration's bad cases were tagged and embedded before: the caches serve them.
    retrieve_stage.run(params, "iter_1", progress=False)
    m2 = metrics(out / "metrics.json")
    assert (m2["bad_cases_tagged_now"], m2["bad_cases_tags_from_cache"], m2["embedded_now"]) == (0, 5, 0)


@pytest.mark.parametrize("strategy", ["mean", "cluster", "mmr"])
def test_retrieve_stage_other_strategies(indexed, strategy):
    write_bad_cases(indexed, n=6)
    params = tiny_params(indexed, Path(load_params().base_model.source))
    params["retrieve"].update(strategy=strategy, scale=2, max_ratio=0)  # 0: no cap on the union
    write_params(indexed, params)
    similar = retrieve_stage.run(load_params(), "iter_1", progress=False)
    assert set(similar["strategy"]) == {strategy}
    if strategy == "mean":
        assert similar.height == 12 and set(similar["query"]) == {"mean"}
        # max_ratio 0.5 keeps ceil(0.5 * 6 bad cases) = 3 rows: the three most similar of the same search.
        params["retrieve"]["max_ratio"] = 0.5
        write_params(indexed, params)
        capped = retrieve_stage.run(load_params(), "iter_1", progress=False)
        assert capped["id"].to_list() == similar.sort("similarity", descending=True)["id"].head(3).to_list()
    if strategy == "cluster":
        assert similar["query"].str.starts_with("cluster:").all() and similar.height <= 12


def test_guard_keeps_test_items_out(indexed):
    project = indexed
    test = read_table(project / "data/synth/math_test.parquet", EXAMPLES)
    pool_path = project / "data/synth/pool.parquet"
    pool = read_table(pool_path, EXAMPLES)
    leaked = test.head(2).with_columns(id=pl.Series(["leak-1", "leak-2"]), split=pl.lit("pool"))
    write_table(pl.concat([pool, leaked]), pool_path, EXAMPLES)
    params = load_params()
    tag_stage.run(params, progress=False)
    index_stage.run(params, progress=False)
    assert metrics(project / "data/index/metrics.json")["test_duplicates"] == 2
    # Bad cases that are the test items' near twins would pull the leaked rows first, were it not for the guard.
    write_bad_cases(project, examples=test.head(2))
    similar = retrieve_stage.run(params, "iter_1", progress=False)
    assert not {"leak-1", "leak-2"} & set(similar["id"])
    assert metrics(project / "data/iter_1/retrieve/metrics.json")["guard_dropped_pool_rows"] >= 2


def test_retrieve_refuses_a_pool_tagged_by_another_tagger(indexed):
    write_bad_cases(indexed)
    params = tiny_params(indexed, Path(load_params().base_model.source))
    params["tag"]["top_k"] = 1
    write_params(indexed, params)
    with pytest.raises(DataError, match="rerun `datakit tag` and `datakit index`"):
        retrieve_stage.run(load_params(), "iter_1", progress=False)


def test_retrieve_refuses_an_index_built_with_another_embedder(project, tagger_model, tmp_path):
    """With the LLM tagger (its fingerprint does not hold the embedder, unlike the embedding tagger's) only the
    embedder guard can tell that the index's vectors came from another embedder."""
    import shutil

    from datakit.embed import minilm_path

    params = tiny_params(project, Path(load_params().base_model.source))
    params["tag"].update(tagger="llm", model=str(tagger_model), retries=0, max_failure_rate=1.0)
    params["tag"]["generation"]["max_new_tokens"] = 24
    write_params(project, params)
    synth_stage.run(load_params())
    tag_stage.run(load_params(), progress=False)
    index_stage.run(load_params(), progress=False)
    write_bad_cases(project)
    # A real second embedder: MiniLM with a shorter max_seq_length (same weights and width, other vectors
    # for long texts), so only the recorded fingerprint can tell them apart.
    other = tmp_path / "minilm-128"
    shutil.copytree(minilm_path(), other)
    config = other / "sentence_bert_config.json"
    config.write_text(config.read_text().replace('"max_seq_length": 256', '"max_seq_length": 128'))
    assert '"max_seq_length": 128' in config.read_text()
    params["embed"]["model"] = str(other)
    write_params(project, params)
    with pytest.raises(DataError, match="built with embedder"):
        retrieve_stage.run(load_params(), "iter_1", progress=False)
