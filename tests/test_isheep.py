"""I-SHEEP's core: parsing the model's instruction lists, the rule filters, the self-score parser, the filter
strategies, and the recipe's settings (rounds, overrides)."""

import math
import random

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import write_params

from datakit.config import FilterConfig, SynthesizeConfig, load_params
from datakit.errors import ConfigError
from datakit.isheep import (
    ASSESS_PREFILL,
    assess_prompt,
    choose,
    pair_stats,
    parse_instructions,
    parse_self_score,
    rule_filter,
    sample_tasks,
    synth_prompt,
)
from datakit.iterations import write_iterations


@pytest.mark.parametrize(
    ("text", "truncated", "expected"),
    [
        # A preamble, numbered items, a closing remark after a blank line.
        (
            "Here are 3 new tasks:\n\n4. Name a fruit.\n5. Sort the list. Input: 3, 1, 2\n6. Define gravity.\n\n"
            "I hope these help!",
            False,
            [("Name a fruit.", ""), ("Sort the list.", "3, 1, 2"), ("Define gravity.", "")],
        ),
        # Other numberings and labels, bold, quotes with a trailing note.
        (
            '1) **Task 1:** Write a limerick.\n(2) "Explain tides" - easy\nTask 3: Instruction: Count to five.\n'
            "Sentence 4: Reverse a word. Input: cat",
            False,
            [
                ("Write a limerick.", ""),
                ("Explain tides", ""),
                ("Count to five.", ""),
                ("Reverse a word.", "cat"),
            ],
        ),
        # Bullets; a wrapped item continues on its next line; an Output part is dropped.
        (
            "- Summarize the text\n  in one line. Input: Bees pollinate crops.\n* Add 2 and 3. Output: 5",
            False,
            [("Summarize the text in one line.", "Bees pollinate crops."), ("Add 2 and 3.", "")],
        ),
        # Cut at the token limit: the last item may be cut, so it goes.
        ("1. Name a colour.\n2. Write a poem about the se", True, [("Name a colour.", "")]),
        # No list at all, or nothing: no tasks.
        ("I cannot think of any tasks.", False, []),
        ("", False, []),
        ("1.  \n2. **   **", False, []),
    ],
)
def test_parse_instructions_reads_messy_lists(text, truncated, expected):
    assert parse_instructions(text, truncated) == expected


def test_synth_prompt_numbers_the_examples_and_asks_to_continue():
    prompt = synth_prompt([("Sort numbers.", "3, 1"), ("Name a city.", "")], 4)
    assert "1. Sort numbers. Input: 3, 1\n2. Name a city.\n" in prompt
    assert prompt.endswith("Write 4 new tasks, one per line, numbered from 3 to 6.")


def test_sample_tasks_mixes_earlier_rounds_only_when_asked():
    seeds = [(f"seed {i}", "") for i in range(10)]
    earlier = [(f"earlier {i}", "") for i in range(10)]
    shown = sample_tasks(seeds, earlier, SynthesizeConfig(examples=4, earlier=1), random.Random(0))
    assert len(shown) == 4 and sum(t[0].startswith("earlier") for t in shown) == 1
    alone = sample_tasks(seeds, [], SynthesizeConfig(examples=4, earlier=1), random.Random(0))
    assert len(alone) == 4 and all(t[0].startswith("seed") for t in alone)


def test_rule_filters_drop_by_the_first_rule_broken_and_count_each():
    cfg = SynthesizeConfig(min_words=3, max_words=8, banned=["draw", "go to"], rouge_threshold=0.7)
    candidates = pl.DataFrame(
        {
            "instruction": [
                "Hi there",  # 2 words: length
                "Write one sentence that uses far too many words here",  # 10 words: length
                "Draw a cat on paper",  # banned word
                "Please go to the shop now",  # banned phrase
                "Drawer contents are listed here",  # 'draw' inside a word is not banned
                "- list three fruits",  # starts with punctuation
                "¿Qué hora es ahora?",  # starts with a non-ASCII character
                "Give three tips for sleeping",  # same as an existing one (case aside)
                "Give three good tips for sleeping",  # ROUGE-L with it is 10/11 > 0.7
                "Name the largest ocean",  # new
                "Name the largest ocean",  # a repeat of a kept one
            ],
            "input": [""] * 11,
        }
    )
    out, counts = rule_filter(candidates, ["give three tips for sleeping"], cfg)
    assert out["dropped_by"].to_list() == [
        "length", "length", "banned", "banned", None, "format", "format", "duplicate", "rouge", None, "duplicate",
    ]  # fmt: skip
    assert counts == {"length": 2, "banned": 2, "format": 2, "duplicate": 2, "rouge": 1}
    # ROUGE-L F of 'give three good tips for sleeping' vs 'give three tips for sleeping': LCS 5,
    # P = 5/6, R = 5/5, F = 2PR/(P+R) = 10/11.
    assert out["rouge_max"][8] == pytest.approx(10 / 11)
    assert out["rouge_max"][9] < 0.7 and out["rouge_max"][0] is None


