"""Similar-case retrieval: widen the few bad cases with pool rows that exercise the same skills.

Strategies (``retrieve.strategy``), all searching the LanceDB pool table with the cosine metric:

- ``tag`` (APT's tag-based similarity, paper eq. 1-5): for each tag t of the bad cases, B_t = the bad cases
  tagged t; q_t = mean of their embeddings (eq. 2); the pool rows tagged t (LanceDB filter
  ``array_has_any(tags, [t])``) ranked by cosine to q_t (eq. 3); keep the top ``scale * |B_t|`` (eq. 4);
  the union over tags (eq. 5), each row once with its best similarity.
- ``mean``: one query, the mean embedding of all bad cases; keep the top ``scale * |B|``.
- ``cluster``: k-means over the bad-case embeddings; one query per centre, keeping ``scale * |cluster|``.
- ``mmr``: ``tag`` with maximal-marginal-relevance re-ranking inside each tag: from the
  ``mmr_candidates * k`` nearest, pick greedily by ``lambda * cos(q_t, x) - (1 - lambda) * max cos(x, picked)``,
  trading relevance for diversity (the paper's open question).
- ``none``: no similar cases: the pairs come from the bad cases alone (the paper's ablation without retrieval).

Every search excludes pool rows whose ``test_similarity`` reaches ``guard_threshold`` (the contamination
guard). With ``max_ratio`` > 0 only the ``ceil(max_ratio * |B|)`` most similar rows of the union are kept (a
bound on the pairs, and on the generation and training time, per iteration). Each retrieved row records the query that kept it, its cosine to that query, and the bad cases that
pulled it (the query's members, nearest first, at most ``max_sources``; ``n_sources`` counts them all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from datakit.config import IndexConfig, RetrieveConfig
from datakit.index import has_ann
from datakit.schemas import EXAMPLES, Table

SIMILAR_CASES = Table(
    "similar_cases",
    {
        **EXAMPLES.schema,
        "tags": pl.List(pl.Utf8),
        "query_tag": pl.Utf8,
        "query": pl.Utf8,
        "similarity": pl.Float64,
        "strategy": pl.Utf8,
        "bad_case_ids": pl.List(pl.Utf8),
        "n_sources": pl.Int64,
    },
    required=("id", "instruction", "output", "query", "strategy"),
    unique=("id",),
    doc={
        "id": "the pool row's id (instruction, input, output, source: the pool row itself)",
        "split": "'pool'",
        "tags": "the pool row's tags",
        "query_tag": "the tag whose query kept the row (tag, mmr); null for mean and cluster",
        "query": "the query that kept it: 'tag:<t>', 'mean' or 'cluster:<c>'",
        "similarity": "cosine between the row and that query",
        "strategy": "retrieve.strategy",
        "bad_case_ids": "the bad cases that pulled the row (the query's members), nearest first, capped",
        "n_sources": "how many bad cases pulled the row in all",
    },
)

_POOL_COLUMNS = ["id", "instruction", "input", "output", "source", "tags", "text_hash", "vector"]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Searcher:
    """Cosine top-k over the pool table, with the guard and an optional tag filter.

    ``exact`` forces a flat scan even when the table has an ANN index (the recall baseline).
    """

    table: object
    cfg: IndexConfig
    guard_threshold: float = 1.0
    exact: bool = False

    @cached_property
    def ann(self) -> bool:
        """The table has an ANN index (looked up once, not per query)."""
        return has_ann(self.table)

    def where(self, tag: str | None) -> str:
        clause = f"test_similarity < {self.guard_threshold!r}"
        if tag is not None:
            clause += f" AND array_has_any(tags, [{_quote(tag)}])"
        return clause

    def __call__(self, query: np.ndarray, k: int, tag: str | None = None) -> pl.DataFrame:
        """The ``k`` nearest rows (pool columns + ``similarity``), best first."""
        exact = self.exact or not self.ann
        df = self._search(query, k, tag, exact)
        if not exact and df.height < k and self.table.count_rows(self.where(tag)) > df.height:
            # A filter that keeps few rows can starve the probed ANN partitions: rank the tag's rows exactly.
            df = self._search(query, k, tag, exact=True)
        return df

    def _search(self, query: np.ndarray, k: int, tag: str | None, exact: bool) -> pl.DataFrame:
        q = self.table.search(np.asarray(query, dtype=np.float32), vector_column_name="vector")
        q = q.distance_type("cosine").where(self.where(tag), prefilter=True).limit(k)
        if exact:
            q = q.bypass_vector_index()
        else:
            q = q.nprobes(self.cfg.nprobes)
            if "HNSW" in self.cfg.index_type:
                # HNSW must look at least as wide as the candidates it hands to the refine step.
                q = q.ef(max(self.cfg.ef or 64, k * max(self.cfg.refine_factor, 1)))
            if self.cfg.refine_factor:
                q = q.refine_factor(self.cfg.refine_factor)
        df = q.select([*_POOL_COLUMNS, "_distance"]).to_polars()
        return df.with_columns(similarity=1.0 - pl.col("_distance").cast(pl.Float64)).drop("_distance")


def guard_count(table, threshold: float) -> int:
    """Pool rows the contamination guard excludes."""
    return int(table.count_rows(f"test_similarity >= {threshold!r}"))


def _mmr(cands: pl.DataFrame, k: int, lam: float) -> pl.DataFrame:
    """Greedy maximal marginal relevance: k rows of ``cands`` (best-first, unit vectors)."""
    if lam >= 1:
        return cands.head(k)  # no diversity term: plain relevance order
    vecs = np.asarray(cands["vector"].to_numpy(), dtype=np.float64)
    rel = cands["similarity"].to_numpy()
    picked: list[int] = []
    redundancy = np.full(len(rel), -np.inf)
    for _ in range(min(k, len(rel))):
        score = lam * rel - (1 - lam) * np.where(np.isinf(redundancy), 0.0, redundancy)
        score[picked] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        redundancy = np.maximum(redundancy, vecs @ vecs[best])
    return cands[picked]


def queries(
    tags: Sequence[list[str] | None], vecs: np.ndarray, cfg: RetrieveConfig
) -> list[tuple[str, str | None, np.ndarray, np.ndarray]]:
    """The strategy's queries: (name, tag, query vector, member bad-case positions)."""
    n = len(tags)
    if cfg.strategy == "none":
        return []
    if cfg.strategy in ("tag", "mmr"):
        out = []
        for t in sorted({t for ts in tags if ts for t in ts}):
            members = np.array([i for i, ts in enumerate(tags) if ts and t in ts])
            out.append((f"tag:{t}", t, vecs[members].mean(axis=0), members))
        return out
    if cfg.strategy == "mean":
        return [("mean", None, vecs.mean(axis=0), np.arange(n))] if n else []
    from sklearn.cluster import KMeans

    k = min(n, cfg.clusters or max(1, round(math.sqrt(n))))
    if k == 0:
        return []
    km = KMeans(n_clusters=k, random_state=cfg.seed, n_init=10).fit(vecs)
    return [
        (f"cluster:{c}", None, km.cluster_centers_[c], np.flatnonzero(km.labels_ == c))
        for c in range(k)
        if (km.labels_ == c).any()
    ]


