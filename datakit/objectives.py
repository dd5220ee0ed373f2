"""Training objectives TRL does not ship, built on its trainers: PoFT on TRL's ``SFTTrainer``; and TRL's
preference trainers with length-grouped batches.

Imported lazily by :mod:`datakit.train` (it imports torch and TRL at module level).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from trl import DPOTrainer, SFTTrainer

from datakit.errors import ConfigError
from datakit.schemas import write_text_atomic

# Columns a PoFT training row carries besides TRL's prompt-completion: the references' aggregated score and
# the row's position in the training table (to log each row's tau).
EXTRA = ("ref_score", "row")
TAU_FILE = "tau_log.json"  # in each checkpoint: the tau log up to it


def poft_loss(r_theta: torch.Tensor, r_ref: torch.Tensor) -> torch.Tensor:
    """Per-row PoFT loss, -log sigmoid(r_theta - r_ref) (seeds/003 eq. 11)."""
    return -F.logsigmoid(r_theta - r_ref)


def pair_lengths(dataset, max_length: int | None = None) -> list[int]:
    """Each tokenized preference row's padded width in tokens: the longer of its two sequences (the collator pads
    chosen and rejected to one width), cut at ``max_length`` as the collator cuts it. DPO rows keep the prompt
    apart (``prompt_ids``, ``chosen_ids``, ``rejected_ids``); ORPO's ``chosen_input_ids`` and
    ``rejected_input_ids`` hold it already."""
    if "chosen_ids" in dataset.column_names:
        prompts = [len(p) for p in dataset["prompt_ids"]]
        chosen, rejected = dataset["chosen_ids"], dataset["rejected_ids"]
    else:
        chosen, rejected = dataset["chosen_input_ids"], dataset["rejected_input_ids"]
        prompts = [0] * len(chosen)
    cap = max_length or float("inf")
    return [int(min(p + max(len(c), len(r)), cap)) for p, c, r in zip(prompts, chosen, rejected, strict=True)]


def row_lengths(dataset, max_length: int | None = None) -> list[int] | None:
    """Each tokenized training row's padded width: :func:`pair_lengths` for preference rows, ``input_ids``
    (cut at ``max_length``) for SFT rows; None for a dataset with neither."""
    columns = set(getattr(dataset, "column_names", None) or ())
    if {"chosen_ids", "chosen_input_ids"} & columns:
        return pair_lengths(dataset, max_length)
    if "input_ids" in columns:
        cap = max_length or float("inf")
        return [int(min(len(ids), cap)) for ids in dataset["input_ids"]]
    return None


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order (shuffled, then sorted by length within mega-batches), drawn from the
    seed and the epoch alone, so a run resumed from a checkpoint sees the batches an uninterrupted one sees.
    (The stock sampler draws from torch's global RNG, which a resumed run has left elsewhere.)"""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class LengthGrouped:
    """Mixed in before a TRL trainer: ``train_sampling_strategy: group_by_length`` batches rows of like length.

    transformers' sampler reads the lengths from a ``length`` column or from ``input_ids``, and a tokenized
    preference row has neither, so TRL's DPO and ORPO trainers stop at the first step with it. Here the lengths
    are :func:`row_lengths` (capped at ``max_length``, as the collator cuts) and the order is
    :class:`EpochLengthGroupedSampler`'s; everything else is TRL's. On the CPU a step costs what its padded
    tokens cost, so grouping spends less on padding (README, the fast CPU path).
    """

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        grouped = self.args.train_sampling_strategy == "group_by_length"
        lengths = row_lengths(dataset, getattr(self.args, "max_length", None)) if grouped else None
        if lengths is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths, seed
        )


class GroupedDPOTrainer(LengthGrouped, DPOTrainer):
    """TRL's ``DPOTrainer``, with length-grouped batches on request (:class:`LengthGrouped`)."""


