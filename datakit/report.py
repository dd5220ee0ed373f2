"""report — the APT run at a glance: domain accuracy, general retention and bad cases across iterations.

Reads (any file may be missing: an iteration or stage not run yet shows as "—" and is left out of the plots):
``<paths.evaluate_base>/metrics.json`` (the base model M_1) and, for each iteration t, ``<dir>/evaluate/metrics.json``
(M_{t+1}), ``<dir>/select/metrics.json`` (M_t's bad cases), ``<dir>/pairs/metrics.json``,
``<dir>/train/metrics.json`` and ``<dir>/train/log.csv``; with baselines, the DVC experiments of
``dvc exp show`` that evaluated the first iteration (``dvc exp run -n continued-sft -S train.objective=sft
evaluate@iter_1``, ``-S train.data=domain``, ``-S train.data=mixed``).
Writes, under ``paths.report``: ``report.md`` and ``report.html`` (the same tables), ``summary.csv`` (one row
per model), ``bad_cases.png``, ``accuracy.png`` and ``logps.png``.
Run: ``datakit report`` (``--no-baselines`` skips ``dvc exp show``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from datakit import artifacts
from datakit.config import Params, TrainConfig
from datakit.errors import ConfigError, DataError
from datakit.ifeval import IFEVAL_RESULTS
from datakit.plots import pyplot, save_png
from datakit.schemas import read_table, write_text_atomic
from datakit.stats import mcnemar_exact, wilson
from datakit.train import trainer_kind

MISSING = "—"
DVC_PARAMS_FILE = "params.yaml"  # where `dvc exp run -S` sets a parameter (DVC's default params file)
SUMMARY_SCHEMA = {
    "model": pl.Utf8,
    "label": pl.Utf8,
    "domain_accuracy": pl.Float64,
    "domain_low": pl.Float64,
    "domain_high": pl.Float64,
    "domain_n": pl.Int64,
    "general_accuracy": pl.Float64,
    "general_low": pl.Float64,
    "general_high": pl.Float64,
    "general_n": pl.Int64,
    "domain_val_accuracy": pl.Float64,
    "general_val_accuracy": pl.Float64,
    "general_nll": pl.Float64,
    "train_bad_cases": pl.Int64,
    "if_prompt_strict": pl.Float64,
    "if_instruction_strict": pl.Float64,
    "pairs": pl.Int64,
    "steps": pl.Int64,
}


@dataclass(frozen=True)
class ModelRow:
    """One model of the comparison: the base M_1, M_{t+1} after iteration t, or a baseline experiment."""

    model: str  # 'base', the iteration key, or the experiment name
    label: str  # what the tables and plots call it
    index: int | None  # x in the plots: 0 = the base model, t = after iteration t; None = a baseline
    evaluated: bool  # its evaluate metrics exist
    domain_accuracy: float | None = None  # 0-1
    general_accuracy: float | None = None  # 0-1
    general_nll: float | None = None  # mean NLL of the general references; lower is better
    train_bad_cases: int | None = None  # bad cases on domain train
    if_prompt_strict: float | None = None  # ifeval: share of prompts whose every instruction is followed
    if_instruction_strict: float | None = None  # ifeval: share of instructions followed
    pairs: int | None = None  # preference pairs it was trained on
    steps: int | None = None  # training steps that made it
    domain_low: float | None = None  # 95% Wilson interval of domain_accuracy
    domain_high: float | None = None
    general_low: float | None = None  # 95% Wilson interval of general_accuracy
    general_high: float | None = None
    domain_val_accuracy: float | None = None  # the validation splits: what the sweeps choose on
    general_val_accuracy: float | None = None
    domain_n: int | None = None  # items behind domain_accuracy and general_accuracy
    general_n: int | None = None
    # Per evaluated set (domain_test, general_eval, ...), each item's id -> right or wrong: the paired tests.
    correct: dict[str, dict[str, bool]] | None = field(default=None, compare=False, repr=False)
    # An experiment's parameters that differ from its commit's (key, value), in params.yaml's order.
    settings: tuple[tuple[str, str], ...] = ()
    # ifeval's prompts: id -> every instruction followed (strict); the paired test of instruction following.
    if_correct: dict[str, bool] | None = field(default=None, compare=False, repr=False)

    @property
    def if_n(self) -> int | None:
        """Prompts behind the instruction-following share, when the per-prompt results are at hand."""
        return len(self.if_correct) if self.if_correct else None


@dataclass(frozen=True)
class IterationRow:
    """One iteration t: what M_t got wrong, the pairs built from it and how training went."""

    key: str
    n: int
    select: dict[str, Any]  # select/metrics.json ({} = not run)
    pairs: dict[str, Any]  # pairs/metrics.json
    train: dict[str, Any]  # train/metrics.json
    log: pl.DataFrame | None  # train/log.csv, TRL's step log

    @property
    def ran(self) -> bool:
        return bool(self.select or self.pairs or self.train) or self.log is not None


@dataclass(frozen=True)
class Block:
    """One piece of the report, rendered both as markdown and as HTML."""

    kind: Literal["h1", "h2", "p", "table", "img"]
    text: str = ""  # heading or paragraph (`code` allowed), or the image's file name
    alt: str = ""  # the image's description
    headers: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = field(default_factory=list)


# --- loading ----------------------------------------------------------------------------------------------


class Metrics(dict):
    """A stage's metrics.json. Asking it for a key the file lacks records ``(file, key)`` in ``MISSES``: the
    report shows "—" in that cell and lists every such key under "Missing metrics", so a renamed or dropped
    key is visible instead of a silent blank. Keys a stage writes only in some settings are read with
    ``optional``. A file that does not exist (a stage not run yet) records nothing."""

    def __init__(self, data: dict[str, Any], path: Path | None = None):
        super().__init__(data)
        self.path = path

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self and self.path is not None:
            MISSES.add((str(self.path), key))
        return super().get(key, default)

    def optional(self, key: str) -> Any:
        return super().get(key)


MISSES: set[tuple[str, str]] = set()  # (metrics file, key) the report asked for and did not find


def read_metrics(path: Path) -> Metrics:
    """A stage's metrics.json; empty when the stage has not run yet.

    Raises:
        DataError: the file exists but is not a JSON object.
    """
    if not path.exists():
        return Metrics({})
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(path, f"not valid JSON metrics: expected an object, got {type(data).__name__}")
    return Metrics(data, path)


def read_log(path: Path) -> pl.DataFrame | None:
    """train's step log; None when training has not run yet."""
    if not path.exists():
        return None
    try:
        return pl.read_csv(path)
    except pl.exceptions.PolarsError as exc:
        raise DataError(path, f"not a readable CSV: {exc}") from exc


def _num(value: Any) -> float | None:
    """A metric value as a number; None for a missing one (also dvc's "!" and "None" cells)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _num(value)  # `dvc exp show` hands every number back as a float
    return int(number) if number is not None and number.is_integer() else None


# ModelRow field <- evaluate's metrics.json key.
EVAL_FIELDS = {
    "domain_low": "domain_accuracy_low",
    "domain_high": "domain_accuracy_high",
    "general_low": "general_accuracy_low",
    "general_high": "general_accuracy_high",
    "domain_val_accuracy": "domain_val_accuracy",
    "general_val_accuracy": "general_val_accuracy",
}


def _eval_fields(get, optional=None) -> dict[str, Any]:
    """The interval, validation and item-count fields of a ModelRow, from ``get(metric name)``; the
    validation accuracies through ``optional`` (evaluate writes them only when validation splits are set)."""
    optional = optional or get
    out = {name: _num((optional if "val" in key else get)(key)) for name, key in EVAL_FIELDS.items()}
    out.update(domain_n=_int(get("domain_accuracy_n")), general_n=_int(get("general_accuracy_n")))
    return out


def read_correct(data: bytes | Path, threshold: str, where: str | Path) -> dict[str, dict[str, bool]]:
    """evaluate's results.parquet as {set: {id: right}}: right = scored and not a bad case (``threshold``);
    unscored rows are left out, as they are of the accuracy.

    Raises:
        DataError: the file is not a readable parquet table with ``set``, ``id`` and ``score``.
    """
    import io

    from datakit.select import threshold_expr

    try:
        frame = pl.read_parquet(io.BytesIO(data) if isinstance(data, bytes) else data)
        frame = frame.filter(pl.col("score").is_not_null()).with_columns(right=~threshold_expr(threshold))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(where, f"not a readable evaluation table: {exc}") from exc
    out: dict[str, dict[str, bool]] = {}
    for name, ids, right in frame.group_by("set").agg("id", "right").iter_rows():
        out[name] = dict(zip(ids, right, strict=True))
    return out


def evaluation_at(spec: str, threshold: str) -> dict[str, dict[str, bool]]:
    """``FOLDER`` (an evaluate folder, or its results.parquet) or ``FOLDER@REV`` (that file at a git revision
    or DVC experiment, read from the DVC cache) as :func:`read_correct`'s {set: {id: right}}."""
    folder, _, rev = spec.partition("@")
    path = Path(folder)
    if path.suffix != ".parquet":
        path = path / "results.parquet"
    if not rev:
        if not path.exists():
            raise DataError(path, "no evaluation results here (run the evaluate stage first)")
        return read_correct(path, threshold, path)
    return read_correct(read_at(path.as_posix(), rev), threshold, f"{path}@{rev}")


