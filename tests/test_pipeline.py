"""The stages as DVC runs them: a real `dvc repro` in a temp git repo on a tiny config, and the CLI."""

import json
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import SHEEP_ANSWERS, SHEEP_SEEDS, write_params
from dvcrepo import BIN, call, init_repo, ran, sh
from typer.testing import CliRunner

from datakit.cli import app
from datakit.retrieve import SIMILAR_CASES
from datakit.schemas import BAD_CASES, EXAMPLES, GENERATIONS, JUDGMENTS, read_table


def test_dvc_repro_runs_every_stage_then_nothing(project):
    init_repo(project)
    out = sh(str(BIN / "dvc"), "repro", cwd=project)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out

    train = read_table(project / "data/synth/math_train.parquet", EXAMPLES)
    test = read_table(project / "data/synth/math_test.parquet", EXAMPLES)
    assert (train.height, test.height) == (12, 6)
    assert train.join(test, on="instruction", how="inner").height == 0
    gens = read_table(project / "data/iter_1/generate/generations.parquet", GENERATIONS)
    judg = read_table(project / "data/iter_1/judge/judgments.parquet", JUDGMENTS)
    bad = read_table(project / "data/iter_1/select/bad_cases.parquet", BAD_CASES)
    assert gens["id"].to_list() == train["id"].to_list()
    assert judg["id"].to_list() == train["id"].to_list()
    # A random model gets every problem wrong: every answer is a bad case.
    assert judg["score"].to_list() == [1] * 12 and bad.height == 12
    metrics = json.loads((project / "data/iter_1/select/metrics.json").read_text())
    assert metrics["bad_case_rate"] == 1.0 and metrics["threshold"] == "<4"
    assert (project / "data/base_model/model.safetensors").exists()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    similar = read_table(project / "data/iter_1/retrieve/similar_cases.parquet", SIMILAR_CASES)
    pool = read_table(project / "data/synth/pool.parquet", EXAMPLES)
    assert similar.height > 0 and set(similar["id"]) <= set(pool["id"])
    assert set(similar["bad_case_ids"].explode()) <= set(bad["id"])
    shown = sh(str(BIN / "dvc"), "metrics", "show", cwd=project)
    assert "data/iter_1/retrieve/metrics.json" in shown and "tag_overlap" in shown
    assert "data/iter_2/evaluate/metrics.json" in shown and "domain_accuracy" in shown

    # Two iterations: M_2 trained by iter_1 is the model iter_2 answers with; each evaluated, base too.
    pairs = pl.read_parquet(project / "data/iter_1/pairs/preference_pairs.parquet")
    assert pairs.height > 0 and set(pairs["origin"]) <= {"bad_case", "similar_case"}
    assert (project / "data/iter_1/train/model/model.safetensors").exists()
    assert (project / "data/iter_1/train/adapter/adapter_config.json").exists()
    assert read_table(project / "data/iter_2/generate/generations.parquet", GENERATIONS)["model"][0] == (
        "data/iter_1/train/model"
    )
    # evaluate@iter_1 and generate@iter_2 ask M_2 the same train prompts: whichever runs second reads them.
    reused = json.loads((project / "data/iter_2/generate/summary.json").read_text())["rows_from_cache"]
    reused += json.loads((project / "data/iter_1/evaluate/metrics.json").read_text())[
        "domain_train_from_cache"
    ]
    assert reused == 12
    for folder in ("data/evaluate_base", "data/iter_1/evaluate", "data/iter_2/evaluate"):
        metrics = json.loads((project / folder / "metrics.json").read_text())
        assert {"domain_accuracy", "general_accuracy", "general_nll", "train_bad_cases"} <= set(metrics)
    log = pl.read_csv(project / "data/iter_1/train/log.csv")
    assert {"step", "loss", "logps_chosen", "logps_rejected"} <= set(log.columns) and log.height >= 1
    # The PoFT side stages run in every iteration, and APT's objective reads no reference score: the SFT set
    # passes through unscored (score.always: false).
    scored = json.loads((project / "data/iter_2/score/metrics.json").read_text())
    assert scored["references"] == [] and scored["scored"] == 0 and "dpo_sft" in scored["skipped"]
    assert scored["rows"] == pl.read_parquet(project / "data/iter_2/pairs/preference_pairs.parquet").height
    shown = sh(str(BIN / "dvc"), "plots", "show", "--json", cwd=project)
    assert "data/iter_1/train/log.csv" in shown and "data/iter_2/train/logps.png" in shown
    # The report on what the stages really wrote: every key it reads is there (no "Missing metrics"), and the
    # rows carry the evaluations' numbers with their intervals.
    report = call(str(BIN / "datakit"), "report", "--no-baselines", cwd=project)
    assert report.returncode == 0 and "warning" not in report.stderr, report.stderr
    md = (project / "data/report/report.md").read_text()
    assert "Missing metrics" not in md and "Judge audit" not in md
    # The judge audit is its own recipe: it audits each iteration's self judge, and the report shows it.
    shutil.copytree(Path(__file__).parents[1] / "recipes", project / "recipes")
    audit = sh(str(BIN / "dvc"), "repro", "recipes/audit/dvc.yaml", cwd=project)
    assert ran(audit) == {f"recipes/audit/dvc.yaml:judge_audit@{it}" for it in ("iter_1", "iter_2")}
    call(str(BIN / "datakit"), "report", "--no-baselines", cwd=project)
    md = (project / "data/report/report.md").read_text()
    assert "| 2 (iter_2) | self:data/iter_1/train/model | 12 (" in md and "Missing metrics" not in md
    for label, folder in (("M_1 (base)", "evaluate_base"), ("M_3 (after iter_2)", "iter_2/evaluate")):
        metrics = json.loads((project / f"data/{folder}/metrics.json").read_text())
        row = next(line for line in md.splitlines() if line.startswith(f"| {label}"))
        assert f"{100 * metrics['general_accuracy']:.1f} [" in row, row  # the value and its interval

    # Nothing changed: nothing runs.
    started = time.perf_counter()
    again = sh(str(BIN / "dvc"), "repro", cwd=project)
    assert "Running stage" not in again and time.perf_counter() - started < 30

    # An evaluation setting reruns the evaluations only: no generation for training, no training.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["nll_batch_size"] = 3
    write_params(project, params)
    third = sh(str(BIN / "dvc"), "repro", cwd=project)
    assert ran(third) == {"evaluate_base", "evaluate@iter_1", "evaluate@iter_2"}  # weakness: same results

    # A third iteration appended with `datakit iterations 3` runs its own stages and nothing else.
    sh(str(BIN / "datakit"), "iterations", "3", cwd=project)
    fourth = sh(str(BIN / "dvc"), "repro", cwd=project)
    assert ran(fourth) == {f"{s}@iter_3" for s in PER_ITERATION}
    assert read_table(project / "data/iter_3/generate/generations.parquet", GENERATIONS)["model"][0] == (
        "data/iter_2/train/model"
    )

    # The ablation without retrieval (retrieve.strategy: none): no similar cases, pairs from bad cases alone.
    params["retrieve"]["strategy"] = "none"
    write_params(project, params)
    fifth = sh(str(BIN / "dvc"), "repro", "pairs@iter_1", cwd=project)
    assert {"retrieve@iter_1", "generate_similar@iter_1", "pairs@iter_1"} <= ran(fifth)
    assert read_table(project / "data/iter_1/retrieve/similar_cases.parquet", SIMILAR_CASES).height == 0
    alone = pl.read_parquet(project / "data/iter_1/pairs/preference_pairs.parquet")
    assert set(alone["origin"]) == {"bad_case"} and alone.height == (pairs["origin"] == "bad_case").sum()

    # An objective that reads r_ref makes the score stage stale (it scores only for those), per iteration too.
    params["iterations"]["iter_2"]["train"] = {"keep_top": 0.5}
    write_params(project, params)
    status = sh(str(BIN / "dvc"), "status", "score@iter_1", "score@iter_2", cwd=project)
    assert "score@iter_2" in status and "iterations.iter_2" in status and "score@iter_1:" not in status


