"""Tuning and ablations on iteration 1 as DVC experiments (``datakit sweep``, ``datakit ablations``).

Each experiment is ``dvc exp run --temp -n <name> -S key=value ... evaluate@iter_1``: iteration 1 retrained
(and, for an ablation of retrieval or the judge, rebuilt) with a few parameters changed, in a temporary copy
of the workspace, so params.yaml and data/ stay as they are. ``datakit report`` lists every experiment with
its changed parameters, and for the sweep marks the setting chosen on domain validation per run.

- **Sweep** (``sweep-<run>-lr<lr>-ep<epochs>[-b<beta>]``): learning rate x epochs, and beta for a DPO
  objective, for APT and each baseline at the same grid (matched budget): ``apt`` (params.yaml's objective on
  the pairs), ``continued-sft`` (SFT on the pairs' chosen answers), ``domain-sft`` (SFT on domain train),
  ``mixed`` (domain train + as many pool rows).
- **Ablations** (``ablation-<what>-<value>``, the APT paper's): retrieval strategy (``none``: bad cases
  alone), objective, and the bad-case threshold. The threshold runs grade with the ``self`` judge: the exact
  math judge scores 1 or 5, so ``=1``, ``<3`` and ``<4`` select the same rows under it.

An experiment whose name ``dvc exp list`` already shows for this commit is skipped, so a killed sweep
started again runs only the rest.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from datakit.config import Params
from datakit.errors import DatakitError

TARGET = "evaluate@iter_1"
# Each sweep run: the parameters that make it, over params.yaml.
RUNS: dict[str, dict[str, str]] = {
    "apt": {},
    "continued-sft": {"train.objective": "sft"},
    "domain-sft": {"train.data": "domain", "train.objective": "sft"},
    "mixed": {"train.data": "mixed", "train.objective": "sft"},
}
DPO_OBJECTIVES = ("dpo_sft", "dpo", "poft_dpo")  # the objectives train.dpo.beta acts on
ABLATIONS: list[tuple[str, dict[str, str]]] = [
    # the strategies other than the default (cluster, chosen on validation among these four)
    *((f"ablation-retrieve-{s}", {"retrieve.strategy": s}) for s in ("none", "mean", "tag")),
    *((f"ablation-objective-{o}", {"train.objective": o}) for o in ("sft", "dpo", "orpo")),
    *(
        (f"ablation-threshold-{name}", {"judge.kind": "self", "select.threshold": rule})
        for name, rule in (("eq1", "=1"), ("lt3", "<3"), ("lt4", "<4"))
    ),
]


@dataclass(frozen=True)
class Experiment:
    name: str
    settings: dict[str, str]

    def command(self, dvc: str = "dvc") -> list[str]:
        sets = [arg for key, value in self.settings.items() for arg in ("-S", f"{key}={value}")]
        return [dvc, "exp", "run", "--temp", "-n", self.name, *sets, TARGET]


def _num(value: float) -> str:
    return f"{value:g}"


def sweep_grid(
    params: Params,
    runs: Sequence[str],
    learning_rates: Sequence[float],
    epochs: Sequence[int],
    betas: Sequence[float],
) -> list[Experiment]:
    """Every run x learning rate x epochs (x beta where the run's objective is a DPO one), in that order."""
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise DatakitError(f"sweep: unknown run(s) {', '.join(unknown)} (known: {', '.join(RUNS)})")
    if not (learning_rates and epochs and betas):
        raise DatakitError("sweep: give at least one learning rate, one epoch count and one beta")
    out = []
    for run in runs:
        objective = RUNS[run].get("train.objective", params.train.objective)
        data = RUNS[run].get("train.data", params.train.data)
        run_betas = betas if objective in DPO_OBJECTIVES and data == "pairs" else [None]
        for lr, ep, beta in itertools.product(learning_rates, epochs, run_betas):
            name = f"sweep-{run}-lr{_num(lr)}-ep{ep}"
            settings = {
                "train.objective": objective,
                "train.data": data,
                "train.args.learning_rate": _num(lr),
                "train.args.num_train_epochs": str(ep),
            }
            if beta is not None:
                settings["train.dpo.beta"] = _num(beta)
                name += f"-b{_num(beta)}" if len(betas) > 1 else ""
            out.append(Experiment(name, settings))
    return out


def ablation_grid() -> list[Experiment]:
    return [Experiment(name, dict(settings)) for name, settings in ABLATIONS]


def existing(dvc: str = "dvc") -> set[str]:
    """The experiment names ``dvc exp list`` shows for this commit."""
    done = subprocess.run([dvc, "exp", "list", "--name-only"], capture_output=True, text=True)
    if done.returncode != 0:
        raise DatakitError(f"dvc exp list failed: {done.stderr.strip() or done.stdout.strip()}")
    return {line.strip() for line in done.stdout.splitlines() if line.strip()}


def run_all(
    experiments: Sequence[Experiment],
    dvc: str = "dvc",
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Run each experiment not yet in ``dvc exp list``, one after another; the names run (or, dry, to run)."""
    have = set() if dry_run else existing(dvc)
    ran = []
    for i, exp in enumerate(experiments, 1):
        if exp.name in have:
            echo(f"[{i}/{len(experiments)}] {exp.name}: done already, skipped")
            continue
        cmd = exp.command(dvc)
        echo(f"[{i}/{len(experiments)}] {' '.join(cmd)}")
        ran.append(exp.name)
        if dry_run:
            continue
        if subprocess.run(cmd).returncode != 0:
            raise DatakitError(f"experiment {exp.name} failed: {' '.join(cmd)}")
    return ran
