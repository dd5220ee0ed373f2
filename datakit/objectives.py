"""Training objectives TRL does not ship, built on its trainers: PoFT on TRL's ``SFTTrainer``.

Imported lazily by :mod:`datakit.train` (it imports torch and TRL at module level).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from datakit.errors import ConfigError
from datakit.schemas import write_text_atomic

# Columns a PoFT training row carries besides TRL's prompt-completion: the references' aggregated score and
# the row's position in the training table (to log each row's tau).
EXTRA = ("ref_score", "row")
TAU_FILE = "tau_log.json"  # in each checkpoint: the tau log up to it


def poft_loss(r_theta: torch.Tensor, r_ref: torch.Tensor) -> torch.Tensor:
    """Per-row PoFT loss, -log sigmoid(r_theta - r_ref) (seeds/003 eq. 11)."""
    return -F.logsigmoid(r_theta - r_ref)


class _PoftCollator:
    """TRL's collator plus the ``ref_score`` and ``row`` tensors it would otherwise drop."""

    def __init__(self, base):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base([{k: v for k, v in ex.items() if k not in EXTRA} for ex in examples])
        batch["ref_score"] = torch.tensor([float(ex["ref_score"]) for ex in examples], dtype=torch.float32)
        batch["row"] = torch.tensor([int(ex["row"]) for ex in examples], dtype=torch.long)
        return batch


class PoftTrainer(SFTTrainer):
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