def read_at(path: str, rev: str, repo: str | None = None) -> bytes:
    """File ``path`` as it was at git revision or DVC experiment ``rev`` (from the DVC cache when DVC tracks it).

    Raises:
        DataError: naming ``path@rev`` when git or DVC cannot give it.
    """
    import dvc.api
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    try:
        return dvc.api.read(path, repo=repo, rev=rev, mode="rb")
    except (DvcException, SCMError, FileNotFoundError) as exc:
        raise DataError(f"{path}@{rev}", f"cannot read it from git/DVC: {exc}") from exc


def compare_table(a: dict[str, dict[str, bool]], b: dict[str, dict[str, bool]]) -> pl.DataFrame:
    """Per evaluated set both have: accuracy of a and of b on the shared items with 95% intervals, b minus a,
    and the exact McNemar test."""
    rows = []
    for name in sorted(set(a) & set(b)):
        test = mcnemar_exact(a[name], b[name])
        ids = set(a[name]) & set(b[name])
        acc = {}
        for side, results in (("a", a[name]), ("b", b[name])):
            k = sum(results[i] for i in ids)
            lo, hi = wilson(k, len(ids))
            acc[side] = f"{k / max(len(ids), 1) * 100:.1f} [{lo * 100:.1f}–{hi * 100:.1f}]"
        rows.append(
            {
                "set": name,
                "items": test["n"],
                "a (%) [95% CI]": acc["a"],
                "b (%) [95% CI]": acc["b"],
                "b - a (points)": round(test["diff"] * 100, 1),
                "only a right": test["a_only"],
                "only b right": test["b_only"],
                "p (exact McNemar)": f"{test['p']:.3g}",
                "verdict": "significant" if test["significant"] else "within noise",
            }
        )
    return pl.DataFrame(rows)


def _local_correct(folder: Path, threshold: str) -> dict[str, dict[str, bool]] | None:
    path = folder / "results.parquet"
    return read_correct(path, threshold, path) if path.exists() else None


def iteration_rows(params: Params) -> list[IterationRow]:
    """One row per iteration of params.yaml, in its order, from whatever its stages have written."""
    rows = []
    for key, it in params.iterations.items():
        rows.append(
            IterationRow(
                key=key,
                n=it.n,
                select=read_metrics(artifacts.step_file(it, "select", "metrics.json")),
                pairs=read_metrics(artifacts.step_file(it, "pairs", "metrics.json")),
                train=read_metrics(artifacts.step_file(it, "train", "metrics.json")),
                log=read_log(artifacts.step_file(it, "train", "log.csv")),
            )
        )
    return rows


def model_rows(params: Params, iterations: list[IterationRow]) -> list[ModelRow]:
    """The base model, then M_{t+1} for each iteration t, from the evaluate metrics.

    Bad cases on domain train come from evaluate (M_{t+1} answers domain train there) and otherwise from
    the next iteration's select, which counts the same model's bad cases; the two should agree.
    """
    select_bad = {it.n: _int(it.select.get("bad_cases")) for it in iterations}
    found = [("base", "M_1 (base)", 0, None)]
    found += [(it.key, f"M_{it.n + 1} (after {it.key})", it.n, it) for it in iterations]
    rows = []
    for model, label, index, it in found:
        step = None if it is None else it.key
        eval_dir = artifacts.evaluation(params, step, "evaluate")[2]
        metrics = read_metrics(artifacts.file_in(eval_dir, "evaluate", "metrics.json"))
        bad = _int(metrics.optional("train_bad_cases"))  # absent with evaluate.train_bad_cases: false
        if_dir = artifacts.evaluation(params, step, "ifeval")[2]
        ifeval = read_metrics(artifacts.file_in(if_dir, "ifeval", "metrics.json"))
        rows.append(
            ModelRow(
                model=model,
                label=label,
                index=index,
                evaluated=bool(metrics),
                domain_accuracy=_num(metrics.get("domain_accuracy")),
                general_accuracy=_num(metrics.get("general_accuracy")),
                general_nll=_num(metrics.get("general_nll")),
                train_bad_cases=bad if bad is not None else select_bad.get(index + 1),
                if_prompt_strict=_num(ifeval.get("prompt_strict")),
                if_instruction_strict=_num(ifeval.get("instruction_strict")),
                pairs=_int(it.pairs.get("pairs")) if it else None,
                steps=_int(it.train.get("steps")) if it else None,
                correct=_local_correct(eval_dir, params.select.threshold),
                if_correct=ifeval_correct(if_dir),
                **_eval_fields(metrics.get, metrics.optional),
            )
        )
    return rows


def _cell(exp: dict[str, Any], file: str, name: str) -> Any:
    """A cell of an ``exp_show`` row: ``<file>:<name>``, or ``<name>`` alone when one file has that name."""
    return exp.get(f"{file}:{name}", exp.get(name))


def _metrics_column(folder: str | Path, root: str | Path) -> str:
    """``exp_show``'s name for ``<folder>/metrics.json``: relative to the repository root."""
    return Path(os.path.relpath(os.path.abspath(Path(folder) / "metrics.json"), root)).as_posix()


def _changed(
    exp: dict[str, Any], parent: dict[str, Any] | None, keys: list[str]
) -> tuple[tuple[str, str], ...]:
    """The parameters of experiment ``exp`` that differ from its commit's (``parent``), as (key, value)."""
    if parent is None:
        return ()
    return tuple(
        (key, str(value))
        for key in keys
        if (value := _cell(exp, DVC_PARAMS_FILE, key)) is not None
        # A key its commit lacks came with an uncommitted params.yaml (a newer datakit's section), not
        # from `-S`: no setting of this experiment. exp_show fills such a cell with None or "None".
        and (base := _cell(parent, DVC_PARAMS_FILE, key)) not in (None, "None")
        and value != base
    )


def baseline_rows(
    experiments: list[dict[str, Any]],
    params: Params,
    root: str | Path,
    results: Callable[[str, str], dict[str, dict[str, bool]] | None] | None = None,
) -> list[ModelRow]:
    """The experiments among ``dvc.api.exp_show()``'s rows that evaluated the first iteration.

    Args:
        experiments: the flat rows of ``dvc.api.exp_show()``: ``Experiment`` (name), ``rev``, ``typ``, and
            one column per metric and parameter, named ``<file>:<name>``, or ``<name>`` alone when a single
            file has that name.
        root: the DVC repository's root, which the metric file names are relative to.
        results: ``(rev, path relative to root) -> read_correct(...)`` of the experiment's evaluate
            results (None: no paired tests for experiments).
    """
    if not params.iterations:
        return []
    first = Path(next(iter(params.iterations.values())).dir)
    evaluate, pairs, train = (
        _metrics_column(first / stage, root) for stage in ("evaluate", "pairs", "train")
    )
    keys = param_keys(params)
    own = [(evaluate, n) for n in ("domain_accuracy", "general_accuracy", "general_nll", "train_bad_cases")]
    own += [(train, n) for n in ("train_loss", "train_seconds")]
    rows, parent = [], None
    for exp in experiments:
        # The workspace and the commits are this run itself; experiments are their children.
        if exp.get("typ") == "baseline":
            parent = exp
        if exp.get("typ") not in ("branch_base", "branch_commit"):
            continue
        if parent is not None and all(_cell(exp, f, n) == _cell(parent, f, n) for f, n in own):
            continue  # iteration 1 is its commit's own, not retrained (e.g. an I-SHEEP experiment)
        if exp.get("State") is not None:
            continue  # queued, running or failed: its cells are its parent's, not its own
        accuracy = _num(_cell(exp, evaluate, "domain_accuracy"))
        if accuracy is None:
            continue
        name = exp.get("Experiment") or exp.get("rev") or "?"
        objective = _cell(exp, DVC_PARAMS_FILE, "train.objective") or "?"
        data = _cell(exp, DVC_PARAMS_FILE, "train.data") or "?"
        changed = _changed(exp, parent, [k for k in keys if k not in ("train.objective", "train.data")])
        if any(key in DOMAIN_KEYS for key, _ in changed):
            continue  # another domain: not a baseline of this one (domain_experiments)
        shown = ", ".join([trained(objective, data), *(f"{k}={v}" for k, v in changed)])
        rows.append(
            ModelRow(
                model=name,
                label=f"{name} ({shown})",
                settings=changed,
                index=None,
                evaluated=True,
                domain_accuracy=accuracy,
                general_accuracy=_num(_cell(exp, evaluate, "general_accuracy")),
                general_nll=_num(_cell(exp, evaluate, "general_nll")),
                train_bad_cases=_int(_cell(exp, evaluate, "train_bad_cases")),
                pairs=_int(_cell(exp, pairs, "pairs")),
                steps=_int(_cell(exp, train, "steps")),
                correct=results(exp.get("rev"), str(Path(evaluate).parent / "results.parquet"))
                if results and exp.get("rev")
                else None,
                **_eval_fields(lambda key, exp=exp: _cell(exp, evaluate, key)),
            )
        )
    return rows