def test_threshold_of_rouge_is_exclusive():
    cfg = SynthesizeConfig(rouge_threshold=0.8)
    cands = pl.DataFrame({"instruction": ["alpha beta gamma delta"], "input": [""]})
    # vs 'alpha beta gamma epsilon': LCS 3 of 4 and 4, F = 0.75 <= 0.8: kept.
    out, _ = rule_filter(cands, ["alpha beta gamma epsilon"], cfg)
    assert out["dropped_by"].to_list() == [None] and out["rouge_max"][0] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("text", "score", "feedback"),
    [
        (" 8", 8, ""),
        (" 8/10. Clear and correct.", 8, "Clear and correct"),
        ("9 out of 10\nIt follows the instruction.", 9, "It follows the instruction"),
        (" **10**", 10, ""),
        ("1: off task", 1, "off task"),
    ],
)
def test_self_score_parses_a_leading_whole_number(text, score, feedback):
    assert parse_self_score(text) == (score, feedback, None)


@pytest.mark.parametrize(
    "text", [" 100%", " 3.5", " 2, 5, 9", " N, then feedback", " 0", " 11", "", "Good: 8"]
)
def test_self_score_is_null_for_anything_else(text):
    score, _, error = parse_self_score(text)
    assert score is None and error


def test_assess_prompt_variants():
    simple = assess_prompt("simple", "Sort these.", "3, 1", "1, 3")
    combined = assess_prompt("combined", "Sort these.", "3, 1", "1, 3")
    icl = assess_prompt("icl", "Sort these.", "3, 1", "1, 3")
    for text in (simple, combined, icl):
        assert text.count("### Instruction:\nSort these.\n\n3, 1\n\n### Response:\n1, 3") == 1
    assert "Instruction following" in combined and "Instruction following" not in simple
    # icl shows scored examples in the answer format the prefill starts.
    assert f"{ASSESS_PREFILL} 10." in icl and f"{ASSESS_PREFILL} 2." in icl


def pairs(scores, ppl=None, empty=None):
    n = len(scores)
    return pl.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "score": pl.Series(scores, dtype=pl.Int64),
            "ppl": pl.Series(ppl or [None] * n, dtype=pl.Float64),
            "empty": empty or [False] * n,
        }
    )


def test_score_strategy_keeps_threshold_and_above():
    out = choose(
        pairs([9, 8, 7, None, 10], empty=[False, False, False, False, True]), FilterConfig(threshold=8)
    )
    assert out["kept"].to_list() == [True, True, False, False, False]
    assert out["reason"].to_list() == [None, None, "score < 8", "unscored", "empty response"]


def test_ppl_strategy_drops_above_max_ppl():
    out = choose(pairs([1, 1, 1], ppl=[3.0, 50.0, 50.5]), FilterConfig(strategy="ppl", max_ppl=50))
    assert out["kept"].to_list() == [True, True, False] and out["reason"][2] == "ppl > 50"


