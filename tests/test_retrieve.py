"""Retrieval on real LanceDB tables in temp folders, checked against numpy brute force of the paper's eq. 1-5."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from datakit.config import IndexConfig, RetrieveConfig
from datakit.index import build_index, guard_similarity, has_ann, open_index
from datakit.retrieve import SIMILAR_CASES, Searcher, diagnostics, guard_count, retrieve, tag_distribution
from datakit.schemas import check_frame

TAGS = ["Arithmetic", "Dates", "Spelling", "Units", "Logic"]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def pool_frame(ids, tags, test_sim=None, texts=None) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "id": ids,
            "instruction": texts or [f"question {i}" for i in ids],
            "input": [""] * n,
            "output": [f"answer {i}" for i in ids],
            "source": ["hand"] * n,
            "tags": tags,
            "text_hash": [f"h{i}" for i in ids],
            "test_similarity": test_sim if test_sim is not None else [0.0] * n,
        },
        schema_overrides={"tags": pl.List(pl.Utf8)},
    )


@pytest.fixture(scope="module")
def random_pool(tmp_path_factory):
    """400 random unit vectors in 16 dims, 1-2 tags each, 10 rows behind the guard."""
    rng = np.random.default_rng(7)
    n = 400
    vecs = unit(rng.normal(size=(n, 16)))
    tags = [[TAGS[i % 5]] + ([TAGS[(i * 3 + 1) % 5]] if i % 4 == 0 else []) for i in range(n)]
    tags = [sorted(set(t)) for t in tags]
    test_sim = [0.99 if i % 40 == 0 else 0.1 for i in range(n)]
    rows = pool_frame([f"p{i:03d}" for i in range(n)], tags, test_sim)
    db = tmp_path_factory.mktemp("pool") / "lancedb"
    build_index(db, rows, vecs, IndexConfig())
    bad_vecs = unit(rng.normal(size=(24, 16)) + vecs[:24] * 2)  # bad cases near some pool rows
    bad_tags = [sorted({TAGS[i % 4], TAGS[(i + 2) % 5]}) for i in range(24)]
    bad_ids = [f"b{i:02d}" for i in range(24)]
    return open_index(db), rows, vecs, bad_ids, bad_tags, bad_vecs


def brute_force(rows, vecs, bad_ids, bad_tags, bad_vecs, scale=1, guard=0.95):
    """Eq. 1-5 in numpy: per tag, mean of B_t, cosine to P_t, top |B_t| * scale; union keeping the best."""
    pool_tags = rows["tags"].to_list()
    allowed = rows["test_similarity"].to_numpy() < guard
    best: dict[str, tuple[float, str]] = {}
    sources: dict[str, set[str]] = {}
    for tag in sorted({t for ts in bad_tags for t in ts}):
        members = [i for i, ts in enumerate(bad_tags) if tag in ts]
        q = bad_vecs[members].mean(axis=0)  # eq. 2
        cand = [j for j, ts in enumerate(pool_tags) if tag in ts and allowed[j]]  # P_t
        cos = vecs[cand] @ q / (np.linalg.norm(vecs[cand], axis=1) * np.linalg.norm(q))  # eq. 3
        for r in np.argsort(-cos)[: len(members) * scale]:  # eq. 4
            pid = rows["id"][int(cand[r])]
            if pid not in best or cos[r] > best[pid][0]:
                best[pid] = (float(cos[r]), tag)
            sources.setdefault(pid, set()).update(bad_ids[m] for m in members)  # eq. 5: union
    return best, sources


@pytest.mark.parametrize("scale", [1, 2])
def test_tag_strategy_equals_numpy_brute_force(random_pool, scale):
    table, rows, vecs, bad_ids, bad_tags, bad_vecs = random_pool
    cfg = RetrieveConfig(strategy="tag", scale=scale, max_sources=100)
    got = retrieve(bad_ids, bad_tags, bad_vecs, Searcher(table, IndexConfig(), cfg.guard_threshold), cfg)
    check_frame(got, SIMILAR_CASES, "similar_cases")
    best, sources = brute_force(rows, vecs, bad_ids, bad_tags, bad_vecs, scale)
    assert sorted(got["id"]) == sorted(best)
    for r in got.iter_rows(named=True):
        sim, tag = best[r["id"]]
        assert r["similarity"] == pytest.approx(sim, abs=1e-5)
        assert r["query_tag"] == tag and r["query"] == f"tag:{tag}"
        assert set(r["bad_case_ids"]) == sources[r["id"]] and r["n_sources"] == len(sources[r["id"]])
        assert r["split"] == "pool" and r["strategy"] == "tag"
        assert r["output"] == f"answer {r['id']}"  # the pool row's own reference answer travels along
    # Ordered best first, and nothing behind the guard.
    assert got["similarity"].to_list() == sorted(got["similarity"].to_list(), reverse=True)
    guarded = set(rows.filter(pl.col("test_similarity") >= 0.95)["id"])
    assert not guarded & set(got["id"]) and len(guarded) == 10


def test_tag_filter_really_filters(tmp_path):
    # The nearest row to the bad cases' mean (p_near) lacks their tag: it must not come back, although an
    # unfiltered search ranks it first. Expected: the two 'Dates' rows, nearest first.
    vecs = unit(np.array([[1.0, 0.0], [0.9, 0.3], [0.5, -0.8], [-1.0, 0.1]]))
    rows = pool_frame(["p_near", "p_a", "p_b", "p_far"], [["Spelling"], ["Dates"], ["Dates"], ["Dates"]])
    build_index(tmp_path / "db", rows, vecs, IndexConfig())
    table = open_index(tmp_path / "db")
    bad_vecs = unit(np.array([[1.0, 0.05], [1.0, -0.05]]))
    search = Searcher(table, IndexConfig())
    assert search(bad_vecs.mean(axis=0), 1)["id"].to_list() == ["p_near"]
    got = retrieve(["b1", "b2"], [["Dates"], ["Dates"]], bad_vecs, search, RetrieveConfig())
    assert got["id"].to_list() == ["p_a", "p_b"]
    assert got["bad_case_ids"].to_list() == [["b1", "b2"], ["b2", "b1"]]  # nearest bad case first
    # A quote in a tag name is escaped, not an SQL error.
    assert retrieve(["b1"], [["O'Brien"]], bad_vecs[:1], search, RetrieveConfig()).height == 0


def test_mean_and_cluster_equal_brute_force(random_pool):
    from sklearn.cluster import KMeans

    table, rows, vecs, bad_ids, bad_tags, bad_vecs = random_pool
    allowed = rows["test_similarity"].to_numpy() < 0.95
    search = Searcher(table, IndexConfig(), 0.95)

    def top(q, k):
        cos = np.where(allowed, vecs @ q / np.linalg.norm(q), -np.inf)
        return [rows["id"][int(j)] for j in np.argsort(-cos)[:k]]

    got = retrieve(bad_ids, bad_tags, bad_vecs, search, RetrieveConfig(strategy="mean"))
    assert got["id"].to_list() == top(bad_vecs.mean(axis=0), 24)
    assert set(got["query"]) == {"mean"} and got["query_tag"].null_count() == 24

    k = round(math.sqrt(24))  # clusters: 0 = round(sqrt(|B|)) = 5
    km = KMeans(n_clusters=k, random_state=0, n_init=10).fit(bad_vecs)
    expected: dict[str, float] = {}
    for c in range(k):
        q = km.cluster_centers_[c]
        for pid in top(q, int((km.labels_ == c).sum())):
            j = int(pid[1:])
            expected[pid] = max(expected.get(pid, -1), float(vecs[j] @ q / np.linalg.norm(q)))
    got = retrieve(bad_ids, bad_tags, bad_vecs, search, RetrieveConfig(strategy="cluster"))
    assert dict(zip(got["id"], got["similarity"], strict=True)) == pytest.approx(expected, abs=1e-5)
    assert got["query"].str.starts_with("cluster:").all()


def test_mmr_matches_greedy_reference_and_diversifies(random_pool):
    table, rows, vecs, bad_ids, bad_tags, bad_vecs = random_pool
    allowed = rows["test_similarity"].to_numpy() < 0.95
    pool_tags = rows["tags"].to_list()
    lam, factor = 0.5, 3
    cfg = RetrieveConfig(strategy="mmr", mmr_lambda=lam, mmr_candidates=factor)
    got = retrieve(bad_ids, bad_tags, bad_vecs, Searcher(table, IndexConfig(), 0.95), cfg)
    plain = retrieve(bad_ids, bad_tags, bad_vecs, Searcher(table, IndexConfig(), 0.95), RetrieveConfig())
    expected: set[str] = set()
    for tag in sorted({t for ts in bad_tags for t in ts}):
        members = [i for i, ts in enumerate(bad_tags) if tag in ts]
        q = bad_vecs[members].mean(axis=0)
        cand = [j for j, ts in enumerate(pool_tags) if tag in ts and allowed[j]]
        rel = vecs[cand] @ q / np.linalg.norm(q)
        order = np.argsort(-rel)[: len(members) * factor]
        cand, rel = [cand[o] for o in order], rel[order]
        picked: list[int] = []
        for _ in range(min(len(members), len(cand))):
            red = [
                max((float(vecs[cand[i]] @ vecs[cand[p]]) for p in picked), default=0.0)
                for i in range(len(cand))
            ]
            score = [
                lam * rel[i] - (1 - lam) * red[i] if i not in picked else -np.inf for i in range(len(cand))
            ]
            picked.append(int(np.argmax(score)))
        expected.update(rows["id"][int(cand[p])] for p in picked)
    assert set(got["id"]) == expected
    assert set(got["id"]) != set(plain["id"])  # the diversity term changes the pick

    def mean_pairwise(ids):
        v = vecs[[int(i[1:]) for i in ids]]
        s = v @ v.T
        return (s.sum() - len(ids)) / (len(ids) * (len(ids) - 1))

    assert mean_pairwise(got["id"]) < mean_pairwise(plain["id"])


def test_guard_drops_test_duplicates_and_counts_them(tmp_path):
    vecs = unit(np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.7, 0.7]]))
    texts = ["What is 2+2?", "what is 2 + 2", "Spell cat.", "Other."]
    test_vecs = unit(np.array([[1.0, 0.0]]))
    sims = guard_similarity(vecs, texts, test_vecs, ["WHAT is 2+2?"])
    assert sims[0] == 1.0 and sims[1] == 1.0  # same text up to case, spacing and the closing '?'
    assert guard_similarity(vecs[2:3], ["Solve x-1=3."], unit(np.array([[1.0, 0.0]])), ["solve x+1=3"])[0] < 1
    assert sims[2] == pytest.approx(0.0, abs=1e-6) and 0.7 < sims[3] < 0.71
    rows = pool_frame(["a", "b", "c", "d"], [["T"]] * 4, list(sims), texts)
    build_index(tmp_path / "db", rows, vecs, IndexConfig())
    table = open_index(tmp_path / "db")
    assert guard_count(table, 0.95) == 2 and guard_count(table, 0.5) == 3
    got = retrieve(["x"], [["T"]], test_vecs, Searcher(table, IndexConfig(), 0.95), RetrieveConfig(scale=3))
    assert got["id"].to_list() == ["d", "c"]


def test_ann_path_is_used_and_agrees_with_exact(tmp_path):
    rng = np.random.default_rng(3)
    vecs = unit(rng.normal(size=(600, 8)))
    rows = pool_frame([f"p{i}" for i in range(600)], [["A"] if i % 2 else ["B"] for i in range(600)])
    cfg = IndexConfig(ann_min_rows=500, index_type="IVF_FLAT", num_partitions=4, nprobes=4)
    info = build_index(tmp_path / "db", rows, vecs, cfg)
    table = open_index(tmp_path / "db")
    assert info.ann and has_ann(table)
    q = vecs[0] + vecs[1]
    ann = Searcher(table, cfg)(q, 20, "A")
    exact = Searcher(table, cfg, exact=True)(q, 20, "A")
    # IVF_FLAT probing every partition is exact: the same rows and distances.
    assert ann["id"].to_list() == exact["id"].to_list()
    assert all("A" in t for t in ann["tags"].to_list())


def test_rebuild_replaces_the_index_whole(tmp_path):
    vecs = unit(np.eye(3))
    build_index(tmp_path / "db", pool_frame(["a", "b", "c"], [["T"]] * 3), vecs, IndexConfig())
    build_index(tmp_path / "db", pool_frame(["a", "b"], [["T"]] * 2), vecs[:2], IndexConfig())
    assert open_index(tmp_path / "db").count_rows() == 2
    assert [p.name for p in tmp_path.iterdir()] == ["db"]  # no temp folders left behind


def test_diagnostics_and_tag_distribution():
    similar = pl.DataFrame(
        {
            "tags": [["A"], ["A", "B"], ["C"]],
            "similarity": [0.9, 0.8, 0.7],
            "query": ["tag:A", "tag:A", "tag:B"],
        }
    )
    bad_tags = [["A"], ["A", "B"], None]
    dist = tag_distribution(bad_tags, similar)
    assert dist.select("tag", "bad_cases", "similar_cases").rows() == [("A", 2, 2), ("B", 1, 1), ("C", 0, 1)]
    m = diagnostics(bad_tags, similar, guarded=4)
    # Shares: bad A 2/3, B 1/3; similar A 2/4, B 1/4, C 1/4 -> overlap = min(2/3, 1/2) + min(1/3, 1/4) = 0.75
    assert m["tag_overlap"] == 0.75
    assert (m["untagged_bad_cases"], m["similar_cases"], m["queries"], m["guard_dropped_pool_rows"]) == (
        1,
        3,
        2,
        4,
    )
    assert m["mean_similarity"] == 0.8 and m["min_similarity"] == 0.7


def test_ann_falls_back_to_exact_when_a_rare_tag_starves_the_probes(tmp_path):
    rng = np.random.default_rng(5)
    vecs = unit(rng.normal(size=(800, 8)))
    tags = [["Rare"] if i % 67 == 0 else ["Common"] for i in range(800)]  # 12 rare rows, spread out
    cfg = IndexConfig(ann_min_rows=100, index_type="IVF_FLAT", num_partitions=16, nprobes=1)
    build_index(tmp_path / "db", pool_frame([f"p{i}" for i in range(800)], tags), vecs, cfg)
    table = open_index(tmp_path / "db")
    q = vecs[5]
    probed = Searcher(table, cfg)._search(q, 10, "Rare", exact=False)
    assert probed.height < 10  # one partition holds few of the rare rows
    got = Searcher(table, cfg)(q, 10, "Rare")
    assert got["id"].to_list() == Searcher(table, cfg, exact=True)(q, 10, "Rare")["id"].to_list()


def test_same_text_under_two_ids_is_retrieved_once(tmp_path):
    vecs = unit(np.array([[1.0, 0.1], [1.0, 0.1], [0.8, 0.6]]))
    rows = pool_frame(["a", "a-copy", "b"], [["T"]] * 3).with_columns(text_hash=pl.Series(["h1", "h1", "h2"]))
    build_index(tmp_path / "db", rows, vecs, IndexConfig())
    got = retrieve(
        ["x", "y", "z"],
        [["T"]] * 3,
        unit(np.array([[1.0, 0.0]] * 3)),
        Searcher(table := open_index(tmp_path / "db"), IndexConfig()),
        RetrieveConfig(),
    )
    assert got["id"].to_list() == ["a", "b"] and table.count_rows() == 3


def test_a_query_that_cancels_out_is_skipped(tmp_path):
    build_index(tmp_path / "db", pool_frame(["a", "b"], [["T"], ["U"]]), unit(np.eye(2)), IndexConfig())
    search = Searcher(open_index(tmp_path / "db"), IndexConfig())
    bad = unit(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
    got = retrieve(["x", "y", "z"], [["T"], ["T"], ["U"]], bad, search, RetrieveConfig())
    assert got["id"].to_list() == ["b"]  # tag T's mean is zero: no direction, no rows
