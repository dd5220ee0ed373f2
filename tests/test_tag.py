"""Taggers, tag normalising and the tag cache: real MiniLM, a real tiny LLM tagger, real parquet caches."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import TAGGER_ANSWER

from datakit.backends import TransformersBackend
from datakit.config import EmbedConfig, GenerationConfig, TagConfig
from datakit.embed import Embedder
from datakit.errors import ConfigError, DataError
from datakit.tags import (
    EmbeddingTagger,
    LlmTagger,
    load_taxonomy,
    make_tagger,
    normalise_tag,
    normalise_tags,
    parse_tags,
    tag_cache,
    tag_frame,
)

TAXONOMY = """\
tags:
  - name: Arithmetic
    description: adding, subtracting, multiplying or dividing numbers
    examples: ["What is 12 times 7?", "Add 45 and 38."]
    aliases: [math, calculation]
  - name: Word Problem
    description: a short story with quantities that asks for a number
    examples: ["Anna buys 3 pens at 2 dollars each. How much does she pay?"]
  - name: Spelling
    description: how a word is written letter by letter
    examples: ["How do you spell 'necessary'?"]
  - name: Information Retrieval
    description: looking up a fact
"""


@pytest.fixture
def taxonomy_file(tmp_path) -> Path:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(TAXONOMY)
    return path


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Embedder:
    return Embedder(EmbedConfig(), tmp_path_factory.mktemp("cache"), progress=False)


class CountingBackend(TransformersBackend):
    """The real transformers backend, counting the prompts it is asked (and optionally failing on call N)."""

    def __init__(self, cfg, model, fail_on_call: int | None = None):
        super().__init__(cfg, model)
        self.prompts: list[str] = []
        self.calls = 0
        self.fail_on_call = fail_on_call

    def generate(self, conversations, advance=None, **overrides):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # the run is killed here
        self.prompts.extend(c[-1]["content"] for c in conversations)
        return super().generate(conversations, advance, **overrides)


def llm_tagger(model: Path, taxonomy: Path, retries: int = 2, **kw) -> LlmTagger:
    gen = GenerationConfig(max_new_tokens=48, batch_size=8)
    return LlmTagger(
        load_taxonomy(taxonomy),
        CountingBackend(gen, str(model), **kw),
        str(model),
        gen.params_hash(),
        retries=retries,
    )


# ---------------------------------------------------------------------------------------------- taxonomy


def test_default_taxonomy_is_complete():
    tax = load_taxonomy()
    assert len(tax.tags) >= 30
    assert all(t.description and len(t.description.splitlines()) == 1 for t in tax.tags)
    assert len(set(tax.names)) == len(tax.names)


@pytest.mark.parametrize(
    "text, row, field, why",
    [
        ("tags:\n  - name: A\n    description: a\n  - name: B\n", 2, "description", "missing or empty"),
        ("tags:\n  - name: A\n    description: a\n    colour: red\n", 1, "colour", "unknown key"),
        (
            "tags:\n  - name: A\n    description: a\n    aliases: [b]\n  - name: B\n    description: b\n",
            2,
            "name",
            "already names tag 'A'",
        ),
        (
            "tags:\n  - name: A\n    description: a\n    examples: [1]\n",
            1,
            "examples",
            "list of non-empty strings",
        ),
        ("tags: []\n", None, None, "non-empty 'tags:' list"),
        ("tags: [\n", None, None, "not valid YAML"),
    ],
)
def test_taxonomy_errors_name_file_row_and_field(tmp_path, text, row, field, why):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_taxonomy(path)
    assert (err.value.file, err.value.row, err.value.field) == (str(path), row, field)
    assert why in err.value.reason


def test_missing_taxonomy_is_one_error(tmp_path):
    with pytest.raises(DataError, match="taxonomy file not found"):
        load_taxonomy(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------- normalising


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("word  problems", "Word Problem"),  # spacing, case, plural -> the taxonomy name
        ("Word_Problem.", "Word Problem"),
        ("MATH", "Arithmetic"),  # alias
        ("Calculations", "Arithmetic"),  # plural alias
        ("information retrieval", "Information Retrieval"),
        ("mathematics", "Mathematics"),  # not in the taxonomy: kept, Title Case, '-ics' is not a plural
        ("categories", "Categories"),  # outside the taxonomy only a bare trailing 's' is dropped
        ("series", "Series"),
        ("children's stories", "Childrens Stories"),
        ("Unit Tests", "Unit Test"),
        ("C++ programming", "C++ Programming"),
        ("  -- ", None),
    ],
)
def test_normalise_tag(taxonomy_file, raw, expected):
    assert normalise_tag(raw, load_taxonomy(taxonomy_file).canon) == expected


def test_parse_tags(taxonomy_file):
    canon = load_taxonomy(taxonomy_file).canon
    # The answer's own list is the last top-level one (the prompt's format example comes first).
    text = 'Format: [{"tag": str}]. Answer: [{"tag": "Maths?"}, "calculation", {"tag": "Spelling"}, "word problems"]'
    assert parse_tags(text) == (["Maths?", "calculation", "Spelling", "word problems"], None)
    assert normalise_tags(parse_tags(text)[0], canon) == [
        "Arithmetic",
        "Spelling",
        "Word Problem",
    ]  # maths -> math
    assert normalise_tags(["math", "Math", "MATH"], canon) == ["Arithmetic"]
    # A list inside an item (an explanation) is not the answer's list.
    nested = '[{"tag": "Math", "explanation": "uses lists like [1, 2] and []"}, {"tag": "Sorting"}]'
    assert parse_tags(nested) == (["Math", "Sorting"], None)
    # Cut off by the token limit: the complete items still count.
    assert parse_tags('[{"tag": "Math", "explanation": "sums"}, {"tag": "Spel') == (["Math"], None)
    for bad, why in [
        ("no list here", "no JSON list"),
        ("[]", "holds no tags"),
        ("[1, {}]", "holds no tags"),
        ('["a", ', "no JSON list"),
    ]:
        tags, err = parse_tags(bad)
        assert tags is None and why in err


# ----------------------------------------------------------------------------------------------- taggers


def test_embedding_tagger_picks_the_right_tags(taxonomy_file, embedder):
    tax = load_taxonomy(taxonomy_file)
    tagger = EmbeddingTagger(tax, embedder, top_k=2, min_similarity=0.2)
    got = tagger.tag(["What is 345 plus 982?", "How is the word 'rhythm' spelled?"])
    assert got[0][0][0] == "Arithmetic" and got[1][0][0] == "Spelling"
    assert all(len(tags) <= 2 and err is None for tags, err in got)
    # Above every cosine, a text still keeps its single best tag.
    strict = EmbeddingTagger(tax, embedder, top_k=3, min_similarity=1.0)
    assert [t for t, _ in strict.tag(["What is 345 plus 982?"])] == [["Arithmetic"]]
    # Tags come best first, and all pass the threshold (except that single best one).
    vec = embedder.embed(["Anna buys 4 apples at 3 dollars. What does she pay?"])
    scores = tagger.scores(vec)[0]
    tags = tagger.tag_vectors(vec)[0]
    ranked = [tax.names[i] for i in scores.argsort()[::-1]]
    assert tags == [n for n in ranked[:2] if scores[tax.names.index(n)] >= 0.2] or tags == ranked[:1]
    assert strict.fingerprint != tagger.fingerprint  # settings are part of the cache key


def test_llm_tagger_parses_and_normalises(tagger_model, taxonomy_file):
    tagger = llm_tagger(tagger_model, taxonomy_file)
    got = tagger.tag(["Tom has 3 boxes.", "What is 2 + 2?"])
    assert got == [(["word  problems", "Math"], None)] * 2, TAGGER_ANSWER  # as written: what the cache keeps
    assert tagger.normalise(got[0][0]) == ["Word Problem", "Arithmetic"]  # as output
    assert tagger.backend.calls == 1  # parsed first time: no re-ask


def test_llm_tagger_unparsable_is_null_after_retries(tiny_model, taxonomy_file):
    tagger = llm_tagger(tiny_model, taxonomy_file, retries=2)  # an untrained model writes no JSON
    got = tagger.tag(["Tom has 3 boxes."])
    assert got[0][0] is None and "no JSON list" in got[0][1]
    assert tagger.backend.calls == 3  # first pass + 2 sampled re-asks


def test_make_tagger_needs_a_model_for_llm():
    with pytest.raises(ConfigError, match="tag.model"):
        make_tagger(TagConfig(tagger="llm"), embedder=None)


# ------------------------------------------------------------------------------------------------- cache


def test_cache_tags_a_text_once(tagger_model, taxonomy_file, tmp_path):
    tagger = llm_tagger(tagger_model, taxonomy_file)
    texts = ["Tom has 3 boxes.", "Reverse 'hello'.", "Tom has 3 boxes."]
    frame, stats = tag_frame(["a", "b", "c"], texts, tagger, tag_cache(tmp_path, tagger), progress=False)
    assert tagger.backend.prompts == [tagger_prompt(t) for t in texts[:2]]  # the repeat is asked once
    assert (stats.texts, stats.cached, stats.computed, stats.failed) == (2, 0, 2, 0)
    assert (
        frame["id"].to_list() == ["a", "b", "c"]
        and frame["tags"].to_list() == [["Word Problem", "Arithmetic"]] * 3
    )
    assert frame["text_hash"][0] == frame["text_hash"][2] != frame["text_hash"][1]

    # A later run (new process, same cache folder): only the new text reaches the model.
    again = llm_tagger(tagger_model, taxonomy_file)
    frame2, stats2 = tag_frame(
        ["x", "y"],
        ["Reverse 'hello'.", "Convert 5 km to m."],
        again,
        tag_cache(tmp_path, again),
        progress=False,
    )
    assert again.backend.prompts == [tagger_prompt("Convert 5 km to m.")]
    assert (stats2.cached, stats2.computed) == (1, 1)
    assert frame2["tags"].to_list() == [["Word Problem", "Arithmetic"]] * 2


def tagger_prompt(text: str) -> str:
    from datakit.tags import INSTAG_PROMPT

    return INSTAG_PROMPT.format(query=text)


def test_failures_are_recorded_not_cached(tiny_model, taxonomy_file, tmp_path):
    tagger = llm_tagger(tiny_model, taxonomy_file, retries=0)
    frame, stats = tag_frame(["a"], ["Tom has 3 boxes."], tagger, tag_cache(tmp_path, tagger), progress=False)
    assert frame["tags"].to_list() == [None] and "no JSON list" in frame["error"][0] and stats.failed == 1
    again = llm_tagger(tiny_model, taxonomy_file, retries=0)
    tag_frame(["a"], ["Tom has 3 boxes."], again, tag_cache(tmp_path, again), progress=False)
    assert again.backend.calls == 1  # asked again: failures never enter the cache


def test_killed_tagging_resumes_from_the_cache(tagger_model, taxonomy_file, tmp_path):
    texts = ["Tom has 3 boxes.", "Reverse 'hello'.", "Convert 5 km to m.", "What is 2 + 2?"]
    killed = llm_tagger(tagger_model, taxonomy_file, fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        tag_frame(
            [str(i) for i in range(4)],
            texts,
            killed,
            tag_cache(tmp_path, killed),
            chunk_size=1,
            progress=False,
        )
    assert killed.backend.prompts == [tagger_prompt(t) for t in texts[:2]]
    rerun = llm_tagger(tagger_model, taxonomy_file)
    frame, stats = tag_frame(
        [str(i) for i in range(4)], texts, rerun, tag_cache(tmp_path, rerun), chunk_size=1, progress=False
    )
    assert rerun.backend.prompts == [tagger_prompt(t) for t in texts[2:]]
    assert (stats.cached, stats.computed) == (2, 2) and frame["tags"].null_count() == 0


def test_cache_folder_is_per_tagger(taxonomy_file, embedder, tmp_path):
    tax = load_taxonomy(taxonomy_file)
    a = EmbeddingTagger(tax, embedder, top_k=1)
    b = EmbeddingTagger(tax, embedder, top_k=2)
    tag_frame(["1"], ["What is 2 + 2?"], a, tag_cache(tmp_path, a), progress=False)
    _, stats = tag_frame(["1"], ["What is 2 + 2?"], b, tag_cache(tmp_path, b), progress=False)
    assert stats.computed == 1  # other settings, other tags: not served from a's cache
    assert sorted(p.name for p in (tmp_path / "tags").iterdir()) == sorted([a.fingerprint, b.fingerprint])
    assert pl.read_parquet(next((tmp_path / "tags" / a.fingerprint).glob("part-*.parquet")))[
        "tags"
    ].to_list() == [["Arithmetic"]]