# Settings that make an experiment a run on another domain, not a baseline of this one.
DOMAIN_KEYS = (
    "synth.domain",
    "judge.kind",
    "data.domain_train.path",
    "data.domain_test.path",
    "data.domain_val.path",
)


@dataclass
class DomainRun:
    """An experiment on another domain (``make code-domain``): its own base model and APT iteration 1."""

    name: str
    settings: tuple[tuple[str, str], ...]
    base: dict[str, Any]  # evaluate_base's metrics, in the experiment
    apt: dict[str, Any]  # evaluate@iter_1's
    tests: dict[str, dict | None]  # "domain" / "general": McNemar of APT against the base, same items


def domain_experiments(
    experiments: list[dict[str, Any]],
    params: Params,
    root: str | Path,
    results: Callable[[str, str], dict[str, dict[str, bool]] | None] | None = None,
) -> list[DomainRun]:
    """The experiments among ``dvc.api.exp_show()``'s rows that changed the domain (``DOMAIN_KEYS``) and
    evaluated both the base model and iteration 1 (arguments as for :func:`baseline_rows`)."""
    if not params.iterations:
        return []
    first = Path(next(iter(params.iterations.values())).dir)
    files = {
        "base": _metrics_column(params.paths.evaluate_base, root),
        "apt": _metrics_column(first / "evaluate", root),
    }
    keys = param_keys(params)
    runs, parent = [], None
    for exp in experiments:
        if exp.get("typ") == "baseline":
            parent = exp
        if exp.get("typ") not in ("branch_base", "branch_commit") or exp.get("State") is not None:
            continue
        if parent is None:
            continue
        settings = _changed(exp, parent, keys)
        if not any(key in DOMAIN_KEYS for key, _ in settings):
            continue
        metrics = {
            side: {
                name: _cell(exp, file, name)
                for name in (
                    "domain_accuracy", "domain_accuracy_low", "domain_accuracy_high", "domain_accuracy_n",
                    "general_accuracy", "general_accuracy_low", "general_accuracy_high", "general_accuracy_n",
                )
            }
            for side, file in files.items()
        }  # fmt: skip
        if (
            _num(metrics["base"]["domain_accuracy"]) is None
            or _num(metrics["apt"]["domain_accuracy"]) is None
        ):
            continue
        correct = {
            side: results(exp.get("rev"), str(Path(file).parent / "results.parquet"))
            if results and exp.get("rev")
            else None
            for side, file in files.items()
        }
        tests = {}
        for what, name in SETS.items():
            a, b = correct["base"], correct["apt"]
            tests[what] = mcnemar_exact(a[name], b[name]) if a and b and name in a and name in b else None
        name = exp.get("Experiment") or exp.get("rev") or "?"
        runs.append(DomainRun(name, settings, metrics["base"], metrics["apt"], tests))
    return runs


def domain_table(runs: list[DomainRun]) -> Block:
    """Base and APT iteration 1 of each other-domain experiment, with intervals and the paired test."""

    def acc(m: dict[str, Any], what: str) -> str:
        key = f"{what}_accuracy"
        cell = _ci(_num(m[key]), _num(m[f"{key}_low"]), _num(m[f"{key}_high"]))
        n = _int(m[f"{key}_n"])
        return f"{cell} (n={n})" if n is not None else cell

    def delta(run: DomainRun, what: str) -> str:
        test = run.tests[what]
        if test is None:
            return _delta(_num(run.apt[f"{what}_accuracy"]), _num(run.base[f"{what}_accuracy"]))
        return _test_text(test)

    rows = [
        (
            run.name,
            ", ".join(f"{k}={v}" for k, v in run.settings if k in DOMAIN_KEYS),
            acc(run.base, "domain"),
            acc(run.apt, "domain"),
            delta(run, "domain"),
            acc(run.base, "general"),
            acc(run.apt, "general"),
            delta(run, "general"),
        )
        for run in runs
    ]
    headers = (
        "experiment",
        "domain",
        "base: domain test % [95% CI]",
        "APT iteration 1",
        "Δ (paired)",
        "base: general %",
        "APT iteration 1",
        "Δ (paired)",
    )
    return Block("table", headers=headers, rows=rows)


def trained(objective: str, data: str) -> str:
    """What a run trained: its objective on its data, 'dpo_sft on pairs'; domain and mixed data train with SFT
    (or PoFT) whatever the objective says, 'sft on domain'."""
    kind = objective
    if data != "pairs":
        with contextlib.suppress(ConfigError):  # poft_dpo without pairs: say what was asked
            kind = trainer_kind(TrainConfig(objective=objective, data=data))
    return f"{kind} on {data}"


def param_keys(params: Params) -> list[str]:
    """Every parameter of params.yaml as ``dvc exp show`` names it (``train.args.learning_rate``), in order;
    the iteration and round lists are left out (they are the pipeline, not a setting)."""

    def flat(prefix: str, value: Any) -> list[str]:
        if dataclasses.is_dataclass(value):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if isinstance(value, dict) and value:
            return [k for key, v in value.items() for k in flat(f"{prefix}{key}.", v)]
        return [prefix[:-1]]

    return [
        key
        for f in dataclasses.fields(params)
        if f.name not in ("iterations", "rounds")
        for key in flat(f"{f.name}.", getattr(params, f.name))
    ]


def read_baselines(params: Params, commits: int = 1) -> tuple[list[ModelRow], list[DomainRun], str | None]:
    """The baseline experiments in ``dvc exp show`` of the last ``commits`` commits and the experiments on
    another domain (an experiment name seen on several keeps its newest run); ([], [], why) when they cannot
    be read."""
    try:
        import dvc.api
        from dvc.exceptions import DvcException
        from dvc.repo import Repo
        from scmrepo.exceptions import SCMError
    except ImportError as exc:
        return [], [], f"dvc is not installed ({exc})"
    try:
        # find_root first: outside a repo, exp_show alone only says "SCM error".
        root = Repo.find_root()
        experiments = dvc.api.exp_show(repo=root, num=commits)
    except (DvcException, SCMError) as exc:
        return [], [], f"{type(exc).__name__}: {exc}"

    def results(rev: str, path: str) -> dict[str, dict[str, bool]] | None:
        # The experiment's own results.parquet, from the DVC cache at its commit.
        try:
            data = read_at(path, rev, repo=root)
        except DataError:
            return None
        return read_correct(data, params.select.threshold, f"{path}@{rev}")

    newest, domains = {}, {}
    for row in baseline_rows(experiments, params, root, results):  # exp_show lists the newest commit first
        newest.setdefault(row.model, row)
    for run in domain_experiments(experiments, params, root, results):
        domains.setdefault(run.name, run)
    return list(newest.values()), list(domains.values()), None


# --- tables -----------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{value * 100:.1f}"


