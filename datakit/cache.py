"""Persistent, content-addressed caches: a text's tags and embedding are computed once, ever.

A cache is a folder of parquet parts holding rows keyed by ``key`` (a hash of the text, under a folder named
after everything else that decides the result: the tagger or embedder fingerprint). Each ``put`` writes one
new part atomically, so a long tagging or embedding run that is killed keeps every finished chunk and a rerun
computes only the rest. The caches live under ``paths.cache``, outside DVC's outputs: they are memos, never
the source of truth, so deleting them only costs time.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from datakit.schemas import write_parquet_atomic


def text_hash(text: str) -> str:
    """The cache key of a text (sha256, 32 hex digits)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class PartCache:
    """A key -> row table kept as parquet parts in one folder.

    Args:
        root: the folder (created on first write).
        schema: column dtypes, ``key`` (Utf8) included.
        compact_at: when a cache is opened with more parts than this, they are merged into one.
    """

    def __init__(self, root: str | Path, schema: Mapping[str, pl.DataType], compact_at: int = 64):
        self.root = Path(root)
        self.schema = dict(schema)
        self._frame: pl.DataFrame | None = None
        self._compact_at = compact_at

    def _parts(self) -> list[Path]:
        return sorted(self.root.glob("part-*.parquet")) if self.root.is_dir() else []

    def frame(self) -> pl.DataFrame:
        """Every cached row (one per key)."""
        if self._frame is None:
            parts = self._parts()
            frames = []
            for part in parts:
                try:
                    frames.append(pl.read_parquet(part).select(list(self.schema)).cast(self.schema))
                except (pl.exceptions.PolarsError, OSError):
                    continue  # a damaged part is only lost work: its rows are recomputed
            df = pl.concat(frames) if frames else pl.DataFrame(schema=self.schema)
            self._frame = df.unique("key", keep="first", maintain_order=True)
            if len(parts) > self._compact_at:
                self._compact(parts)
        return self._frame

    def get(self, keys: list[str]) -> pl.DataFrame:
        """Cached rows for ``keys`` that are present (in no particular order)."""
        wanted = pl.DataFrame({"key": keys}, schema={"key": pl.Utf8}).unique()
        return self.frame().join(wanted, on="key", how="semi")

    def put(self, rows: pl.DataFrame) -> None:
        """Add rows (one atomic part); keys already cached keep their first value."""
        rows = (
            rows.select(list(self.schema)).cast(self.schema).unique("key", keep="first", maintain_order=True)
        )
        rows = rows.join(self.frame().select("key"), on="key", how="anti")
        if rows.is_empty():
            return
        write_parquet_atomic(rows, self.root / f"part-{uuid.uuid4().hex}.parquet")
        self._frame = pl.concat([self.frame(), rows])

    def _compact(self, parts: list[Path]) -> None:
        # The merged part lands before the old ones go, so a crash in between only leaves duplicates.
        write_parquet_atomic(self.frame(), self.root / f"part-{uuid.uuid4().hex}.parquet")
        for part in parts:
            part.unlink(missing_ok=True)
