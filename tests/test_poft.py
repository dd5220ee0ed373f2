"""PoFT: reference scores, the loss and its gradient, score filtering, noise, and the stages on the tiny model."""

import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from datakit.config import ScoreConfig, SftSetConfig, TrainConfig
from datakit.errors import ConfigError, DataError, DatakitError
from datakit.pairs import MESSAGE
from datakit.poft import aggregate, corrupt, keep_top, score_model, tau
from datakit.train import build_trainer

LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
ANSWERS = ["The answer is 36. #### 36", "Paris is the capital.", "hello", "Score the response. [RESULT] 4"]


def sft(answers=ANSWERS, prompt="Tom has 3 boxes with 12 apples each. How many apples?") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(answers))],
            "prompt": [[{"role": "user", "content": f"{prompt} ({i})"}] for i in range(len(answers))],
            "completion": [[{"role": "assistant", "content": a}] for a in answers],
        },
        schema={"id": pl.Utf8, "prompt": pl.List(MESSAGE), "completion": pl.List(MESSAGE)},
    )


def direct_logp(model_dir, prompt, completion) -> tuple[float, int]:
    """log p(completion | prompt) computed the plain way: one unpadded row, the full log-softmax."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    p_text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tok.apply_chat_template(prompt + completion, tokenize=False)
    assert full_text.startswith(p_text)
    n_prompt = len(tok(p_text, add_special_tokens=False)["input_ids"])
    ids = tok(full_text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = lm(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    total = sum(float(logp[j - 1, ids[j]]) for j in range(n_prompt, len(ids)))
    return total, len(ids) - n_prompt


def test_reference_score_equals_a_direct_computation_at_any_batch_size(tiny_model):
    rows = sft()
    pairs = zip(rows["prompt"].to_list(), rows["completion"].to_list(), strict=True)
    expected = [direct_logp(tiny_model, p, c) for p, c in pairs]
    for batch_size in (1, 3):
        got, _ = score_model(str(tiny_model), rows, batch_size=batch_size, max_length=256, progress=False)
        assert got["n_tokens"].to_list() == [n for _, n in expected]
        assert np.allclose(got["logp"].to_numpy(), [s for s, _ in expected], atol=1e-4)
    # A different answer is a different score (the test would pass trivially if all were equal).
    assert len({round(s, 3) for s, _ in expected}) == len(expected)


def test_scores_are_cached_per_model_and_row(tiny_model, judge_model, tmp_path):
    rows = sft()
    first, reused = score_model(str(tiny_model), rows, cache_root=tmp_path, progress=False)
    assert reused == 0
    again, reused = score_model(str(tiny_model), rows, cache_root=tmp_path, progress=False)
    assert reused == rows.height and again.equals(first)
    # One new row: only it is scored; another model is another cache.
    more = pl.concat([rows, sft(["a new answer"], prompt="What is the capital of France?")])
    _, reused = score_model(str(tiny_model), more, cache_root=tmp_path, progress=False)
    assert reused == rows.height
    other, reused = score_model(str(judge_model), rows, cache_root=tmp_path, progress=False)
    assert reused == 0 and not np.allclose(other["logp"].to_numpy(), first["logp"].to_numpy())
    # The compute dtype is part of the key: bfloat16 scores are not float32's read back.
    half, reused = score_model(str(tiny_model), rows, dtype="bfloat16", cache_root=tmp_path, progress=False)
    assert reused == 0 and not half.equals(first)
    assert (
        score_model(str(tiny_model), rows, dtype="float32", cache_root=tmp_path, progress=False)[1]
        == rows.height
    )


def test_a_row_cut_before_its_answer_is_named(tiny_model):
    rows = sft()
    with pytest.raises(
        DataError, match=r"sft.parquet, row 0, field 'completion': no answer tokens left .*id 'r0'"
    ):
        score_model(str(tiny_model), rows, max_length=5, progress=False, where="sft.parquet")


def test_aggregate_tau_and_keep_top():
    r = np.array([[-1.0, -3.0], [-2.0, -2.0], [-0.5, -4.0]])
    assert aggregate(r, "avg").tolist() == [-2.0, -2.0, -2.25]
    assert aggregate(r, "min").tolist() == [-3.0, -2.0, -4.0]
    assert aggregate(r, "max").tolist() == [-1.0, -2.0, -0.5]
    assert tau(-1.0, -1.0) == pytest.approx(0.5)
    assert tau(0.0, math.log(3)) == pytest.approx(0.75)  # e^r_ref / (e^r_ref + e^r_theta) = 3 / 4

    df = pl.DataFrame({"id": [f"r{i}" for i in range(10)], "r_ref": [3.0, 9, 1, 7, 7, 0, 5, 8, 2, 6]})
    kept = keep_top(df, 0.3)
    assert kept["id"].to_list() == ["r1", "r3", "r7"]  # 9, 7 (the earlier of the tied 7s), 8, in input order
    assert keep_top(df, 0.5)["r_ref"].sort().to_list() == [6.0, 7.0, 7.0, 8.0, 9.0]
    assert keep_top(df, 1.0).equals(df)
    with pytest.raises(ConfigError, match="train.keep_top"):
        keep_top(df, 0.0)
    # An unscored table (score.always: false under an objective that reads no r_ref) cannot be ranked.
    unscored = df.with_columns(r_ref=pl.lit(None, dtype=pl.Float64))
    assert keep_top(unscored, 1.0).equals(unscored)  # keeping everything needs no ranking
    with pytest.raises(DatakitError, match="train.keep_top 0.3: 10 rows have no r_ref to rank by"):
        keep_top(unscored, 0.3)


def test_corrupt_changes_exactly_the_share_and_marks_it():
    answers = [f"Worked answer number {i}. #### {i}" for i in range(20)]
    clean = sft(answers)
    noisy = corrupt(clean, 0.3, 0.5, 0.1, seed=7)
    assert noisy["corrupted"].sum() == 6
    assert sorted(noisy["corruption"].to_list()).count("swap") == 3
    assert sorted(noisy["corruption"].to_list()).count("chars") == 3
    before = {r["id"]: r["completion"][0]["content"] for r in clean.to_dicts()}
    for row in noisy.to_dicts():
        text = row["completion"][0]["content"]
        if row["corruption"] == "none":
            assert text == before[row["id"]]
        elif row["corruption"] == "swap":  # another row's answer, never its own
            assert text != before[row["id"]] and text in before.values()
        else:
            assert text != before[row["id"]] and text not in before.values()
    assert corrupt(clean, 0.3, 0.5, 0.1, seed=7).equals(noisy)  # deterministic
    assert not corrupt(clean, 0.0, 0.5, 0.1, seed=7)["corrupted"].any()


def test_config_refuses_bad_shares():
    with pytest.raises(ValueError, match="noise: must be in"):
        SftSetConfig(noise=1.5)
    with pytest.raises(ValueError, match="keep_top"):
        TrainConfig(keep_top=0.0)
    with pytest.raises(ValueError, match="references"):
        ScoreConfig(references=[])


def poft_cfg(**kw) -> TrainConfig:
    base = {
        "objective": "poft",
        "data": "domain",
        "args": {"learning_rate": 0.05, "per_device_train_batch_size": 1, "max_steps": 1, "logging_steps": 1},
        "sft": {"max_length": 128},
        "lora": {},
    }
    return TrainConfig(**{**base, **kw})


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("offset", [-0.8, 1.3])
def test_poft_gradient_is_tau_times_the_ce_gradient(tiny_model, tmp_path, offset):
    """seeds/003 eq. 7-8: d L_PoFT = tau * d L_CE with tau = sigmoid(r_ref - r_theta), on one row."""
    rows = sft(ANSWERS[:1])
    ce_trainer = build_trainer(poft_cfg(), str(tiny_model), rows, tmp_path / "ce", "cpu", "sft")
    batch = next(iter(ce_trainer.get_train_dataloader()))
    ce = ce_trainer.compute_loss(ce_trainer.model, dict(batch))  # TRL's own CE: mean NLL of the answer
    ce.backward()
    g_ce = grads(ce_trainer.model)
    r_theta = -ce.item()
    r_ref = r_theta + offset
    poft = build_trainer(
        poft_cfg(), str(tiny_model), rows.with_columns(r_ref=pl.lit(r_ref)), tmp_path / "poft", "cpu", "poft"
    )
    batch = next(iter(poft.get_train_dataloader()))
    loss = poft.compute_loss(poft.model, dict(batch))
    loss.backward()
    g_poft = grads(poft.model)
    t = float(tau(r_theta, r_ref))
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-(r_theta - r_ref)))), rel=1e-5)
    assert g_ce.norm() > 0 and abs(t - 0.5) > 0.1
    # Every one of the model's gradient entries is tau times CE's, up to float32 rounding (measured ~1e-6).
    assert float((g_poft - t * g_ce).abs().max() / g_ce.abs().max()) < 1e-5


def test_poft_trainer_refuses_rows_without_scores(tiny_model, tmp_path):
    with pytest.raises(DatakitError, match="every row needs r_ref"):
        build_trainer(poft_cfg(), str(tiny_model), sft(), tmp_path / "out", "cpu", "poft")


def test_poft_stages_noise_scores_and_tau_then_poft_dpo(project):
    """sft_set (30% noise) -> score -> train poft through the CLI; then poft_dpo on the iteration's pairs."""
    import yaml
    from conftest import write_params
    from test_train import tiny_pairs
    from typer.testing import CliRunner

    from datakit.cli import app
    from datakit.pairs import PREFERENCE_PAIRS
    from datakit.schemas import write_table

    runner = CliRunner()

    def invoke(*cmd):
        result = runner.invoke(app, [*cmd, "--iteration", "iter_1"] if cmd[0] != "synth" else list(cmd))
        assert result.exit_code == 0, result.output
        return result

    assert runner.invoke(app, ["base_model"]).exit_code == 0
    invoke("synth")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(objective="sft", data="domain")
    params["train"]["args"].update(max_steps=3, per_device_train_batch_size=4)
    params["sft_set"]["noise"] = 0.3
    write_params(project, params)
    invoke("sft_set")
    sft_metrics = json.loads((project / "data/iter_1/sft_set/metrics.json").read_text())
    assert (sft_metrics["rows"], sft_metrics["corrupted"]) == (12, 4)
    # Plain SFT reads no reference score: the stage passes the SFT set through unscored ...
    invoke("score")
    skipped = json.loads((project / "data/iter_1/score/metrics.json").read_text())
    assert (skipped["scored"], skipped["references"]) == (0, []) and "sft" in skipped["skipped"]
    unscored = pl.read_parquet(project / "data/iter_1/score/scores.parquet")
    assert unscored.height == 12 and unscored["r_ref"].null_count() == 12
    # ... and PoFT on that table stops, saying what to rerun.
    params["train"]["objective"] = "poft"
    write_params(project, params)
    result = runner.invoke(app, ["train", "--iteration", "iter_1"])
    assert result.exit_code == 1 and "rerun the score stage" in result.output
    invoke("score")
    scored = json.loads((project / "data/iter_1/score/metrics.json").read_text())
    assert scored["references"] == ["data/base_model"] and scored["scored"] == 12
    assert (
        invoke("score")
        and json.loads((project / "data/iter_1/score/metrics.json").read_text())["from_cache"] == 12
    )  # a rerun reads every score back
    params["score"]["max_length"] = 128  # scores of other tokens than the trainer sees: refused
    write_params(project, params)
    result = runner.invoke(app, ["train", "--iteration", "iter_1"])
    assert (
        result.exit_code == 1
        and "score.max_length (128) must equal train.sft.max_length (256)" in result.output
    )
    params["score"]["max_length"] = 256
    write_params(project, params)
    invoke("train")
    metrics = json.loads((project / "data/iter_1/train/metrics.json").read_text())
    assert (metrics["trainer"], metrics["steps"], metrics["rows"]) == ("poft", 3, 12)
    log = pl.read_csv(project / "data/iter_1/train/log.csv")
    # The only reference is the base model, which is where the policy starts: the first step's scores agree,
    # so the loss is log 2 (this also checks that score tokenizes exactly as TRL's trainer does).
    assert log["tau"][0] == pytest.approx(0.5, abs=1e-4) and log["loss"][0] == pytest.approx(
        math.log(2), abs=1e-4
    )
    taus = pl.read_csv(project / "data/iter_1/train/tau.csv")
    assert taus.height == 12 and taus["corrupted"].sum() == 4 and taus["id"].null_count() == 0
    assert {"tau_clean_mean", "tau_corrupted_mean"} <= set(metrics)
    assert (project / "data/iter_1/train/tau.png").read_bytes()[:4] == b"\x89PNG"

    # PoFT then DPO: two phases, the second on the pairs, from the PoFT model.
    write_table(tiny_pairs(), project / "data/iter_1/pairs/preference_pairs.parquet", PREFERENCE_PAIRS)
    params["train"].update(objective="poft_dpo", data="pairs", keep_top=0.5)
    params["train"]["args"].update(max_steps=2)
    params["sft_set"]["noise"] = 0.0
    write_params(project, params)
    for stage in ("sft_set", "score", "train"):
        invoke(stage)
    metrics = json.loads((project / "data/iter_1/train/metrics.json").read_text())
    assert (metrics["trainer"], metrics["steps"], metrics["rows_poft"], metrics["rows_dpo"]) == (
        "poft+dpo",
        4,
        2,  # keep_top 0.5 of the 4 pairs' chosen answers
        4,
    )
    log = pl.read_csv(project / "data/iter_1/train/log.csv")
    assert log["phase"].to_list() == ["poft", "poft", "dpo", "dpo"] and log["step"].to_list() == [1, 2, 3, 4]
    assert log.filter(pl.col("phase") == "dpo")["logps_chosen"].null_count() == 0
    assert (project / "data/iter_1/train/model/model.safetensors").exists()


def test_references_resolve_base_and_earlier_and_name_a_missing_model(project):
    from datakit.config import load_params
    from stages import score

    params = load_params(project / "params.yaml")
    (project / "data/base_model").mkdir(parents=True)
    assert score.references(params, params.iteration("iter_1")) == ["data/base_model"]
    with pytest.raises(ConfigError, match="model 'data/iter_1/train/model' not found"):
        score.references(params, params.iteration("iter_2"))  # M_2 is not trained yet
    (project / "data/iter_1/train/model").mkdir(parents=True)
    assert score.references(params, params.iteration("iter_2")) == [
        "data/base_model",
        "data/iter_1/train/model",
    ]
