"""The LanceDB tag index over the general pool: one row per pool example with its tags and embedding.

Built once by the ``index`` stage and searched by every iteration's ``retrieve``. The table is written to a
temp folder and swapped into place, so a killed build leaves the previous index whole. Vectors are
unit-length MiniLM embeddings searched with the cosine metric; at ``index.ann_min_rows`` rows or more the
table gets an ANN index (``index.index_type``), below that every search is exact. The ``tags`` column gets
a LabelList scalar index, which serves the ``array_has_any(tags, [...])`` filters of tag-based retrieval.

``test_similarity`` is each pool row's highest cosine to any domain test item (1.0 for a row whose text
equals one): the contamination guard of ``retrieve`` filters on it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lancedb
import numpy as np
import polars as pl
import pyarrow as pa
from lancedb.pydantic import LanceModel, Vector

from datakit.config import IndexConfig
from datakit.errors import DataError

TABLE = "pool"
META = "meta"


def pool_row_model(dim: int) -> type[LanceModel]:
    """The declared row of the pool table, for a ``dim``-wide embedding."""

    class PoolRow(LanceModel):
        id: str  # the pool example's id
        instruction: str
        input: str
        output: str  # the reference answer: the 'chosen' side of a similar-case pair
        source: str
        tags: list[str]  # skill tags (empty when the tagger failed on this row)
        text_hash: str  # hash of instruction + input (what was embedded and tagged)
        test_similarity: float  # highest cosine to a domain test item; 1.0 = same text
        vector: Vector(dim)  # type: ignore[valid-type]  # unit-length embedding of instruction + input

    return PoolRow


def _norm_text(text: str) -> str:
    """Equal up to case, spacing and closing punctuation ("What is 2+2?" = "what is 2 + 2"); operators
    and inner punctuation still count ("x+1=3" != "x-1=3")."""
    return re.sub(r"\s+", "", text.lower()).rstrip(".?!;:")


def guard_similarity(
    pool_vecs: np.ndarray,
    pool_texts: list[str],
    test_vecs: np.ndarray,
    test_texts: list[str],
    chunk: int = 8192,
) -> np.ndarray:
    """Each pool row's highest cosine to any test row; exactly 1.0 where the texts are equal
    (ignoring case, spacing and punctuation). Vectors must be unit length."""
    out = np.full(len(pool_texts), -1.0, dtype=np.float64)
    if len(test_texts):
        for start in range(0, len(pool_texts), chunk):
            block = pool_vecs[start : start + chunk] @ test_vecs.T
            out[start : start + chunk] = block.max(axis=1)
    np.clip(out, -1.0, 1.0, out=out)
    tests = {_norm_text(t) for t in test_texts}
    out[[i for i, t in enumerate(pool_texts) if _norm_text(t) in tests]] = 1.0
    return out


@dataclass(frozen=True)
class IndexInfo:
    rows: int
    dim: int
    ann: bool  # an ANN index was built (else searches are exact)
    index_type: str


def build_index(
    db_dir: str | Path,
    rows: pl.DataFrame,
    vectors: np.ndarray,
    cfg: IndexConfig,
    meta: dict[str, str] | None = None,
) -> IndexInfo:
    """Write the pool table to ``db_dir`` (replacing it atomically) and index it.

    Args:
        rows: pool examples with ``tags`` (list; null = untagged), ``text_hash`` and ``test_similarity``.
        vectors: (rows, dim) unit-length embeddings in the same order.
        meta: what the index was built with (embedder and tagger fingerprints), kept in a ``meta`` table so
            a search with another embedder or tagger is refused instead of silently wrong.
    """
    db_dir = Path(db_dir)
    if vectors.shape[0] != rows.height:
        raise ValueError(f"{rows.height} rows but {vectors.shape[0]} vectors")
    dim = int(vectors.shape[1])
    model = pool_row_model(dim)
    schema = model.to_arrow_schema()
    columns = {
        name: pa.array(rows[name].to_list(), type=schema.field(name).type)
        for name in ("id", "instruction", "input", "output", "source", "text_hash")
    }
    columns["tags"] = pa.array([t or [] for t in rows["tags"].to_list()], type=schema.field("tags").type)
    columns["test_similarity"] = pa.array(
        rows["test_similarity"].to_numpy(), type=schema.field("test_similarity").type
    )
    columns["vector"] = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel()), dim
    )
    data = pa.table([columns[f.name] for f in schema], schema=schema)

    db_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=db_dir.parent, prefix=f".{db_dir.name}."))
    try:
        db = lancedb.connect(tmp)
        table = db.create_table(TABLE, data=data, schema=schema)
        info = {"dim": str(dim), **(meta or {})}
        db.create_table(META, data=pa.table({"key": list(info), "value": list(info.values())}))
        from lancedb.index import LabelList

        table.create_index("tags", config=LabelList())
        ann = rows.height >= cfg.ann_min_rows
        if ann:
            table.create_index(
                metric="cosine",
                vector_column_name="vector",
                index_type=cfg.index_type,
                num_partitions=cfg.num_partitions or None,
            )
        from datakit.models import replace_dir

        replace_dir(tmp, db_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return IndexInfo(rows.height, dim, ann, cfg.index_type if ann else "exact")


def open_index(db_dir: str | Path):
    """The pool table of a built index, or one DataError naming the folder."""
    db_dir = Path(db_dir)
    try:
        return lancedb.connect(db_dir).open_table(TABLE)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise DataError(db_dir, f"no LanceDB pool index here (run `datakit index`): {exc}") from exc


def index_meta(db_dir: str | Path) -> dict[str, str]:
    """What the index at ``db_dir`` was built with (``dim``, ``embedder``, ``tagger``)."""
    try:
        table = lancedb.connect(Path(db_dir)).open_table(META)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise DataError(db_dir, f"no index metadata here (rebuild with `datakit index`): {exc}") from exc
    return {r["key"]: r["value"] for r in table.to_arrow().to_pylist()}


def has_ann(table) -> bool:
    return any(ix.columns == ["vector"] for ix in table.list_indices())
