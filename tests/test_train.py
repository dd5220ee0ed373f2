"""train: TRL configs from params, and real training steps on the tiny model."""

import dataclasses
import math
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from test_pairs import answers, bad_cases, bad_tags, similar
from trl import SFTTrainer

from datakit.config import TrainConfig
from datakit.errors import ConfigError
from datakit.pairs import build_pairs
from datakit.train import build_trainer, log_summary, save_models, step_log, trainer_kind, trl_config

LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}


def cfg(**kw) -> TrainConfig:
    base = {
        "args": {"learning_rate": 0.05, "per_device_train_batch_size": 4, "max_steps": 2, "logging_steps": 1},
        "dpo": {"beta": 0.5, "max_length": 64},
        "sft": {"max_length": 64},
        "lora": LORA,
    }
    return TrainConfig(**{**base, **kw})


def test_dpo_sft_is_trl_sigmoid_plus_weighted_sft(tmp_path):
    args = trl_config(cfg(alpha=0.5), tmp_path, "cpu")
    assert type(args).__name__ == "DPOConfig"
    assert (args.loss_type, args.loss_weights) == (["sigmoid", "sft"], [1.0, 0.5])
    assert (args.beta, args.learning_rate, args.use_cpu, args.bf16) == (0.5, 0.05, True, False)
    assert trl_config(cfg(objective="dpo"), tmp_path, "cpu").loss_type == ["sigmoid"]
    assert type(trl_config(cfg(objective="orpo", dpo={}), tmp_path, "cpu")).__name__ == "ORPOConfig"
    assert type(trl_config(cfg(objective="sft", dpo={}), tmp_path, "cpu")).__name__ == "SFTConfig"


