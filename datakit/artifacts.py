"""Every stage's artifacts, named once.

An iteration's (or I-SHEEP round's) stage writes under ``<dir>/<stage>/`` (``dir`` from params.yaml's
``iterations`` or ``rounds``); a project-level stage under a ``paths`` folder. The file names are here, and
stages, the report and the tests find each other's outputs through this module, never through another stage.
dvc.yaml and the recipes spell the same paths for DVC: ``declared`` lists them from params, and
tests/test_artifacts.py checks that every stage's outs there are exactly these.
"""

from __future__ import annotations

from pathlib import Path

from datakit.config import Iteration, Params

# Per iteration or round: the files (or folders) each stage writes under <dir>/<stage>/.
STEP_FILES: dict[str, tuple[str, ...]] = {
    "generate": ("generations.parquet", "summary.json"),
    "judge": ("judgments.parquet", "metrics.json"),
    "judge_audit": ("audit.parquet", "metrics.json"),
    "select": ("bad_cases.parquet", "metrics.json"),
    "retrieve": (
        "bad_case_tags.parquet",
        "similar_cases.parquet",
        "tag_distribution.csv",
        "metrics.json",
        "tag_distribution.png",
    ),
    "generate_similar": ("generations.parquet", "summary.json"),
    "pairs": ("preference_pairs.parquet", "metrics.json"),
    "sft_set": ("sft.parquet", "metrics.json"),
    "score": ("scores.parquet", "metrics.json"),
    "train": (
        "adapter",
        "metrics.json",
        "log.csv",
        "logps.png",
        "tau.csv",
        "tau.png",
    ),  # + the model, model_out
    "evaluate": ("results.parquet", "metrics.json"),
    "ifeval": ("results.parquet", "metrics.json"),
    "weakness": ("rates.csv", "pair_shares.csv", "metrics.json"),
    "synthesize": ("instructions.parquet", "candidates.parquet", "generations.parquet", "metrics.json"),
    "assess": ("assessments.parquet", "metrics.json"),
    "filter": ("pairs.parquet", "kept.parquet", "metrics.json"),
}
# The stages of each lineage, in pipeline order (dvc.yaml; recipes/audit/dvc.yaml; recipes/isheep/dvc.yaml).
APT_STAGES = (
    "generate", "judge", "select", "retrieve", "generate_similar", "pairs", "sft_set", "score", "train",
    "evaluate", "ifeval", "weakness",
)  # fmt: skip
AUDIT_STAGES = ("judge_audit",)
ISHEEP_STAGES = ("synthesize", "generate", "assess", "filter", "score", "train", "evaluate", "ifeval")
SYNTH_FILES = ("math_train", "math_val", "math_test", "pool", "general_val", "general_eval")
# Project-level stages: (the ``paths`` key of their folder, the files in it; () = the folder itself).
PROJECT_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "synth": ("synth", (*(f"{name}.parquet" for name in SYNTH_FILES), "stats.json")),
    "base_model": ("base_model", ()),
    "tag": ("tag", ("pool_tags.parquet", "metrics.json")),
    "tag_domain": ("tag", ("domain_tags.parquet", "domain_metrics.json")),
    "index": ("index", ("lancedb", "metrics.json")),
    "evaluate_base": ("evaluate_base", ("results.parquet", "metrics.json")),
    "ifeval_base": ("ifeval_base", ("results.parquet", "metrics.json")),
    "weakness_base": ("weakness_base", ("rates.csv", "metrics.json")),
}


