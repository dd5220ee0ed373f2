"""Export one artifact table as a Hugging Face dataset folder with a lineage card (``datakit export``).

Reads: one parquet table a stage wrote (``data/iter_1/pairs/preference_pairs.parquet``, an SFT set, judgments,
generations, bad cases, similar cases, I-SHEEP filtered pairs, ...), checked against its declared schema; the
``dvc.lock`` files of the repository that holds it (the stage whose out it is); git (the commit).
Writes one folder, atomically (built in a temp sibling, then renamed):

- ``state.json``, ``dataset_info.json``, ``data-*.arrow``: ``datasets.load_from_disk(folder)``;
- ``data/<split>-00000-of-00001.parquet``: the Hub's layout (what ``push_to_hub`` uploads), read by
  ``load_dataset("parquet", data_files=...)``; ``load_dataset(folder)`` itself is refused by ``datasets``
  (a folder with ``state.json`` must go through ``load_from_disk``), and works on the pushed repo;
- ``README.md``: a dataset card whose YAML metadata (key ``datakit``) and body carry the lineage: git commit
  and dirty flag, the producing stage (name, cmd, md5 of this out and of each dep, its locked params, the
  params.yaml sections it uses), iteration, model, row count and schema.

With ``--push user/name`` (and a token: ``HF_TOKEN`` or ``hf auth login``) the card, then the dataset, go to
the Hub. Run: ``datakit export data/iter_1/pairs/preference_pairs.parquet exports/pairs_iter_1``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import yaml

from datakit.errors import DataError, DatakitError
from datakit.schemas import Table, check_frame

# The declared tables by name, as "module:ATTRIBUTE": imported only when used (datakit.retrieve takes seconds).
TABLES = {
    "examples": "datakit.schemas:EXAMPLES",
    "generations": "datakit.schemas:GENERATIONS",
    "judgments": "datakit.schemas:JUDGMENTS",
    "judge_audit": "datakit.judge_audit:JUDGE_AUDIT",
    "bad_cases": "datakit.schemas:BAD_CASES",
    "tags": "datakit.tags:TAGS",
    "similar_cases": "datakit.retrieve:SIMILAR_CASES",
    "preference_pairs": "datakit.pairs:PREFERENCE_PAIRS",
    "sft_set": "datakit.poft:SFT_SET",
    "scores": "datakit.poft:SCORES",
    "eval_results": "datakit.evaluate:EVAL_RESULTS",
    "ifeval_results": "datakit.ifeval:IFEVAL_RESULTS",
    "instructions": "datakit.isheep:INSTRUCTIONS",
    "filtered_pairs": "datakit.isheep:FILTERED",
}

# "<stage folder>/<file>" -> table name: the layout dvc.yaml and recipes/isheep/dvc.yaml write.
LAYOUT = {
    **{
        f"synth/{n}.parquet": "examples"
        for n in ("math_train", "math_val", "math_test", "pool", "general_val", "general_eval")
    },
    "generate/generations.parquet": "generations",
    "generate_similar/generations.parquet": "generations",
    "synthesize/generations.parquet": "generations",
    "synthesize/instructions.parquet": "instructions",
    "synthesize/candidates.parquet": "instructions",
    "judge/judgments.parquet": "judgments",
    "judge_audit/audit.parquet": "judge_audit",
    "assess/assessments.parquet": "judgments",
    "select/bad_cases.parquet": "bad_cases",
    "tag/pool_tags.parquet": "tags",
    "tag/domain_tags.parquet": "tags",
    "retrieve/bad_case_tags.parquet": "tags",
    "retrieve/similar_cases.parquet": "similar_cases",
    "pairs/preference_pairs.parquet": "preference_pairs",
    "sft_set/sft.parquet": "sft_set",
    "filter/kept.parquet": "sft_set",
    "filter/pairs.parquet": "filtered_pairs",
    "score/scores.parquet": "scores",
    "evaluate/results.parquet": "eval_results",
    "evaluate_base/results.parquet": "eval_results",
    "ifeval/results.parquet": "ifeval_results",
    "ifeval_base/results.parquet": "ifeval_results",
}

_SPLIT = re.compile(r"\w+(\.\w+)*")  # what `datasets` accepts as a split name
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


# ---------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------


def table_for(path: str | Path, name: str | None = None) -> Table | None:
    """The declared table of ``path``: ``name`` (a key of TABLES) or the one its place in the layout says.

    Returns:
        None for a parquet file outside the known layout (exported unchecked).

    Raises:
        DatakitError: for an unknown ``name``.
    """
    path = Path(path)
    if name is None:
        name = LAYOUT.get(f"{path.parent.name}/{path.name}")
        if name is None:
            return None
    if name not in TABLES:
        raise DatakitError(f"export: unknown table '{name}' (known: {', '.join(TABLES)})")
    module, attribute = TABLES[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def read_artifact(path: str | Path, table: Table | None) -> pl.DataFrame:
    """Read a parquet artifact, checked against ``table`` when there is one.

    Raises:
        DataError: naming the file when it is missing, not a parquet file, or breaks the table's schema.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "not found")
    if not path.is_file():
        raise DataError(path, "is not a file (export takes one parquet table)")
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(path, f"cannot be read as parquet: {exc}") from exc
    return df if table is None else check_frame(df, table, path)


