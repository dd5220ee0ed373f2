import re

import pytest
import yaml
from conftest import ROOT, write_params

from datakit.config import GenerationConfig, load_params
from datakit.errors import ConfigError


def test_repo_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.generate.backend == "vllm"  # the fast CPU path (README)
    assert params.select.threshold == "<4"
    assert params.iterations["iter_1"].model_in == params.paths.base_model


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"generate": {"batch_sise": 8}}, "generate.batch_sise: unknown key"),
        ({"generate": {"batch_size": "big"}}, "generate.batch_size: expected int, got 'big'"),
        ({"generate": {"batch_size": True}}, "generate.batch_size: expected int, got True"),
        ({"generate": {"backend": "tgi"}}, "generate.backend: expected one of"),
        ({"generate": {"openai": {"api_key": "sk-123"}}}, "generate.openai.api_key: unknown key"),
        ({"judge": {"generation": {"temperature": "hot"}}}, "judge.generation.temperature: expected float"),
        ({"data": {"domain_train": {"path": 3}}}, "data.domain_train.path: expected str, got 3"),
        (
            {"iterations": {"iter_1": {"n": 1, "model_out": "b", "dir": "x"}}},
            "iterations.iter_1.model_in: missing",
        ),
        ({"trainning": {}}, "trainning: unknown key"),
        ({"select": {"threshold": "<6"}}, "select.threshold: expected an operator"),
        ({"judge": {"retries": -1}}, "judge.retries: must be >= 0"),
        ({"generate": {"batch_size": 0}}, "generate.batch_size: must be >= 1"),
        ({"generate": {"max_failure_rate": 1.5}}, "generate.max_failure_rate: must be within 0-1"),
        ({"tag": {"tagger": "instag"}}, "tag.tagger: expected one of ['embedding', 'llm']"),
        ({"tag": {"top_k": 0}}, "tag.top_k: must be >= 1"),
        ({"tag": {"generation": {"batch_size": 0}}}, "tag.generation.batch_size: must be >= 1"),
        ({"embed": {"chunk_size": 0}}, "embed.chunk_size: must be >= 1"),
        ({"index": {"index_type": "FLAT"}}, "index.index_type: expected one of"),
        (
            {"retrieve": {"strategy": "knn"}},
            "retrieve.strategy: expected one of ['tag', 'mean', 'cluster', 'mmr', 'none']",
        ),
        ({"retrieve": {"guard_threshold": 0}}, "retrieve.guard_threshold: must be within (0, 1]"),
        ({"index": {"nprobes": 0}}, "index.nprobes: must be >= 1, got 0"),
        ({"retrieve": {"mmr_lambda": 2}}, "retrieve.mmr_lambda: must be within 0-1"),
        ({"retrieve": {"scale": 0}}, "retrieve.scale: must be >= 1, got 0"),
        ({"retrieve": {"max_ratio": -1}}, "retrieve.max_ratio: must be >= 0"),
        ({"train": {"checkpoint_steps": -1}}, "train.checkpoint_steps: must be >= 0, got -1"),
        (
            {"train": {"objective": "ppo"}},
            "train.objective: expected one of ['dpo_sft', 'dpo', 'orpo', 'sft', 'poft', 'poft_dpo']",
        ),
        ({"train": {"data": "all"}}, "train.data: expected one of ['pairs', 'domain', 'mixed']"),
        ({"train": {"alpha": -0.5}}, "train.alpha: must be >= 0"),
        ({"train": {"dpo": {"loss_type": ["ipo"]}}}, "train.dpo.loss_type: set by datakit"),
        ({"train": {"lora": [4]}}, "train.lora: expected a mapping"),
        ({"evaluate": {"general_judge": "bleu"}}, "evaluate.general_judge: expected one of ['match', 'llm']"),
        ({"evaluate": {"nll_batch_size": 0}}, "evaluate.nll_batch_size: must be >= 1"),
        (
            {"iterations": {"iter_1": {"n": 1, "model_in": "a", "dir": "x"}}},
            "iterations.iter_1.model_out: missing",
        ),
    ],
)
def test_bad_key_or_type_names_the_key(tmp_path, patch, message):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, value in patch.items():
        if isinstance(params.get(section), dict) and section != "iterations":
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(params[section].get(k), dict):
                    params[section][k].update(v)
                else:
                    params[section][k] = v
        else:
            params[section] = value
    path = write_params(tmp_path, params)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_int_is_accepted_for_float_and_config_is_frozen(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["temperature"] = 1
    p = load_params(write_params(tmp_path, params))
    assert p.generate.temperature == 1.0 and isinstance(p.generate.temperature, float)
    with pytest.raises(AttributeError):
        p.generate.temperature = 0.5  # type: ignore[misc]


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("generate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_params_hash_ignores_batching_but_not_decoding():
    base = GenerationConfig()
    assert GenerationConfig(batch_size=3, shard_size=7).params_hash() == base.params_hash()
    assert GenerationConfig(max_new_tokens=17).params_hash() != base.params_hash()
    assert GenerationConfig(temperature=0.7).params_hash() != base.params_hash()


def test_every_setting_in_params_yaml_is_commented():
    """Each leaf `key: value` line carries a `# ...` comment (section headers and list items need none)."""
    lines = (ROOT / "params.yaml").read_text().splitlines()
    uncommented = [
        line
        for line in lines
        if re.match(r"^\s*[A-Za-z_]\w*:\s*\S", line) and "#" not in line.split(":", 1)[1]
    ]
    assert uncommented == []


def test_a_partly_given_section_keeps_its_own_defaults(tmp_path):
    """judge.generation has judge defaults (384 tokens, batch 16): setting only the backend keeps them."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["judge"]["generation"] = {"backend": "openai"}
    gen = load_params(write_params(tmp_path, params)).judge.generation
    assert (gen.backend, gen.max_new_tokens, gen.batch_size) == ("openai", 384, 16)
