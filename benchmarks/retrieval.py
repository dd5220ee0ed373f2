"""Retrieval-plane benchmark: pool indexing against raw sentence-transformers, tag retrieval at scale, ANN recall.

1. Indexing throughput. The same pool texts, same batch size, in the same run: raw
   ``SentenceTransformer.encode`` against datakit's path for a pool (the embedding tagger, which embeds
   through the cache, then the index build reading the cached vectors, the contamination guard and the
   LanceDB write). Rounds alternate; each datakit round starts from an empty cache. A last datakit round
   over a warm cache shows what a second iteration re-embeds (0).
2. Tag-based retrieval for ``--bad`` bad cases over a ``--pool``-row LanceDB table (synthetic clustered
   unit vectors with 1-3 of 40 tags each), exact and ANN, against the raw LanceDB queries the strategy
   sends (same queries, same filters, no result assembly).
3. Recall@k of the ANN path against exact search, over every tag query of part 2.

    python benchmarks/retrieval.py [--texts 2000] [--pool 100000] [--bad 1000] [--rounds 2]

Prints each figure and its ratio to the raw library (raw time / datakit time: 1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCEDB_LOG", "error")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from datakit.config import EmbedConfig, IndexConfig, RetrieveConfig  # noqa: E402
from datakit.embed import Embedder, minilm_path  # noqa: E402
from datakit.generate import user_message  # noqa: E402
from datakit.index import build_index, guard_similarity, open_index  # noqa: E402
from datakit.retrieve import Searcher, queries, retrieve  # noqa: E402
from datakit.synth import make_general, make_math  # noqa: E402
from datakit.tags import EmbeddingTagger, load_taxonomy, tag_cache, tag_frame  # noqa: E402


def index_pool(
    texts: list[str], test_texts: list[str], cache: Path, db: Path, model, batch_size: int
) -> tuple[float, int]:
    """datakit's pool path, timed: tag (embeds through the cache), embed (cache hits), guard, LanceDB write."""
    started = time.perf_counter()
    embedder = Embedder(EmbedConfig(batch_size=batch_size), cache, progress=False, model=model)
    tagger = EmbeddingTagger(load_taxonomy(), embedder)
    before = embedder.encoded  # taxonomy texts (cached after the warm-up)
    ids = [str(i) for i in range(len(texts))]
    tags, _ = tag_frame(ids, texts, tagger, tag_cache(cache, tagger), chunk_size=1024, progress=False)
    vecs = embedder.embed(texts)
    test_vecs = embedder.embed(test_texts)
    sims = guard_similarity(vecs, texts, test_vecs, test_texts)
    n = len(texts)
    rows = pl.DataFrame(
        {
            "id": ids,
            "instruction": texts,
            "input": [""] * n,
            "output": ["x"] * n,
            "source": ["bench"] * n,
            "tags": tags["tags"],
            "text_hash": tags["text_hash"],
            "test_similarity": sims,
        }
    )
    build_index(db, rows, vecs, IndexConfig())
    return time.perf_counter() - started, embedder.encoded - before