PER_ITERATION = (
    "generate",
    "judge",
    "select",
    "retrieve",
    "generate_similar",
    "pairs",
    "sft_set",
    "score",
    "train",
    "evaluate",
    "ifeval",
    "weakness",
)
COMMANDS = [
    "synth", "base_model", "tag", "tag_domain", "index", *PER_ITERATION, "iterations", "report", "check",
    "ifeval", "synthesize", "assess", "filter", "rounds", "judge_audit",
]  # fmt: skip
STAGES = (
    "synth",
    "base_model",
    "tag",
    "tag_domain",
    "index",
    "evaluate_base",
    "ifeval_base",
    "weakness_base",
    *(f"{s}@{it}" for it in ("iter_1", "iter_2") for s in PER_ITERATION),
)


@pytest.mark.parametrize("command", sorted(c.name for c in app.registered_commands))
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert app.registered_commands[[c.name for c in app.registered_commands].index(command)].callback.__doc__
    if command in COMMANDS:  # the stages and what edits or checks params.yaml read it from --params
        assert "--params" in result.output


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "recipes/isheep/dvc.yaml", "recipes/audit/dvc.yaml"])
def test_cli_commands_match_dvc_stage_names(pipeline):
    stages = yaml.safe_load((Path(__file__).parents[1] / pipeline).read_text())["stages"]
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"]
        # evaluate_base is `datakit evaluate --base`: the same command on the base model.
        assert cmd.split()[:2] == ["datakit", name.removesuffix("_base")]
        assert name.removesuffix("_base") in COMMANDS


