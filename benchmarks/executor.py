"""The generate stage on the Ray executor against the local one: same prompts, same settings, same run.

Both run the stage's own ``answer()`` (shards, token accounting) on ``data.domain_train`` with the
iteration's model and the ``generate`` settings of params.yaml, each with empty work and cache folders so
nothing is read back. The Ray runs start a fresh local cluster (its start is timed apart) and spread the
shards over actors that each load the model once. Prints wall seconds, the ratio to the local executor,
and how many answers differ from the local ones (0 expected for greedy decoding).

    python benchmarks/executor.py [--params params.yaml] [--iteration iter_1] [--n 0 (all rows)]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl  # noqa: E402

from datakit.config import ExecutorConfig, load_params  # noqa: E402
from datakit.generate import answer  # noqa: E402
from datakit.loaders import load_examples  # noqa: E402


def run(params, examples, it, executor: ExecutorConfig) -> tuple[pl.DataFrame, float]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = dataclasses.replace(params.paths, work=f"{tmp}/work", cache=f"{tmp}/cache")
        p = dataclasses.replace(params, paths=paths, executor=executor)
        started = time.perf_counter()
        out, _, _ = answer(p, examples, it.model_in, it.n, name="bench", desc=executor.kind, progress=False)
        return out, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--iteration", default="iter_1")
    ap.add_argument("--n", type=int, default=0, help="first N rows of domain train (0 = all)")
    args = ap.parse_args()
    params = load_params(args.params)
    it = params.iteration(args.iteration)
    examples = load_examples(params.data.domain_train, "train")
    if args.n:
        examples = examples.head(args.n)
    cores = os.cpu_count()
    print(
        f"{examples.height} prompts, model {it.model_in}, shard_size {params.generate.shard_size}, "
        f"batch_size {params.generate.batch_size}, max_new_tokens {params.generate.max_new_tokens}, "
        f"{cores} cores"
    )
    local, t_local = run(params, examples, it, ExecutorConfig())
    tokens = int(local["n_tokens"].sum())
    print(f"local            {t_local:8.1f} s  {tokens / t_local:6.1f} tok/s  ratio 1.00")

    import ray

    from datakit.executor import ray_init

    started = time.perf_counter()
    ray_init(ExecutorConfig(kind="ray"))
    t_start = time.perf_counter() - started
    print(f"ray cluster start {t_start:7.1f} s (once per stage process; counted in 'with start')")
    for workers, cpus in ((2, cores / 2), (1, cores)):
        ex = ExecutorConfig(kind="ray", workers=workers, cpus_per_worker=cpus)
        out, t = run(params, examples, it, ex)
        differ = int((out["output"] != local["output"]).sum())
        same_cols = out.drop("output").equals(local.drop("output"))
        print(
            f"ray {workers}x{cpus:g} cpu    {t:8.1f} s  {tokens / t:6.1f} tok/s  ratio {t / t_local:.2f} "
            f"(with start {(t + t_start) / t_local:.2f})  answers differing from local: {differ}/{out.height}"
            f"{'' if same_cols or differ else '  (other columns differ)'}"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
