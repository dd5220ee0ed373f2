"""The one-line stage summary and small JSON outputs (metrics, summaries) every stage writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from datakit.schemas import write_text_atomic


def summary_line(
    stage: str, *, rows_in: int, rows_out: int, failed: int, seconds: float, extra: str = ""
) -> str:
    """Print and return '<stage>: N in, M out, K failed, S s[, extra]' on stderr."""
    line = f"{stage}: {rows_in} in, {rows_out} out, {failed} failed, {seconds:.1f} s"
    if extra:
        line += f", {extra}"
    print(line, file=sys.stderr, flush=True)
    return line


def write_json(obj: dict, path: str | Path) -> Path:
    """Write a metrics/summary JSON file atomically (sorted keys, so diffs stay small)."""
    return write_text_atomic(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)