def test_bad_params_is_one_line_and_exit_1(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generate"]["max_new_token"] = 5
    write_params(project, params)
    result = CliRunner().invoke(app, ["generate", "--iteration", "iter_1"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: params.yaml: generate.max_new_token: unknown key (known: {', '.join(['backend', 'batch_size', 'max_new_tokens', 'temperature', 'top_p', 'seed', 'system_prompt', 'shard_size', 'device', 'dtype', 'max_failure_rate', 'openai', 'vllm'])})"
    ]


def test_unknown_iteration_and_missing_input_are_clear(project):
    result = CliRunner().invoke(app, ["generate", "--iteration", "iter_9"])
    assert (
        result.exit_code == 1
        and "no iteration 'iter_9' (known: iter_1, iter_2, round_1, round_2, round_3)" in result.output
    )
    result = CliRunner().invoke(app, ["judge", "--iteration", "iter_1"])
    assert result.exit_code == 1 and "math_train.parquet: not found" in result.output


def test_judge_and_select_refuse_generations_that_miss_rows(project):
    runner = CliRunner()
    assert runner.invoke(app, ["synth"]).exit_code == 0
    train = pl.read_parquet(project / "data/synth/math_train.parquet")
    gens = pl.DataFrame(
        {
            "id": train["id"][:5],
            "prompt": train["instruction"][:5],
            "output": ["#### 1"] * 5,
            "model": ["m"] * 5,
            "iteration": [1] * 5,
            "gen_params_hash": ["h"] * 5,
            "n_tokens": [3] * 5,
            "finish_reason": ["stop"] * 5,
            "error": pl.Series([None] * 5, dtype=pl.Utf8),
        },
        schema_overrides={"iteration": pl.Int64, "n_tokens": pl.Int64},
    )
    (project / "data/iter_1/generate").mkdir(parents=True)
    gens.write_parquet(project / "data/iter_1/generate/generations.parquet")
    result = runner.invoke(app, ["judge", "--iteration", "iter_1"])
    assert result.exit_code == 1
    assert "generations.parquet: has no generation for 7 rows" in result.output
    result = runner.invoke(app, ["select", "--iteration", "iter_1"])
    assert result.exit_code == 1
    assert "generations.parquet: has no generation for 7 rows" in result.output


ISHEEP_PER_ROUND = ("synthesize", "generate", "assess", "filter", "score", "train", "evaluate", "ifeval")


def test_isheep_recipe_two_rounds_under_dvc_repro(project, sheep_model):
    shutil.copytree(Path(__file__).parents[1] / "recipes", project / "recipes")
    params = yaml.safe_load((project / "params.yaml").read_text())
    seeds = [{"instruction": i, "input": x, "output": "ok"} for i, x in SHEEP_SEEDS]
    (project / "seeds.jsonl").write_text("".join(json.dumps(s) + "\n" for s in seeds))
    params["base_model"]["source"] = str(sheep_model)
    params["isheep"]["seeds"] = "seeds.jsonl"
    params["synthesize"].update(prompts=2, examples=2, new_per_prompt=3)
    params["synthesize"]["generation"].update(max_new_tokens=48, batch_size=2, shard_size=2)
    params["assess"]["generation"].update(max_new_tokens=4)
    params["ifeval"]["max_new_tokens"] = 4
    params["isheep"]["train"]["args"]["learning_rate"] = 1e-5  # keep the tiny model's answers through round 2
    write_params(project, params)
    sh(str(BIN / "datakit"), "rounds", "2", cwd=project)
    init_repo(project)
    out = sh(str(BIN / "dvc"), "repro", "recipes/isheep/dvc.yaml", cwd=project)
    recipe = {f"recipes/isheep/dvc.yaml:{s}@round_{t}" for s in ISHEEP_PER_ROUND for t in (1, 2)}
    assert ran(out) == {"synth", "base_model"} | recipe  # and nothing of APT

    for t in (1, 2):
        folder = project / f"data/isheep/round_{t}"
        synth = json.loads((folder / "synthesize/metrics.json").read_text())
        kept = pl.read_parquet(folder / "synthesize/instructions.parquet")
        # The model lists (some of) the learnt tasks; both prompts list them, so repeats go as duplicates.
        dropped = sum(synth[f"dropped_{f}"] for f in ("length", "banned", "format", "duplicate", "rouge"))
        assert synth["generated"] == synth["kept"] + dropped and synth["kept"] == kept.height >= 1
        assert set(kept["instruction"]) <= set(SHEEP_ANSWERS) and kept["instruction"].is_unique().all()
        assessed = pl.read_parquet(folder / "assess/assessments.parquet")
        assert assessed["score"].to_list() == [9] * kept.height
        filtered = json.loads((folder / "filter/metrics.json").read_text())
        assert filtered["kept"] == kept.height and filtered["kept_mean_score"] == 9.0
        trained = json.loads((folder / "train/metrics.json").read_text())
        assert trained["rows"] == kept.height and trained["data"] == "isheep"
        assert trained["model_in"] == "data/base_model"  # one_base: every round trains the base model
        assert (folder / "train/model/model.safetensors").exists()
        ifeval = json.loads((folder / "ifeval/metrics.json").read_text())
        assert ifeval["prompts"] >= 100 and 0 <= ifeval["prompt_strict"] <= ifeval["prompt_loose"] <= 1
        assert "general_accuracy" in json.loads((folder / "evaluate/metrics.json").read_text())
    # Round 2 writes and answers with M_2, and (one_base) trains the base model again.
    gens = read_table(project / "data/isheep/round_2/generate/generations.parquet", GENERATIONS)
    assert set(gens["model"]) == {"data/isheep/round_1/train/model"}
    again = sh(str(BIN / "dvc"), "repro", "recipes/isheep/dvc.yaml", cwd=project)
    assert "Running stage" not in again


def test_a_second_dvc_repro_in_the_workspace_is_refused_and_nothing_is_corrupted(project):
    """While one `dvc repro` runs, another in the same workspace stops at DVC's lock with a clear message
    (the path it waits for and the process holding it);
    the first finishes, and its outputs are complete: a third `dvc repro` finds nothing to do."""
    import subprocess

    from dvcrepo import ENV

    params = yaml.safe_load((project / "params.yaml").read_text())
    # A generate long enough (seconds) to be still running when the second starts.
    params["synth"]["math_train"] = 120
    params["generate"]["max_new_tokens"] = 48
    write_params(project, params)
    init_repo(project)
    first = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "generate@iter_1"],
        cwd=project,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in first.stdout:  # the stages upstream are done; generate runs under DVC's lock on its files
        seen.append(line)
        if "Running stage 'generate@iter_1'" in line:
            break
    second = call(str(BIN / "dvc"), "repro", "generate@iter_1", cwd=project)
    rest = first.communicate(timeout=600)[0]
    assert first.returncode == 0, "".join(seen) + rest
    # DVC's read/write lock on the stages' files: the second run names the busy path and the running process.
    said = second.stderr + second.stdout
    assert second.returncode != 0 and "is busy, it is being blocked by" in said and "rwlock" in said, said
    assert not ran(said)
    gens = read_table(project / "data/iter_1/generate/generations.parquet", GENERATIONS)
    assert gens.height == 120
    again = sh(str(BIN / "dvc"), "repro", "generate@iter_1", cwd=project)
    assert not ran(again) and "up to date" in again.lower()