def retrieve(
    bad_ids: Sequence[str],
    bad_tags: Sequence[list[str] | None],
    bad_vecs: np.ndarray,
    search: Searcher,
    cfg: RetrieveConfig,
) -> pl.DataFrame:
    """Similar cases for the bad cases (ids, tags, unit embeddings in the same order): a SIMILAR_CASES frame.

    A row kept by several queries appears once, under the query it is most similar to (ties: the first
    query in order); its sources are the union of those queries' members.
    """
    hits: list[pl.DataFrame] = []
    members: dict[int, np.ndarray] = {}
    for qi, (name, tag, qvec, group) in enumerate(queries(bad_tags, bad_vecs, cfg)):
        if np.linalg.norm(qvec) < 1e-6:
            continue  # members that cancel out (opposite vectors) have no direction to search along
        k = cfg.scale * len(group)
        if cfg.strategy == "mmr":
            found = _mmr(search(qvec, k * cfg.mmr_candidates, tag), k, cfg.mmr_lambda)
        else:
            found = search(qvec, k, tag)
        members[qi] = group
        hits.append(found.with_columns(query=pl.lit(name), query_tag=pl.lit(tag, pl.Utf8), qi=pl.lit(qi)))
    if not hits:
        return SIMILAR_CASES.empty()
    allhits = pl.concat(hits)
    # Each pool row once, under its best query; pool rows with the same text as a better one go too.
    best = allhits.sort(["similarity", "qi"], descending=[True, False]).unique(
        "id", keep="first", maintain_order=True
    )
    best = best.unique("text_hash", keep="first", maintain_order=True)
    groups = allhits.group_by("id").agg(pl.col("qi").unique())
    best = best.join(groups.rename({"qi": "qis"}), on="id", how="left", maintain_order="left")
    ids = np.asarray(bad_ids)
    sources, counts = [], []
    found_vecs = np.asarray(best["vector"].to_numpy(), dtype=np.float32)
    for vec, qis in zip(found_vecs, best["qis"].to_list(), strict=True):
        pos = members[qis[0]] if len(qis) == 1 else np.unique(np.concatenate([members[q] for q in qis]))
        sims = bad_vecs[pos] @ vec
        order = pos[np.argsort(-sims, kind="stable")][: cfg.max_sources]
        sources.append(ids[order].tolist())
        counts.append(len(pos))
    return (
        best.select(
            "id",
            "instruction",
            "input",
            "output",
            "source",
            pl.lit("pool").alias("split"),
            "tags",
            "query_tag",
            "query",
            "similarity",
            pl.lit(cfg.strategy).alias("strategy"),
            pl.Series("bad_case_ids", sources, dtype=pl.List(pl.Utf8)),
            pl.Series("n_sources", counts, dtype=pl.Int64),
        )
        .sort(["similarity", "id"], descending=[True, False])
        .head(cap(len(bad_ids), cfg.max_ratio, best.height))
    )


