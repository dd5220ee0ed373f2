"""Score-stage throughput (PoFT's reference scores) against a raw forward pass over the same rows, same run.

The stage path is datakit's ``score_model``: chat template and tokenization of every row as TRL's SFT trainer
does it, length-sorted batches, the forward pass, a log-softmax at the answer positions only, and the per-row
sums (no cache, so every row is computed). The raw path is the floor one would write by hand: the same
already-tokenized batches through ``model(input_ids, attention_mask)`` and nothing else. Rounds alternate so
drift hits both alike. A last line times a rerun through the score cache.

    python benchmarks/score.py [--model data/base_model] [--n 256] [--batch-size 8] [--engines vllm,vllm:compiled]

Prints rows/s per round and the ratio stage / raw (>= 0.9 is the target). ``--engines``: after the rounds, the
stage on the vllm engine (float32; eager unless ``:compiled``) over the same rows, each round next to a raw
forward pass: its rows/s against that raw pass as a ratio, the engine's start-up, and the largest difference
from the transformers scores (mean log-prob per answer token) and whether every row's token count agrees.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datakit.backends import load_model_and_tokenizer  # noqa: E402
from datakit.config import VLLMConfig  # noqa: E402
from datakit.logprobs import Scorer  # noqa: E402
from datakit.models import materialize_base_model  # noqa: E402
from datakit.poft import score_model, tokenize_row  # noqa: E402
from datakit.synth import make_math  # noqa: E402
from datakit.train import examples_as_sft  # noqa: E402


def raw_forward(lm, seqs, pad_id: int, batch_size: int) -> None:
    """The same length-sorted batches, one plain forward pass each."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(seqs[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for b, i in enumerate(idx):
                ids[b, : len(seqs[i][0])] = torch.tensor(seqs[i][0])
                mask[b, : len(seqs[i][0])] = 1
            lm(input_ids=ids, attention_mask=mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", default="data/base_model", help="model folder (materialised from SmolLM2 if absent)"
    )
    ap.add_argument(
        "--n", type=int, default=256, help="rows scored (synthetic math problems + worked answers)"
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", default="", help="comma-separated: vllm (eager) | vllm:compiled")
    args = ap.parse_args()
    model = Path(args.model)
    if not (model / "model.safetensors").exists():
        materialize_base_model("smollm2", model)
    torch.set_num_threads(os.cpu_count() or 1)
    rows = examples_as_sft(make_math(args.n, 1, seed=99, max_steps=2)[0])
    lm, tok = load_model_and_tokenizer(str(model), "cpu")
    pad_id = tok.pad_token_id
    prompts, completions = rows["prompt"].to_list(), rows["completion"].to_list()
    seqs = [tokenize_row(tok, p, c, 512) for p, c in zip(prompts, completions, strict=True)]
    tokens = sum(len(s) for s, _ in seqs)
    print(f"{args.n} rows, {tokens} tokens, batch {args.batch_size}, {torch.get_num_threads()} threads")
    score_model(str(model), rows.head(args.batch_size), batch_size=args.batch_size, progress=False)  # warm-up

    def against_raw(label: str, stage_pass) -> tuple[float, object]:
        """``args.rounds`` rounds of ``stage_pass`` each followed by the raw forward pass; the median ratio
        raw time / stage time and the stage's last result."""
        ratios = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            got = stage_pass()
            stage = time.perf_counter() - t0
            t0 = time.perf_counter()
            raw_forward(lm, seqs, pad_id, args.batch_size)
            raw = time.perf_counter() - t0
            ratios.append(raw / stage)
            print(
                f"{label} round {r + 1}: {args.n / stage:.1f} rows/s ({stage:.1f} s), "
                f"raw forward {args.n / raw:.1f} rows/s ({raw:.1f} s), ratio {label}/raw {raw / stage:.3f}"
            )
        return sorted(ratios)[len(ratios) // 2], got

    ratio, (reference, _) = against_raw(
        "stage",
        lambda: score_model(
            str(model), rows, batch_size=args.batch_size, max_length=512, device="cpu", progress=False
        ),
    )
    print(f"throughput ratio stage/raw (median of {args.rounds}): {ratio:.3f}")
    for spec in filter(None, args.engines.split(",")):
        engine, _, mode = spec.partition(":")
        t0 = time.perf_counter()
        scorer = Scorer(
            str(model), engine, dtype="float32", vllm=VLLMConfig(enforce_eager=mode != "compiled")
        )
        start = time.perf_counter() - t0
        ratio, got = against_raw(spec, lambda scorer=scorer: scorer.logps(seqs))
        mean = lambda logp, n: np.asarray(logp) / np.asarray(n)  # noqa: E731
        diff = np.abs(mean(*zip(*got, strict=True)) - mean(reference["logp"], reference["n_tokens"]))
        same_n = [n for _, n in got] == reference["n_tokens"].to_list()
        print(
            f"{spec}: ratio against raw transformers fp32 (median of {args.rounds}) {ratio:.2f}; start-up "
            f"{start:.1f} s; max |diff| per token {diff.max():.1e} (mean {diff.mean():.1e}); token counts "
            f"identical: {same_n}"
        )
    with tempfile.TemporaryDirectory() as cache:
        score_model(str(model), rows, batch_size=args.batch_size, cache_root=cache, progress=False)
        t0 = time.perf_counter()
        _, reused = score_model(
            str(model), rows, batch_size=args.batch_size, cache_root=cache, progress=False
        )
        print(
            f"rerun through the cache: {reused}/{args.n} rows read back in {time.perf_counter() - t0:.2f} s"
        )


if __name__ == "__main__":
    main()
