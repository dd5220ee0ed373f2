"""Resumable, shard-wise processing of a table.

A long stage (generation, LLM judging) splits its input into fixed shards and writes each finished shard
atomically under a work folder keyed by everything that determines the result (model, settings, input
rows). Killed with -9 half way, a rerun reads the finished shards back and computes only the rest. The
work folder lives outside the stage's DVC outputs, because DVC deletes those before it runs a stage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from datakit.config import ExecutorConfig
from datakit.errors import DataError
from datakit.executor import map_frames
from datakit.schemas import Table, read_table, write_table


def work_key(*parts: object) -> str:
    """A short hash of JSON-able parts (model fingerprint, settings, input ids)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def model_fingerprint(model: str) -> list:
    """Identify a model cheaply: a local folder by its files' names, sizes and mtimes; else its name."""
    path = Path(model)
    if not path.is_dir():
        return [model]
    return [model] + sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()
    )


def content_fingerprint(path: str) -> list:
    """A local model folder by the content of every file in it (weights, configs, pooling and
    normalisation modules): a fine-tuned checkpoint or an edited config is another model, and a copy
    (DVC checkout) is the same one. A hub id by its name. Hashing MiniLM's 90 MB takes about 0.2 s."""
    root = Path(path)
    if not root.is_dir():
        return [path]
    out = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out.append((file.relative_to(root).as_posix(), digest.hexdigest()[:16]))
    return out


@dataclass
class ShardStats:
    shards: int = 0
    resumed: int = 0  # shards read back from an earlier, interrupted run
    computed: int = 0
    computed_ids: list[str] = field(default_factory=list)  # rows computed in this run (for throughput)
    cached: int = 0  # rows read from a persistent cache instead (generation_cache)


def run_sharded(
    df: pl.DataFrame,
    fn: Callable[[pl.DataFrame, tqdm], pl.DataFrame],
    work_dir: Path,
    shard_size: int,
    table: Table,
    desc: str,
    progress: bool = True,
    redo: Callable[[pl.DataFrame], bool] | None = None,
    executor: ExecutorConfig | None = None,
) -> tuple[pl.DataFrame, ShardStats]:
    """Apply ``fn`` shard by shard, keeping every finished shard on disk; return the concatenation.

    ``fn(shard, bar)`` must return a ``table`` frame with the same ``id`` values as ``shard`` and should
    ``bar.update(rows)`` as it goes. A kept shard for which ``redo(shard_output)`` is true (say, it holds
    rows whose request failed during an outage) is computed again instead of being read back. With a Ray
    ``executor`` the shards left to do run on Ray workers (``fn`` is pickled to them, so it must not hold
    a loaded model: see ``LazyBackend``) and each is written here as it comes back.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    shards = [df.slice(i, shard_size) for i in range(0, df.height, shard_size)]
    stats = ShardStats(shards=len(shards))
    done: dict[int, pl.DataFrame] = {}
    for i, shard in enumerate(shards):
        path = work_dir / f"shard-{i:05d}.parquet"
        if path.exists():
            try:
                out = read_table(path, table)
            except (DataError, pl.exceptions.PolarsError, OSError):
                continue  # unreadable leftovers are recomputed, never trusted
            if out["id"].to_list() == shard["id"].to_list() and not (redo and redo(out)):
                done[i] = out
    stats.resumed = len(done)
    with tqdm(
        total=df.height,
        initial=sum(shards[i].height for i in done),
        desc=desc,
        unit="row",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        todo = [(i, shard) for i, shard in enumerate(shards) if i not in done]
        for i, out in map_frames(todo, fn, executor, bar):
            shard = shards[i]
            if out["id"].to_list() != shard["id"].to_list():
                raise RuntimeError(f"{desc}: shard {i} returned rows out of order")
            write_table(out, work_dir / f"shard-{i:05d}.parquet", table)
            done[i] = out
            stats.computed += 1
            stats.computed_ids.extend(out["id"].to_list())
    result = pl.concat([done[i] for i in range(len(shards))]) if shards else table.empty()
    return result, stats


def clear_work(work_dir: Path) -> None:
    """Remove a finished stage's shards once its outputs are safely written."""
    shutil.rmtree(work_dir, ignore_errors=True)
