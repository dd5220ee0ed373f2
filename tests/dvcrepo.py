"""Helpers for tests that drive real git and DVC commands in a temp repo."""

import os
import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
# dvc.yaml calls `datakit`: the venv's bin folder must be on PATH, as `make` puts it.
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}


def call(*cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs ``cmd`` in ``cwd`` with ENV; the caller checks the exit code."""
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)


def sh(*cmd: str, cwd: Path) -> str:
    """Runs ``cmd`` and returns stdout + stderr; fails the test, showing both, on a non-zero exit."""
    proc = call(*cmd, cwd=cwd)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def init_repo(root: Path) -> None:
    sh("git", "init", "-q", cwd=root)
    sh("git", "config", "user.email", "ci@example.com", cwd=root)
    sh("git", "config", "user.name", "ci", cwd=root)
    sh(str(BIN / "dvc"), "init", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))