def _delta(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return MISSING
    return f"{round((value - base) * 100, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"


def _fmt(value: float | int | None, spec: str = "") -> str:
    return MISSING if value is None else format(value, spec)


def _trend(train: dict[str, Any], name: str, spec: str) -> str:
    """``first → last`` of a quantity train's metrics summarise from the step log (not every objective logs
    every quantity: an SFT run has no rewards)."""
    get = train.optional if isinstance(train, Metrics) else train.get
    first, last = _num(get(f"{name}_first")), _num(get(f"{name}_last"))
    if first is None or last is None:
        return MISSING
    return f"{first:{spec}} → {last:{spec}}"


def _ci(value: float | None, lo: float | None, hi: float | None) -> str:
    """'12.3 [10.1–14.8]': a share in percent with its 95% interval."""
    if value is None:
        return MISSING
    if lo is None or hi is None:
        return _pct(value)
    return f"{value * 100:.1f} [{lo * 100:.1f}–{hi * 100:.1f}]"


SETS = {"domain": "domain_test", "general": "general_eval"}  # what the comparison columns are measured on


def paired(a: ModelRow, b: ModelRow, what: str) -> dict | None:
    """The exact McNemar test of b against a on the items of ``what`` (domain or general) both answered;
    None when either model's per-item results are not at hand."""
    name = SETS[what]
    if not a.correct or not b.correct or name not in a.correct or name not in b.correct:
        return None
    return mcnemar_exact(a.correct[name], b.correct[name])


def _paired_delta(a: ModelRow, b: ModelRow, what: str) -> str:
    """'+3.0 (p=0.012, significant)' for b against a; the unpaired difference alone when no test can run."""
    test = paired(a, b, what)
    if test is None:
        return _delta(getattr(b, f"{what}_accuracy"), getattr(a, f"{what}_accuracy"))
    return _test_text(test)


def _test_text(test: dict) -> str:
    """'+3.0 (p=0.012, significant)': an exact McNemar test's difference, p and verdict."""
    verdict = "significant" if test["significant"] else "within noise"
    return f"{round(test['diff'] * 100, 1) + 0.0:+.1f} (p={test['p']:.3g}, {verdict})"


def _items(models: list[ModelRow], attr: str) -> str:
    counts = sorted({getattr(m, attr) for m in models if getattr(m, attr) is not None})
    return "n=" + "/".join(map(str, counts)) if counts else "n=?"


def comparison_table(models: list[ModelRow]) -> Block:
    """Every model against the base: domain skill, general retention, bad cases left, with 95% intervals and
    paired tests against the base model on the same items."""
    base = models[0]
    rows = []
    for m in models:
        name = m.label if m.evaluated else f"{m.label} — not run"
        same = m is base
        rows.append(
            (
                name,
                _ci(m.domain_accuracy, m.domain_low, m.domain_high),
                MISSING if same else _paired_delta(base, m, "domain"),
                _ci(m.general_accuracy, m.general_low, m.general_high),
                MISSING if same else _paired_delta(base, m, "general"),
                _pct(m.domain_val_accuracy),
                _pct(m.general_val_accuracy),
                _fmt(m.general_nll, ".3f"),
                _share_ci(m.if_correct, m.if_prompt_strict),
                MISSING if same else _against(base.if_correct, m.if_correct),
                _pct(m.if_instruction_strict),
                _fmt(m.train_bad_cases),
            )
        )
    headers = (
        "model",
        f"domain test accuracy (%) [95% CI] ({_items(models, 'domain_n')})",
        "Δ vs base (points, exact McNemar)",
        f"general accuracy (%) [95% CI] ({_items(models, 'general_n')})",
        "Δ vs base (points, exact McNemar)",
        "domain val accuracy (%)",
        "general val accuracy (%)",
        "general reference NLL",
        f"IF prompt-level (%) [95% CI] ({_items(models, 'if_n')})",
        "IF Δ vs base (points, exact McNemar)",
        "IF instruction-level (%)",
        "bad cases on domain train",
    )
    return Block("table", headers=headers, rows=rows)


def apt_vs_baselines(models: list[ModelRow]) -> Block | None:
    """APT's first iteration against each baseline trained from the same model (paired, same items); None
    when there is no baseline or APT's first iteration has not been evaluated."""
    apt = next((m for m in models if m.index == 1 and m.evaluated), None)
    others = [m for m in models if m.index is None]
    if apt is None or not others:
        return None
    rows = [
        (
            m.label,
            _paired_delta(m, apt, "domain"),
            _paired_delta(m, apt, "general"),
            _fmt(m.steps),
            _fmt(apt.steps),
        )
        for m in others
    ]
    headers = (
        "baseline",
        f"APT {apt.model} minus baseline: domain test (points)",
        f"APT {apt.model} minus baseline: general (points)",
        "baseline training steps",
        "APT training steps",
    )
    return Block("table", headers=headers, rows=rows)


# A sweep experiment's name (``datakit sweep``): its run and grid point; a beta suffix when several were tried.
SWEEP_NAME = re.compile(
    r"sweep-(?P<run>.+?)-lr(?P<lr>[0-9.]+(?:e-?\d+)?)-ep(?P<epochs>\d+)(?:-b(?P<beta>.+))?"
)


def _grid_point(lr: Any, epochs: Any) -> tuple[str, str]:
    return f"{float(lr):g}", str(int(epochs))


def sweep_choice(models: list[ModelRow], params: Params | None = None) -> dict[str, list[ModelRow]]:
    """The sweep experiments (``sweep-<run>-...``, ``datakit sweep``) by run, the one chosen first: the best
    domain validation accuracy, then general validation accuracy, then the name (test is never looked at).

    With ``params``, the lineage's own iteration 1 is APT's point at params.yaml's learning rate and epochs
    (an experiment at that point changes nothing, so it is never listed as one)."""
    runs: dict[str, list[ModelRow]] = {}
    for m in models:
        found = SWEEP_NAME.fullmatch(m.model) if m.index is None else None
        if found:
            runs.setdefault(found.group("run"), []).append(m)
    first = next((m for m in models if m.index == 1 and m.evaluated), None)
    if runs and params is not None and first is not None:
        args = params.train.args
        point = _grid_point(args.get("learning_rate", 0), args.get("num_train_epochs", 1))
        if point not in sweep_grids({"apt": runs.get("apt", [])}).get("apt", set()):
            own = (("train.args.learning_rate", point[0]), ("train.args.num_train_epochs", point[1]))
            runs.setdefault("apt", []).append(dataclasses.replace(first, settings=own))
    for rows in runs.values():
        rows.sort(key=lambda m: (-(m.domain_val_accuracy or 0.0), -(m.general_val_accuracy or 0.0), m.model))
    return runs


def sweep_grids(runs: dict[str, list[ModelRow]]) -> dict[str, set[tuple[str, str]]]:
    """Per run, the (learning rate, epochs) points it was trained at."""
    grids: dict[str, set[tuple[str, str]]] = {}
    for run, rows in runs.items():
        for m in rows:
            found = SWEEP_NAME.fullmatch(m.model)
            if found:
                point = _grid_point(found.group("lr"), found.group("epochs"))
            else:  # the lineage's iteration 1
                point = tuple(v for _, v in m.settings)  # type: ignore[assignment]
            grids.setdefault(run, set()).add(point)
    return grids


def matched_budget(runs: dict[str, list[ModelRow]]) -> str:
    """In words: whether every run was trained at the same learning-rate x epochs points, and if not, which
    points each run still lacks."""
    grids = sweep_grids(runs)
    every = set().union(*grids.values())
    points = ", ".join(f"{lr} x {ep}" for lr, ep in sorted(every, key=lambda p: (float(p[0]), int(p[1]))))
    missing = {
        run: sorted(every - grid, key=lambda p: (float(p[0]), int(p[1])))
        for run, grid in grids.items()
        if every - grid
    }
    if not missing:
        return f"Every run trained at the same points (learning rate x epochs: {points}): matched budget."
    lacks = "; ".join(
        f"{run} lacks {', '.join(f'{lr} x {ep}' for lr, ep in pts)}" for run, pts in missing.items()
    )
    return (
        f"The grid is not complete, so the budgets are not matched yet (points tried: {points}): {lacks}. A run's "
        "choice is among its own points only."
    )


def sweep_table(models: list[ModelRow], params: Params | None = None) -> Block | None:
    """Each sweep run's settings with validation and test accuracy, the chosen setting marked; None without
    sweep experiments."""
    runs = sweep_choice(models, params)
    if not runs:
        return None

    def setting(m: ModelRow) -> str:
        grid = ("train.args.learning_rate", "train.args.num_train_epochs")
        found = SWEEP_NAME.fullmatch(m.model)
        point = dict(m.settings)
        if found:  # the grid point from the name: a value equal to its commit's is not among the settings
            point |= dict(zip(grid, _grid_point(found.group("lr"), found.group("epochs")), strict=True))
        head = f"lr {point.get(grid[0], '?')} x {point.get(grid[1], '?')} epochs"
        rest = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in m.settings if k not in grid]
        shown = ", ".join([head, *rest])
        return f"{m.label.split(' (')[0]}: {shown}" if m.index is not None else shown

    rows = [
        (
            run,
            "chosen" if i == 0 else "",
            setting(m),
            _pct(m.domain_val_accuracy),
            _pct(m.general_val_accuracy),
            _ci(m.domain_accuracy, m.domain_low, m.domain_high),
            _ci(m.general_accuracy, m.general_low, m.general_high),
            _fmt(m.steps),
        )
        for run, tried in runs.items()
        for i, m in enumerate(tried)
    ]
    headers = (
        "run",
        "choice (on domain validation)",
        "setting",
        "domain val accuracy (%)",
        "general val accuracy (%)",
        f"domain test accuracy (%) [95% CI] ({_items(models, 'domain_n')})",
        f"general accuracy (%) [95% CI] ({_items(models, 'general_n')})",
        "training steps",
    )
    return Block("table", headers=headers, rows=rows)


