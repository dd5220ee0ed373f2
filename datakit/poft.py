"""PoFT (preference-oriented SFT, seeds/003): reference scores, score filtering, the noise study's corruption.

PoFT trains on plain SFT rows (x, y) but replaces cross-entropy with a Bradley-Terry loss that prefers the
model being trained over M aligned reference models on the same row::

    r_j(x, y)     = log p_j(y | x) / T_j(y)          (length-normalised, each model's own tokenizer + template)
    r_ref(x, y)   = avg_j r_j   (or min / max)
    loss          = -log sigmoid(r_theta(x, y) - r_ref(x, y))
    d loss / d theta = tau * d CE / d theta,  tau = sigmoid(r_ref - r_theta)   (seeds/003 eq. 7-8)

so each row's CE gradient is weighted by how much the references like it relative to the current model.
The references' r_j never change during training: the score stage computes them once per (model, row) and
keeps them in a content-addressed cache. The trainer side is :mod:`datakit.objectives`.

Tables:
- ``SFT_SET`` (the sft_set stage): ``id, prompt, completion`` (TRL's conversational prompt-completion form),
  ``origin`` and, for the noise study, ``corrupted`` and ``corruption`` (none | swap | chars).
- ``SCORES`` (the score stage): the SFT set plus ``r_ref`` (aggregated), ``r_refs`` and ``ref_tokens`` (one
  entry per reference model, in the order params list them).
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from datakit.cache import PartCache, text_hash
from datakit.config import VLLMConfig
from datakit.errors import ConfigError, DataError, DatakitError
from datakit.pairs import MESSAGE
from datakit.schemas import Table
from datakit.shards import content_fingerprint, work_key

if TYPE_CHECKING:
    from datakit.logprobs import Engine

SFT_SET = Table(
    "sft_set",
    {
        "id": pl.Utf8,
        "prompt": pl.List(MESSAGE),
        "completion": pl.List(MESSAGE),
        "origin": pl.Utf8,
        "corrupted": pl.Boolean,
        "corruption": pl.Utf8,
    },
    required=("id", "prompt", "completion"),
    doc={
        "id": "the source row's id (pairs: the bad case or pool row; domain/mixed: the example)",
        "prompt": "the user turn (and the system prompt, if set), TRL conversational",
        "completion": "one assistant message: the answer trained on",
        "origin": "bad_case | similar_case (pairs), domain | pool (the baselines)",
        "corrupted": "true when the noise study changed this row's completion",
        "corruption": "none | swap (another row's answer) | chars (characters inserted, deleted, changed)",
    },
)

SCORES = Table(
    "scores",
    {
        **SFT_SET.schema,
        "r_ref": pl.Float64,
        "r_refs": pl.List(pl.Float64),
        "ref_tokens": pl.List(pl.Int64),
    },
    required=("id", "prompt", "completion"),
    doc={
        **SFT_SET.doc,
        "r_ref": "the references' aggregated preference score (score.aggregate of r_refs); empty when the "
        "train objective reads none (score.always: false)",
        "r_refs": "per reference model: mean log-prob per completion token, log p_j(y|x) / T_j(y)",
        "ref_tokens": "per reference model: T_j(y), the completion's tokens under that model's tokenizer",
    },
)

_CACHED = {"key": pl.Utf8, "logp": pl.Float64, "n_tokens": pl.Int64}
_ALPHABET = string.ascii_letters + string.digits + " .,;:!?-+*/=()"


# ---------------------------------------------------------------------------------------------------------
# Tokenization and scoring


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _ids(tokenizer, conv: list[dict], *, add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        conv, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(out["input_ids"])


def tokenize_row(
    tokenizer, prompt: list[dict], completion: list[dict], max_length: int
) -> tuple[list[int], int]:
    """(prompt + completion ids, prompt length) as TRL's SFTTrainer tokenizes a conversational row.

    The prompt is rendered with the generation prompt, the whole conversation without it, and the completion
    starts where the two diverge. Sequences longer than ``max_length`` keep their first ``max_length`` tokens
    (SFTConfig's truncation), so a reference scores exactly the tokens the trainer sees.
    """
    prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
    full = _ids(tokenizer, prompt + completion, add_generation_prompt=False)
    return full[:max_length], common_prefix(prompt_ids, full)


def row_key(prompt: list[dict], completion: list[dict]) -> str:
    """A row's cache key: the hash of its messages."""
    return text_hash(json.dumps([prompt, completion], sort_keys=True, ensure_ascii=False))


def score_cache(cache_root: str | Path, model: str, max_length: int, dtype: str = "float32") -> PartCache:
    """The cache of one reference model's scores: the model's file contents (or hub id), max_length and the
    compute dtype. The engine is not in the key: transformers and vLLM agree within the stated tolerance.
    (float32 is left out of the key, so caches written before the dtype was a setting stay valid.)"""
    key = work_key(
        "poft-score", content_fingerprint(model), max_length, *([dtype] if dtype != "float32" else [])
    )
    return PartCache(Path(cache_root) / "poft_scores" / key, _CACHED)


def score_model(
    model: str,
    rows: pl.DataFrame,
    *,
    batch_size: int = 8,
    max_length: int = 1024,
    device: str = "auto",
    engine: Engine = "transformers",
    dtype: str = "auto",
    vllm: VLLMConfig | None = None,
    cache_root: str | Path | None = None,
    chunk_size: int = 256,
    progress: bool = True,
    where: str = "sft set",
) -> tuple[pl.DataFrame, int]:
    """``logp`` (sum over completion tokens) and ``n_tokens`` for each row of ``rows`` under ``model``, on
    ``engine`` (:mod:`datakit.logprobs`) in ``dtype``.

    Rows already in the cache are read back; the rest are scored and written to it chunk by chunk (a killed
    run keeps every finished chunk). ``where`` names the rows' file in errors. Returns the frame (aligned with ``rows``) and how many rows needed no new forward pass.
    """
    from datakit.backends import compute_dtype, pick_device
    from datakit.logprobs import Scorer

    dtype = compute_dtype(pick_device(device), dtype)

    keys = [
        row_key(p, c) for p, c in zip(rows["prompt"].to_list(), rows["completion"].to_list(), strict=True)
    ]
    cache = score_cache(cache_root, model, max_length, dtype) if cache_root is not None else None
    have = cache.get(keys) if cache is not None else pl.DataFrame(schema=_CACHED)
    seen = set(have["key"].to_list())
    todo = []  # each distinct row not in the cache, once
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            todo.append(i)
    new = pl.DataFrame(schema=_CACHED)
    if todo:
        scorer = Scorer(model, engine, device=device, dtype=dtype, batch_size=batch_size, vllm=vllm)
        tok = scorer.tokenizer
        prompts, completions = rows["prompt"].to_list(), rows["completion"].to_list()
        bar = tqdm(total=len(todo), desc=f"score {Path(model).name}", unit="row", disable=not progress)
        frames = []
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            seqs = [tokenize_row(tok, prompts[i], completions[i], max_length) for i in chunk]
            for i, (seq, n_prompt) in zip(chunk, seqs, strict=True):
                if len(seq) <= n_prompt:
                    raise DataError(
                        where,
                        f"no answer tokens left under '{model}' (id {rows['id'][i]!r}: the prompt is "
                        f"{n_prompt} tokens, score.max_length {max_length})",
                        row=i,
                        field="completion",
                    )
            scored = scorer.logps(seqs, bar=bar)
            part = pl.DataFrame(
                {
                    "key": [keys[i] for i in chunk],
                    "logp": [s for s, _ in scored],
                    "n_tokens": [n for _, n in scored],
                },
                schema=_CACHED,
            )
            if cache is not None:
                cache.put(part)
            frames.append(part)
        bar.close()
        new = pl.concat(frames)
    table = pl.concat([have, new]).unique("key", keep="first")
    out = pl.DataFrame({"key": keys}).join(table, on="key", how="left", maintain_order="left")
    return out.select("logp", "n_tokens"), len(keys) - len(todo)


def aggregate(r: np.ndarray, how: str) -> np.ndarray:
    """Aggregate per-reference scores (rows x references) into one r_ref per row: avg | min | max."""
    if how == "avg":
        return r.mean(axis=1)
    if how == "min":
        return r.min(axis=1)
    if how == "max":
        return r.max(axis=1)
    raise ConfigError(f"score.aggregate: must be avg, min or max, got {how!r}")


def tau(r_theta: np.ndarray | float, r_ref: np.ndarray | float) -> np.ndarray:
    """PoFT's per-row gradient weight, sigmoid(r_ref - r_theta) (seeds/003 eq. 8)."""
    return 1.0 / (1.0 + np.exp(np.asarray(r_theta, dtype=float) - np.asarray(r_ref, dtype=float)))


def keep_top(df: pl.DataFrame, share: float, column: str = "r_ref") -> pl.DataFrame:
    """The ``round(share * rows)`` rows with the highest ``column`` (ties keep the earlier row), in input order."""
    if not 0 < share <= 1:
        raise ConfigError(f"train.keep_top: must be in (0, 1], got {share}")
    if share == 1 or df.is_empty():
        return df
    if df[column].null_count():
        raise DatakitError(
            f"train.keep_top {share}: {df[column].null_count()} rows have no {column} to rank by"
        )
    n = max(1, round(share * df.height))
    ranked = df.with_row_index("_row").sort([column, "_row"], descending=[True, False], nulls_last=True)
    return ranked.head(n).sort("_row").drop("_row")


# ---------------------------------------------------------------------------------------------------------
# The noise study (seeds/003 section 4.3)


def _edit_chars(text: str, rate: float, rng: random.Random) -> str:
    """Insert, delete or change characters, each position with probability ``rate`` (at least one edit)."""
    chars = list(text)
    out: list[str] = []
    edited = False
    for ch in chars:
        if rng.random() < rate:
            edited = True
            op = rng.randrange(3)
            if op == 0:  # insert before
                out.extend([rng.choice(_ALPHABET), ch])
            elif op == 2:  # change
                out.append(rng.choice([c for c in _ALPHABET if c != ch]))
            # op == 1: delete
        else:
            out.append(ch)
    if not edited:
        pos = rng.randrange(len(out) + 1)
        out.insert(pos, rng.choice(_ALPHABET))
    return "".join(out)


def corrupt(df: pl.DataFrame, rate: float, swap_share: float, char_rate: float, seed: int) -> pl.DataFrame:
    """Corrupt ``round(rate * rows)`` rows of an SFT set, marking them in ``corrupted`` / ``corruption``.

    Of the chosen rows, ``round(swap_share * n)`` get another row's answer (seeds/003: "a randomly matched
    output"); the rest get character edits (insertion, deletion, modification at ``char_rate`` per character).
    Swapped answers rotate among the swapped rows, so no row keeps its own; a single swapped row takes the
    answer of a row that is not corrupted.
    """
    df = df.with_columns(corrupted=pl.lit(False), corruption=pl.lit("none"))
    n = round(rate * df.height)
    if n == 0:
        return df
    if df.height < 2:
        raise ConfigError(f"sft_set.noise: {df.height} row(s) is too few to corrupt")
    rng = random.Random(seed)
    picked = rng.sample(range(df.height), n)
    n_swap = round(swap_share * n)
    swap, chars = picked[:n_swap], picked[n_swap:]
    completions = df["completion"].to_list()
    new = list(completions)
    kind = ["none"] * df.height
    if len(swap) == 1:
        donor = rng.choice([i for i in range(df.height) if i not in set(picked)] or [picked[-1]])
        donors = [donor]
    else:
        donors = swap[1:] + swap[:1]
    for i, j in zip(swap, donors, strict=True):
        new[i] = completions[j]
        kind[i] = "swap"
    for i in chars:
        new[i] = [{**m, "content": _edit_chars(m["content"], char_rate, rng)} for m in completions[i]]
        kind[i] = "chars"
    return df.with_columns(
        completion=pl.Series(new, dtype=pl.List(MESSAGE)),
        corrupted=pl.Series([k != "none" for k in kind]),
        corruption=pl.Series(kind),
    )


def tau_summary(taus: pl.DataFrame) -> dict:
    """Mean and quartiles of tau over clean and corrupted rows (``taus``: ``corrupted, tau``)."""
    out: dict = {}
    for name, flag in (("clean", False), ("corrupted", True)):
        values = taus.filter(pl.col("corrupted") == flag)["tau"].drop_nulls()
        out[f"tau_{name}_rows"] = int(values.len())
        if values.len():
            out[f"tau_{name}_mean"] = round(float(values.mean()), 5)
            for q in (0.25, 0.5, 0.75):
                out[f"tau_{name}_q{int(q * 100)}"] = round(float(values.quantile(q, "linear")), 5)
    return out