# What each stage reads from another: (the stage that writes it, the file). Models (model_in, model_out, the
# base model) and the data sources of params.yaml are left out; dvc.yaml lists those too.
READS: dict[str, tuple[tuple[str, str], ...]] = {
    "index": (("tag", "pool_tags.parquet"),),
    "judge": (("generate", "generations.parquet"),),
    "judge_audit": (("generate", "generations.parquet"),),
    "select": (("generate", "generations.parquet"), ("judge", "judgments.parquet")),
    "retrieve": (("select", "bad_cases.parquet"), ("index", "lancedb")),
    "generate_similar": (("retrieve", "similar_cases.parquet"),),
    "pairs": (
        ("select", "bad_cases.parquet"),
        ("retrieve", "bad_case_tags.parquet"),
        ("retrieve", "similar_cases.parquet"),
        ("generate_similar", "generations.parquet"),
    ),
    "sft_set": (("pairs", "preference_pairs.parquet"),),
    "score": (("sft_set", "sft.parquet"), ("filter", "kept.parquet")),
    "train": (("pairs", "preference_pairs.parquet"), ("score", "scores.parquet")),
    "weakness": (
        ("tag_domain", "domain_tags.parquet"),
        ("evaluate", "results.parquet"),
        ("pairs", "preference_pairs.parquet"),
    ),
    "weakness_base": (("tag_domain", "domain_tags.parquet"), ("evaluate_base", "results.parquet")),
    "generate": (("synthesize", "instructions.parquet"),),  # I-SHEEP rounds
    "assess": (("synthesize", "instructions.parquet"), ("generate", "generations.parquet")),
    "filter": (
        ("synthesize", "instructions.parquet"),
        ("generate", "generations.parquet"),
        ("assess", "assessments.parquet"),
    ),
}


def step_dir(it: Iteration, stage: str) -> Path:
    """The folder stage ``stage`` of iteration or round ``it`` writes in."""
    if stage not in STEP_FILES:
        raise KeyError(f"no stage {stage!r} writes per iteration (known: {', '.join(STEP_FILES)})")
    return Path(it.dir) / stage


def step_file(it: Iteration, stage: str, file: str) -> Path:
    """``<dir>/<stage>/<file>`` of iteration or round ``it``; the file must be one the stage writes."""
    if file not in STEP_FILES.get(stage, ()):
        raise KeyError(
            f"stage {stage!r} writes no {file!r} (it writes {', '.join(STEP_FILES.get(stage, ()))})"
        )
    return step_dir(it, stage) / file


def file_in(folder: Path, stage: str, file: str) -> Path:
    """``folder/file`` for a stage whose folder is chosen at run time (an iteration's, or the base model's
    ``<stage>_base``); the file must be one the stage writes."""
    if file not in STEP_FILES.get(stage, ()):
        raise KeyError(
            f"stage {stage!r} writes no {file!r} (it writes {', '.join(STEP_FILES.get(stage, ()))})"
        )
    return folder / file


def project_dir(params: Params, stage: str) -> Path:
    """The ``paths`` folder project-level stage ``stage`` writes in."""
    return Path(getattr(params.paths, PROJECT_FILES[stage][0]))


def project_file(params: Params, stage: str, file: str) -> Path:
    if file not in PROJECT_FILES[stage][1]:
        raise KeyError(f"stage {stage!r} writes no {file!r} (it writes {', '.join(PROJECT_FILES[stage][1])})")
    return project_dir(params, stage) / file


# The artifacts one stage reads from another, by name.


def generations(it: Iteration) -> Path:
    """M_t's answers to domain train (I-SHEEP: to the round's instructions)."""
    return step_file(it, "generate", "generations.parquet")


def judgments(it: Iteration) -> Path:
    return step_file(it, "judge", "judgments.parquet")


def bad_cases(it: Iteration) -> Path:
    return step_file(it, "select", "bad_cases.parquet")


def bad_case_tags(it: Iteration) -> Path:
    return step_file(it, "retrieve", "bad_case_tags.parquet")


def similar_cases(it: Iteration) -> Path:
    return step_file(it, "retrieve", "similar_cases.parquet")


def similar_generations(it: Iteration) -> Path:
    """M_t's answers to the similar cases."""
    return step_file(it, "generate_similar", "generations.parquet")


def preference_pairs(it: Iteration) -> Path:
    return step_file(it, "pairs", "preference_pairs.parquet")


def sft_set(it: Iteration) -> Path:
    return step_file(it, "sft_set", "sft.parquet")


def scores(it: Iteration) -> Path:
    return step_file(it, "score", "scores.parquet")


def instructions(it: Iteration) -> Path:
    """An I-SHEEP round's instructions that passed the rule filters."""
    return step_file(it, "synthesize", "instructions.parquet")


def assessments(it: Iteration) -> Path:
    return step_file(it, "assess", "assessments.parquet")