def in_words(models: list[ModelRow]) -> str:
    """One sentence per model against the base: the difference, and whether the paired test can tell it from
    noise."""
    base, parts = models[0], []
    for m in models[1:]:
        for what in ("domain", "general"):
            test = paired(base, m, what)
            if test is None:
                continue
            points = round(test["diff"] * 100, 1) + 0.0
            if test["significant"]:
                verdict = f"a significant {'gain' if points > 0 else 'loss'} (p={test['p']:.3g})"
            else:
                verdict = f"within noise (p={test['p']:.3g}: the test cannot tell it from no difference)"
            parts.append(
                f"{m.label}, {what}: {points:+.1f} points against the base model on {test['n']} items, {verdict}."
            )
    return " ".join(parts)


def _bad_cases_cell(select: Metrics) -> str:
    """The bad-case count; with a model judge on a checkable domain, how many of them are right answers."""
    bad = _int(select.get("bad_cases"))
    right = _int(select.optional("bad_cases_exact_right"))
    if bad is None or right is None:
        return _fmt(bad)
    return f"{bad} ({right} right by the exact judge)"


def iteration_table(iterations: list[IterationRow]) -> Block:
    """What each iteration trained on and how the log-probs of chosen and rejected answers moved."""
    rows = []
    for it in iterations:
        pairs = _int(it.pairs.get("pairs"))
        split = (
            f"{_fmt(_int(it.pairs.get('bad_case_pairs')))}/{_fmt(_int(it.pairs.get('similar_case_pairs')))}"
        )
        rows.append(
            (
                f"{it.n} ({it.key})" if it.ran else f"{it.n} ({it.key}) — not run",
                _bad_cases_cell(it.select),
                MISSING if pairs is None else f"{pairs} ({split})",
                _fmt(_int(it.train.get("steps"))),
                _trend(it.train, "loss", ".3f"),
                _trend(it.train, "logps_chosen", ".1f"),
                _trend(it.train, "logps_rejected", ".1f"),
            )
        )
    headers = (
        "iteration t",
        "bad cases of M_t",
        "pairs (bad/similar)",
        "training steps",
        "loss first → last",
        "chosen log-prob first → last",
        "rejected log-prob first → last",
    )
    return Block("table", headers=headers, rows=rows)


ROUND_FILTERS = ("length", "banned", "format", "duplicate", "rouge")
ROUND_STAGES = ("synthesize", "assess", "filter", "ifeval", "evaluate")


def round_metrics(params: Params) -> list[tuple[str, int, dict[str, dict[str, Any]]]]:
    """(key, n, {stage: its metrics.json}) for each I-SHEEP round, in order ({} for a stage not run yet)."""
    return [
        (
            key,
            r.n,
            {stage: read_metrics(artifacts.step_file(r, stage, "metrics.json")) for stage in ROUND_STAGES},
        )
        for key, r in sorted(params.rounds.items(), key=lambda kv: kv[1].n)
    ]


def ifeval_correct(folder: Path) -> dict[str, bool] | None:
    """ifeval's results.parquet in ``folder`` as {prompt id: every instruction followed (strict)}; None when
    the stage has not run there."""
    path = folder / "results.parquet"
    if not path.exists():
        return None
    frame = read_table(path, IFEVAL_RESULTS)
    return dict(zip(frame["id"].to_list(), frame["prompt_strict"].to_list(), strict=True))


def _share_ci(correct: dict[str, bool] | None, share: float | None = None) -> str:
    """'12.3 [10.1–14.8]' for a {id: right} map: the share right with its 95% Wilson interval; ``share``
    alone (no interval) when the per-item results are not at hand."""
    if not correct:
        return _pct(share)
    k, n = sum(correct.values()), len(correct)
    return _ci(k / n, *wilson(k, n))


def _against(base: dict[str, bool] | None, other: dict[str, bool] | None) -> str:
    """``other`` minus ``base`` on the same items with the exact McNemar test, or MISSING."""
    return _test_text(mcnemar_exact(base, other)) if base and other else MISSING


def _general_ci(metrics: Metrics) -> str:
    """An evaluation's general accuracy with its 95% interval, from its metrics.json."""
    return _ci(*(_num(metrics.get(f"general_accuracy{end}")) for end in ("", "_low", "_high")))


def isheep_table(params: Params) -> Block:
    """I-SHEEP, one row per round: the instructions the model wrote and what each filter kept, the self-scores,
    and the trained model's instruction following and general retention, each with its 95% interval and its
    difference from the base model on the same items (exact McNemar)."""
    threshold = params.select.threshold
    base_metrics = artifacts.project_file(params, "evaluate_base", "metrics.json")
    base_eval = read_metrics(base_metrics)
    base_general = (_local_correct(base_metrics.parent, threshold) or {}).get(SETS["general"])
    base_if_metrics = artifacts.project_file(params, "ifeval_base", "metrics.json")
    base_if_m = read_metrics(base_if_metrics)
    base_if = ifeval_correct(base_if_metrics.parent)
    rows = [
        ("base (M_1)", *[MISSING] * 5, _share_ci(base_if, _num(base_if_m.get("prompt_strict"))), MISSING,
         _pct(_num(base_if_m.get("instruction_strict"))),
         _general_ci(base_eval), MISSING, _fmt(_num(base_eval.get("general_nll")), ".3f"))
    ]  # fmt: skip
    for key, n, m in round_metrics(params):
        synth, assess, kept, ifeval, ev = (
            m["synthesize"],
            m["assess"],
            m["filter"],
            m["ifeval"],
            m["evaluate"],
        )
        step = params.rounds[key]
        general = (
            _local_correct(artifacts.step_file(step, "evaluate", "metrics.json").parent, threshold) or {}
        ).get(SETS["general"])
        follows = ifeval_correct(artifacts.step_file(step, "ifeval", "metrics.json").parent)
        after = " / ".join(_fmt(_int(synth.get(f"kept_after_{f}"))) for f in ROUND_FILTERS)
        rows.append(
            (
                f"{n} ({key})" if synth else f"{n} ({key}) — not run",
                _fmt(_int(synth.get("generated"))),
                after,
                _fmt(_num(assess.get("mean_score")), ".2f"),
                _fmt(_int(kept.get("kept"))),
                _fmt(_int(assess.get("unscored"))),
                _share_ci(follows, _num(ifeval.get("prompt_strict"))),
                _against(base_if, follows),
                _pct(_num(ifeval.get("instruction_strict"))),
                _general_ci(ev),
                _against(base_general, general)
                if base_general and general
                else _delta(_num(ev.get("general_accuracy")), _num(base_eval.get("general_accuracy"))),
                _fmt(_num(ev.get("general_nll")), ".3f"),
            )
        )
    n_if = len(base_if) if base_if else None
    headers = (
        "round",
        "instructions written",
        "kept after length / banned / format / duplicate / ROUGE-L",
        "mean self-score (1-10)",
        "kept after assessment",
        "unscored",
        f"IF prompt-level strict (%, n={n_if or '?'}) [95% CI]",
        "IF Δ vs base (points, paired)",
        "IF instruction-level (%)",
        f"general accuracy (%, n={_int(base_eval.get('general_accuracy_n')) or '?'}) [95% CI]",
        "general Δ vs base (points, paired)",
        "general reference NLL",
    )
    return Block("table", headers=headers, rows=rows)