class GroupedSFTTrainer(LengthGrouped, SFTTrainer):
    """TRL's ``SFTTrainer``, with resumable length-grouped batches on request (:class:`LengthGrouped`)."""


def grouped_orpo_trainer():
    """TRL's ``ORPOTrainer`` (imported here: TRL keeps it under ``trl.experimental``), with length-grouped
    batches on request (:class:`LengthGrouped`)."""
    from trl.experimental.orpo import ORPOTrainer

    class GroupedORPOTrainer(LengthGrouped, ORPOTrainer):
        pass

    return GroupedORPOTrainer


class _PoftCollator:
    """TRL's collator plus the ``ref_score`` and ``row`` tensors it would otherwise drop."""

    def __init__(self, base):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base([{k: v for k, v in ex.items() if k not in EXTRA} for ex in examples])
        batch["ref_score"] = torch.tensor([float(ex["ref_score"]) for ex in examples], dtype=torch.float32)
        batch["row"] = torch.tensor([int(ex["row"]) for ex in examples], dtype=torch.long)
        return batch


class PoftTrainer(LengthGrouped, SFTTrainer):
    """TRL's ``SFTTrainer`` with the PoFT loss in place of cross-entropy.

    The training dataset is TRL prompt-completion rows plus ``ref_score`` (r_ref, precomputed by the score
    stage) and ``row``. Tokenization, truncation, completion-only masking, LoRA and every SFTConfig setting are
    TRL's; only the loss changes. r_theta is the mean log-prob of the completion tokens under the model being
    trained, from TRL's own fused head. Logged per step: ``tau``, ``r_theta``, ``r_ref`` (batch means); each
    row's tau as it is trained on is kept in ``tau_log``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.packing or self.args.padding_free:
            raise ConfigError("train.sft: poft scores whole rows; packing and padding_free must be off")
        self.data_collator = _PoftCollator(self.data_collator)
        # The loss below is a per-row mean of each micro-batch: the Trainer divides it over accumulation steps.
        self.loss_is_scaled_for_ga = False
        self.tau_log: list[dict[str, float]] = []

    def _save_checkpoint(self, model, trial):
        """A checkpoint also keeps the tau log so far, so a resumed run's log is the whole run's."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            write_text_atomic(json.dumps(self.tau_log), folder / TAU_FILE)

    def resume_tau_log(self, checkpoint: str | Path) -> None:
        """Take back the tau log a checkpoint kept (the rows of the steps before it)."""
        path = Path(checkpoint) / TAU_FILE
        self.tau_log = json.loads(path.read_text()) if path.exists() else []

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns, *EXTRA]

    def completion_rewards(self, model, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        """r_theta per row: the completion's log-likelihood under ``model`` divided by its token count."""
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        mask = outputs.label_mask.to(outputs.log_probs.dtype)
        r_theta = (outputs.log_probs * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return r_theta, outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        r_ref = inputs.pop("ref_score")
        rows = inputs.pop("row")
        r_theta, outputs = self.completion_rewards(model, inputs)
        r_ref = r_ref.to(r_theta.device, r_theta.dtype)
        loss = poft_loss(r_theta, r_ref).mean()
        with torch.no_grad():
            tau = torch.sigmoid(r_ref - r_theta)
            n_valid = outputs.label_mask.sum()
            metrics = self._metrics[mode]
            metrics["tau"].append(tau.mean().item())
            metrics["r_theta"].append(r_theta.mean().item())
            metrics["r_ref"].append(r_ref.mean().item())
            if n_valid > 0:
                metrics["mean_token_accuracy"].append((outputs.is_top1.sum() / n_valid).item())
            if mode == "train":
                step = self.state.global_step
                for row, t, r in zip(rows.tolist(), tau.tolist(), r_theta.tolist(), strict=True):
                    self.tau_log.append({"row": row, "step": step, "tau": t, "r_theta": r})
        return (loss, outputs) if return_outputs else loss
