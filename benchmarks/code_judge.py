"""Code-judge throughput against a bare subprocess loop over the same candidates, same run.

The judge path is ``datakit.code_judge.judge_code`` on the code domain's reference solutions (each answer
run against its hidden tests in ``datakit.sandbox``: a fresh namespaced, unprivileged, limited process per
candidate, ``judge.code.workers`` at a time, compared in the judge's process). The bare path is what one
would write with no isolation at all: ``subprocess.run([python, "-c", harness])`` per candidate, one after
another, feeding the same payload to the same harness. Rounds alternate so drift hits both alike.

    python benchmarks/code_judge.py [--n 200] [--workers 2] [--isolation auto] [--rounds 3]
    python benchmarks/code_judge.py --check   # judge correctness on `make code-domain`'s 950 tasks

Prints candidates/s per round and the ratio judge / bare. ``--check`` instead judges every reference of the
code recipe (train 600, validation 100, test 250) and three mutants of each (``datakit.synth.code.mutants``)
and prints how many pass and fail, and which templates the surviving mutants come from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter

import polars as pl

from datakit.code_judge import judge_code
from datakit.config import SandboxConfig
from datakit.sandbox import HARNESS
from datakit.synth import make_domain
from datakit.synth.code import mutants


def bare(rows: pl.DataFrame, cfg: SandboxConfig) -> int:
    """Each candidate in a plain subprocess running the same harness, no sandbox; returns passes."""
    passed = 0
    limits = {"RLIMIT_CPU": cfg.cpu_s, "RLIMIT_AS": cfg.memory_mb * 2**20}
    for code, tests in zip(rows["response"], rows["tests"], strict=False):
        t = json.loads(tests)
        code = code.removeprefix("```python\n").removesuffix("```")
        payload = json.dumps({"code": code, "entry": t["entry"], "calls": t["calls"], "limits": limits})
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", HARNESS],
            input=payload.encode(),
            capture_output=True,
            timeout=30,
        )
        values = [json.loads(line) for line in done.stdout.splitlines()]
        got = [v.get("value") for v in values if "i" in v]
        passed += got == t["expected"]
    return passed


def check(cfg: SandboxConfig) -> None:
    frames = make_domain("code", 600, 100, 250, seed=1234)
    tasks = pl.concat([frames[s] for s in ("train", "val", "test")])
    refs = judge_code(_answered(tasks, tasks["output"].to_list()), cfg, progress=False)
    print(f"references: {int((refs['score'] == 5).sum())} / {refs.height} pass")
    kinds, sources, responses, rows = [], [], [], []
    for r in tasks.iter_rows(named=True):
        source = r["output"].removeprefix("```python\n").removesuffix("```")
        for kind, mutant in mutants(source).items():
            kinds.append(kind)
            sources.append(r["source"])
            responses.append(f"```python\n{mutant}```")
            rows.append(r)
    judged = judge_code(_answered(pl.DataFrame(rows), responses), cfg, progress=False)
    failed = [s == 1 for s in judged["score"]]
    for kind in ("missing case", "wrong operator", "off-by-one"):
        n = sum(k == kind for k in kinds)
        print(
            f"{kind}: {sum(f for k, f in zip(kinds, failed, strict=False) if k == kind)} / {n} mutants fail"
        )
    survivors = Counter((k, s) for k, s, f in zip(kinds, sources, failed, strict=False) if not f)
    print("surviving mutants by kind and template:", dict(survivors.most_common()))


def _answered(tasks: pl.DataFrame, responses: list[str]) -> pl.DataFrame:
    return tasks.with_row_index("row", offset=1).with_columns(
        response=pl.Series(responses),
        finish_reason=pl.lit("stop"),
        gen_error=pl.lit(None, pl.Utf8),
        model=pl.lit("reference"),
        iteration=pl.lit(0, pl.Int64),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="candidates (the code domain's reference solutions)")
    ap.add_argument("--workers", type=int, default=2, help="judge.code.workers")
    ap.add_argument("--isolation", default="auto", choices=["auto", "namespaces", "rlimits"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="judge correctness instead of throughput")
    args = ap.parse_args()
    if args.check:
        check(SandboxConfig(workers=args.workers, isolation=args.isolation))
        return
    tasks = make_domain("code", args.n, 0, 0, seed=1234)["train"]
    rows = _answered(tasks, tasks["output"].to_list())
    cfg = SandboxConfig(workers=args.workers, isolation=args.isolation)
    ratios = []
    for r in range(1, args.rounds + 1):
        start = time.perf_counter()
        judged = judge_code(rows, cfg, progress=False)
        judge_s = time.perf_counter() - start
        start = time.perf_counter()
        bare_passed = bare(rows, cfg)
        bare_s = time.perf_counter() - start
        isolation = json.loads(judged["raw"][0])["isolation"]
        ok = int((judged["score"] == 5).sum())
        ratios.append(bare_s / judge_s)
        print(
            f"round {r}: judge ({isolation}, {args.workers} workers) {args.n / judge_s:.1f} candidates/s "
            f"({ok}/{args.n} pass) | bare subprocess loop {args.n / bare_s:.1f}/s ({bare_passed}/{args.n} pass) "
            f"| ratio {bare_s / judge_s:.2f}"
        )
    print(
        f"judge / bare throughput: median ratio {sorted(ratios)[len(ratios) // 2]:.2f} over {args.rounds} rounds"
    )


if __name__ == "__main__":
    main()