def report_blocks(
    params: Params,
    models: list[ModelRow],
    iterations: list[IterationRow],
    baselines: bool,
    baseline_error: str | None,
    domain_runs: list[DomainRun] = (),
) -> list[Block]:
    """The whole report, top to bottom (``domain_runs``: the experiments on another domain)."""
    blocks = [
        Block("h1", "APT report"),
        Block(
            "p",
            "Each APT iteration t trains M_t into M_{t+1}: M_t answers the domain train set, answers whose judge "
            f"score matches `{params.select.threshold}` are its bad cases, and M_t is trained on preference "
            "pairs (the reference answer chosen over its own) from those bad cases and from similar cases "
            f"retrieved from the general pool (objective `{params.train.objective}`, data "
            f"`{params.train.data}`). Domain test accuracy measures the skill being taught; general accuracy and "
            "the general reference NLL (lower is better) measure what the model keeps of its general skills; "
            "the bad cases on domain train should fall from one model to the next. Deltas are in percentage "
            "points against the base model; baselines are DVC experiments one parameter away from this run.",
        ),
        Block("h2", "Models"),
        Block(
            "p",
            "Accuracies carry their 95% Wilson interval; each difference against the base model is an exact "
            "McNemar test on the items both models answered (p < 0.05: significant; otherwise the difference is "
            "within noise). Settings are chosen on the validation columns, never on the test ones.",
        ),
        comparison_table(models),
    ]
    words = in_words(models)
    if words:
        blocks.append(Block("p", words))
    versus = apt_vs_baselines(models)
    if versus is not None:
        blocks += [Block("h2", "APT against the baselines (paired, same items)"), versus]
    tuned = sweep_table(models, params)
    if tuned is not None:
        blocks += [
            Block("h2", "Tuning (`datakit sweep`: iteration 1, chosen on validation)"),
            Block(
                "p",
                matched_budget(sweep_choice(models, params))
                + " Per run the setting with the best domain validation accuracy (then general validation) is "
                "chosen; the test columns are shown, never used to choose.",
            ),
            tuned,
        ]
    if baselines and baseline_error is not None:
        blocks.append(Block("p", f"Baselines could not be read from `dvc exp show`: {baseline_error}"))
    elif baselines and not any(m.index is None for m in models):
        blocks.append(
            Block(
                "p",
                "No baseline experiments found in `dvc exp show` (e.g. `dvc exp run -n continued-sft "
                "-S train.objective=sft evaluate@iter_1`).",
            )
        )
    if baselines and domain_runs:
        blocks += [
            Block("h2", "Other domains (DVC experiments: the whole lineage on another domain)"),
            Block(
                "p",
                "Each experiment's own base model against its own APT iteration 1, on its own domain's test "
                "split (for `judge.kind: code`, domain accuracy is pass@1: one greedy answer, every hidden test "
                "passed), with 95% Wilson intervals and the exact McNemar test on the same items.",
            ),
            domain_table(list(domain_runs)),
        ]
    blocks += [
        Block("h2", "Iterations"),
        iteration_table(iterations),
        Block("h2", "Plots"),
        Block("img", "bad_cases.png", "bad cases on domain train per model"),
        Block(
            "img",
            "accuracy.png",
            "domain and general accuracy with 95% intervals per iteration and against the baselines, "
            "and the general reference NLL",
        ),
        Block("img", "logps.png", "chosen and rejected log-probs per training step"),
    ]
    if params.rounds:
        blocks += [
            Block("h2", "I-SHEEP rounds"),
            Block(
                "p",
                f"Each round the model writes instructions from the seed tasks, answers them, grades its own pairs "
                f"(prompt `{params.assess.prompt}`), keeps them by `{params.filter.strategy}` and is fine-tuned "
                f"(setting `{params.isheep.setting}`). IF is the offline instruction-following evaluation "
                "(strict); general accuracy and NLL are the retention metrics, against the base model.",
            ),
            isheep_table(params),
            Block(
                "img",
                "isheep.png",
                "I-SHEEP: instructions kept per round; instruction following and general accuracy",
            ),
        ]
    return blocks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "img":
            out.append(f"![{b.alt}]({b.text})")
        else:
            lines = ["| " + " | ".join(map(_md_cell, b.headers)) + " |", "|" + "---|" * len(b.headers)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in b.rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _html_text(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


CSS = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em}"
    "th{background:#f4f4f4}td{text-align:right}td:first-child,td.t{text-align:left}"
    ".wide{overflow-x:auto}img{max-width:100%}"
)


def _html_cell(text: str) -> str:
    """A table cell: figures right-aligned (the CSS default), words left-aligned (class t)."""
    words = bool(re.match(r"[^\W\d_]", text))  # starts with a letter: a name, an answer, a verdict
    return f'<td class="t">{html.escape(text)}</td>' if words else f"<td>{html.escape(text)}</td>"


def to_html(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "p"):
            out.append(f"<{b.kind}>{_html_text(b.text)}</{b.kind}>")
        elif b.kind == "img":
            out.append(f'<p><img src="{html.escape(b.text)}" alt="{html.escape(b.alt)}"></p>')
        else:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in b.rows)
            out.append(
                f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>APT report</title>'
        f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(out) + "\n</body></html>\n"
    )
    # Character references: the page reads right whatever encoding the file was written in.
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def summary_frame(models: list[ModelRow]) -> pl.DataFrame:
    return pl.DataFrame(
        [{name: getattr(m, name) for name in SUMMARY_SCHEMA} for m in models], schema=SUMMARY_SCHEMA
    )


# --- plots ------------------------------------------------------------------------------------------------


BASELINE_MARKERS = ("D", "^", "v", "P", "X", "*")


def _model_axis(ax, models: list[ModelRow]) -> None:
    """x ticks for every planned model (not run yet too), so the plots of a run in progress keep their axis."""
    own = [m for m in models if m.index is not None]
    ax.set_xticks([m.index for m in own], [m.label.replace(" ", "\n", 1) for m in own], fontsize=8)
    ax.set_xlabel("model")
    ax.grid(alpha=0.3)


def _series(ax, models: list[ModelRow], attr: str, scale: float, label: str, style: str, color: str) -> bool:
    """The iteration models' ``attr`` as a line, each baseline's as a point at x = 1 (the iteration it
    replaces). Returns whether anything was drawn."""
    points = [
        (m.index, getattr(m, attr) * scale)
        for m in models
        if m.index is not None and getattr(m, attr) is not None
    ]
    if points:
        ax.plot([x for x, _ in points], [y for _, y in points], style, color=color, label=label)
    drawn = bool(points)
    for i, m in enumerate(m for m in models if m.index is None):
        value = getattr(m, attr)
        if value is not None:
            ax.plot(
                [1],
                [value * scale],
                BASELINE_MARKERS[i % len(BASELINE_MARKERS)],
                color=color,
                markersize=8,
                markeredgecolor="black",
                label=f"{label}: {m.model}",
            )
            drawn = True
    return drawn


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", transform=ax.transAxes, ha="center", va="center", color="gray")