def test_domain_and_mixed_data_train_with_sft_or_poft():
    assert [trainer_kind(cfg(data=d)) for d in ("pairs", "domain", "mixed")] == ["dpo", "sft", "sft"]
    assert [trainer_kind(cfg(data=d, objective="poft")) for d in ("pairs", "domain")] == ["poft", "poft"]
    assert trainer_kind(cfg(objective="poft_dpo")) == "poft+dpo"
    with pytest.raises(ConfigError, match="poft_dpo needs train.data pairs"):
        trainer_kind(cfg(objective="poft_dpo", data="domain"))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"args": {"learning_rat": 1.0}}, "train.args.learning_rat: not a DPOConfig setting"),
        ({"dpo": {"bta": 0.1}}, "train.dpo.bta: not a DPOConfig setting"),
        # An SFT run refuses a DPO-only key put in the shared section.
        ({"objective": "sft", "args": {"beta": 0.1}}, "train.args.beta: not a SFTConfig setting"),
        ({"args": {"lr_scheduler_type": "wobbly"}}, "train (DPOConfig):"),
    ],
)
def test_bad_trl_keys_name_the_key(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        trl_config(cfg(**kw), tmp_path, "cpu")


def test_bad_lora_key_names_the_key():
    from datakit.train import lora_config

    with pytest.raises(ConfigError, match="train.lora.rank: not a LoraConfig setting"):
        lora_config(cfg(lora={"rank": 4}))


def tiny_pairs() -> pl.DataFrame:
    pairs, _ = build_pairs(bad_cases(), bad_tags(), similar(), answers(), iteration=1)
    return pl.concat([pairs, pairs.head(1)])  # 4 pairs: one batch


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_two_dpo_steps_change_the_lora_weights_and_lower_the_dpo_loss(tiny_model, tmp_path):
    trainer = build_trainer(cfg(objective="dpo"), str(tiny_model), tiny_pairs(), tmp_path / "out", "cpu")
    before = lora_weights(trainer.model)
    # peft starts lora_B at zero, so the adapter is off until a step moves it.
    assert before and all(not w.any() for n, w in before.items() if "lora_B" in n)
    trainer.train()
    after = lora_weights(trainer.model)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert len(changed) == len(before)
    log = step_log(trainer.state.log_history)
    assert log["step"].to_list() == [1, 2]
    # Step 1: policy = reference, so every reward margin is 0 and the sigmoid loss is -log(sigmoid(0)) = log 2.
    assert log["loss"][0] == pytest.approx(math.log(2), abs=1e-4)
    # Step 2 sees the same batch (4 pairs, batch size 4) after one update: the DPO loss fell.
    assert log["loss"][1] < log["loss"][0] - 1e-3
    assert log["rewards_margins"][1] > 0


def test_dpo_sft_adds_the_weighted_chosen_nll(tiny_model, tmp_path):
    pairs = tiny_pairs()
    dpo = build_trainer(
        cfg(objective="dpo", args={**cfg().args, "max_steps": 1}),
        str(tiny_model),
        pairs,
        tmp_path / "a",
        "cpu",
    )
    dpo.train()
    both = build_trainer(
        cfg(args={**cfg().args, "max_steps": 1}), str(tiny_model), pairs, tmp_path / "b", "cpu"
    )
    both.train()
    first_dpo, first_both = step_log(dpo.state.log_history), step_log(both.state.log_history)
    # Same weights at step 1, so the losses differ by alpha * the mean NLL per chosen token. A random model's
    # per-token NLL is about log(vocab) = log(384) = 5.95, so the difference is about 0.5 * 5.95 = 3.
    assert first_dpo["loss"][0] == pytest.approx(math.log(2), abs=1e-4)
    assert 2.0 < first_both["loss"][0] - first_dpo["loss"][0] < 4.0


def padded_width(batch) -> int:
    """The width a batch is padded to: DPO's and SFT's one ``input_ids``, ORPO's longer of its two."""
    if "input_ids" in batch:
        return batch["input_ids"].shape[1]
    return max(batch["chosen_input_ids"].shape[1], batch["rejected_input_ids"].shape[1])


@pytest.mark.parametrize("objective", ["dpo_sft", "orpo", "sft"])
def test_group_by_length_batches_rows_of_like_length_and_trains(tiny_model, tmp_path, objective):
    from datakit.objectives import EpochLengthGroupedSampler, row_lengths

    # 64 pairs whose chosen answers run from 1 to 16 words, shuffled; batches of 4, so transformers' sampler
    # sorts by length within mega-batches of 16 rows. DPO cuts the longest at max_length 64 when it collates.
    words = [k for k in range(1, 17) for _ in range(4)]
    words = [words[(i * 23) % 64] for i in range(64)]
    pairs = pl.DataFrame(
        {
            "prompt": [[{"role": "user", "content": f"Count to {k}."}] for k in words],
            "chosen": [[{"role": "assistant", "content": " ".join(["one"] * k)}] for k in words],
            "rejected": [[{"role": "assistant", "content": "no"}] for _ in words],
            "id": [f"p{i}" for i in range(64)],
            "origin": ["domain"] * 64,
        }
    )
    padded = {}
    for strategy in ("random", "group_by_length"):
        args = {**cfg().args, "max_steps": 2, "train_sampling_strategy": strategy}
        run = cfg(objective=objective, args=args, orpo={"max_length": 64})
        trainer = build_trainer(run, str(tiny_model), pairs, tmp_path / strategy, "cpu")
        padded[strategy] = sum(padded_width(b) for b in trainer.get_train_dataloader())
    data = trainer.train_dataset
    # A row's length is the width the collator pads it to alone (a pair: its longer sequence), cut at max_length.
    assert row_lengths(data, 64) == [padded_width(trainer.data_collator([row])) for row in data]
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, EpochLengthGroupedSampler) and sampler.lengths == row_lengths(data, 64)
    assert padded["group_by_length"] < 0.9 * padded["random"]
    # The order is the seed's and the epoch's alone: a resumed run draws the same batches again.
    first = list(sampler)
    torch.manual_seed(123)
    assert list(sampler) == first and sorted(first) == list(range(64))
    sampler.set_epoch(1)
    assert list(sampler) != first
    trainer.train()
    assert step_log(trainer.state.log_history)["loss"].is_finite().all()


def test_save_writes_the_adapter_and_a_merged_model_that_differs_from_m_t(tiny_model, tmp_path):
    trainer = build_trainer(cfg(), str(tiny_model), tiny_pairs(), tmp_path / "out", "cpu")
    trainer.train()
    save_models(trainer, trainer.processing_class, tmp_path / "adapter", tmp_path / "model")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    merged = load_file(tmp_path / "model" / "model.safetensors")
    base = load_file(tiny_model / "model.safetensors")
    assert set(merged) == set(base)  # plain weights: no lora_ keys left after merging
    assert not torch.equal(
        merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"]
    )
    assert torch.equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])


