"""The ``datakit`` command: one subcommand per DVC stage, same names as in dvc.yaml.

dvc.yaml calls these commands, so a stage run by hand and by ``dvc repro`` is the same code. Every
command reads ``params.yaml`` (``--params`` to point elsewhere) and stops on bad input with one line
naming the file, row and field, and exit code 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from datakit.errors import DatakitError

# Nothing is fetched from a model hub unless the user says so (HF_HUB_OFFLINE=0).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# LanceDB's Rust side logs a WARN line for routine events (creating a table); keep errors only.
os.environ.setdefault("LANCEDB_LOG", "error")

app = typer.Typer(
    help="datakit: turn a model's own mistakes into versioned training data (APT, PoFT, I-SHEEP).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]
IterationOpt = Annotated[
    str,
    typer.Option("--iteration", "-i", help="Iteration key from params.yaml's `iterations` (e.g. iter_1)."),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def _params(path: Path):
    from datakit.config import load_params

    return load_params(path)


def _guard(fn):
    """Turn a DatakitError into one line on stderr and exit code 1 (no traceback for bad input)."""
    try:
        return fn()
    except DatakitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command("synth")
def synth(params: ParamsOpt = Path("params.yaml")) -> None:
    """Make the synthetic math domain (train/test) and general pool (pool/eval) from `synth` params."""
    from stages import synth as stage

    _guard(lambda: stage.run(_params(params)))


@app.command("base_model")
def base_model(params: ParamsOpt = Path("params.yaml")) -> None:
    """Materialise the base model (`base_model.source`) as safetensors under `paths.base_model`."""
    from stages import base_model as stage

    _guard(lambda: stage.run(_params(params)))


@app.command("generate")
def generate(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Answer the domain training set with the iteration's model (resumable, sharded)."""
    from stages import generate as stage

    _guard(lambda: stage.run(_params(params), iteration, progress))


@app.command("judge")
def judge(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Score every answer 1-5 with the `judge.kind` judge (math, llm, self)."""
    from stages import judge as stage

    _guard(lambda: stage.run(_params(params), iteration, progress))


@app.command("select")
def select(iteration: IterationOpt, params: ParamsOpt = Path("params.yaml")) -> None:
    """Keep the bad cases: answers whose score matches `select.threshold` (default <4)."""
    from stages import select as stage

    _guard(lambda: stage.run(_params(params), iteration))


@app.command("tag")
def tag(params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True) -> None:
    """Tag every pool instruction with its skills (`tag.tagger`: embedding or llm), through the tag cache."""
    from stages import tag as stage

    _guard(lambda: stage.run(_params(params), progress))


@app.command("index")
def index(params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True) -> None:
    """Build the LanceDB tag index over the pool (embeddings cached; ANN above `index.ann_min_rows`)."""
    from stages import index as stage

    _guard(lambda: stage.run(_params(params), progress))


@app.command("retrieve")
def retrieve(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Tag the iteration's bad cases and pull similar pool cases (`retrieve.strategy`: tag, mean, cluster, mmr)."""
    from stages import retrieve as stage

    _guard(lambda: stage.run(_params(params), iteration, progress))


@app.command("check")
def check(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml (unknown keys, wrong types) without running anything."""

    def go():
        p = _params(params)
        typer.echo(f"{params}: ok ({len(p.iterations)} iteration(s): {', '.join(p.iterations)})")

    _guard(go)


if __name__ == "__main__":
    app()