def filtered_pairs(it: Iteration) -> Path:
    """Every pair of an I-SHEEP round with the filter's decision."""
    return step_file(it, "filter", "pairs.parquet")


def kept(it: Iteration) -> Path:
    """The SFT set of an I-SHEEP round's kept pairs."""
    return step_file(it, "filter", "kept.parquet")


def pool_tags(params: Params) -> Path:
    return project_file(params, "tag", "pool_tags.parquet")


def domain_tags(params: Params) -> Path:
    return project_file(params, "tag_domain", "domain_tags.parquet")


def index_dir(params: Params) -> Path:
    """The LanceDB folder of the pool index."""
    return project_file(params, "index", "lancedb")


def evaluation(params: Params, iteration: str | None, stage: str = "evaluate") -> tuple[str, int, Path]:
    """(model, iteration number, folder) an evaluation stage (``evaluate``, ``ifeval``) works on: M_{t+1} of
    ``iteration`` (t = its number), or the base model (``iteration`` None; t = 0; ``<stage>_base``'s folder)."""
    if iteration is None:
        return params.paths.base_model, 0, project_dir(params, f"{stage}_base")
    it = params.iteration(iteration)
    return it.model_out, it.n, step_dir(it, stage)


def weakness_dir(params: Params, iteration: str | None) -> Path:
    """An iteration's weakness map folder, or the base model's (``iteration`` None)."""
    if iteration is None:
        return project_dir(params, "weakness_base")
    return step_dir(params.iteration(iteration), "weakness")


def declared(params: Params) -> dict[str, set[str]]:
    """Every stage instance of the project (``generate@iter_1``, ``synthesize@round_1``, ``tag``) with the
    paths it writes: what dvc.yaml and the recipes must declare as its outs, metrics and plots."""
    out: dict[str, set[str]] = {}
    for stage, (_, files) in PROJECT_FILES.items():
        folder = project_dir(params, stage)
        out[stage] = {(folder / f).as_posix() for f in files} or {folder.as_posix()}
    lineages = ((params.iterations, APT_STAGES + AUDIT_STAGES), (params.rounds, ISHEEP_STAGES))
    for steps, stages in lineages:
        for key, it in steps.items():
            for stage in stages:
                paths = {(step_dir(it, stage) / f).as_posix() for f in STEP_FILES[stage]}
                if stage == "train":
                    paths.add(Path(it.model_out).as_posix())
                out[f"{stage}@{key}"] = paths
    return out


def _where(stage: str, file: str) -> str:
    if stage in PROJECT_FILES:
        return f"`{PROJECT_FILES[stage][0]}`/{file}" if file else f"`{PROJECT_FILES[stage][0]}`"
    return f"{stage}/{file}"


def markdown() -> str:
    """data/README.md: every stage with the artifacts it reads from other stages and the files it writes
    (``python -m datakit.artifacts > data/README.md``; a test checks the file is this)."""
    lines = [
        "# The artifacts under data/",
        "",
        "Generated from `datakit/artifacts.py` (`python -m datakit.artifacts > data/README.md`). An iteration's",
        "(or I-SHEEP round's) stage writes under `<dir>/<stage>/`, `dir` from params.yaml's `iterations` or",
        "`rounds`; a project-level stage writes under the `paths` folder named in backticks. Reads lists what a",
        "stage takes from other stages (models and the data sources of params.yaml aside); a stage of both",
        "lineages (generate, score, train, evaluate, ifeval) lists what it reads in either.",
        "",
        "| stage | reads | writes |",
        "|---|---|---|",
    ]
    for stage, (_, files) in PROJECT_FILES.items():
        reads = ", ".join(_where(*r) for r in READS.get(stage, ())) or "—"
        lines.append(
            f"| {stage} | {reads} | {', '.join(_where(stage, f) for f in files) or _where(stage, '')} |"
        )
    for stage, files in STEP_FILES.items():
        reads = ", ".join(_where(*r) for r in READS.get(stage, ())) or "—"
        writes = ", ".join(f"{stage}/{f}" for f in files) + (
            ", the model (`model_out`)" if stage == "train" else ""
        )
        lines.append(f"| {stage} | {reads} | {writes} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
