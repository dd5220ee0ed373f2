"""filter — I-SHEEP: keep the pairs the round trains on (self-score, perplexity, density, density + perplexity).

Reads: ``<round dir>/synthesize/instructions.parquet``, ``<round dir>/generate/generations.parquet``,
``<round dir>/assess/assessments.parquet``, and (strategies ppl, density, density_ppl) the round's
``model_in`` for perplexities and last-layer states; params ``filter``.
Writes, under ``<round dir>/filter/``: ``pairs.parquet`` (every pair: ``id, score, ppl, empty, kept, reason,
cluster``), ``kept.parquet`` (the kept pairs as an SFT set: ``id, prompt, completion, origin, corrupted,
corruption``; what score and train read) and ``metrics.json`` (pairs in, kept, dropped per reason, mean
self-score of the kept pairs).
Run: ``datakit filter --iteration round_1`` (``dvc repro recipes/isheep/dvc.yaml:filter@round_1``).
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from datakit import artifacts
from datakit.config import Params
from datakit.generate import answered
from datakit.isheep import FILTERED, INSTRUCTIONS, choose, pair_stats, round_of
from datakit.poft import SFT_SET, corrupt
from datakit.runlog import summary_line, write_json
from datakit.schemas import GENERATIONS, JUDGMENTS, read_table, write_table
from datakit.train import examples_as_sft

NAME = "filter"


def sft_pairs(rows: pl.DataFrame, system_prompt: str) -> pl.DataFrame:
    """The answered pairs as an SFT set (the response is the completion), never corrupted."""
    sft = examples_as_sft(rows.with_columns(output=pl.col("response").fill_null("")), system_prompt, "isheep")
    return corrupt(sft, 0.0, 0.0, 0.0, 0)


def perplexities(
    model: str, sft: pl.DataFrame, params: Params, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's response perplexity under ``model`` and its last-layer state (see ``isheep.pair_stats``)."""
    from datakit.backends import load_model_and_tokenizer, pick_device
    from datakit.poft import tokenize_row

    cfg = params.filter
    device = pick_device(cfg.device)
    lm, tok = load_model_and_tokenizer(model, device)
    seqs = [
        tokenize_row(tok, p, c, cfg.max_length)
        for p, c in zip(sft["prompt"].to_list(), sft["completion"].to_list(), strict=True)
    ]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with tqdm(total=len(seqs), desc=f"{NAME} perplexity", unit="pair", disable=not progress) as bar:
        return pair_stats(lm, seqs, pad_id=pad, batch_size=cfg.batch_size, device=device, bar=bar)


def run(params: Params, iteration: str, progress: bool = True) -> pl.DataFrame:
    started = time.perf_counter()
    it, cfg = round_of(params, iteration), params.filter
    instructions = read_table(artifacts.instructions(it), INSTRUCTIONS)
    rows = answered(
        instructions, read_table(artifacts.generations(it), GENERATIONS), artifacts.generations(it)
    )
    scores = read_table(artifacts.assessments(it), JUDGMENTS).select("id", "score")
    rows = rows.join(scores, on="id", how="left", maintain_order="left")
    sft = sft_pairs(rows, params.generate.system_prompt)
    states, ppl = None, [None] * rows.height
    if cfg.strategy != "score" and rows.height:
        ppl_arr, states = perplexities(it.model_in, sft, params, progress)
        ppl = [float(p) for p in ppl_arr]
    pairs = pl.DataFrame(
        {
            "id": rows["id"],
            "score": rows["score"],
            "ppl": pl.Series(ppl, dtype=pl.Float64),
            "empty": (rows["response"].fill_null("").str.strip_chars() == "")
            | (rows["finish_reason"] == "error"),
        }
    )
    decided = choose(pairs, cfg, states)
    write_table(decided, artifacts.filtered_pairs(it), FILTERED)
    kept_ids = decided.filter(pl.col("kept"))["id"]
    kept = sft.filter(pl.col("id").is_in(kept_ids.implode()))
    write_table(kept, artifacts.kept(it), SFT_SET)
    reasons = decided["reason"].drop_nulls().value_counts(sort=True)
    kept_scores = decided.filter(pl.col("kept"))["score"].drop_nulls()
    metrics = {
        "pairs": decided.height,
        "strategy": cfg.strategy,
        "kept": kept.height,
        "kept_share": round(kept.height / max(decided.height, 1), 4),
        "dropped": dict(zip(reasons["reason"].to_list(), reasons["count"].to_list(), strict=True)),
        "kept_mean_score": round(float(kept_scores.mean()), 4) if kept_scores.len() else None,
    }
    if cfg.strategy != "score" and decided.height:
        metrics["median_ppl"] = round(float(decided["ppl"].median()), 3)
    write_json(metrics, artifacts.step_file(it, NAME, "metrics.json"))
    summary_line(
        NAME,
        rows_in=decided.height,
        rows_out=kept.height,
        failed=0,
        seconds=time.perf_counter() - started,
        extra=f"{cfg.strategy}: " + ", ".join(f"{n} {r}" for r, n in metrics["dropped"].items()),
    )
    return kept
