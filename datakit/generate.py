"""Answer an examples table with a backend: the core of the generate stage (frame in, frame out).

Input: examples (``id, instruction, input, ...``). Output: generations (``id, prompt, output, model,
iteration, gen_params_hash, n_tokens, finish_reason, error``), one row per example, in input order.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from datakit.backends import Backend, Conversation
from datakit.config import GenerationConfig
from datakit.errors import DatakitError
from datakit.schemas import GENERATIONS
from datakit.shards import ShardStats, run_sharded


def user_message(instruction: str, input_text: str) -> str:
    """The user turn: the instruction, then the input (if any) after a blank line."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def conversation(prompt: str, system_prompt: str = "") -> Conversation:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": prompt}]


def generate_frame(
    examples: pl.DataFrame,
    backend: Backend,
    cfg: GenerationConfig,
    *,
    iteration: int,
    work_dir: Path,
    progress: bool = True,
    desc: str = "generate",
) -> tuple[pl.DataFrame, ShardStats]:
    """Generate one answer per example, resumably (finished shards under ``work_dir`` are reused).

    Raises:
        DatakitError: when more than ``cfg.max_failure_rate`` of the rows failed (openai errors).
    """
    prompts = [user_message(i, x) for i, x in zip(examples["instruction"], examples["input"], strict=True)]
    todo = examples.select("id").with_columns(prompt=pl.Series(prompts, dtype=pl.Utf8))
    # Shards hold rows of similar length, so batches inside a shard pad little.
    todo = todo.with_columns(_len=pl.col("prompt").str.len_chars()).sort(
        ["_len", "id"], descending=[True, False]
    )
    params_hash = cfg.params_hash()

    def answer(shard: pl.DataFrame, bar: tqdm) -> pl.DataFrame:
        started, tokens = time.perf_counter(), 0

        def advance(rows: int, new_tokens: int) -> None:
            nonlocal tokens
            tokens += new_tokens
            bar.update(rows)
            bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.0f}")

        outs = backend.generate([conversation(p, cfg.system_prompt) for p in shard["prompt"]], advance)
        return pl.DataFrame(
            {
                "id": shard["id"],
                "prompt": shard["prompt"],
                "output": [c.text for c in outs],
                "model": [backend.model] * shard.height,
                "iteration": [iteration] * shard.height,
                "gen_params_hash": [params_hash] * shard.height,
                "n_tokens": [c.n_tokens for c in outs],
                "finish_reason": [c.finish_reason for c in outs],
                "error": pl.Series([c.error for c in outs], dtype=pl.Utf8),
            },
            schema_overrides={"iteration": pl.Int64, "n_tokens": pl.Int64},
        )

    out, stats = run_sharded(todo.drop("_len"), answer, work_dir, cfg.shard_size, GENERATIONS, desc, progress)
    order = examples.select("id").with_row_index("_order")
    out = out.join(order, on="id").sort("_order").drop("_order")
    failed = out.filter(pl.col("finish_reason") == "error")
    if failed.height > cfg.max_failure_rate * out.height:
        first = failed.row(0, named=True)
        raise DatakitError(
            f"{desc}: {failed.height}/{out.height} rows failed (max_failure_rate {cfg.max_failure_rate}); "
            f"first: id {first['id']}: {first['error']}"
        )
    return out, stats
