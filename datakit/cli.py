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


def _params(path: Path, iteration: str | None = None):
    """params.yaml, strictly; for an I-SHEEP round, with the ``isheep`` section overrides merged in."""
    from datakit.config import load_params

    params = load_params(path)
    return params.for_step(iteration) if iteration else params


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

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("judge")
def judge(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Score every answer 1-5 with the `judge.kind` judge (math, code, llm, self)."""
    from stages import judge as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("judge_audit")
def judge_audit(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Check a model judge (`judge_audit.kind`: self or llm) against the exact judge on M_t's answers."""
    from stages import judge_audit as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("select")
def select(iteration: IterationOpt, params: ParamsOpt = Path("params.yaml")) -> None:
    """Keep the bad cases: answers whose score matches `select.threshold` (default <4)."""
    from stages import select as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration))


@app.command("tag")
def tag(params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True) -> None:
    """Tag every pool instruction with its skills (`tag.tagger`: embedding or llm), through the tag cache."""
    from stages import tag as stage

    _guard(lambda: stage.run(_params(params), progress))


@app.command("tag_domain")
def tag_domain(params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True) -> None:
    """Tag every domain item (train, validation, test) with its skills, for the weakness map."""
    from stages import tag_domain as stage

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

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("generate_similar")
def generate_similar(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Answer the iteration's similar cases with its model (the rejected side of their pairs)."""
    from stages import generate_similar as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("pairs")
def pairs(iteration: IterationOpt, params: ParamsOpt = Path("params.yaml")) -> None:
    """Build the iteration's preference pairs (chosen = reference or pool answer, rejected = the model's)."""
    from stages import pairs as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration))


@app.command("sft_set")
def sft_set(iteration: IterationOpt, params: ParamsOpt = Path("params.yaml")) -> None:
    """Write the iteration's SFT set (what `train.data` names), corrupting `sft_set.noise` of it (PoFT's noise study)."""
    from stages import sft_set as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration))


