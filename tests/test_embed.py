"""The embedder (real all-MiniLM-L6-v2) and the parquet-part cache behind it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from datakit.cache import PartCache, text_hash
from datakit.config import EmbedConfig
from datakit.embed import Embedder, minilm_path

TEXTS = ["Convert 3 km to metres.", "Reverse the word 'stone'.", "What is 17 times 3?", "Spell 'necessary'."]


def test_embeddings_match_sentence_transformers_and_are_unit_length(tmp_path):
    from sentence_transformers import SentenceTransformer

    emb = Embedder(EmbedConfig(), tmp_path, progress=False)
    got = emb.embed(TEXTS)
    raw = SentenceTransformer(str(minilm_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert got.shape == (4, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, raw, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_cache_embeds_each_text_once(tmp_path):
    first = Embedder(EmbedConfig(chunk_size=3), tmp_path, progress=False)
    a = first.embed(TEXTS + TEXTS[:1])  # a repeated text is encoded once
    assert (first.encoded, first.reused) == (4, 0)
    later = Embedder(EmbedConfig(), tmp_path, progress=False)  # a later run, same cache folder
    b = later.embed([TEXTS[2], "A new sentence.", TEXTS[0]])
    assert (later.encoded, later.reused) == (1, 2)
    np.testing.assert_array_equal(b[[0, 2]], a[[2, 0]])
    # chunk_size 3: the 4 new texts went to the cache as 2 parts, the later run's 1 text as a third.
    assert len(list(first.cache.root.glob("part-*.parquet"))) == 3


def test_no_cache_always_encodes():
    emb = Embedder(EmbedConfig(), None, progress=False)
    emb.embed(TEXTS[:2])
    emb.embed(TEXTS[:2])
    assert emb.encoded == 4 and emb.embed([]).shape == (0, 384)


def test_killed_embedding_keeps_finished_chunks(tmp_path, monkeypatch):
    emb = Embedder(EmbedConfig(chunk_size=1), tmp_path, progress=False)
    real = emb.encode
    calls = []

    def dies_on_third(texts):
        calls.append(texts)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(texts)

    monkeypatch.setattr(emb, "encode", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        emb.embed(TEXTS)
    rerun = Embedder(EmbedConfig(), tmp_path, progress=False)
    rerun.embed(TEXTS)
    assert (rerun.encoded, rerun.reused) == (2, 2)


def test_part_cache_compacts_and_skips_damaged_parts(tmp_path):
    schema = {"key": pl.Utf8, "value": pl.Int64}
    cache = PartCache(tmp_path, schema, compact_at=3)
    for i in range(5):
        cache.put(pl.DataFrame({"key": [f"k{i}", "k0"], "value": [i, 99]}))
    (tmp_path / "part-zzz.parquet").write_bytes(b"not parquet")
    reopened = PartCache(tmp_path, schema, compact_at=3)
    got = dict(reopened.get(["k0", "k3", "missing"]).iter_rows())
    assert got == {"k0": 0, "k3": 3}  # the first value of a key wins; unknown keys are absent
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1  # 6 parts merged into one
    assert PartCache(tmp_path, schema).frame().height == 5


def test_text_hash_is_stable():
    assert text_hash("abc") == text_hash("abc") != text_hash("abc ")
    assert len(text_hash("abc")) == 32
