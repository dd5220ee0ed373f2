"""Generate-stage throughput against raw ``model.generate``, same prompts, same batch size, same run.

The stage path is datakit's own (``generate_frame``: chat template, length-sorted batches, shard files
written to disk, token accounting). The raw path is what one writes by hand: chat template, batches in
input order, ``model.generate``, decode. A third path runs raw ``model.generate`` over the very batches
the stage forms, which separates the stage's overhead from the effect of batch composition (a batch runs
until its longest answer ends, so which prompts share a batch changes the work done). All count new
tokens the same way (up to and including the first end-of-sequence token) and are timed end to end;
rounds alternate so drift hits all alike.

    python benchmarks/generate.py [--model data/base_model] [--n 64] [--batch-size 32] [--max-new-tokens 128]
        [--engines vllm:float32,vllm:bfloat16,transformers:bfloat16] [--eager]

Prints tokens/s per round and the ratio stage / raw. ``--engines``: the generate stage on each other engine
and dtype over the same prompts, after the rounds above: its tokens/s against raw transformers fp32 from the
same run, its start-up, and how many answers are the same text as the transformers fp32 stage's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl  # noqa: E402
import torch  # noqa: E402

from datakit.backends import TransformersBackend, eos_ids, make_backend  # noqa: E402
from datakit.config import GenerationConfig, VLLMConfig  # noqa: E402
from datakit.generate import conversation, generate_frame, user_message  # noqa: E402
from datakit.models import materialize_base_model  # noqa: E402
from datakit.synth import make_math  # noqa: E402


def raw_generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> int:
    """The hand-written baseline; returns the number of new tokens."""
    eos, total = eos_ids(model, tokenizer), 0
    for start in range(0, len(prompts), batch_size):
        chunk = [conversation(p) for p in prompts[start : start + batch_size]]
        batch = tokenizer.apply_chat_template(
            chunk, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
        )
        with torch.inference_mode():
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        for toks in out[:, batch["input_ids"].shape[1] :].tolist():
            stop = next((j for j, t in enumerate(toks) if t in eos), None)
            used = toks[: stop + 1] if stop is not None else toks
            tokenizer.decode(used, skip_special_tokens=True)
            total += len(used)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", default="data/base_model", help="model folder (materialised from SmolLM2 if absent)"
    )
    ap.add_argument("--n", type=int, default=64, help="prompts (domain train problems)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--engines", default="", help="comma list of backend:dtype, e.g. vllm:float32,vllm:bfloat16"
    )
    ap.add_argument("--eager", action="store_true", help="vllm: enforce_eager (no compile; faster start)")
    args = ap.parse_args()

    model_dir = Path(args.model)
    if not (model_dir / "config.json").exists():
        model_dir = Path(".datakit/bench/base_model")
        if not (model_dir / "config.json").exists():
            materialize_base_model("smollm2", model_dir)
    examples, _ = make_math(args.n, 1, seed=7)
    prompts = [user_message(i, x) for i, x in zip(examples["instruction"], examples["input"], strict=True)]
    cfg = GenerationConfig(
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, shard_size=args.batch_size
    )
    backend = TransformersBackend(cfg, str(model_dir))  # one loaded model serves both paths
    model, tokenizer = backend.lm, backend.tokenizer
    print(
        f"model {model_dir}, {args.n} prompts, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
        f"torch threads {torch.get_num_threads()}"
    )
    raw_generate(model, tokenizer, prompts[:2], 2, 8)  # warm-up

    # The stage's batches: longest prompts first (ties by id), cut at the batch size.
    lengths = pl.Series("n", [len(p) for p in prompts])
    order = examples.with_row_index("i").with_columns(lengths).sort(["n", "id"], descending=[True, False])
    same_batches = [prompts[i] for i in order["i"]]

    rows = []
    for r in range(args.rounds):
        t = time.perf_counter()
        raw_tokens = raw_generate(model, tokenizer, prompts, args.batch_size, args.max_new_tokens)
        raw_s = time.perf_counter() - t
        t = time.perf_counter()
        same_tokens = raw_generate(model, tokenizer, same_batches, args.batch_size, args.max_new_tokens)
        same_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as work:
            t = time.perf_counter()
            out, _ = generate_frame(examples, backend, cfg, iteration=0, work_dir=Path(work), progress=False)
            stage_s = time.perf_counter() - t
        stage_tokens = int(out["n_tokens"].sum())
        rows.append(
            {
                "raw_tokens": raw_tokens,
                "raw_s": raw_s,
                "same_tokens": same_tokens,
                "same_s": same_s,
                "stage_tokens": stage_tokens,
                "stage_s": stage_s,
            }
        )
        print(
            f"round {r + 1}: raw {raw_tokens / raw_s:.1f} tok/s ({raw_tokens} tok, {raw_s:.1f} s) | "
            f"raw, stage's batches {same_tokens / same_s:.1f} tok/s ({same_tokens} tok, {same_s:.1f} s) | "
            f"stage {stage_tokens / stage_s:.1f} tok/s ({stage_tokens} tok, {stage_s:.1f} s)",
            flush=True,
        )
    df = pl.DataFrame(rows)
    rate = {k: df[f"{k}_tokens"].sum() / df[f"{k}_s"].sum() for k in ("raw", "same", "stage")}
    print(f"raw model.generate, input order:     {rate['raw']:.1f} tok/s")
    print(f"raw model.generate, stage's batches: {rate['same']:.1f} tok/s")
    print(f"generate stage:                      {rate['stage']:.1f} tok/s")
    print(f"ratio stage / raw (input order):     {rate['stage'] / rate['raw']:.3f}")
    print(
        f"ratio stage / raw (same batches):    {rate['stage'] / rate['same']:.3f}  <- the stage's own overhead"
    )
    if args.engines:
        engines(args, model_dir, examples, cfg, out, rate["raw"])


def engines(
    args, model_dir: Path, examples: pl.DataFrame, cfg: GenerationConfig, ref: pl.DataFrame, raw: float
):
    """The stage on each other engine and dtype, against raw transformers fp32 (``raw`` tok/s) and the
    transformers fp32 stage's answers (``ref``)."""
    for spec in args.engines.split(","):
        backend, _, dtype = spec.partition(":")
        ecfg = GenerationConfig(
            backend=backend,
            dtype=dtype or "auto",
            batch_size=cfg.batch_size,
            max_new_tokens=cfg.max_new_tokens,
            shard_size=cfg.shard_size,
            vllm=VLLMConfig(max_model_len=2048, enforce_eager=args.eager),
        )
        t = time.perf_counter()
        engine = make_backend(ecfg, str(model_dir))
        start_s = time.perf_counter() - t
        generate_frame(
            examples.head(2), engine, ecfg, iteration=0, work_dir=Path(tempfile.mkdtemp()), progress=False
        )
        tokens = seconds = 0.0
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as work:
                t = time.perf_counter()
                out, _ = generate_frame(
                    examples, engine, ecfg, iteration=0, work_dir=Path(work), progress=False
                )
                seconds += time.perf_counter() - t
            tokens += int(out["n_tokens"].sum())
        same = sum(a == b for a, b in zip(out["output"], ref["output"], strict=True))
        print(
            f"{spec:<24} {tokens / seconds:7.1f} tok/s  ratio vs raw transformers fp32 {tokens / seconds / raw:.2f}  "
            f"start {start_s:.0f} s  same text as transformers fp32 {same}/{out.height}",
            flush=True,
        )
        del engine


if __name__ == "__main__":
    main()