def _hub_type(t: pa.DataType) -> pa.DataType:
    """``t`` with 32-bit offsets (string, list): the types the Hub's viewer and ``datasets`` features use."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list(t) or pa.types.is_list_view(t):
        return pa.list_(_hub_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _hub_type(f.type), f.nullable) for f in t])
    return t


def to_dataset(df: pl.DataFrame, split: str = "train"):
    """``df`` as a ``datasets.Dataset`` (the same rows and values; string and list columns as ``Value('string')``
    and ``List``, not their large variants)."""
    from datasets import Dataset, NamedSplit

    arrow = df.to_arrow()
    arrow = arrow.cast(pa.schema([pa.field(f.name, _hub_type(f.type), f.nullable) for f in arrow.schema]))
    return Dataset(arrow, split=NamedSplit(split))


# ---------------------------------------------------------------------------------------------------
# lineage: git and dvc.lock
# ---------------------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str | None:
    """stdout of a git command, or None when git is missing or ``cwd`` is not in a work tree."""
    try:
        proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def project_root(path: Path) -> Path | None:
    """The repository that holds ``path``: its git work tree, else the nearest folder with a dvc.lock."""
    folder = Path(os.path.abspath(path)).parent
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top:
        return Path(top)
    for parent in (folder, *folder.parents):
        if (parent / "dvc.lock").is_file() or (parent / ".dvc").is_dir():
            return parent
    return None


def git_revision(root: Path) -> dict | None:
    """``{commit, dirty}`` of the work tree at ``root`` (dirty: a tracked file differs from the commit, as
    ``git describe --dirty`` counts it; untracked files do not count); None outside git or before a commit."""
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def lock_files(root: Path) -> list[Path]:
    """Every dvc.lock of the repository (dvc.lock, recipes/isheep/dvc.lock, ...): tracked or new, not ignored."""
    listed = _git(root, "ls-files", "-co", "--exclude-standard", "--", "dvc.lock", "*/dvc.lock")
    if listed is None:
        return [root / "dvc.lock"] if (root / "dvc.lock").is_file() else []
    names = dict.fromkeys(line for line in listed.splitlines() if Path(line).name == "dvc.lock")
    return [root / name for name in names if (root / name).is_file()]


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(path, f"is not valid YAML: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _wdir(pipeline: dict, stage: str) -> str:
    """The stage's wdir in its dvc.yaml (lock paths are relative to it); foreach stages keep it under ``do``."""
    spec = (pipeline.get("stages") or {}).get(stage.split("@")[0]) or {}
    wdir = spec.get("do", spec).get("wdir", ".")
    return "." if "${" in str(wdir) else str(wdir)