def test_sft_trains_on_the_chosen_answers_only(tiny_model, tmp_path):
    trainer = build_trainer(
        cfg(objective="sft", dpo={}), str(tiny_model), tiny_pairs(), tmp_path / "out", "cpu"
    )
    trainer.train()
    log = step_log(trainer.state.log_history)
    assert isinstance(trainer, SFTTrainer) and log.height == 2
    assert "logps_chosen" not in log.columns and log["loss"][1] < log["loss"][0]


def test_log_summary_averages_the_first_and_last_fifth():
    log = pl.DataFrame({"step": list(range(1, 11)), "loss": [float(i) for i in range(10, 0, -1)]})
    # 10 steps: fifths of 2 -> first (10 + 9) / 2, last (2 + 1) / 2.
    assert log_summary(log) == {"logged_steps": 10, "loss_first": 9.5, "loss_last": 1.5}


def test_trainconfig_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg().alpha = 1.0


def test_train_stage_domain_baseline_writes_m2_and_refuses_empty_pairs(project):
    import json

    import yaml
    from conftest import write_params
    from typer.testing import CliRunner

    from datakit.cli import app
    from datakit.pairs import PREFERENCE_PAIRS
    from datakit.schemas import write_table

    runner = CliRunner()
    for cmd in (["synth"], ["base_model"]):
        assert runner.invoke(app, cmd).exit_code == 0
    write_table(
        PREFERENCE_PAIRS.empty(), project / "data/iter_1/pairs/preference_pairs.parquet", PREFERENCE_PAIRS
    )
    result = runner.invoke(app, ["train", "--iteration", "iter_1", "--no-progress"])
    assert result.exit_code == 1 and "no training rows (pairs)" in result.output
    assert not (project / "data/iter_1/train/model").exists()

    # The domain-SFT baseline is one param away: it trains on the domain train set, no pairs needed.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["data"] = "domain"
    params["train"]["args"]["max_steps"] = 2
    params["train"]["sft"]["max_length"] = 512  # the tiny tokenizer spends ~100 tokens on a math problem
    write_params(project, params)
    for cmd in ("sft_set", "score", "train"):
        result = runner.invoke(app, [cmd, "--iteration", "iter_1"])
        assert result.exit_code == 0, result.output
    metrics = json.loads((project / "data/iter_1/train/metrics.json").read_text())
    assert (metrics["objective"], metrics["trainer"], metrics["data"], metrics["rows"]) == (
        "sft",
        "sft",
        "domain",
        12,
    )
    assert metrics["steps"] == 2 and metrics["model_out"] == "data/iter_1/train/model"
    assert (project / "data/iter_1/train/model/model.safetensors").exists()
    assert (project / "data/iter_1/train/adapter/adapter_config.json").exists()
    assert pl.read_csv(project / "data/iter_1/train/log.csv")["step"].to_list() == [1, 2]
    assert (project / "data/iter_1/train/logps.png").read_bytes()[:4] == b"\x89PNG"


def test_train_under_accelerate_launch_matches_the_plain_run(project):
    """`train.accelerate` runs the stage under `accelerate launch` (the repo's CPU config here): the same M_2."""
    import json
    import os
    import subprocess
    import sys

    import yaml
    from conftest import ROOT, write_params

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def datakit(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "datakit.cli", *args]
        return subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=env)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(data="domain")
    params["train"]["args"]["max_steps"] = 2
    params["train"]["sft"]["max_length"] = 512
    write_params(project, params)
    for cmd in ("synth", "base_model"):
        assert datakit(cmd).returncode == 0
    for cmd in ("sft_set", "score", "train"):
        done = datakit(cmd, "--iteration", "iter_1")
        assert done.returncode == 0, done.stderr
    model = project / "data/iter_1/train/model/model.safetensors"
    plain, plain_metrics = load_file(model), json.loads((model.parents[1] / "metrics.json").read_text())

    params["train"]["accelerate"] = str(ROOT / "configs/accelerate/cpu.yaml")
    write_params(project, params)
    launched = datakit("train", "--iteration", "iter_1", "--no-progress")
    assert launched.returncode == 0, launched.stderr
    metrics = json.loads((model.parents[1] / "metrics.json").read_text())
    assert metrics["steps"] == plain_metrics["steps"] == 2
    assert (plain_metrics["launcher"], metrics["launcher"], metrics["processes"]) == (
        "python",
        "accelerate",
        1,
    )
    weights = load_file(model)
    assert weights.keys() == plain.keys()
    assert all(torch.allclose(weights[k], plain[k], atol=1e-6) for k in plain)
    assert not (project / ".datakit/work/train/iter_1").exists(), "the shared phase folder is cleared"

    params["train"]["accelerate"] = "configs/accelerate/none.yaml"
    write_params(project, params)
    missing = datakit("train", "--iteration", "iter_1", "--no-progress")
    assert missing.returncode == 1
    assert "train.accelerate: configs/accelerate/none.yaml: no such accelerate config file" in missing.stderr


