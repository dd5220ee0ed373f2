"""Train-stage cost per step for the speed options TRL and PEFT already have, on the same pairs, same run.

Each variant builds the train stage's own trainer (``datakit.train.build_trainer``: the params.yaml ``train``
section, the objective's TRL config, LoRA) with a few keys changed, and trains on the same ``--n`` pairs in
the same order (same seed; a grouped variant orders them by length). Building the trainer and
``trainer.train()`` are timed together, so a variant that front-loads work (``precompute_ref_log_probs``: TRL
runs its reference pass when the trainer is built) pays for it here; so does every variant's model load and
tokenization (a second or two).

    python benchmarks/train.py [--pairs data/iter_1/pairs/preference_pairs.parquet] [--n 64]
        [--variants fp32,bf16,precompute,bf16+precompute,bf16+precompute+grouped,batch16]

Prints per variant: seconds per pair, seconds per optimizer step, padded tokens per step (chosen and rejected
sequences), the speed ratio against the first variant (fp32 without precomputed reference log-probs: TRL's
plain setting), and the mean loss of the first and last quarter of the steps: a faster variant must reach the
same loss. Without ``--pairs`` on disk the pairs are built from domain train (chosen = the
reference, rejected = another problem's reference), which has the lengths but not the content of real pairs.
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

from datakit.backends import pick_device  # noqa: E402
from datakit.config import load_params  # noqa: E402
from datakit.loaders import load_examples  # noqa: E402
from datakit.train import build_trainer, examples_as_sft, step_log  # noqa: E402

# Each variant: keys merged over train.args and train.dpo (the DPO objectives' own section). Each names every
# speed key, so a variant means the same whatever params.yaml's defaults are; fp32 is TRL's plain setting.
RANDOM, GROUPED = {"train_sampling_strategy": "random"}, {"train_sampling_strategy": "group_by_length"}
FP32, PLAIN = {"bf16": False, **RANDOM}, {"precompute_ref_log_probs": False}
BF16, PRE = {"bf16": True, **RANDOM}, {"precompute_ref_log_probs": True}
VARIANTS = {
    "fp32": (FP32, PLAIN),
    "bf16": (BF16, PLAIN),
    "precompute": (FP32, PRE),
    "bf16+precompute": (BF16, PRE),
    # Batches of pairs of like length (transformers' length-grouped sampler): less padding per step.
    "bf16+precompute+grouped": ({**BF16, **GROUPED}, PRE),
    # torch.compile of the policy (TrainingArguments.torch_compile, inductor on the CPU).
    "bf16+precompute+grouped+compile": ({**BF16, **GROUPED, "torch_compile": True}, PRE),
    "batch16": ({**FP32, "per_device_train_batch_size": 16}, PLAIN),
    "bf16+batch16": ({**BF16, "per_device_train_batch_size": 16}, PLAIN),
}


def pairs_from_train(params, n: int) -> pl.DataFrame:
    sft = examples_as_sft(load_examples(params.data.domain_train, "train").head(n + 1))
    return pl.DataFrame(
        {
            "prompt": sft["prompt"].head(n),
            "chosen": sft["completion"].head(n),
            "rejected": sft["completion"].shift(-1).head(n),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", default="data/iter_1/pairs/preference_pairs.parquet")
    ap.add_argument("--n", type=int, default=64, help="pairs trained on (the first n)")
    ap.add_argument("--variants", default="fp32,bf16,precompute,bf16+precompute,batch16")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params = load_params(args.params)
    if Path(args.pairs).exists():
        rows = pl.read_parquet(args.pairs).head(args.n)
    else:
        print(f"{args.pairs}: not found; pairs built from domain train")
        rows = pairs_from_train(params, args.n)
    model, device = params.paths.base_model, pick_device(params.train.device)
    results = []
    for name in args.variants.split(","):
        extra_args, extra_dpo = VARIANTS[name]
        cfg = dataclasses.replace(
            params.train,
            args={**params.train.args, "num_train_epochs": 1, **extra_args},
            dpo={**params.train.dpo, **extra_dpo},
        )
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            trainer = build_trainer(cfg, model, rows, out, device)  # TRL's reference pass runs in here
            trainer.train()
            seconds = time.perf_counter() - t
            batches = list(trainer.get_train_dataloader())  # the same sampler, drawn again: its padding
        log = step_log(trainer.state.log_history)
        q = max(1, log.height // 4)
        results.append(
            {
                "variant": name,
                "steps": log.height,
                "s_per_pair": round(seconds / rows.height, 2),
                "s_per_step": round(seconds / max(log.height, 1), 2),
                "padded_tokens_per_step": round(sum(b["input_ids"].numel() for b in batches) / len(batches)),
                "loss_first_q": round(float(log["loss"].head(q).mean()), 4),
                "loss_last_q": round(float(log["loss"].tail(q).mean()), 4),
            }
        )
        print(results[-1], flush=True)
        del trainer
    table = pl.DataFrame(results)
    table = table.with_columns(speed_vs_first=(table["s_per_pair"][0] / pl.col("s_per_pair")).round(2))
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(table)


if __name__ == "__main__":
    main()
