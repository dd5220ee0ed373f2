"""Where sharded work runs: in this process (``executor.kind: local``) or on Ray Data workers (``ray``).

Generation, LLM judging, tagging and embedding all split their rows into frames (resumable shards, cache
chunks) and apply one function to each. ``map_frames`` runs that function here, frame after frame, or
ships it to a pool of Ray actors: each actor unpickles the function once, so a model it loads on first
use (``LazyBackend``, ``Embedder``) stays loaded for every later frame. Results come back to this
process as they finish and the caller writes them (shard files, cache parts) here, exactly as in the
local loop: the same output, resumable the same way, and no shared filesystem needed for the results.

A worker runs the very function the local loop runs on the very same frame, with the same batch
composition and seeds, so greedy (and seeded sampled) output is the same. Models are loaded by each
worker from their path or hub id: on a multi-machine cluster that path must exist on every node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import polars as pl

from datakit.config import ExecutorConfig

# fn(frame, bar) -> frame. ``bar`` is a tqdm bar here and a do-nothing one on a Ray worker (the driver
# advances its own bar by the frame's rows when the result comes back).
FrameFn = Callable[[pl.DataFrame, Any], pl.DataFrame]
_TEXTS = {"key": pl.Utf8, "text": pl.Utf8}


class NullBar:
    """What a Ray worker gets instead of the driver's progress bar."""

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None


def map_frames(
    frames: Sequence[tuple[int, pl.DataFrame]],
    fn: FrameFn,
    executor: ExecutorConfig | None,
    bar: Any,
) -> Iterator[tuple[int, pl.DataFrame]]:
    """``(key, fn(frame))`` for each ``(key, frame)``: in order here, in completion order under Ray."""
    if executor is None or not executor.is_ray or not frames:
        for key, frame in frames:
            yield key, fn(frame, bar)
        return
    rows = {key: frame.height for key, frame in frames}
    for key, out in _ray_map(frames, fn, executor):
        bar.update(rows[key])
        yield key, out


def text_chunks(items: Sequence[tuple[str, str]], size: int) -> list[tuple[int, pl.DataFrame]]:
    """``(key, text)`` pairs as numbered ``key, text`` frames of ``size`` rows: what tagging and embedding map."""
    return [
        (i, pl.DataFrame({"key": [k for k, _ in part], "text": [t for _, t in part]}, schema=_TEXTS))
        for i, part in enumerate(items[s : s + size] for s in range(0, len(items), size))
    ]


def ray_init(executor: ExecutorConfig) -> None:
    """Join the cluster at ``executor.address``, or start a fresh one on this machine (address null: never a
    cluster some other process left running), once per process."""
    import ray

    if ray.is_initialized():
        return
    ray.init(
        address=executor.address or "local",
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=True,
    )
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the stage's own bar counts rows
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


class _Worker:
    """A Ray actor: unpickles ``fn`` once (so what it loads lazily stays loaded), then maps frames."""

    def __init__(self, fn: FrameFn):
        self.fn = fn

    def __call__(self, batch: dict) -> dict:
        keys, outs = [], []
        for key, payload in zip(batch["key"], batch["frame"], strict=True):
            keys.append(int(key))
            outs.append(_to_ipc(self.fn(pl.read_ipc(payload), NullBar())))
        return {"key": keys, "frame": outs}


def _to_ipc(frame: pl.DataFrame) -> bytes:
    return frame.write_ipc(None).getvalue()


def _ray_map(
    frames: Sequence[tuple[int, pl.DataFrame]], fn: FrameFn, executor: ExecutorConfig
) -> Iterator[tuple[int, pl.DataFrame]]:
    import ray
    import ray.data

    ray_init(executor)
    items = [{"key": key, "frame": _to_ipc(frame)} for key, frame in frames]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _Worker,
        fn_constructor_args=(fn,),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(executor.workers, len(items))),
        num_cpus=executor.cpus_per_worker,
        num_gpus=executor.gpus_per_worker,
        zero_copy_batch=True,
    )
    try:
        for row in ds.iter_rows():
            yield int(row["key"]), pl.read_ipc(row["frame"])
    except BaseException:
        # Ray Data stops a failed run's actors asynchronously, and not always: they would keep their CPUs
        # and GPUs, and the next map in this process would wait for them forever. Disconnecting kills the
        # actors this process owns; the next map connects (or starts a cluster) afresh.
        ray.shutdown()
        raise