def test_a_killed_train_resumes_from_its_last_checkpoint(project):
    """SIGKILL the real train stage after a checkpoint (PoFT on domain train: the tau log rides along), run
    it again: it resumes from that checkpoint, and M_2, the step log and the tau log equal an uninterrupted
    run's. Another setting does not resume from those checkpoints."""
    import json
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from conftest import write_params

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def datakit(*args: str, **kw) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "datakit.cli", *args]
        return subprocess.Popen(
            cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
        )

    def finish(*args: str) -> None:
        proc = datakit(*args)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(data="domain", objective="poft", checkpoint_steps=5)
    params["train"]["args"].update(max_steps=40, per_device_train_batch_size=2)
    params["train"]["sft"]["max_length"] = params["score"]["max_length"] = 512
    write_params(project, params)
    for cmd in ("synth", "base_model"):
        finish(cmd)
    for cmd in ("sft_set", "score"):
        finish(cmd, "--iteration", "iter_1")

    work = project / ".datakit/work/train/iter_1"
    proc = datakit("train", "--iteration", "iter_1", "--no-progress")
    deadline = time.monotonic() + 600
    while not list(work.glob("trainer-poft/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, (
            "the run ended before its first checkpoint: " + proc.stderr.read().decode()[-2000:]
        )
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)  # a few more steps past the checkpoint, which the resumed run must redo
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (project / "data/iter_1/train/model").exists()
    # The kill may land while a checkpoint is written: only the finished ones (trainer_state.json is their
    # last file) are resumed from.
    kept = sorted(
        int(p.parent.name.split("-")[1]) for p in work.glob("trainer-poft/checkpoint-*/trainer_state.json")
    )
    assert kept and kept[-1] < 40

    finish("train", "--iteration", "iter_1", "--no-progress")
    out = project / "data/iter_1/train"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == kept[-1] and metrics["steps"] == 40
    assert not work.exists(), "checkpoints are removed once M_2 is written"
    resumed = {
        "model": load_file(out / "model/model.safetensors"),
        "log": pl.read_csv(out / "log.csv"),
        "tau": pl.read_csv(out / "tau.csv"),
    }

    shutil.rmtree(out)
    finish("train", "--iteration", "iter_1", "--no-progress")
    whole = load_file(out / "model/model.safetensors")
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 0
    assert whole.keys() == resumed["model"].keys()
    worst = max(float((whole[k] - resumed["model"][k]).abs().max()) for k in whole)
    assert worst < 1e-5, worst  # the same optimizer, scheduler, data order and RNG from the checkpoint on
    assert resumed["log"]["step"].to_list() == list(range(1, 41))
    assert resumed["log"]["loss"].to_list() == pytest.approx(
        pl.read_csv(out / "log.csv")["loss"].to_list(), abs=1e-4
    )
    tau = pl.read_csv(out / "tau.csv")
    assert resumed["tau"].select("step", "row").equals(tau.select("step", "row"))

    # Checkpoints left by a run with other settings are not resumed from.
    proc = datakit("train", "--iteration", "iter_1", "--no-progress")
    while not list(work.glob("trainer-poft/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    params["train"]["args"]["learning_rate"] = 5e-4
    write_params(project, params)
    finish("train", "--iteration", "iter_1", "--no-progress")
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 0


def test_poft_trains_in_the_dtype_its_reference_scores_were_computed_in(tmp_path):
    """train.args.bf16 speeds up every objective but PoFT, whose tau compares the policy with the score stage's
    float32 log-likelihoods on the CPU; train.sft.bf16 overrides."""
    args = {"learning_rate": 0.05, "max_steps": 2, "bf16": True}
    poft = cfg(objective="poft_dpo", args=args)
    assert trl_config(poft, tmp_path, "cpu", "poft").bf16 is False
    assert trl_config(poft, tmp_path, "cpu", "dpo").bf16 is True
    assert trl_config(cfg(objective="sft", args=args), tmp_path, "cpu", "sft").bf16 is True
    forced = cfg(objective="poft", args=args, sft={"max_length": 64, "bf16": True})
    assert trl_config(forced, tmp_path, "cpu", "poft").bf16 is True


@pytest.mark.parametrize("variant", ["orpo", "mixed", "full", "poft_dpo"])
def test_train_stage_variants_run_and_train(project, variant, monkeypatch):
    """Objectives and set-ups no other test trains: ORPO on pairs, the mixed baseline (domain + as many pool
    rows), full fine-tuning (no LoRA), and poft_dpo, whose DPO phase must start from, and be referenced to,
    the PoFT phase's model (policy = reference at its first step: the sigmoid loss is exactly log 2)."""
    import json

    import yaml
    from conftest import write_params

    from datakit.config import load_params
    from datakit.pairs import PREFERENCE_PAIRS
    from datakit.schemas import write_table
    from stages import base_model, score, sft_set, synth
    from stages import train as train_stage

    params = yaml.safe_load((project / "params.yaml").read_text())
    train = params["train"]
    train["args"]["max_steps"] = 2
    for name in ("sft", "dpo", "orpo"):
        train[name]["max_length"] = 512
    params["score"]["max_length"] = 512
    train.update(
        {
            "orpo": {"objective": "orpo"},
            "mixed": {"data": "mixed", "objective": "sft"},
            "full": {"objective": "sft", "data": "domain", "lora": {}},
            "poft_dpo": {"objective": "poft_dpo"},
        }[variant]
    )
    write_params(project, params)
    p = load_params("params.yaml")
    synth.run(p)
    base_model.run(p)
    write_table(tiny_pairs(), project / "data/iter_1/pairs/preference_pairs.parquet", PREFERENCE_PAIRS)
    sft_set.run(p, "iter_1")
    score.run(p, "iter_1", progress=False)
    started_from = []
    build = train_stage.build_trainer

    def spy(cfg, model, rows, out, device, kind):
        started_from.append((kind, Path(model).name))
        return build(cfg, model, rows, out, device, kind)

    monkeypatch.setattr(train_stage, "build_trainer", spy)
    metrics = train_stage.run(p, "iter_1", progress=False)

    log = pl.read_csv(project / "data/iter_1/train/log.csv")
    assert log["loss"].is_finite().all()
    merged = load_file(project / "data/iter_1/train/model/model.safetensors")
    base = load_file(project / "data/base_model/model.safetensors")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[q], base[q])
    adapter = project / "data/iter_1/train/adapter"
    if variant == "orpo":
        assert metrics["trainer"] == "orpo" and metrics["steps"] == 2 and metrics["rows"] == 4
        assert (adapter / "adapter_config.json").exists()
    elif variant == "mixed":
        # the 12 domain train problems and as many pool rows
        assert (metrics["trainer"], metrics["data"], metrics["rows"]) == ("sft", "mixed", 24)
    elif variant == "full":
        # every weight trains: the embeddings too (LoRA leaves them), and no adapter is written
        assert metrics["trainable_parameters"] == sum(t.numel() for t in base.values())
        assert not torch.equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
        assert adapter.is_dir() and not any(adapter.iterdir())
    else:
        assert log["phase"].to_list() == ["poft", "poft", "dpo", "dpo"]
        assert (
            metrics["steps"] == 4
            and json.loads((project / "data/iter_1/train/metrics.json").read_text())["rows_dpo"] == 4
        )
        assert started_from == [("poft", "base_model"), ("dpo", "model-poft")]
        first_dpo = log.filter(pl.col("phase") == "dpo")["loss"][0]
        assert first_dpo == pytest.approx(math.log(2), abs=1e-4)


def test_resume_skips_a_checkpoint_cut_off_by_the_kill(tmp_path):
    """A kill while a checkpoint is written leaves its folder without trainer_state.json (transformers writes
    that file last): the run resumes from the checkpoint before it, and the cut-off one is removed."""
    import json

    from stages.train import last_checkpoint

    for step, done in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "optimizer.pt").write_bytes(b"x")
        if done:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-20").mkdir()
    (tmp_path / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # cut off mid-write
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-5"]
    assert last_checkpoint(tmp_path / "nothing-here") is None
