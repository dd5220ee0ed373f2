"""The artifact catalogue (datakit/artifacts.py) against dvc.yaml and the recipes: every stage instance's outs,
metrics and plots there are exactly the paths the catalogue names, for this repository's params.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from datakit import artifacts
from datakit.config import load_params

PIPELINES = {"dvc.yaml": "", "recipes/audit/dvc.yaml": "recipes/audit/dvc.yaml:", "recipes/isheep/dvc.yaml": "recipes/isheep/dvc.yaml:"}  # fmt: skip


def _value(data: dict, dotted: str):
    for part in dotted.split("."):
        data = data[part]
    return data


def dvc_outs(root: Path) -> dict[str, set[str]]:
    """Each stage instance of each pipeline (foreach expanded) with the paths it declares, interpolated from
    params.yaml as DVC does."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    out: dict[str, set[str]] = {}
    for pipeline, prefix in PIPELINES.items():
        for name, spec in yaml.safe_load((root / pipeline).read_text())["stages"].items():
            if "foreach" in spec:
                items = _value(params, spec["foreach"].strip("${}"))
                body = spec["do"]
            else:
                items, body = {None: {}}, spec
            for key, item in items.items():
                declared = set()
                for kind in ("outs", "metrics", "plots"):
                    for entry in body.get(kind, []):
                        text = entry if isinstance(entry, str) else next(iter(entry))

                        def fill(m: re.Match, item=item) -> str:
                            ref = m.group(1)
                            return str(item[ref[5:]] if ref.startswith("item.") else _value(params, ref))

                        declared.add(Path(re.sub(r"\$\{([^}]+)\}", fill, text)).as_posix())
                stage = name if key is None else f"{name}@{key}"
                out[prefix + stage] = declared
    return out


def test_every_stage_writes_what_the_catalogue_names():
    params = load_params(ROOT / "params.yaml")
    assert params.iterations and params.rounds  # both lineages are checked
    catalogue = artifacts.declared(params)
    in_dvc = {stage.split(":")[-1]: paths for stage, paths in dvc_outs(ROOT).items()}
    assert len(in_dvc) == len(dvc_outs(ROOT))  # no stage instance named twice across the pipelines
    assert set(in_dvc) == set(catalogue)
    for stage, paths in catalogue.items():
        assert in_dvc[stage] == paths, stage


def test_what_each_stage_reads_is_what_dvc_yaml_lists():
    """Every dependency on another stage's output, in any pipeline, is in the catalogue's READS, and back."""
    by_paths_key = {
        (key, file): stage for stage, (key, files) in artifacts.PROJECT_FILES.items() for file in files
    }
    found: dict[str, set[tuple[str, str]]] = {}
    for pipeline in PIPELINES:
        for name, spec in yaml.safe_load((ROOT / pipeline).read_text())["stages"].items():
            for dep in spec.get("do", spec)["deps"]:
                dep = dep.split("#")[0].strip()
                if m := re.fullmatch(r"\$\{item\.dir\}/(\w+)/(.+)", dep):
                    found.setdefault(name, set()).add((m.group(1), m.group(2)))
                elif (m := re.fullmatch(r"\$\{paths\.(\w+)\}/(.+)", dep)) and (
                    m.group(1),
                    m.group(2),
                ) in by_paths_key:
                    found.setdefault(name, set()).add((by_paths_key[m.group(1), m.group(2)], m.group(2)))
    assert found == {stage: set(reads) for stage, reads in artifacts.READS.items()}


def test_exports_table_layout_names_only_catalogued_files():
    from datakit.export import LAYOUT

    folders: dict[str, set[str]] = {}
    for key, files in artifacts.PROJECT_FILES.values():
        folders.setdefault(key, set()).update(files)
    for key in LAYOUT:
        folder, file = key.split("/", 1)
        assert file in artifacts.STEP_FILES.get(folder, ()) or file in folders.get(folder, ()), key


def test_data_readme_is_the_catalogue():
    assert (ROOT / "data/README.md").read_text() == artifacts.markdown(), (
        "python -m datakit.artifacts > data/README.md"
    )


def test_the_catalogue_refuses_a_file_no_stage_writes():
    params = load_params(ROOT / "params.yaml")
    it = params.iteration("iter_1")
    assert artifacts.generations(it) == Path("data/iter_1/generate/generations.parquet")
    assert artifacts.evaluation(params, None) == (
        params.paths.base_model,
        0,
        Path(params.paths.evaluate_base),
    )
    assert artifacts.evaluation(params, "iter_1", "ifeval")[2] == Path("data/iter_1/ifeval")
    with pytest.raises(KeyError, match="writes no 'generation.parquet'"):
        artifacts.step_file(it, "generate", "generation.parquet")
    with pytest.raises(KeyError, match="no stage 'nope'"):
        artifacts.step_dir(it, "nope")


def test_no_stage_module_imports_another_or_depends_on_one():
    for path in sorted((ROOT / "stages").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"^\s*(from stages\b|import stages\b)", text, re.M), path.name
    for pipeline in PIPELINES:
        for name, spec in yaml.safe_load((ROOT / pipeline).read_text())["stages"].items():
            own = f"stages/{name.removesuffix('_base')}.py"
            deps = spec.get("do", spec)["deps"]
            assert own in deps and not [d for d in deps if d.startswith("stages/") and d != own], (
                pipeline,
                name,
            )
