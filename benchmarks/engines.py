"""Accuracy and speed of the base model on each generation engine and dtype, on the validation splits.

The question behind a default engine or dtype: is it faster, and does it cost accuracy? Each engine answers
the domain and general validation splits (``data.domain_val``, ``data.general_val``) through the generate
stage's own code (``datakit.generate.answer``: shards, chat template, the ``generate`` settings of params.yaml with
only the backend and dtype changed), and the answers are graded as ``evaluate`` grades them (the exact math
judge; the per-category general judge). Each engine is then paired with the first one on the same items.

    python benchmarks/engines.py [--engines transformers:float32,transformers:bfloat16,vllm:float32,vllm:bfloat16]
        [--model data/base_model] [--params params.yaml] [--eager]

Prints per engine: start-up seconds, generation seconds and tokens/s, the speed ratio against the first
engine in the same run, accuracy with its 95% Wilson interval per split, and the exact McNemar test against
the first engine (items only one of the two got right, p). Needs ``dvc repro synth base_model`` first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl  # noqa: E402

from datakit.backends import make_backend  # noqa: E402
from datakit.config import load_params  # noqa: E402
from datakit.evaluate import judge_match  # noqa: E402
from datakit.generate import (
    answer,  # noqa: E402
    answered,  # noqa: E402
)
from datakit.judges import judge_math  # noqa: E402
from datakit.loaders import load_examples  # noqa: E402
from datakit.stats import mcnemar_exact, wilson  # noqa: E402


def run_engine(params, spec: str, model: str, eager: bool, scratch: Path) -> dict:
    """One engine's answers to both validation splits: right/wrong per item, seconds, tokens."""
    backend, _, dtype = spec.partition(":")
    g = params.generate
    cfg = dataclasses.replace(
        g,
        backend=backend,
        dtype=dtype or "auto",
        vllm=dataclasses.replace(g.vllm, enforce_eager=eager or g.vllm.enforce_eager),
    )
    # A scratch work and cache folder per engine: nothing is read back from another engine's answers.
    paths = dataclasses.replace(
        params.paths, work=str(scratch / spec / "work"), cache=str(scratch / spec / "c")
    )
    p = dataclasses.replace(params, generate=cfg, paths=paths)
    t = time.perf_counter()
    engine = make_backend(cfg, model)
    out = {"start_s": time.perf_counter() - t, "seconds": 0.0, "tokens": 0, "right": {}}
    judges = {"domain_val": judge_math, "general_val": judge_match}
    for name, source in (("domain_val", params.data.domain_val), ("general_val", params.data.general_val)):
        examples = load_examples(source, "val")
        t = time.perf_counter()
        gens, summary, _ = answer(p, examples, model, 0, name=name, desc=f"{spec} {name}", backend=engine)
        out["seconds"] += time.perf_counter() - t
        out["tokens"] += summary["new_tokens"]
        graded = judges[name](answered(examples, gens, name))
        out["right"][name] = dict(zip(graded["id"], (graded["score"].fill_null(1) >= 4), strict=True))
    del engine
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--engines", default="transformers:float32,transformers:bfloat16,vllm:float32,vllm:bfloat16"
    )
    ap.add_argument("--model", default=None, help="model folder (default: paths.base_model)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--eager", action="store_true", help="vllm: enforce_eager (no compile; faster start)")
    args = ap.parse_args()
    params = load_params(args.params)
    model = args.model or params.paths.base_model
    if not Path(model).is_dir():
        raise SystemExit(f"{model}: no model folder; run `dvc repro synth base_model` first")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.engines.split(","):
            results[spec] = r = run_engine(params, spec, model, args.eager, Path(scratch))
            print(
                f"{spec}: start {r['start_s']:.0f} s, {r['seconds']:.0f} s, {r['tokens']} tokens", flush=True
            )
    first = next(iter(results))
    rows = []
    for spec, r in results.items():
        row = {
            "engine": spec,
            "start_s": round(r["start_s"], 1),
            "gen_s": round(r["seconds"], 1),
            "tok_s": round(r["tokens"] / r["seconds"], 1),
            f"speed_vs_{first}": round(results[first]["seconds"] / r["seconds"], 2),
        }
        for name, right in r["right"].items():
            k, n = sum(right.values()), len(right)
            lo, hi = wilson(k, n)
            test = mcnemar_exact(results[first]["right"][name], right)
            row[name] = f"{k / n:.1%} [{lo:.1%}-{hi:.1%}] (n={n})"
            row[f"{name}_vs_first"] = f"+{test['b_only']}/-{test['a_only']} p={test['p']:.3g}"
        rows.append(row)
    with pl.Config(tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=60, tbl_hide_dataframe_shape=True):
        print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
