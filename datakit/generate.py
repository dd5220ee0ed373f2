"""Answer an examples table with a backend: the core of the generate stage (frame in, frame out).

Input: examples (``id, instruction, input, ...``). Output: generations (``id, prompt, output, model,
iteration, gen_params_hash, n_tokens, finish_reason, error``), one row per example, in input order.
``answer`` is the loop every stage that generates runs (generate, generate_similar, evaluate, ifeval, I-SHEEP's
synthesize): the ``generate`` settings, resumable shards under ``paths.work``, the generation cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from datakit.backends import Backend, Conversation, make_backend
from datakit.cache import PartCache, text_hash
from datakit.config import ExecutorConfig, GenerationConfig, Params
from datakit.errors import DataError, bound_failures
from datakit.runlog import summary_line
from datakit.schemas import GENERATIONS
from datakit.shards import ShardStats, content_fingerprint, model_fingerprint, run_sharded, work_key

_CACHED = {"key": pl.Utf8, "output": pl.Utf8, "n_tokens": pl.Int64, "finish_reason": pl.Utf8}


def user_message(instruction: str, input_text: str) -> str:
    """The user turn: the instruction, then the input (if any) after a blank line."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def conversation(prompt: str, system_prompt: str = "") -> Conversation:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": prompt}]


def generation_cache(cache_root: str | Path | None, cfg: GenerationConfig, model: str) -> PartCache | None:
    """Greedy answers of a local model folder, keyed by prompt, under ``cache_root``.

    The model is identified by its files' content and the settings by ``cfg.params_hash()``, so a stage that
    asks the same model the same prompts (evaluate answers domain train with M_{t+1}; the next iteration's
    generate asks M_{t+1} the same) reads them back instead of generating twice. Sampled answers and served
    models (openai: the name may point at other weights tomorrow) are never cached.
    """
    if cache_root is None or cfg.temperature > 0 or cfg.backend == "openai" or not Path(model).is_dir():
        return None
    key = work_key("generate", content_fingerprint(model), cfg.params_hash())
    return PartCache(Path(cache_root) / "generations" / key, _CACHED)


def generate_frame(
    examples: pl.DataFrame,
    backend: Backend,
    cfg: GenerationConfig,
    *,
    iteration: int,
    work_dir: Path,
    progress: bool = True,
    desc: str = "generate",
    cache: PartCache | None = None,
    executor: ExecutorConfig | None = None,
) -> tuple[pl.DataFrame, ShardStats]:
    """Generate one answer per example, resumably (finished shards under ``work_dir`` are reused), here or
    on Ray workers (``executor``; the backend must then be a lazy one, ``make_backend(lazy=True)``).

    With a ``cache`` (``generation_cache``), prompts answered before are read from it and only the rest
    generated; new answers that did not fail are added to it.

    Raises:
        DatakitError: when more than ``cfg.max_failure_rate`` of the rows failed (openai errors).
    """
    prompts = [user_message(i, x) for i, x in zip(examples["instruction"], examples["input"], strict=True)]
    todo = examples.select("id").with_columns(
        prompt=pl.Series(prompts, dtype=pl.Utf8),
        key=pl.Series([text_hash(f"{cfg.system_prompt}\x00{p}") for p in prompts], dtype=pl.Utf8),
    )
    params_hash = cfg.params_hash()

    def frame(rows: pl.DataFrame, texts, n_tokens, finish, errors) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "id": rows["id"],
                "prompt": rows["prompt"],
                "output": texts,
                "model": [backend.model] * rows.height,
                "iteration": [iteration] * rows.height,
                "gen_params_hash": [params_hash] * rows.height,
                "n_tokens": n_tokens,
                "finish_reason": finish,
                "error": pl.Series(errors, dtype=pl.Utf8),
            },
            schema_overrides={"iteration": pl.Int64, "n_tokens": pl.Int64},
        )

    reused = GENERATIONS.empty()
    if cache is not None:
        hit = todo.join(cache.get(todo["key"].to_list()), on="key", how="inner")
        reused = frame(hit, hit["output"], hit["n_tokens"], hit["finish_reason"], [None] * hit.height)
        todo = todo.join(hit.select("id"), on="id", how="anti")
    keys = dict(zip(todo["id"], todo["key"], strict=True))
    # Shards hold rows of similar length, so batches inside a shard pad little.
    todo = (
        todo.drop("key")
        .with_columns(_len=pl.col("prompt").str.len_chars())
        .sort(["_len", "id"], descending=[True, False])
    )

    def answer(shard: pl.DataFrame, bar: tqdm) -> pl.DataFrame:
        started, tokens = time.perf_counter(), 0

        def advance(rows: int, new_tokens: int) -> None:
            nonlocal tokens
            tokens += new_tokens
            bar.update(rows)
            bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.0f}")

        outs = backend.generate([conversation(p, cfg.system_prompt) for p in shard["prompt"]], advance)
        return frame(
            shard,
            [c.text for c in outs],
            [c.n_tokens for c in outs],
            [c.finish_reason for c in outs],
            [c.error for c in outs],
        )

    out, stats = run_sharded(
        todo.drop("_len"),
        answer,
        work_dir,
        cfg.shard_size,
        GENERATIONS,
        desc,
        progress,
        redo=lambda shard: bool(
            (shard["finish_reason"] == "error").any()
        ),  # retry rows that failed last time
        executor=executor,
    )
    if cache is not None and out.height:
        fresh = out.filter(pl.col("finish_reason") != "error")
        cache.put(fresh.with_columns(key=pl.col("id").replace_strict(keys, return_dtype=pl.Utf8)))
    stats.cached = reused.height
    out = pl.concat([reused, out]) if reused.height else out
    order = examples.select("id").with_row_index("_order")
    out = out.join(order, on="id").sort("_order").drop("_order")
    bound_failures(
        out,
        pl.col("finish_reason") == "error",
        cfg.max_failure_rate,
        f"{desc}: rows failed (generate.max_failure_rate)",
    )
    return out, stats


