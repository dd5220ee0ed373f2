"""pairs: preference pairs from hand-made bad cases and similar cases."""

import polars as pl
import pytest

from datakit.cache import text_hash
from datakit.errors import DataError
from datakit.pairs import PREFERENCE_PAIRS, build_pairs
from datakit.retrieve import SIMILAR_CASES
from datakit.schemas import BAD_CASES, GENERATIONS, read_table, write_table
from datakit.tags import TAGS


def bad_cases() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["b1", "b2", "b3"],
            "instruction": ["Add 2 and 3.", "Double 4.", "Halve 8."],
            "input": ["", "Show steps.", ""],
            "output": ["2 + 3 = 5\n#### 5", "4 x 2 = 8\n#### 8", "#### 4"],
            "source": ["math"] * 3,
            "split": ["train"] * 3,
            "response": ["It is 6.", "4 x 2 = 9\n#### 9", "  #### 4 "],  # b3: same as the reference
            "score": [1, 1, 3],
            "feedback": [""] * 3,
            "model": ["m"] * 3,
            "iteration": [2] * 3,
        },
        schema=BAD_CASES.schema,
    )


def bad_tags() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["b2", "b1", "b3"],
            "text_hash": ["h2", "h1", "h3"],
            "tags": [["arithmetic"], ["arithmetic", "addition"], []],
            "error": [None, None, None],
            "tagger": ["t"] * 3,
        },
        schema=TAGS.schema,
    )


def similar() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["p1", "p2", "p3"],
            "instruction": ["Sum 1, 2.", "Reverse 'ab'.", "Count to 2."],
            "input": ["", "", ""],
            "output": ["3", "ba", "1, 2"],
            "source": ["general/list_ops"] * 3,
            "split": ["pool"] * 3,
            "tags": [["addition"], ["strings"], ["counting"]],
            "query_tag": ["addition"] * 3,
            "query": ["tag:addition"] * 3,
            "similarity": [0.9, 0.8, 0.7],
            "strategy": ["tag"] * 3,
            "bad_case_ids": [["b1"]] * 3,
            "n_sources": [1] * 3,
        },
        schema=SIMILAR_CASES.schema,
    )


def answers(ids=("p3", "p1", "p2")) -> pl.DataFrame:
    text = {"p1": "4", "p2": None, "p3": "1, 2"}  # p2 failed; p3 repeats the pool answer
    finish = {"p1": "stop", "p2": "error", "p3": "stop"}
    return pl.DataFrame(
        {
            "id": list(ids),
            "prompt": ["x"] * len(ids),
            "output": [text[i] for i in ids],
            "model": ["m"] * len(ids),
            "iteration": [2] * len(ids),
            "gen_params_hash": ["h"] * len(ids),
            "n_tokens": [1] * len(ids),
            "finish_reason": [finish[i] for i in ids],
            "error": [None if finish[i] == "stop" else "boom" for i in ids],
        },
        schema=GENERATIONS.schema,
    )


def test_pairs_from_bad_and_similar_cases():
    pairs, stats = build_pairs(bad_cases(), bad_tags(), similar(), answers(), iteration=2)
    assert pairs.to_dicts() == [
        {
            "prompt": [{"role": "user", "content": "Add 2 and 3."}],
            "chosen": [{"role": "assistant", "content": "2 + 3 = 5\n#### 5"}],
            "rejected": [{"role": "assistant", "content": "It is 6."}],
            "prompt_id": text_hash("Add 2 and 3."),
            "id": "b1",
            "origin": "bad_case",
            "score": 1,
            "tags": ["arithmetic", "addition"],
            "iteration": 2,
        },
        {
            # The input follows the instruction after a blank line, exactly as generate asked M_t.
            "prompt": [{"role": "user", "content": "Double 4.\n\nShow steps."}],
            "chosen": [{"role": "assistant", "content": "4 x 2 = 8\n#### 8"}],
            "rejected": [{"role": "assistant", "content": "4 x 2 = 9\n#### 9"}],
            "prompt_id": text_hash("Double 4.\n\nShow steps."),
            "id": "b2",
            "origin": "bad_case",
            "score": 1,
            "tags": ["arithmetic"],
            "iteration": 2,
        },
        {
            "prompt": [{"role": "user", "content": "Sum 1, 2."}],
            "chosen": [{"role": "assistant", "content": "3"}],
            "rejected": [{"role": "assistant", "content": "4"}],
            "prompt_id": text_hash("Sum 1, 2."),
            "id": "p1",
            "origin": "similar_case",
            "score": None,
            "tags": ["addition"],
            "iteration": 2,
        },
    ]
    assert stats == {
        "bad_case_pairs": 2,
        "bad_case_identical": 1,  # b3: '  #### 4 ' is the reference once trimmed
        "bad_case_no_answer": 0,
        "similar_case_pairs": 1,
        "similar_case_identical": 1,  # p3
        "similar_case_no_answer": 1,  # p2's generation failed
        "pairs": 3,
        "dropped_identical": 2,
        "dropped_no_answer": 1,
    }


def test_system_prompt_is_part_of_the_prompt_and_its_id():
    pairs, _ = build_pairs(
        bad_cases(), bad_tags(), similar(), answers(), iteration=1, system_prompt="Be brief."
    )
    assert pairs["prompt"][0].to_list() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Add 2 and 3."},
    ]
    assert pairs["prompt_id"][0] == text_hash("Be brief.\x00Add 2 and 3.")


def test_a_similar_case_without_an_answer_is_a_stale_table():
    with pytest.raises(DataError, match=r"gens.parquet: has no answer for 1 similar cases \(first id 'p2'\)"):
        build_pairs(
            bad_cases(), bad_tags(), similar(), answers(("p1", "p3")), iteration=1, where="gens.parquet"
        )


def test_pairs_round_trip_through_parquet_and_load_as_trl_conversations(tmp_path):
    from datasets import Dataset

    pairs, _ = build_pairs(bad_cases(), bad_tags(), similar(), answers(), iteration=2)
    path = write_table(pairs, tmp_path / "preference_pairs.parquet", PREFERENCE_PAIRS)
    assert read_table(path, PREFERENCE_PAIRS).equals(pairs)
    ds = Dataset.from_parquet(str(path))
    assert ds[0]["chosen"] == [{"role": "assistant", "content": "2 + 3 = 5\n#### 5"}]
    assert ds.column_names[:3] == ["prompt", "chosen", "rejected"]