def cap(n_bad: int, max_ratio: float, n_found: int) -> int:
    """How many similar cases to keep: all when ``max_ratio`` is 0, else ``ceil(max_ratio * n_bad)``."""
    return n_found if max_ratio <= 0 else min(n_found, math.ceil(max_ratio * n_bad))


def tag_distribution(bad_tags: Sequence[list[str] | None], similar: pl.DataFrame) -> pl.DataFrame:
    """Per tag: how many bad cases and how many retrieved rows carry it (and their shares)."""

    def counts(lists: Sequence[list[str] | None], name: str) -> pl.DataFrame:
        flat = [t for ts in lists if ts for t in ts]
        return pl.DataFrame({"tag": flat}, schema={"tag": pl.Utf8}).group_by("tag").len(name=name)

    bad = counts(bad_tags, "bad_cases")
    got = counts(similar["tags"].to_list(), "similar_cases")
    df = bad.join(got, on="tag", how="full", coalesce=True).fill_null(0)
    return df.with_columns(
        bad_share=pl.col("bad_cases") / max(int(df["bad_cases"].sum()), 1),
        similar_share=pl.col("similar_cases") / max(int(df["similar_cases"].sum()), 1),
    ).sort(["bad_cases", "similar_cases", "tag"], descending=[True, True, False])


def diagnostics(bad_tags: Sequence[list[str] | None], similar: pl.DataFrame, guarded: int) -> dict:
    """The retrieve stage's metrics: counts, similarity, tag agreement between bad and retrieved rows."""
    dist = tag_distribution(bad_tags, similar)
    sims = similar["similarity"]
    return {
        "bad_cases": len(bad_tags),
        "untagged_bad_cases": sum(1 for ts in bad_tags if not ts),
        "similar_cases": similar.height,
        "queries": int(similar["query"].n_unique()) if similar.height else 0,
        "mean_similarity": round(float(sims.mean()), 4) if similar.height else None,
        "min_similarity": round(float(sims.min()), 4) if similar.height else None,
        "guard_dropped_pool_rows": guarded,
        # Share of tag mass the two distributions have in common (1 = the same tag mix).
        "tag_overlap": round(float(np.minimum(dist["bad_share"], dist["similar_share"]).sum()), 4),
        "bad_case_tags": int((dist["bad_cases"] > 0).sum()),
    }