def answered(
    examples: pl.DataFrame, generations: pl.DataFrame, where: str | Path = "generations"
) -> pl.DataFrame:
    """Each example with M_t's answer, in the examples' order.

    Adds ``row`` (the example's 1-based row, for error messages), ``response``, ``finish_reason``,
    ``gen_error``, ``model`` and ``iteration``.

    Raises:
        DataError: when an example has no generation (a stale or partial generations table).
    """
    missing = examples.join(generations, on="id", how="anti")
    if missing.height:
        raise DataError(
            where,
            f"has no generation for {missing.height} rows (first id {missing['id'][0]!r}); rerun generate",
        )
    gens = generations.select(
        "id", "finish_reason", "model", "iteration", response="output", gen_error="error"
    )
    return examples.with_row_index("row", offset=1).join(gens, on="id", how="inner", maintain_order="left")


def answer(
    params: Params,
    examples: pl.DataFrame,
    model: str,
    n: int,
    *,
    name: str,
    desc: str,
    progress: bool = True,
    backend: Backend | None = None,
) -> tuple[pl.DataFrame, dict, Path]:
    """``model`` answers ``examples`` with the ``generate`` settings: resumable shards under
    ``paths.work/<name>/``, greedy answers through the generation cache.

    Returns:
        The generations, their summary (rows, tokens, throughput, finish reasons) and the work folder
        (the caller clears it once its outputs are written).
    """
    cfg = params.generate
    key = work_key(
        name,
        model_fingerprint(model),
        cfg.params_hash(),
        n,
        examples["id"].to_list(),
        examples["instruction"].to_list(),
        examples["input"].to_list(),
    )
    work = Path(params.paths.work) / name / key
    backend = backend or make_backend(cfg, model, lazy=params.executor.is_ray)
    gen_started = time.perf_counter()
    out, stats = generate_frame(
        examples,
        backend,
        cfg,
        iteration=n,
        work_dir=work,
        progress=progress,
        desc=desc,
        cache=generation_cache(params.paths.cache, cfg, model),
        executor=params.executor,
    )
    gen_seconds = time.perf_counter() - gen_started
    tokens = int(out["n_tokens"].sum())
    # Throughput counts only the rows generated in this run, not shards or cache rows read back.
    fresh_tokens = int(out.filter(pl.col("id").is_in(stats.computed_ids))["n_tokens"].sum())
    tok_s = fresh_tokens / gen_seconds if stats.computed else None
    summary = {
        "rows": out.height,
        "failed": int((out["finish_reason"] == "error").sum()),
        "new_tokens": tokens,
        "mean_new_tokens": round(tokens / max(out.height, 1), 2),
        "finish_reasons": dict(out.group_by("finish_reason").len().sort("finish_reason").iter_rows()),
        "shards": stats.shards,
        "shards_resumed": stats.resumed,
        "rows_from_cache": stats.cached,
        "generate_seconds": round(gen_seconds, 2),
        "tokens_per_second": round(tok_s, 2) if tok_s is not None else None,
        "model": backend.model,
        "backend": cfg.backend,
    }
    return out, summary, work


def log_summary(name: str, rows_in: int, summary: dict, seconds: float) -> None:
    """The one-line stage summary of ``answer``'s run."""
    tok_s = summary["tokens_per_second"]
    summary_line(
        name,
        rows_in=rows_in,
        rows_out=summary["rows"],
        failed=summary["failed"],
        seconds=seconds,
        extra=f"{summary['new_tokens']} new tokens, {f'{tok_s:.1f}' if tok_s is not None else '-'} tok/s, "
        f"{summary['shards_resumed']} shards resumed, {summary['rows_from_cache']} rows from the cache",
    )
