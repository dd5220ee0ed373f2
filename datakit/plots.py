"""Matplotlib, headless, and the one way a plot is written (atomically, with stable bytes)."""

from __future__ import annotations

import os
from pathlib import Path

from datakit.schemas import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` atomically (no Software tag, so an unchanged plot is an unchanged file) and close it."""

    def write(fd: int, tmp: str) -> None:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})

    try:
        return atomic_write(path, write)
    finally:
        pyplot().close(fig)