@app.command("score")
def score(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Score the SFT set under each `score.references` model (PoFT's r_ref; cached per model and row)."""
    from stages import score as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("train")
def train(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """Train M_t into M_{t+1} (`train.objective`: dpo_sft, dpo, orpo, sft) with LoRA; writes adapter and merged model.

    With `train.accelerate` set to an accelerate config file, the stage runs under `accelerate launch`
    (one process per GPU; see configs/accelerate/)."""
    from datakit.train import LAUNCHED, accelerate_launch
    from stages import train as stage

    def go() -> None:
        p = _params(params, iteration)
        if p.train.accelerate and not os.environ.get(LAUNCHED):
            argv = ["train", "--iteration", iteration, "--params", str(params)]
            code = accelerate_launch(p.train.accelerate, argv + ([] if progress else ["--no-progress"]))
            if code:
                raise typer.Exit(code)
            return
        stage.run(p, iteration, progress)

    _guard(go)


ModelIterationOpt = Annotated[
    str | None,
    typer.Option(
        "--iteration", "-i", help="The model this iteration or I-SHEEP round trained (its model_out)."
    ),
]
BaseOpt = Annotated[bool, typer.Option("--base", help="The base model instead.")]


def _on_one_model(name: str, iteration: str | None, base: bool, params: Path, progress: bool) -> None:
    """Run an evaluation stage on exactly one of: an iteration's (or round's) model, or the base model."""
    import importlib

    if base == (iteration is not None):
        print(f"error: {name}: pass exactly one of --iteration or --base", file=sys.stderr)
        raise typer.Exit(2)
    stage = importlib.import_module(f"stages.{name}")
    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("evaluate")
def evaluate(
    iteration: ModelIterationOpt = None,
    base: BaseOpt = False,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Domain test accuracy, general retention (accuracy, reference NLL) and bad cases on train for one model."""
    _on_one_model("evaluate", iteration, base, params, progress)


@app.command("ifeval")
def ifeval(
    iteration: ModelIterationOpt = None,
    base: BaseOpt = False,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Instruction following checked by code (offline IFEval): prompt- and instruction-level accuracy."""
    _on_one_model("ifeval", iteration, base, params, progress)


@app.command("weakness")
def weakness(
    iteration: ModelIterationOpt = None,
    base: BaseOpt = False,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """A model's error rate per skill tag (domain) and per category (general), from its evaluation."""
    _on_one_model("weakness", iteration, base, params, progress)


@app.command("synthesize")
def synthesize(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """I-SHEEP: the round's model writes new instructions from seed tasks; Self-Instruct's rule filters."""
    from stages import synthesize as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("assess")
def assess(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """I-SHEEP: the round's model grades its own (instruction, response) pairs 1-10."""
    from stages import assess as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("filter")
def filter_(
    iteration: IterationOpt, params: ParamsOpt = Path("params.yaml"), progress: ProgressOpt = True
) -> None:
    """I-SHEEP: keep the pairs to train on (self-score, perplexity, density or density + perplexity)."""
    from stages import filter as stage

    _guard(lambda: stage.run(_params(params, iteration), iteration, progress))


@app.command("rounds")
def rounds(
    n: Annotated[int, typer.Argument(help="How many I-SHEEP rounds params.yaml should list.", min=1)],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Rewrite params.yaml's `rounds` block for N I-SHEEP rounds under `isheep.setting`."""
    from datakit.iterations import write_iterations

    _guard(lambda: typer.echo(write_iterations(params, n, "rounds"), nl=False))


@app.command("iterations")
def iterations(
    n: Annotated[int, typer.Argument(help="How many APT iterations params.yaml should list.", min=1)],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Rewrite params.yaml's `iterations` block for N iterations (items 1..k stay as they were)."""
    from datakit.iterations import write_iterations

    _guard(lambda: typer.echo(write_iterations(params, n), nl=False))


@app.command("report")
def report(
    params: ParamsOpt = Path("params.yaml"),
    baselines: Annotated[
        bool,
        typer.Option("--baselines/--no-baselines", help="Add the baseline runs found in `dvc exp show`."),
    ] = True,
    commits: Annotated[
        int,
        typer.Option(
            "--commits",
            min=1,
            help="Look for baseline experiments on the last N commits (`dvc exp show -n N`).",
        ),
    ] = 1,
) -> None:
    """Write the markdown/HTML report with PNG plots across iterations and I-SHEEP rounds (to `paths.report`)."""
    from datakit.report import MISSES, write_report

    _guard(lambda: typer.echo(write_report(_params(params), baselines=baselines, commits=commits)))
    for path, key in sorted(MISSES):
        print(f"warning: report: {path} has no '{key}' (shown as —; rerun that stage)", file=sys.stderr)


@app.command("export")
def export(
    artifact: Annotated[
        Path,
        typer.Argument(
            help="A parquet table a stage wrote (e.g. data/iter_1/pairs/preference_pairs.parquet)."
        ),
    ],
    dest: Annotated[
        Path, typer.Argument(help="The folder to write (load_from_disk, data/ parquet, README.md).")
    ],
    split: Annotated[str, typer.Option("--split", help="Split name of the rows.")] = "train",
    table: Annotated[
        str | None,
        typer.Option(
            "--table", help="Declared table to check against (default: from the file's place in data/)."
        ),
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push", help="Also push to this Hub dataset repo (user/name); needs HF_TOKEN, HF_HUB_OFFLINE=0."
        ),
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="Create the Hub repo private (with --push).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DEST when it is not empty.")
    ] = False,
    progress: ProgressOpt = True,
) -> None:
    """Export one artifact table as a Hugging Face dataset folder with a lineage card (commit, DVC stage, md5s, params)."""
    from datakit.export import export as run_export

    def go():
        out = run_export(
            artifact,
            dest,
            split=split,
            table=table,
            overwrite=overwrite,
            push=push,
            private=private,
            progress=progress,
        )
        stage = out["stage"]
        lineage = f"stage {stage['name']} ({stage['lock_file']})" if stage else "no recorded lineage"
        if stage and stage["out"]["matches_lock"] is False:
            lineage += "; the file changed since the lock"
        typer.echo(f"{artifact}: {out['num_rows']} rows ({out['table'] or 'unchecked'}), {lineage} -> {dest}")
        if push:
            typer.echo(f"pushed: {out['url']}")

    _guard(go)


@app.command("probe")
def probe(
    domains: Annotated[
        str, typer.Option("--domains", help="Comma-separated families (default: every one in synth.arith).")
    ] = "",
    n: Annotated[int, typer.Option("--n", help="Problems per family.")] = 200,
    split: Annotated[
        str, typer.Option("--split", help="train (the training templates) or test (the held-out ones).")
    ] = "train",
    model: Annotated[str, typer.Option("--model", help="Model folder (default: paths.base_model).")] = "",
    out: Annotated[
        Path, typer.Option("--out", help="Folder for probe.md, probe.csv and answers.parquet.")
    ] = Path("data/probe"),
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """How often a model is right on each candidate domain family before training (pick one with headroom)."""
    from datakit.probe import markdown
    from datakit.probe import probe as run_probe
    from datakit.schemas import write_text_atomic
    from datakit.synth.arith import FAMILIES

    def go() -> None:
        p = _params(params)
        names = [d.strip() for d in domains.split(",") if d.strip()] or list(FAMILIES)
        table, answers = run_probe(p, model or p.paths.base_model, names, n, progress, split)
        out.mkdir(parents=True, exist_ok=True)
        answers.write_parquet(out / "answers.parquet")
        table.write_csv(out / "probe.csv")
        write_text_atomic(markdown(table), out / "probe.md")
        print(markdown(table))

    _guard(go)


@app.command("compare")
def compare(
    a: Annotated[
        str,
        typer.Argument(
            help="An evaluate folder (data/evaluate_base), or FOLDER@REV (a commit or experiment)."
        ),
    ],
    b: Annotated[str, typer.Argument(help="The other one, same form (data/iter_1/evaluate@continued-sft).")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Two evaluations on the same items, per set (validation and test): accuracies with 95% intervals,
    b minus a, and the exact McNemar test."""
    from datakit.report import compare_table, evaluation_at

    def go() -> None:
        threshold = _params(params).select.threshold
        table = compare_table(evaluation_at(a, threshold), evaluation_at(b, threshold))
        import polars as pl

        with pl.Config(tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True, tbl_rows=-1):
            typer.echo(f"a = {a}\nb = {b}\n{table}")

    _guard(go)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what}: comma-separated numbers, got {text!r}") from None


@app.command("sweep")
def sweep(
    runs: Annotated[
        str, typer.Option("--runs", help="Comma-separated: apt, continued-sft, domain-sft, mixed.")
    ] = "apt,continued-sft,domain-sft,mixed",
    lr: Annotated[str, typer.Option("--lr", help="Learning rates, comma-separated.")] = "0.0001,0.0003,0.001",
    epochs: Annotated[str, typer.Option("--epochs", help="Epoch counts, comma-separated.")] = "1,2",
    beta: Annotated[
        str, typer.Option("--beta", help="DPO betas, comma-separated (runs with a DPO objective only).")
    ] = "0.1",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the experiments; run nothing.")] = False,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Tune iteration 1 for APT and each baseline on one grid, as DVC experiments (`datakit report` picks on
    validation). Experiments already in `dvc exp list` are skipped, so a stopped sweep resumes."""
    from datakit.sweep import run_all, sweep_grid

    def go() -> None:
        grid = sweep_grid(
            _params(params),
            [r.strip() for r in runs.split(",") if r.strip()],
            _floats(lr, "--lr"),
            [int(e) for e in _floats(epochs, "--epochs")],
            _floats(beta, "--beta"),
        )
        run_all(grid, dry_run=dry_run, echo=typer.echo)

    _guard(go)


@app.command("ablations")
def ablations(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the experiments; run nothing.")] = False,
) -> None:
    """The APT paper's ablations on iteration 1 as DVC experiments: retrieval strategy, objective, bad-case
    threshold (skipping those already in `dvc exp list`)."""
    from datakit.sweep import ablation_grid, run_all

    _guard(lambda: run_all(ablation_grid(), dry_run=dry_run, echo=typer.echo))


@app.command("check")
def check(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml (unknown keys, wrong types) without running anything."""

    def go():
        from datakit.train import lora_config, phases, trl_config

        p = _params(params)
        for kind in phases(p.train):
            trl_config(p.train, p.paths.work, "cpu", kind)  # the TRL and PEFT keys, checked by TRL itself
        lora_config(p.train)
        # an iteration's own train keys, and the I-SHEEP overrides, merged in
        steps = [key for key in p.iterations if p.iterations[key].train] + list(p.rounds)[:1]
        for key in steps:
            r = p.for_step(key)
            for kind in phases(r.train):
                trl_config(r.train, r.paths.work, "cpu", kind)
        rounds = f"; {len(p.rounds)} I-SHEEP round(s): {', '.join(p.rounds)}" if p.rounds else ""
        typer.echo(f"{params}: ok ({len(p.iterations)} iteration(s): {', '.join(p.iterations)}{rounds})")

    _guard(go)


if __name__ == "__main__":
    app()