def file_md5(path: Path) -> str:
    """The md5 DVC 3 records for a file (``hash: md5``: plain md5 of the bytes)."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(item: dict) -> dict:
    out = {"path": item["path"], "md5": item.get("md5")}
    if "nfiles" in item:
        out["nfiles"] = item["nfiles"]
    return out


def _nested(values: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def _locks(root: Path):
    """(lock file, its stage's wdir for each stage name, its stages) for every dvc.lock under ``root``."""
    for lock in lock_files(root):
        pipeline_file = lock.with_name("dvc.yaml")
        pipeline = _load_yaml(pipeline_file) if pipeline_file.is_file() else {}
        stages = _load_yaml(lock).get("stages") or {}
        yield lock, {name: lock.parent / _wdir(pipeline, name) for name in stages}, stages


def find_stage(artifact: Path, root: Path, md5: str) -> dict | None:
    """The locked stage whose out is (or holds) ``artifact`` (whose md5 is ``md5``), from every dvc.lock.

    Returns:
        ``{name, lock_file, wdir, cmd, out, deps, params, params_sections, params_match_lock}``: ``out`` is
        ``{path, md5, matches_lock}`` (``matches_lock`` None when the out is a folder that holds the file);
        ``params`` as locked, per params file; ``params_sections`` the current values of the top-level
        sections those keys belong to. None when no stage lists it.
    """
    target = os.path.abspath(artifact)
    for lock, wdirs, stages in _locks(root):
        for name, stage in stages.items():
            for out in stage.get("outs") or []:
                out_path = os.path.abspath(wdirs[name] / out["path"])
                if target != out_path and not target.startswith(out_path + os.sep):
                    continue
                return {
                    "name": name,
                    "lock_file": os.path.relpath(lock, root),
                    "wdir": os.path.relpath(wdirs[name], root),
                    "cmd": stage.get("cmd"),
                    "out": {
                        **_entry(out),
                        "matches_lock": md5 == out.get("md5") if target == out_path else None,
                    },
                    "deps": [_entry(d) for d in stage.get("deps") or []],
                    **_params_of(stage.get("params") or {}, wdirs[name]),
                }
    return None


def locked_md5(root: Path, path: str) -> str | None:
    """The md5 some dvc.lock records for ``path`` (a dep or an out of any stage), e.g. a model folder's."""
    target = os.path.abspath(root / path)
    for _, wdirs, stages in _locks(root):
        for name, stage in stages.items():
            for entry in [*(stage.get("deps") or []), *(stage.get("outs") or [])]:
                if os.path.abspath(wdirs[name] / entry["path"]) == target:
                    return entry.get("md5")
    return None


def _params_of(locked: dict, wdir: Path) -> dict:
    """The stage's locked params, the current values of their top-level sections, and whether they agree
    (None when a params file is gone or not YAML/JSON, e.g. TOML: not compared)."""
    sections: dict[str, dict] = {}
    agree: bool | None = True
    for file, keys in locked.items():
        path = wdir / file
        if not (path.is_file() and path.suffix in (".yaml", ".yml", ".json")):
            agree = None
            continue
        current = _load_yaml(path)
        sections[file] = {key.split(".")[0]: current.get(key.split(".")[0]) for key in keys}
        if agree is not None:
            agree = all(_nested(current, key) == value for key, value in keys.items())
    return {"params": locked, "params_sections": sections, "params_match_lock": agree}


def _column_value(df: pl.DataFrame, name: str) -> Any:
    """The one value of column ``name`` (a list when it holds several; None when absent or all null)."""
    if name not in df.columns:
        return None
    values = df[name].drop_nulls().unique(maintain_order=True).to_list()
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _step_item(stage: dict, root: Path) -> dict:
    """The params.yaml item (``iterations.<key>`` or ``rounds.<key>``) of a foreach stage ``name@key``."""
    if "@" not in stage["name"]:
        return {}
    key = stage["name"].split("@", 1)[1]
    for file in stage["params"] or {"params.yaml": {}}:
        path = root / stage["wdir"] / file
        params = _load_yaml(path) if path.is_file() else {}
        for block in ("iterations", "rounds"):
            item = (params.get(block) or {}).get(key)
            if isinstance(item, dict):
                return item
    return {}


def lineage(df: pl.DataFrame, artifact: str | Path) -> dict:
    """Where ``df`` (read from ``artifact``) came from: git revision, producing stage, iteration and model
    (the table's own ``iteration``/``model`` columns first, else the stage's ``iterations``/``rounds`` item
    in params.yaml)."""
    artifact = Path(artifact)
    md5 = file_md5(artifact)
    root = project_root(artifact)
    stage = find_stage(artifact, root, md5) if root else None
    item = _step_item(stage, root) if stage else {}
    iteration = _column_value(df, "iteration")
    model = _column_value(df, "model")
    model = model if model is not None else item.get("model_in")
    return {
        "artifact": os.path.relpath(os.path.abspath(artifact), root) if root else str(artifact),
        "md5": md5,
        "iteration": iteration if iteration is not None else item.get("n"),
        "model": model,
        "model_md5": locked_md5(root, model) if root and isinstance(model, str) else None,
        "git": git_revision(root) if root else None,
        "stage": stage,
    }


# ---------------------------------------------------------------------------------------------------
# the card
# ---------------------------------------------------------------------------------------------------


def _size_category(n: int) -> str:
    for limit, name in _SIZES:
        if n < limit:
            return name
    return "n>1M"


def _yaml_block(value: Any) -> str:
    return "```yaml\n" + yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip() + "\n```"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _git_cell(git: dict | None) -> str:
    if git is None:
        return "not in a git repository (or no commit yet)"
    return f"`{git['commit']}`" + (" (work tree dirty: tracked files differ from it)" if git["dirty"] else "")


def _model_cell(info: dict) -> str:
    if info["model"] is None:
        return "-"
    md5 = f" (md5 `{info['model_md5']}`)" if info["model_md5"] else ""
    return f"`{info['model']}`{md5}"


def build_card(ds, df: pl.DataFrame, table: Table | None, info: dict, split: str):
    """The dataset card: Hub metadata (configs, dataset_info, size) plus ``datakit`` (the lineage, row count
    and schema) in its YAML, and the same lineage in words in its body."""
    from datasets import DatasetInfo
    from datasets.info import DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from huggingface_hub import DatasetCard, DatasetCardData

    name = table.name if table else Path(info["artifact"]).stem
    columns = {c: str(t) for c, t in df.schema.items()}
    meta = {
        **info,
        "table": table.name if table else None,
        "split": split,
        "num_rows": df.height,
        "columns": columns,
    }
    data = DatasetCardData(
        pretty_name=f"{name} ({info['artifact']})",
        size_categories=[_size_category(df.height)],
        tags=["datakit", "dvc", name.replace(" ", "_")],
        configs=[{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*"}]}],
        datakit=meta,
    )
    hub_info = DatasetInfo(features=ds.features, splits=SplitDict(), config_name="default")
    hub_info.splits.add(SplitInfo(name=split, num_examples=len(ds), num_bytes=ds.data.nbytes))
    DatasetInfosDict({"default": hub_info}).to_dataset_card_data(data)

    git, stage = info["git"], info["stage"]
    lines = [
        f"# {name}",
        "",
        f"`{info['artifact']}` (md5 `{info['md5']}`) exported by `datakit export`: {df.height} rows, "
        f"split `{split}`. The machine-readable lineage is the `datakit` key of this card's metadata.",
        "",
        "## Lineage",
        "",
        "| | |",
        "|---|---|",
        f"| git commit | {_git_cell(git)} |",
        f"| iteration | {info['iteration'] if info['iteration'] is not None else '-'} |",
        f"| model | {_model_cell(info)} |",
    ]
    if stage is None:
        lines += ["", "No DVC stage lists this file as an out: **no recorded lineage** beyond the commit."]
    else:
        out = stage["out"]
        fresh = {
            True: "yes",
            False: "**no: the file changed since the lock**",
            None: "n/a (inside a folder out)",
        }
        agree = {True: "yes", False: "**no: params changed since the lock**", None: "not compared"}
        lines += [
            f"| stage | `{stage['name']}` in `{stage['lock_file']}` |",
            f"| cmd | `{stage['cmd']}` |",
            f"| out | `{out['path']}` md5 `{out['md5']}` |",
            f"| file matches the lock | {fresh[out['matches_lock']]} |",
            f"| params match the lock | {agree[stage['params_match_lock']]} |",
            "",
            "### Deps",
            "",
            "| path | md5 |",
            "|---|---|",
            *(f"| `{d['path']}` | `{d['md5']}` |" for d in stage["deps"]),
            "",
            "### Params (as locked)",
            "",
            _yaml_block(stage["params"]) if stage["params"] else "none",
            "",
            "### Params sections the stage uses (params.yaml now)",
            "",
            _yaml_block(stage["params_sections"]) if stage["params_sections"] else "none",
        ]
    doc = table.doc if table else {}
    lines += [
        "",
        "## Schema",
        "",
        f"Table: `{table.name}` (checked)" if table else "Table: not a declared datakit table (not checked)",
        "",
        "| column | dtype | meaning |",
        "|---|---|---|",
        *(f"| `{c}` | `{t}` | {_cell(doc.get(c, ''))} |" for c, t in columns.items()),
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset, load_from_disk",
        "",
        'ds = load_from_disk("<this folder>")  # the Dataset itself',
        f'ds = load_dataset("parquet", data_files={{"{split}": "<this folder>/data/{split}-*.parquet"}})',
        'ds = load_dataset("<user/name>")  # once pushed (`datakit export ... --push user/name`)',
        "```",
        "",
        '(`load_dataset("<this folder>")` is refused by `datasets`: the folder is also a `save_to_disk` one.)',
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------
# export and push
# ---------------------------------------------------------------------------------------------------


def hub_token(repo_id: str) -> str:
    """The Hugging Face token a push needs (``HF_TOKEN`` or the login's), checked before anything is written.

    Raises:
        DatakitError: when there is none, or the hub is switched off (``HF_HUB_OFFLINE``).
    """
    from huggingface_hub import constants, get_token

    token = get_token()
    if not token:
        raise DatakitError(
            f"export --push {repo_id}: no Hugging Face token (set HF_TOKEN or run `hf auth login`); nothing written"
        )
    if constants.HF_HUB_OFFLINE:
        raise DatakitError(
            f"export --push {repo_id}: HF_HUB_OFFLINE is on (datakit's default); run with HF_HUB_OFFLINE=0; "
            "nothing written"
        )
    return token


def _is_empty(folder: Path) -> bool:
    return not any(folder.iterdir())


def write_folder(ds, card, dest: Path, split: str, progress: bool = True) -> None:
    """Write the dataset (save_to_disk and the Hub's parquet layout) and its card to ``dest``, atomically:
    built in a temp sibling folder, then renamed (an existing ``dest`` is moved aside first, then dropped)."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        ds.save_to_disk(str(tmp))
        (tmp / "data").mkdir()
        ds.to_parquet(str(tmp / "data" / f"{split}-00000-of-00001.parquet"))
        card.save(tmp / "README.md")
        if dest.exists():
            # a rename cannot replace a non-empty folder: move the old one aside, then drop it
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if shown:
            datasets.enable_progress_bars()


def export(
    src: str | Path,
    dest: str | Path,
    *,
    split: str = "train",
    table: str | None = None,
    overwrite: bool = False,
    push: str | None = None,
    private: bool = False,
    progress: bool = True,
) -> dict:
    """Export the artifact ``src`` to the folder ``dest`` (and to the Hub dataset ``push``).

    Args:
        src: a parquet table a stage wrote; table: its declared table (default: from its place in the layout);
        split: the split name; overwrite: replace a non-empty ``dest``; push: a Hub repo id ("user/name");
        private: create the Hub repo private; progress: show datasets' progress bars.

    Returns:
        The card's ``datakit`` metadata (lineage, rows, schema) plus ``folder`` and, after a push, ``url``.

    Raises:
        DataError: a missing, unreadable or malformed ``src``. DatakitError: a bad split name, a non-empty
            ``dest`` without ``overwrite``, ``push`` without a token.
    """
    src, dest = Path(src), Path(dest)
    if not _SPLIT.fullmatch(split):
        raise DatakitError(f"export: split '{split}' is not a valid split name (letters, digits, _ and .)")
    token = hub_token(push) if push else None
    if dest.exists() and not (dest.is_dir() and _is_empty(dest)) and not overwrite:
        raise DatakitError(f"export: {dest} exists and is not empty (pass --overwrite to replace it)")
    declared = table_for(src, table)
    df = read_artifact(src, declared)
    ds = to_dataset(df, split)
    card = build_card(ds, df, declared, lineage(df, src), split)

    write_folder(ds, card, dest, split, progress)
    result = {**card.data.to_dict()["datakit"], "folder": str(dest)}
    if push:
        result["url"] = push_to_hub(dest, push, token, split=split, private=private)
    return result


def push_to_hub(
    folder: str | Path, repo_id: str, token: str, *, split: str = "train", private: bool = False
) -> str:
    """Push an exported folder to the Hub dataset ``repo_id``: the card first, then the rows.

    ``Dataset.push_to_hub`` reads the README already in the repo and only updates its ``dataset_info`` and
    ``configs``, so the lineage card survives; pushed the other way round, the card would drop them.

    Returns:
        The dataset's URL.

    Raises:
        DatakitError: when the Hub refuses (bad token, no write access, invalid card); the local folder stays.
    """
    from datasets import load_from_disk
    from huggingface_hub import DatasetCard, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    try:
        repo = HfApi(token=token).create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        DatasetCard.load(folder / "README.md").push_to_hub(
            repo_id, token=token, repo_type="dataset", commit_message="datakit export: lineage card"
        )
        load_from_disk(str(folder)).push_to_hub(
            repo_id, split=split, token=token, private=private, commit_message="datakit export: rows"
        )
    except HfHubHTTPError as exc:
        raise DatakitError(
            f"export --push {repo_id}: the Hub refused: {exc} (the folder {folder} is written)"
        ) from exc
    return str(repo)
