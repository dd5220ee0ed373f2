"""evaluate — how good a model is: at the domain, at general skills, and how many bad cases it still makes.

Reads: the model (``--iteration iter_t``: that iteration's ``model_out``, M_{t+1}; ``--base``: the base model),
``data.domain_test``, ``data.domain_val``, ``data.general_eval``, ``data.general_val``, ``data.domain_train``,
params ``generate``, ``judge``, ``select``, ``evaluate``.
Writes, under ``<iteration dir>/evaluate/`` (``paths.evaluate_base`` for the base model):
``metrics.json`` — domain test accuracy (the ``judge`` settings: math exact match by default), general
retention (accuracy on the held-out general split by ``evaluate.general_judge``, and the mean NLL of its
references), the same two accuracies on the validation splits, each with its 95% Wilson interval
(``<name>_low``, ``<name>_high``) and item count (``<name>_n``), and the bad-case count on domain train (the
paper's Figure 6) — and ``results.parquet``, every answer with its score and category, which the report's
paired tests read. Answers to domain train land in the generation cache, so the next iteration's
generate reads them instead of generating them again.
Run: ``datakit evaluate --iteration iter_1`` / ``datakit evaluate --base``
(``dvc repro evaluate@iter_1`` / ``dvc repro evaluate_base``).
"""

from __future__ import annotations

import dataclasses
import time

import polars as pl

from datakit import artifacts
from datakit.backends import make_backend
from datakit.config import Params
from datakit.evaluate import EVAL_RESULTS, judge_match, reference_nll
from datakit.generate import answer, answered
from datakit.grading import judge_rows
from datakit.loaders import load_examples
from datakit.runlog import summary_line, write_json
from datakit.schemas import write_table
from datakit.select import threshold_expr
from datakit.shards import clear_work
from datakit.stats import wilson

NAME = "evaluate"


# metrics.json key of each evaluated set's accuracy (domain_accuracy and general_accuracy are the test splits).
ACCURACY = {
    "domain_test": "domain_accuracy",
    "general_eval": "general_accuracy",
    "domain_val": "domain_val_accuracy",
    "general_val": "general_val_accuracy",
}


def accuracy_metrics(key: str, right: int, n: int) -> dict:
    """``key`` (the share right), ``key_low``/``key_high`` (its 95% Wilson interval) and ``key_n`` (items)."""
    lo, hi = wilson(right, n)
    return {
        key: round(right / n, 4) if n else 0.0,
        f"{key}_low": round(lo, 4),
        f"{key}_high": round(hi, 4),
        f"{key}_n": n,
    }


def _score(params: Params, name: str, examples, gens, model: str, data_path: str, desc: str, progress: bool):
    """Judgments of ``gens``: the domain sets by the ``judge`` settings, general by ``evaluate.general_judge``."""
    if name.startswith("general") and params.evaluate.general_judge == "match":
        return judge_match(answered(examples, gens, desc)), None
    if name.startswith("general"):
        params = dataclasses.replace(params, judge=dataclasses.replace(params.judge, kind="llm"))
    judgments, _, work = judge_rows(
        params,
        examples,
        gens,
        model,
        data_path=data_path,
        where=desc,
        name=f"{NAME}_{name}",
        desc=desc,
        progress=progress,
    )
    return judgments, work


def run(params: Params, iteration: str | None, progress: bool = True) -> dict:
    started = time.perf_counter()
    model, n, out_dir = artifacts.evaluation(params, iteration, NAME)
    label = iteration or "base"
    backend = make_backend(params.generate, model, lazy=params.executor.is_ray)
    sets = [
        ("domain_test", params.data.domain_test, "test"),
        ("general_eval", params.data.general_eval, "eval"),
    ]
    # Validation splits: what the sweeps choose settings on, so test stays untouched by every choice.
    if params.data.domain_val is not None:
        sets.append(("domain_val", params.data.domain_val, "val"))
    if params.data.general_val is not None:
        sets.append(("general_val", params.data.general_val, "val"))
    if params.evaluate.train_bad_cases:
        sets.append(("domain_train", params.data.domain_train, "train"))
    results, metrics, works = [], {"model": model, "iteration": n}, []
    for name, source, split in sets:
        examples = load_examples(source, split)
        desc = f"{NAME} {label}: {name}"
        gens, summary, work = answer(
            params, examples, model, n, name=f"{NAME}_{name}", desc=desc, progress=progress, backend=backend
        )
        judgments, judge_work = _score(params, name, examples, gens, model, source.path, desc, progress)
        works += [work, judge_work]
        scored = judgments.filter(pl.col("score").is_not_null())
        bad = int(scored.select(threshold_expr(params.select.threshold)).to_series().sum())
        share = round(bad / max(scored.height, 1), 4)
        metrics[f"{name}_rows"] = examples.height
        metrics[f"{name}_unscored"] = judgments.height - scored.height
        metrics[f"{name}_mean_new_tokens"] = summary["mean_new_tokens"]
        metrics[f"{name}_from_cache"] = summary["rows_from_cache"]
        if name == "domain_train":
            metrics.update(train_bad_cases=bad, train_bad_rate=share)
        else:
            metrics.update(accuracy_metrics(ACCURACY[name], scored.height - bad, scored.height))
        results.append(
            gens.select("id", response="output", finish_reason="finish_reason", n_tokens="n_tokens")
            .join(judgments.select("id", "score", "extracted"), on="id", how="left", maintain_order="left")
            .join(examples.select("id", category="source"), on="id", how="left", maintain_order="left")
            .with_columns(set=pl.lit(name))
        )
        if name == "general_eval":
            nll, _ = reference_nll(
                model,
                examples,
                system_prompt=params.generate.system_prompt,
                batch_size=params.evaluate.nll_batch_size,
                device=params.generate.device,
                engine=params.score.engine,
                dtype=params.score.dtype,
                vllm=params.score.vllm,
            )
            metrics["general_nll"] = round(nll, 5)
    write_table(
        pl.concat(results).select(EVAL_RESULTS.columns),
        artifacts.file_in(out_dir, NAME, "results.parquet"),
        EVAL_RESULTS,
    )
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    write_json(metrics, artifacts.file_in(out_dir, NAME, "metrics.json"))
    for work in works:
        if work is not None:
            clear_work(work)
    summary_line(
        NAME,
        rows_in=sum(r.height for r in results),
        rows_out=len(results),
        failed=sum(metrics[f"{s}_unscored"] for s, _, _ in sets),
        seconds=metrics["seconds"],
        extra=f"{label}: domain accuracy {metrics['domain_accuracy']:.1%}, general accuracy "
        f"{metrics['general_accuracy']:.1%}, general NLL {metrics['general_nll']:.3f}"
        + (f", {metrics['train_bad_cases']} bad cases on train" if "train_bad_cases" in metrics else ""),
    )
    return metrics