def plot_isheep(params: Params, path: Path) -> None:
    """I-SHEEP per round: how many instructions survive each step (left), and instruction following and
    general accuracy of each round's model against the base model at round 0 (right)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    rounds = round_metrics(params)
    ran = [(n, m) for _, n, m in rounds if m["synthesize"]]
    if not ran:
        _no_data(left, "I-SHEEP rounds")
        _no_data(right, "I-SHEEP rounds")
    else:
        steps = (
            ("written", lambda m: m["synthesize"].get("generated")),
            ("after the rule filters", lambda m: m["synthesize"].get("kept")),
            ("kept after assessment", lambda m: m["filter"].get("kept")),
        )
        width = 0.8 / len(steps)
        for i, (label, get) in enumerate(steps):
            xs = [n + (i - 1) * width for n, _ in ran]
            left.bar(xs, [_num(get(m)) or 0 for _, m in ran], width, label=label)
        left.set_xticks([n for n, _ in ran], [f"round {n}" for n, _ in ran])
        left.set_ylabel("instructions")
        left.set_title("instructions per round", fontsize=10)
        left.legend(fontsize=8)
        base_if = read_metrics(artifacts.project_file(params, "ifeval_base", "metrics.json"))
        base_ev = read_metrics(artifacts.project_file(params, "evaluate_base", "metrics.json"))
        series = (
            ("IF prompt-level", "ifeval", "prompt_strict", base_if),
            ("IF instruction-level", "ifeval", "instruction_strict", base_if),
            ("general accuracy", "evaluate", "general_accuracy", base_ev),
        )
        for label, stage, key, base in series:
            points = [(0, _num(base.get(key)))] + [(n, _num(m[stage].get(key))) for n, m in ran]
            points = [(x, y * 100) for x, y in points if y is not None]
            if points:
                right.plot([x for x, _ in points], [y for _, y in points], "o-", label=label)
        right.set_xticks([0] + [n for n, _ in ran], ["base"] + [f"round {n}" for n, _ in ran])
        right.set_ylabel("%")
        right.set_title("the model each round trains, vs the base model", fontsize=10)
        right.grid(alpha=0.3)
        right.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def plot_bad_cases(models: list[ModelRow], path: Path) -> None:
    """Bad cases on domain train per model: the curve APT should push down."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if _series(ax, models, "train_bad_cases", 1.0, "bad cases", "o-", "C3"):
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "bad cases")
    _model_axis(ax, models)
    ax.set_ylabel("bad cases on domain train")
    ax.set_title("Bad cases on domain train", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def _errorbars(
    ax, xs: list[float], models: list[ModelRow], what: str, style: str, color: str, label: str
) -> bool:
    """``what`` accuracy (%) of ``models`` at ``xs`` with 95% interval bars; whether anything was drawn."""
    points = [(x, m) for x, m in zip(xs, models, strict=True) if getattr(m, f"{what}_accuracy") is not None]
    if not points:
        return False
    ys = [getattr(m, f"{what}_accuracy") * 100 for _, m in points]
    lows = [getattr(m, f"{what}_low") for _, m in points]
    highs = [getattr(m, f"{what}_high") for _, m in points]
    err = None
    if all(v is not None for v in lows + highs):
        err = [
            [y - lo * 100 for y, lo in zip(ys, lows, strict=True)],
            [hi * 100 - y for y, hi in zip(ys, highs, strict=True)],
        ]
    ax.errorbar([x for x, _ in points], ys, yerr=err, fmt=style, color=color, capsize=4, label=label)
    return True


def plot_accuracy(models: list[ModelRow], path: Path) -> None:
    """Domain and general accuracy (%) with 95% interval bars: the iterations on the left, the first
    iteration against the baseline experiments in their own panel, and the general reference NLL."""
    plt = pyplot()
    fig, (acc, exps, nll) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [3, 3, 2]})
    own = [m for m in models if m.index is not None]
    drawn = False
    for what, style, color, shift in (("domain", "o-", "C0", -0.04), ("general", "s-", "C1", 0.04)):
        drawn = (
            _errorbars(acc, [m.index + shift for m in own], own, what, style, color, f"{what} accuracy")
            or drawn
        )
    if drawn:
        acc.legend(fontsize=7)
    else:
        _no_data(acc, "evaluations")
    acc.set_ylabel("accuracy (%), 95% CI")
    acc.set_title("Domain test and general accuracy per iteration", fontsize=10)
    _model_axis(acc, models)
    # The first iteration's model and every baseline trained from the same M_1: one column each.
    versus = [m for m in models if m.index == 1] + [m for m in models if m.index is None]
    drawn = False
    for what, style, color, shift in (("domain", "o", "C0", -0.08), ("general", "s", "C1", 0.08)):
        xs = [i + shift for i in range(len(versus))]
        drawn = _errorbars(exps, xs, versus, what, style, color, f"{what} accuracy") or drawn
    if drawn and len(versus) > 1:
        exps.legend(fontsize=7)
    else:
        _no_data(exps, "baseline experiments")
    exps.set_xticks(range(len(versus)), [m.model for m in versus], fontsize=8, rotation=20)
    exps.set_xlim(-0.5, max(len(versus), 1) - 0.5)
    exps.set_title("Iteration 1 against the baselines (same M_1)", fontsize=10)
    exps.grid(alpha=0.3)
    if _series(nll, models, "general_nll", 1.0, "general NLL", "o-", "C2"):
        nll.legend(fontsize=7)
    else:
        _no_data(nll, "evaluations")
    nll.set_ylabel("mean NLL of the references (lower is better)")
    nll.set_title("General reference NLL", fontsize=10)
    _model_axis(nll, models)
    fig.tight_layout()
    save_png(fig, path)


def plot_logps(iterations: list[IterationRow], path: Path) -> None:
    """Log-probs of chosen and rejected answers per training step: chosen should rise over rejected."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for i, it in enumerate(iterations):
        if it.log is None or not {"step", "logps_chosen", "logps_rejected"} <= set(it.log.columns):
            continue  # not trained yet, or an SFT log
        for side, style in (("chosen", "-"), ("rejected", "--")):
            steps = it.log.select("step", f"logps_{side}").drop_nulls()
            ax.plot(steps["step"], steps[f"logps_{side}"], style, color=f"C{i}", label=f"{it.key} {side}")
            drawn = True
    if drawn:
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "preference-training logs")
    ax.set_xlabel("training step")
    ax.set_ylabel("log-prob of the answer")
    ax.set_title("Chosen (solid) and rejected (dashed) log-probs per step", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


# --- the command ------------------------------------------------------------------------------------------


# --- the weakness map ---------------------------------------------------------------------------------------

WEAKNESS_MIN_ITEMS = 10  # tags with fewer domain test items are left out of the heat map (too few to read)


def _weakness_folder(params: Params, model: ModelRow) -> Path:
    return artifacts.weakness_dir(params, None if model.index == 0 else model.model)


def weakness_rates(params: Params, models: list[ModelRow]) -> list[tuple[ModelRow, pl.DataFrame]]:
    """The lineage's models (base, then M_{t+1} per iteration) with their weakness ``rates.csv``, where the
    weakness stage has run."""
    out = []
    for model in sorted((m for m in models if m.index is not None), key=lambda m: m.index):
        path = artifacts.file_in(_weakness_folder(params, model), "weakness", "rates.csv")
        if path.exists():
            out.append((model, pl.read_csv(path)))
    return out


def _heat(
    ax, entries: list[tuple[ModelRow, pl.DataFrame]], set_name: str, title: str, min_items: int
) -> None:
    first = entries[0][1].filter((pl.col("set") == set_name) & (pl.col("items") >= min_items))
    names = first.sort("error_rate", descending=True)["tag"].to_list()
    if not names:
        _no_data(ax, f"{set_name} rates")
        return
    grid = []
    for _, rates in entries:
        rate = dict(rates.filter(pl.col("set") == set_name).select("tag", "error_rate").iter_rows())
        grid.append([rate.get(name) for name in names])
    values = [[(v if v is not None else float("nan")) * 100 for v in col] for col in zip(*grid, strict=True)]
    ax.imshow(values, cmap="Reds", vmin=0, vmax=100, aspect="auto")
    items = dict(first.select("tag", "items").iter_rows())
    ax.set_yticks(range(len(names)), [f"{n} ({items[n]})" for n in names], fontsize=8)
    ax.set_xticks(range(len(entries)), [m.label.split(" (")[0] for m, _ in entries], fontsize=8)
    for y, row in enumerate(values):
        for x, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(x, y, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 60 else "black")  # fmt: skip
    ax.set_title(title, fontsize=10)


def weakness_blocks(params: Params, entries: list[tuple[ModelRow, pl.DataFrame]]) -> list[Block]:
    """The report's weakness-map section: the heat map, and per iteration what it fixed and broke."""
    blocks = [
        Block("h2", "Weakness map"),
        Block(
            "p",
            "Error rate per skill tag on domain test (the items' tags from `tag_domain`; an item counts under "
            "each of its tags) and per category on the general evaluation, one column per model. Per iteration: "
            "the tags whose error rate changed significantly (exact McNemar on the items carrying the tag), and "
            "the tags most of its preference pairs carried. A tag is one family of items, not an independent "
            "test: with many tags a few significant changes can be chance.",
        ),
    ]
    table = weakness_table(params, entries)
    if table is not None:
        blocks.append(table)
    blocks.append(Block("img", "weakness.png", "error rate per tag and per general category, per model"))
    return blocks


