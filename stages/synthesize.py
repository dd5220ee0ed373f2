"""synthesize — I-SHEEP: the round's model M_t writes new instructions, shown a few tasks in context.

Reads: ``isheep.seeds`` (seed tasks: instruction, input, output), the round's ``model_in``, and with
``synthesize.earlier`` > 0 the instructions earlier rounds kept; params ``synthesize``.
Writes, under ``<round dir>/synthesize/``: ``instructions.parquet`` (the instructions that passed the rule
filters: what generate answers), ``candidates.parquet`` (every parsed instruction with the filter that
dropped it and its highest ROUGE-L), ``generations.parquet`` (the model's raw lists), ``metrics.json``
(instructions parsed, kept after each rule filter, dropped per filter). The generations are resumable
shards, as in generate.
Run: ``datakit synthesize --iteration round_1`` (``dvc repro recipes/isheep/dvc.yaml:synthesize@round_1``).
"""

from __future__ import annotations

import dataclasses
import random
import time

import polars as pl

from datakit import artifacts
from datakit.config import DatasetSource, Iteration, Params
from datakit.errors import DatakitError
from datakit.generate import answer
from datakit.isheep import INSTRUCTIONS, parse_instructions, round_of, rule_filter, sample_tasks, synth_prompt
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, read_table, write_table
from datakit.shards import clear_work

NAME = "synthesize"
FILTERS = ("length", "banned", "format", "duplicate", "rouge")


def earlier_kept(params: Params, it: Iteration) -> list[tuple[str, str]]:
    """The instructions earlier rounds trained on (their filter's kept pairs), oldest round first."""
    from datakit.isheep import FILTERED

    out = []
    for other in sorted(params.rounds.values(), key=lambda r: r.n):
        if other.n < it.n:
            kept = read_table(artifacts.filtered_pairs(other), FILTERED).filter(pl.col("kept"))["id"]
            rows = read_table(artifacts.instructions(other), INSTRUCTIONS).filter(
                pl.col("id").is_in(kept.implode())
            )
            out.extend(zip(rows["instruction"], rows["input"], strict=True))
    return out


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = round_of(params, iteration), params.synthesize
    seeds = load_examples(DatasetSource(path=params.isheep.seeds), "seed")
    seed_tasks = list(zip(seeds["instruction"], seeds["input"], strict=True))
    earlier = earlier_kept(params, it) if cfg.earlier else []
    rng = random.Random(f"{cfg.seed}-{it.n}")  # each round shows other tasks
    prompts = pl.DataFrame(
        {
            "id": [f"r{it.n}-p{i:04d}" for i in range(cfg.prompts)],
            "instruction": [
                synth_prompt(sample_tasks(seed_tasks, earlier, cfg, rng), cfg.new_per_prompt)
                for _ in range(cfg.prompts)
            ],
            "input": [""] * cfg.prompts,
        }
    )
    writer = dataclasses.replace(params, generate=cfg.generation)
    gens, summary, work = answer(
        writer, prompts, it.model_in, it.n, name=NAME, desc=f"{NAME} {iteration}", progress=progress
    )
    if summary["failed"] > cfg.generation.max_failure_rate * max(gens.height, 1):
        raise DatakitError(
            f"{NAME}: {summary['failed']} of {gens.height} generations failed (finished shards kept)"
        )
    found = []
    for g in gens.iter_rows(named=True):
        for ins, inp in parse_instructions(g["output"] or "", truncated=g["finish_reason"] == "length"):
            found.append((g["id"], ins, inp))
    candidates = pl.DataFrame(
        {
            "id": [f"r{it.n}-{k:05d}" for k in range(len(found))],
            "instruction": [f[1] for f in found],
            "input": [f[2] for f in found],
            "prompt_id": [f[0] for f in found],
            "iteration": [it.n] * len(found),
        },
        schema={
            "id": pl.Utf8,
            "instruction": pl.Utf8,
            "input": pl.Utf8,
            "prompt_id": pl.Utf8,
            "iteration": pl.Int64,
        },
    )
    existing = list(seeds["instruction"]) + [e[0] for e in earlier]
    checked, dropped = rule_filter(candidates, existing, cfg)
    write_table(checked, artifacts.step_file(it, NAME, "candidates.parquet"), INSTRUCTIONS)
    kept = checked.filter(pl.col("dropped_by").is_null())
    write_table(kept, artifacts.instructions(it), INSTRUCTIONS)
    write_table(gens, artifacts.step_file(it, NAME, "generations.parquet"), GENERATIONS)
    left, after = candidates.height, {}
    for name in FILTERS:
        left -= dropped[name]
        after[f"kept_after_{name}"] = left
    metrics = {
        "prompts": prompts.height,
        "generated": candidates.height,
        "per_prompt": round(candidates.height / max(prompts.height, 1), 2),
        **after,
        "kept": kept.height,
        **{f"dropped_{name}": dropped[name] for name in FILTERS},
        "earlier_shown": len(earlier),
        "generate_seconds": summary["generate_seconds"],
        "new_tokens": summary["new_tokens"],
        "finish_reasons": summary["finish_reasons"],
    }
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    clear_work(work)
    summary_line(
        NAME,
        rows_in=prompts.height,
        rows_out=kept.height,
        failed=summary["failed"],
        seconds=time.perf_counter() - started,
        extra=f"{candidates.height} instructions parsed, "
        + ", ".join(f"{dropped[n]} {n}" for n in FILTERS)
        + " dropped",
    )
    return kept
