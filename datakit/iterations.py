"""The ``iterations`` block of params.yaml: one explicit item per APT iteration.

DVC's ``foreach`` cannot refer to the previous item, so iteration t names its input model (M_t, the
previous iteration's ``model_out``) itself. ``datakit iterations N`` rewrites the block for N iterations and
leaves the rest of params.yaml, comments included, as it is. Items 1..k are the same text for every N >= k,
so growing N by one adds stages for the new iteration only; ``dvc repro`` then runs just those.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from datakit.config import IsheepConfig, Paths, load_params
from datakit.errors import ConfigError
from datakit.schemas import write_text_atomic

HEADER = (
    "iterations:\n"
    "  # One item per APT iteration, written by `datakit iterations N`. Iteration t answers, judges and trains\n"
    "  # from model_in (M_t) and writes model_out (M_{t+1}, the next item's model_in); each stage of it writes\n"
    "  # <dir>/<stage>/.\n"
)


def iteration_block(
    n: int, base_model: str, data_dir: str = "data", train: dict[int, dict] | None = None
) -> str:
    """The YAML text of ``iterations`` for ``n`` iterations starting from ``base_model``; ``train`` maps an
    iteration number to its own train keys (merged over the ``train`` section for that iteration)."""
    if n < 1:
        raise ConfigError(f"iterations: need at least 1, got {n}")
    train = train or {}
    lines = [HEADER.rstrip("\n")]
    model_in = base_model
    for t in range(1, n + 1):
        folder = f"{data_dir}/iter_{t}"
        model_out = f"{folder}/train/model"
        lines += [
            f"  iter_{t}:",
            f"    n: {t:<36} # iteration number t",
            f"    model_in: {model_in:<29} # M_t: generates, is judged, trains from",
            f"    model_out: {model_out:<28} # M_{{t+1}}: the merged model train writes",
            f"    dir: {folder:<34} # this iteration's artifact folder",
        ]
        if train.get(t):
            flow = yaml.safe_dump(train[t], default_flow_style=True, width=10**6).strip()
            lines.append(f"    train: {flow}  # over the train section, for this iteration")
        model_in = model_out
    return "\n".join(lines) + "\n"


ROUNDS_HEADER = (
    "rounds:\n"
    "  # One item per I-SHEEP round (recipes/isheep/dvc.yaml), written by `datakit rounds N` for isheep.setting.\n"
    "  # Round t writes instructions and answers them with model_in (M_t), assesses and filters them, and trains\n"
    "  # train_from into model_out (M_{t+1}).\n"
)


def round_block(n: int, base_model: str, setting: str, data_dir: str = "data/isheep") -> str:
    """The YAML text of ``rounds`` for ``n`` I-SHEEP rounds under ``setting`` (see ``IsheepConfig``)."""
    if n < 1:
        raise ConfigError(f"rounds: need at least 1, got {n}")
    lines = [ROUNDS_HEADER.rstrip("\n")]
    model_in = base_model
    for t in range(1, n + 1):
        folder = f"{data_dir}/round_{t}"
        model_out = f"{folder}/train/model"
        train_from = model_in if setting == "one_last" else base_model
        lines += [
            f"  round_{t}:",
            f"    n: {t:<43} # round number t",
            f"    model_in: {model_in:<36} # M_t: writes the instructions, answers and assesses them",
            f"    train_from: {train_from:<34} # the model train starts from ({setting})",
            f"    model_out: {model_out:<35} # M_{{t+1}}: the merged model train writes",
            f"    dir: {folder:<41} # this round's artifact folder",
        ]
        model_in = model_out
    return "\n".join(lines) + "\n"


def _train_overrides(items: object, n: int) -> dict[int, dict]:
    """Each listed iteration's own train keys, kept; a new iteration takes those of the last listed one
    when that is iteration 2 or later (the settings chosen for later iterations carry on)."""
    listed = {
        item["n"]: item
        for item in (items.values() if isinstance(items, dict) else ())
        if isinstance(item, dict) and isinstance(item.get("n"), int)
    }
    found = {t: item["train"] for t, item in listed.items() if isinstance(item.get("train"), dict)}
    last = max(listed, default=0)
    for t in range(last + 1, n + 1):
        if last >= 2 and found.get(last):
            found[t] = found[last]
    return found


def _block_span(text: str, name: str = "iterations") -> tuple[int, int]:
    """Start and end offsets of the top-level ``name:`` block (to the next top-level key or EOF)."""
    found = re.search(rf"^{name}:[^\n]*\n", text, flags=re.MULTILINE)
    if not found:
        return len(text), len(text)
    rest = re.search(r"^[^\s#]", text[found.end() :], flags=re.MULTILINE)
    return found.start(), found.end() + rest.start() if rest else len(text)


def write_iterations(params_path: str | Path, n: int, block_name: str = "iterations") -> str:
    """Rewrite params.yaml's ``iterations`` (or ``rounds``) block for ``n`` items; returns the new block.

    The result is loaded back strictly before it replaces the file, so a bad edit never lands.
    """
    path = Path(params_path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run datakit from the project root, or pass --params)")
    text = path.read_text()
    # Read the base model's path loosely: the old block may be the thing being fixed.
    loose = yaml.safe_load(text) or {}
    paths = loose.get("paths") or {}
    start, end = _block_span(text, block_name)
    base = paths.get("base_model", Paths.base_model)
    if block_name == "rounds":
        block = round_block(n, base, (loose.get("isheep") or {}).get("setting", IsheepConfig.setting))
    else:
        block = iteration_block(n, base, train=_train_overrides(loose.get("iterations"), n))
    head = text[:start] if start == len(text) or text[:start].endswith("\n") else text[:start] + "\n"
    new = head + block + text[end:]
    tmp = path.with_name(f".{path.name}.check")
    try:
        tmp.write_text(new)
        load_params(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(new, path)
    return block
