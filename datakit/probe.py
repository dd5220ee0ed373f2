"""Probe a model on candidate domain families: how often it is right before any training.

APT only has something to select when the base model is right on part of the domain and wrong on the rest
(the paper's base model solves about a third of GSM8K). ``probe`` draws ``n`` training problems of every
family in ``datakit.synth.arith.FAMILIES`` (the same generator and seed as ``synth``), lets the model
answer them with the ``generate`` settings and grades them with the exact math judge.

Output: one row per family: ``domain, n, right, accuracy, ci_low, ci_high`` (95% Wilson), plus every
graded answer for inspection.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datakit.backends import make_backend
from datakit.config import Params
from datakit.errors import ConfigError
from datakit.generate import answered, generate_frame, generation_cache
from datakit.judges import judge_math
from datakit.shards import clear_work, model_fingerprint, work_key
from datakit.stats import wilson
from datakit.synth import make_domain
from datakit.synth.arith import FAMILIES


def probe(
    params: Params, model: str, domains: list[str], n: int, progress: bool = True, split: str = "train"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-family accuracy table, every graded answer) of ``model`` on ``n`` problems per family, drawn
    as ``synth`` draws that split (``train``, or ``test``: the held-out templates).

    Raises:
        ConfigError: for a family that is not in ``DOMAINS``, or a split other than train and test.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"probe: split must be train or test, got {split!r}")
    unknown = [d for d in domains if d not in FAMILIES]
    if unknown:
        raise ConfigError(
            f"probe: unknown domains {unknown} (the arithmetic families, judged exactly: {', '.join(FAMILIES)}; "
            "the code domain is judged by running it: `datakit evaluate` with judge.kind code)"
        )
    cfg = params.generate
    backend = make_backend(cfg, model)
    table, answers = [], []
    for domain in domains:
        sizes = (n, 0, 0) if split == "train" else (0, 0, n)
        examples = make_domain(domain, *sizes, params.synth.seed, params.synth.math_max_steps)[split]
        work = (
            Path(params.paths.work)
            / "probe"
            / work_key(domain, model_fingerprint(model), cfg.params_hash(), examples["id"].to_list())
        )
        gens, _ = generate_frame(
            examples,
            backend,
            cfg,
            iteration=0,
            work_dir=work,
            progress=progress,
            desc=f"probe {domain}",
            cache=generation_cache(params.paths.cache, cfg, model),
        )
        graded = answered(examples, gens).join(
            judge_math(answered(examples, gens), where=f"probe {domain}").select("id", "score", "extracted"),
            on="id",
        )
        clear_work(work)
        right = int((graded["score"] == 5).sum())
        lo, hi = wilson(right, graded.height)
        table.append(
            {
                "domain": domain,
                "split": split,
                "about": FAMILIES[domain].about,
                "n": graded.height,
                "right": right,
                "accuracy": right / graded.height if graded.height else 0.0,
                "ci_low": lo,
                "ci_high": hi,
                "mean_new_tokens": float(gens["n_tokens"].mean() or 0.0),
            }
        )
        answers.append(
            graded.select(
                "id", "source", "instruction", "output", "response", "extracted", "score"
            ).with_columns(domain=pl.lit(domain))
        )
    return pl.DataFrame(table), pl.concat(answers)


def markdown(table: pl.DataFrame) -> str:
    """The probe table as markdown: accuracy with its 95% interval, per family."""
    lines = [
        "| domain | what | split | items | base accuracy (95% CI) |",
        "|---|---|---|---|---|",
    ]
    for r in table.iter_rows(named=True):
        lines.append(
            f"| `{r['domain']}` | {r['about']} | {r['split']} | {r['n']} | {r['accuracy']:.1%} "
            f"({r['ci_low']:.1%}–{r['ci_high']:.1%}) |"
        )
    return "\n".join(lines) + "\n"