def bench_indexing(n_texts: int, rounds: int, batch_size: int) -> None:
    from sentence_transformers import SentenceTransformer

    pool, _ = make_general(n_texts, 0, seed=5)
    _, test = make_math(0, 150, seed=5)
    texts = [user_message(i, x) for i, x in zip(pool["instruction"], pool["input"], strict=True)]
    test_texts = test["instruction"].to_list()
    # Both paths use one model loaded up front (loading is not the work compared).
    model = SentenceTransformer(str(minilm_path()), device="cpu")
    model.encode(texts[:64], batch_size=batch_size, normalize_embeddings=True)
    work = Path(tempfile.mkdtemp(prefix="dk-bench-"))
    # A warm-up datakit run over no pool texts caches the taxonomy and the domain test set, so every timed
    # round encodes exactly the pool texts the raw path encodes.
    warm_cache = work / "warm"
    index_pool(["A warm-up sentence."], test_texts, warm_cache, work / "db-warmup", model, batch_size)
    raw_t, ours_t = [], []
    try:
        for r in range(rounds):
            t = time.perf_counter()
            model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
            raw_t.append(time.perf_counter() - t)
            cache = work / f"cache{r}"
            shutil.copytree(warm_cache, cache)
            seconds, encoded = index_pool(texts, test_texts, cache, work / f"db{r}", model, batch_size)
            ours_t.append(seconds)
            print(
                f"round {r + 1}: raw encode {n_texts / raw_t[-1]:7.1f} texts/s | datakit tag+index "
                f"{n_texts / ours_t[-1]:7.1f} texts/s ({encoded} texts encoded)"
            )
        warm, encoded = index_pool(texts, test_texts, work / "cache0", work / "db-warm", model, batch_size)
        ratios = sorted(r / o for r, o in zip(raw_t, ours_t, strict=True))
        print(
            f"indexing throughput ratio datakit/raw: median of {rounds} rounds {ratios[len(ratios) // 2]:.3f}, "
            f"total time {sum(raw_t) / sum(ours_t):.3f}, best vs best {min(raw_t) / min(ours_t):.3f}"
        )
        print(f"second build over the warm cache: {encoded} texts re-embedded, {warm:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def synthetic_pool(n: int, n_bad: int, dim: int = 384, n_tags: int = 40, seed: int = 0):
    """Clustered unit vectors: each row mixes its tags' centres with noise; bad cases sit near pool rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_tags, dim)).astype(np.float32)
    names = [f"Skill {i:02d}" for i in range(n_tags)]
    k = rng.integers(1, 4, size=n)
    tag_idx = [rng.choice(n_tags, size=int(m), replace=False) for m in k]
    vecs = np.stack([centres[t].sum(axis=0) for t in tag_idx]) + rng.normal(scale=1.5, size=(n, dim))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    rows = pl.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "instruction": [f"pool question {i}" for i in range(n)],
            "input": [""] * n,
            "output": [f"answer {i}" for i in range(n)],
            "source": ["synthetic"] * n,
            "tags": [[names[j] for j in t] for t in tag_idx],
            "text_hash": [f"h{i}" for i in range(n)],
            "test_similarity": np.zeros(n),
        }
    )
    pick = rng.choice(n, size=n_bad, replace=False)
    bad = vecs[pick] + rng.normal(scale=0.03, size=(n_bad, dim)).astype(np.float32)
    bad = (bad / np.linalg.norm(bad, axis=1, keepdims=True)).astype(np.float32)
    bad_tags = [rows["tags"][int(i)].to_list() for i in pick]
    return rows, vecs, [f"b{i}" for i in range(n_bad)], bad_tags, bad


def raw_queries(table, qs, scale: int, exact: bool, cfg: IndexConfig) -> list[list[str]]:
    """The hand-written loop: one filtered LanceDB search per tag, fetching the same columns datakit needs."""
    out = []
    for _name, tag, q, members in qs:
        s = table.search(q.astype(np.float32), vector_column_name="vector").distance_type("cosine")
        s = s.where(f"test_similarity < 0.95 AND array_has_any(tags, ['{tag}'])", prefilter=True)
        s = s.limit(scale * len(members))
        if exact:
            s = s.bypass_vector_index()
        else:
            k = scale * len(members)
            s = s.nprobes(cfg.nprobes).ef(max(cfg.ef or 64, k * max(cfg.refine_factor, 1)))
            if cfg.refine_factor:
                s = s.refine_factor(cfg.refine_factor)
        cols = ["id", "instruction", "input", "output", "source", "tags", "vector", "_distance"]
        out.append(s.select(cols).to_arrow()["id"].to_pylist())
    return out


def bench_retrieval(n_pool: int, n_bad: int, rounds: int) -> None:
    rows, vecs, bad_ids, bad_tags, bad = synthetic_pool(n_pool, n_bad)
    work = Path(tempfile.mkdtemp(prefix="dk-bench-"))
    try:
        exact_cfg = IndexConfig(ann_min_rows=n_pool + 1)
        ann_cfg = IndexConfig()
        t = time.perf_counter()
        build_index(work / "exact", rows, vecs, exact_cfg)
        print(f"\nbuilt a {n_pool}-row exact table in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        info = build_index(work / "ann", rows, vecs, ann_cfg)
        print(f"built a {n_pool}-row {info.index_type} table in {time.perf_counter() - t:.1f} s")
        cfg = RetrieveConfig(strategy="tag")
        qs = queries(bad_tags, bad, cfg)
        print(
            f"{n_bad} bad cases -> {len(qs)} tag queries, k from {min(len(q[3]) for q in qs)} to {max(len(q[3]) for q in qs)}"
        )
        for label, db, icfg in (("exact", work / "exact", exact_cfg), ("ann", work / "ann", ann_cfg)):
            table = open_index(db)
            search = Searcher(table, icfg, cfg.guard_threshold)
            ours, raw = [], []
            for _ in range(rounds):
                t = time.perf_counter()
                got = retrieve(bad_ids, bad_tags, bad, search, cfg)
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                raw_queries(table, qs, cfg.scale, label == "exact", icfg)
                raw.append(time.perf_counter() - t)
            print(
                f"tag retrieval, {label:5s}: datakit {min(ours):.2f} s ({got.height} rows) | raw LanceDB queries "
                f"{min(raw):.2f} s | ratio raw/datakit {min(raw) / min(ours):.3f}"
            )
        exact_ids = raw_queries(open_index(work / "exact"), qs, 1, True, exact_cfg)
        for icfg in (ann_cfg, IndexConfig(refine_factor=0)):
            ann_ids = raw_queries(open_index(work / "ann"), qs, 1, False, icfg)
            recalls = [len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(ann_ids, exact_ids, strict=True)]
            print(
                f"ANN recall@k vs exact over {len(recalls)} tag queries: mean {np.mean(recalls):.4f}, "
                f"min {np.min(recalls):.4f} ({icfg.index_type}, nprobes {icfg.nprobes}, "
                f"refine_factor {icfg.refine_factor})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=2000, help="pool texts for the indexing throughput")
    ap.add_argument("--batch-size", type=int, default=64, help="encode batch size (both paths)")
    ap.add_argument("--pool", type=int, default=100_000, help="rows of the synthetic retrieval pool")
    ap.add_argument("--bad", type=int, default=1000, help="bad cases to retrieve for")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per measurement")
    ap.add_argument("--skip-indexing", action="store_true", help="only the retrieval part")
    args = ap.parse_args()
    if not args.skip_indexing:
        bench_indexing(args.texts, args.rounds, args.batch_size)
    bench_retrieval(args.pool, args.bad, args.rounds)


if __name__ == "__main__":
    main()