def plot_weakness(entries: list[tuple[ModelRow, pl.DataFrame]], path: Path) -> None:
    """Heat maps of the error rate (%): domain test per skill tag (left) and general evaluation per category
    (right), one column per model of the lineage."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    if not entries:
        _no_data(left, "weakness map")
        _no_data(right, "weakness map")
    else:
        _heat(left, entries, "domain_test", f"domain test: error % per tag (items; tags with >= {WEAKNESS_MIN_ITEMS})",
              WEAKNESS_MIN_ITEMS)  # fmt: skip
        _heat(right, entries, "general_eval", "general evaluation: error % per category (items)", 1)
    fig.tight_layout()
    save_png(fig, path)


def _listed(changes: pl.DataFrame, verdict: str) -> str:
    part = changes.filter(pl.col("verdict") == verdict)
    cells = [
        f"{r['tag']} {100 * r['error_before']:.0f}→{100 * r['error_after']:.0f}% (n = {r['items']}, p = {r['p']:.2g})"
        for r in part.iter_rows(named=True)
    ]
    return "; ".join(cells) or "none"


def weakness_table(params: Params, entries: list[tuple[ModelRow, pl.DataFrame]]) -> Block | None:
    """Per iteration: the domain test tags it fixed and made worse (significant, paired on the same items),
    how many moved within noise, and the tags most of its pairs came from."""
    tags_path = artifacts.domain_tags(params)
    if len(entries) < 2 or not tags_path.exists():
        return None
    from datakit.tags import TAGS
    from datakit.weakness import tag_changes, tag_groups

    groups = tag_groups(read_table(tags_path, TAGS))
    rows = []
    for (before, _), (after, _) in zip(entries, entries[1:], strict=False):
        if not (
            before.correct
            and after.correct
            and "domain_test" in before.correct
            and "domain_test" in after.correct
        ):
            continue
        changes = tag_changes(before.correct["domain_test"], after.correct["domain_test"], groups)

        shares_path = artifacts.file_in(_weakness_folder(params, after), "weakness", "pair_shares.csv")
        shares = pl.read_csv(shares_path) if shares_path.exists() else None
        top = (
            ", ".join(f"{r['tag']} {100 * r['share']:.0f}%" for r in shares.head(3).iter_rows(named=True))
            if shares is not None and shares.height
            else MISSING
        )
        rows.append(
            (
                f"{after.index} ({after.model}): {before.label.split(' (')[0]} → {after.label.split(' (')[0]}",
                _listed(changes, "fixed"),
                _listed(changes, "worse"),
                str(changes.filter(pl.col("verdict") == "within noise").height),
                top,
            )
        )
    if not rows:
        return None
    return Block(
        "table",
        headers=("iteration", "fixed (error before→after)", "worse", "tags within noise", "pairs' top tags"),
        rows=rows,
    )


# --- the judge audit ---------------------------------------------------------------------------------------

AUDIT_TEXT_CHARS = 120  # an example's instruction, answer and feedback are cut to this in the report


def judge_audits(params: Params) -> list[tuple[str, int, Metrics]]:
    """(iteration key, n, judge_audit/metrics.json) for each iteration whose audit has run."""
    out = []
    for key, it in params.iterations.items():
        metrics = read_metrics(artifacts.step_file(it, "judge_audit", "metrics.json"))
        if metrics:
            out.append((key, it.n, metrics))
    return out


def _share(k: int | None, n: int | None, share: float | None) -> str:
    if k is None or n is None:
        return MISSING
    return f"{k}/{n}" + ("" if share is None else f" ({100 * share:.0f}%)")


def _cut(text: Any) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= AUDIT_TEXT_CHARS else text[:AUDIT_TEXT_CHARS] + "…"


def judge_audit_blocks(audits: list[tuple[str, int, Metrics]]) -> list[Block]:
    """The report's judge-audit section: per iteration the audited judge against the exact judge, its score
    against right/wrong, and a few answers they disagree on."""
    if not audits:
        return []
    rows, examples = [], []
    for key, n, m in audits:
        kappa = _num(m.get("kappa"))
        rows.append(
            (
                f"{n} ({key})",
                str(m.get("judge", MISSING)),
                f"{_fmt(_int(m.get('rows')))} ({_fmt(_int(m.get('exact_wrong')))} wrong)",
                _share(_int(m.get("unscored")), _int(m.get("rows")), _num(m.get("unscored_rate"))),
                _ci(_num(m.get("agreement")), _num(m.get("agreement_low")), _num(m.get("agreement_high"))),
                MISSING
                if kappa is None
                else f"{kappa:.2f} [{_num(m.get('kappa_low')):.2f}, {_num(m.get('kappa_high')):.2f}]",
                _share(_int(m.get("false_bad")), _int(m.get("judge_bad")), _num(m.get("false_bad_share"))),
                _share(_int(m.get("missed")), _int(m.get("exact_wrong")), _num(m.get("missed_share"))),
            )
        )
        for e in (m.get("examples") or [])[:3]:
            examples.append(
                (
                    f"{n}",
                    str(e.get("disagreement")),
                    _cut(e.get("instruction")),
                    _cut(e.get("response")),
                    f"{_cut(e.get('reference'))} (read: {e.get('extracted') or 'no number'})",
                    _fmt(_int(e.get("judge_score"))),
                    _cut(e.get("feedback") or e.get("error")),
                )
            )
    labels = [str(s) for s in range(1, 6)] + ["unscored"]
    matrix = [
        (label, *(f"{(m.get('confusion') or {}).get(label, {}).get('wrong', 0)} / "
                  f"{(m.get('confusion') or {}).get(label, {}).get('right', 0)}" for _, _, m in audits))
        for label in labels
    ]  # fmt: skip
    threshold = audits[0][2].get("threshold", MISSING)
    blocks = [
        Block("h2", "Judge audit (`judge_audit`: a model judge against the exact judge)"),
        Block(
            "p",
            f"The same answers of M_t on domain train, graded by the exact judge (the truth) and by the audited "
            f"judge, both taken at the bad-case threshold `{threshold}`. Agreement (95% Wilson interval) and "
            "Cohen's kappa (95% interval) are over the answers the judge scored. Right answers called bad: of the "
            "judge's bad cases, how many the exact judge calls right (training data from the judge's mistakes). "
            "Errors missed: of the wrong answers, how many would not become bad cases (scored above the threshold, "
            "or unscored).",
        ),
        Block(
            "table",
            headers=(
                "iteration",
                "audited judge",
                "answers",
                "unscored",
                "agreement",
                "kappa",
                "right answers called bad",
                "errors missed",
            ),
            rows=rows,
        ),
        Block(
            "p", "The audited judge's score against the exact verdict (wrong / right answers), per iteration:"
        ),
        Block("table", headers=("judge score", *(f"iteration {n}" for _, n, _ in audits)), rows=matrix),
    ]
    if examples:
        blocks += [
            Block("p", "Answers the two judges disagree on (right answers called bad first):"),
            Block(
                "table",
                headers=(
                    "iteration",
                    "disagreement",
                    "instruction",
                    "answer",
                    "reference",
                    "judge score",
                    "judge said",
                ),
                rows=examples,
            ),
        ]
    return blocks


def write_report(params: Params, baselines: bool = True, commits: int = 1) -> str:
    """Write report.md, report.html, summary.csv and the PNG plots under ``paths.report``.

    Args:
        baselines: add the baseline experiments of ``dvc exp show`` (a failed lookup is one line in the
            report, not an error); commits: of the last this-many commits.

    Returns:
        The path of report.md.

    Raises:
        DataError: a metrics file that is not valid JSON, or a step log that is not a readable CSV.
    """
    MISSES.clear()
    iterations = iteration_rows(params)
    models = model_rows(params, iterations)
    baseline_error = None
    domain_runs: list[DomainRun] = []
    if baselines:
        found, domain_runs, baseline_error = read_baselines(params, commits)
        models += found
    out = Path(params.paths.report)
    out.mkdir(parents=True, exist_ok=True)
    blocks = report_blocks(params, models, iterations, baselines, baseline_error, domain_runs)
    write_text_atomic(summary_frame(models).write_csv(), out / "summary.csv")
    plot_bad_cases(models, out / "bad_cases.png")
    plot_accuracy(models, out / "accuracy.png")
    plot_logps(iterations, out / "logps.png")
    plot_isheep(params, out / "isheep.png")
    entries = weakness_rates(params, models)
    plot_weakness(entries, out / "weakness.png")
    blocks += weakness_blocks(params, entries)
    blocks += judge_audit_blocks(judge_audits(params))
    if MISSES:
        blocks[1:1] = [
            Block("h2", "Missing metrics"),
            Block(
                "p",
                "These metrics files lack keys the report reads (their cells show —): a stage from another "
                "datakit version, or a renamed key. Rerun the stage (`dvc repro`) to refresh them.",
            ),
            Block("table", headers=("file", "key"), rows=sorted(MISSES)),
        ]
    write_text_atomic(to_html(blocks), out / "report.html")
    return str(write_text_atomic(to_markdown(blocks), out / "report.md"))