def two_groups(n_each: int) -> np.ndarray:
    """Unit vectors in two tight, far apart groups: k-means with k=2 must split them by group."""
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0]) + rng.normal(0, 0.01, (n_each, 2))
    b = np.array([0.0, 1.0]) + rng.normal(0, 0.01, (n_each, 2))
    v = np.vstack([a, b])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_density_keeps_one_pair_per_cluster():
    states = two_groups(3)
    # keep 1/3 of 6 pairs: 2 clusters, one pair from each group.
    out = choose(pairs([None] * 6), FilterConfig(strategy="density", keep=1 / 3), states)
    kept = [i for i, k in enumerate(out["kept"]) if k]
    assert len(kept) == 2 and {i // 3 for i in kept} == {0, 1}
    assert out["cluster"].n_unique() == 2 and out["reason"].drop_nulls().unique().to_list() == [
        "not its cluster's pick"
    ]


def test_density_ppl_keeps_each_clusters_lowest_perplexity():
    states = two_groups(3)
    ppl = [9.0, 2.0, 60.0, 1.5, 4.0, 3.0]  # pair 2 is above max_ppl and never clustered
    out = choose(
        pairs([None] * 6, ppl=ppl), FilterConfig(strategy="density_ppl", keep=1 / 3, max_ppl=50), states
    )
    assert [i for i, k in enumerate(out["kept"]) if k] == [1, 3]
    assert out["reason"][2] == "ppl > 50" and out["cluster"][2] is None


def test_pair_stats_match_the_models_own_loss(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from datakit.poft import tokenize_row

    lm = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [("Name a fruit.", "Apple."), ("Sort 3, 1, 2 from small to large.", "1, 2, 3 and that is all.")]
    seqs = [
        tokenize_row(tok, [{"role": "user", "content": p}], [{"role": "assistant", "content": c}], 256)
        for p, c in rows
    ]
    ppl, states = pair_stats(lm, seqs, pad_id=tok.pad_token_id, batch_size=2)
    for i, (ids, n_prompt) in enumerate(seqs):
        labels = torch.tensor([[-100] * n_prompt + ids[n_prompt:]])
        with torch.no_grad():
            out = lm(input_ids=torch.tensor([ids]), labels=labels, output_hidden_states=True)
        assert ppl[i] == pytest.approx(math.exp(out.loss.item()), rel=1e-4)
        mean = out.hidden_states[-1][0].mean(0).numpy()
        assert states[i] == pytest.approx(mean / np.linalg.norm(mean), abs=1e-5)


def test_rounds_block_follows_the_setting(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    for setting, second_from in (
        ("one_base", "data/base_model"),
        ("one_last", "data/isheep/round_1/train/model"),
    ):
        params["isheep"]["setting"] = setting
        write_params(project, params)
        write_iterations(project / "params.yaml", 2, "rounds")
        loaded = load_params(project / "params.yaml")
        r2 = loaded.iteration("round_2")
        assert r2.model_in == "data/isheep/round_1/train/model" and r2.train_from == second_from
        assert r2.recipe == "isheep" and loaded.iteration("iter_1").recipe == "apt"
        assert r2.start == second_from


def test_isheep_overrides_merge_key_by_key_and_fail_by_name(project):
    write_iterations(project / "params.yaml", 1, "rounds")
    params = load_params(project / "params.yaml")
    apt, isheep = params.for_step("iter_1"), params.for_step("round_1")
    assert apt.train.objective == "dpo_sft" and isheep.train.objective == "sft"
    # train.args is merged, not replaced: the tiny config's batch size stays.
    assert (
        isheep.train.args["num_train_epochs"] == 2 and isheep.train.args["per_device_train_batch_size"] == 4
    )
    assert isheep.evaluate.train_bad_cases is False and apt.evaluate.train_bad_cases is True
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["isheep"]["train"]["epochs"] = 3
    write_params(project, raw)
    with pytest.raises(ConfigError, match=r"isheep\.train\.epochs: unknown key"):
        load_params(project / "params.yaml")
    raw["isheep"]["train"] = {"objective": "dpo_sft"}
    write_params(project, raw)
    with pytest.raises(ConfigError, match="isheep.train.objective: I-SHEEP rounds train with sft or poft"):
        load_params(project / "params.yaml")


def test_total_base_scores_every_rounds_kept_pairs(project):
    from stages import score

    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["isheep"]["setting"] = "total_base"
    write_params(project, raw)
    write_iterations(project / "params.yaml", 3, "rounds")
    params = load_params(project / "params.yaml")
    got = [str(p) for p in score.sft_input(params, params.iteration("round_2"))]
    assert got == ["data/isheep/round_1/filter/kept.parquet", "data/isheep/round_2/filter/kept.parquet"]
    assert [str(p) for p in score.sft_input(params, params.iteration("iter_1"))] == [
        "data/iter_1/sft_set/sft.parquet"
    ]
    (project / "data/base_model").mkdir(parents=True)
    assert score.references(params.for_step("round_3"), params.iteration("round_3")) == ["data/base_model"]


def test_a_prefilled_answer_is_continued_not_reopened(tiny_model):
    from datakit.backends import make_backend
    from datakit.config import GenerationConfig

    backend = make_backend(GenerationConfig(max_new_tokens=4, batch_size=2), str(tiny_model))
    user = [{"role": "user", "content": "Rate it."}]
    plain, started = backend.render([user, user + [{"role": "assistant", "content": ASSESS_PREFILL}]])
    text = backend.tokenizer.decode(started)
    # The prefilled turn ends in its text (no end-of-turn), and is the plain prompt plus that text.
    assert text.endswith(ASSESS_PREFILL) and started[: len(plain)] == plain


def test_earlier_rounds_show_only_the_instructions_they_kept(project):
    from datakit import artifacts
    from datakit.isheep import FILTERED, INSTRUCTIONS, round_of
    from datakit.schemas import write_table
    from stages import synthesize

    write_iterations(project / "params.yaml", 3, "rounds")
    params = load_params(project / "params.yaml")
    r1, r2, r3 = (params.iteration(f"round_{t}") for t in (1, 2, 3))
    for it, kept in ((r1, [True, False]), (r2, [False, True])):
        ids = [f"r{it.n}-00000", f"r{it.n}-00001"]
        write_table(
            pl.DataFrame(
                {
                    "id": ids,
                    "instruction": [f"task {it.n}a", f"task {it.n}b"],
                    "input": ["", "x"],
                    "prompt_id": ["p", "p"],
                    "iteration": [it.n] * 2,
                    "dropped_by": pl.Series([None, None], dtype=pl.Utf8),
                    "rouge_max": [0.1, 0.2],
                }
            ),
            artifacts.instructions(it),
            INSTRUCTIONS,
        )
        write_table(
            pl.DataFrame(
                {"id": ids, "score": [9, 3], "ppl": [None, None], "empty": [False] * 2, "kept": kept}
            ).with_columns(reason=pl.lit(None, pl.Utf8), cluster=pl.lit(None, pl.Int64)),
            artifacts.filtered_pairs(it),
            FILTERED,
        )
    assert synthesize.earlier_kept(params, r1) == []
    assert synthesize.earlier_kept(params, r3) == [("task 1a", ""), ("task 2b", "x")]
    with pytest.raises(ConfigError, match="iter_1: not an I-SHEEP round"):
        round_of(params, "iter_1")
