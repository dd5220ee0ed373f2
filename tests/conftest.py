"""Shared fixtures: the tiny random model, and a project folder with a tiny params.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from tiny import build_tiny_model, train_to_answer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer random llama with a small BPE tokenizer and a ChatML template (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


JUDGE_RUBRIC = "Score 1-5."  # short, so the tiny model's judge prompts stay short


@pytest.fixture(scope="session")
def judge_model(tmp_path_factory) -> Path:
    """A tiny model trained to answer judge prompts (rubric JUDGE_RUBRIC) with "[RESULT] 4"."""
    from datakit.judges import judge_prompt
    from datakit.synth import make_math

    problems, _ = make_math(6, 0, seed=99)
    answers = ["It is 5. #### 5", "no idea", "", "3 x 4 = 12. The answer is 12.", "#### 1000", "ULT$$ of\x04"]
    prompts = [
        judge_prompt(r["instruction"], answers[i], r["output"], JUDGE_RUBRIC)
        for i, r in enumerate(problems.iter_rows(named=True))
    ]
    path = build_tiny_model(tmp_path_factory.mktemp("models") / "judge", seed=1)
    return train_to_answer(path, prompts, "[RESULT] 4")


def tiny_params(root: Path, model: Path, **overrides) -> dict:
    """A params dict for a tiny, fast pipeline rooted at ``root`` (relative paths, as in the real one)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"].update(math_train=12, math_val=4, math_test=6, pool=60, general_val=6, general_eval=12)
    params["base_model"]["source"] = str(model)
    # The tiny model's 8-wide heads are below what vLLM's CPU attention takes: unit tests generate with
    # transformers (test_vllm.py and the e2e test run the vllm backend).
    params["generate"].update(backend="transformers", batch_size=4, max_new_tokens=8, shard_size=5)
    params["judge"]["generation"].update(batch_size=4, max_new_tokens=8, shard_size=5)
    params["judge_audit"]["generation"] = {"backend": "transformers"}
    params["train"]["args"].update(per_device_train_batch_size=4, learning_rate=1e-3, num_train_epochs=1)
    params["train"]["lora"].update(r=4, lora_alpha=8)
    for name in ("dpo", "orpo", "sft"):
        params["train"][name]["max_length"] = 256
    params["score"].update(max_length=256, engine="transformers")  # the tiny model's heads, as above
    params["filter"]["max_length"] = 256
    params["ifeval"]["max_new_tokens"] = 8
    for section, values in overrides.items():
        params[section].update(values)
    return params


def write_params(root: Path, params: dict) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path, tiny_model, monkeypatch) -> Path:
    """A temp project folder (cwd) with dvc.yaml, stage code and a tiny params.yaml."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("stages", "datakit"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    write_params(tmp_path, tiny_params(tmp_path, tiny_model))
    monkeypatch.chdir(tmp_path)
    return tmp_path


TAGGER_ANSWER = '["word  problems", {"tag": "Math"}]'


@pytest.fixture(scope="session")
def tagger_model(tmp_path_factory) -> Path:
    """A tiny model trained to answer InsTag prompts with TAGGER_ANSWER (a JSON list of two tags)."""
    from datakit.tags import INSTAG_PROMPT

    queries = ["Tom has 3 boxes.", "Reverse 'hello'.", "Convert 5 km to m.", "What is 2 + 2?"]
    path = build_tiny_model(tmp_path_factory.mktemp("models") / "tagger", seed=2)
    return train_to_answer(path, [INSTAG_PROMPT.format(query=q) for q in queries], TAGGER_ANSWER)


SHEEP_LIST = "1. Name a color.\n2. Add two numbers.\n3. Spell a word."
SHEEP_ANSWERS = {"Name a color.": "Blue.", "Add two numbers.": "2 + 3 = 5.", "Spell a word.": "c-a-t."}
SHEEP_SEEDS = [("Sort the numbers.", "42, 7, 19"), ("Name a planet.", "")]


@pytest.fixture(scope="session")
def sheep_model(tmp_path_factory) -> Path:
    """A tiny model that has learnt the prompts of a 2-seed I-SHEEP round: both instruction-writing prompts
    (the two seeds in either order) get SHEEP_LIST, each listed task its SHEEP_ANSWERS answer, and the
    self-assessment of each (prefilled "Score:") " 9. Good."."""
    from tiny import build_tiny_model, train_to_answers

    from datakit.isheep import ASSESS_PREFILL, assess_prompt, synth_prompt

    def user(text: str) -> list[dict]:
        return [{"role": "user", "content": text}]

    cases = [(user(synth_prompt(order, 3)), SHEEP_LIST) for order in (SHEEP_SEEDS, SHEEP_SEEDS[::-1])]
    cases += [(user(task), answer) for task, answer in SHEEP_ANSWERS.items()]
    cases += [
        (
            user(assess_prompt("combined", task, "", answer))
            + [{"role": "assistant", "content": ASSESS_PREFILL}],
            " 9. Good.",
        )
        for task, answer in SHEEP_ANSWERS.items()
    ]
    path = build_tiny_model(tmp_path_factory.mktemp("models") / "sheep", seed=3)
    return train_to_answers(path, cases, steps=200)
