"""Instruction tagging: which skills a text exercises, as a few short tags ("Arithmetic", "Word Problem").

Two taggers behind ``tag.tagger``:

- ``embedding`` (default, offline): zero-shot multi-label tagging. Each tag of the taxonomy file has a
  prototype vector, the normalised mean of the embeddings of ``"<name>: <description>"`` and its examples;
  a text gets the tags whose cosine to its embedding is at least ``min_similarity``, best first, at most
  ``top_k``, and always its single best tag (every text carries a tag, as with InsTag).
- ``llm``: the InsTag prompt on any backend; the answer's JSON list of tags is normalised (case, spaces,
  plural, the taxonomy's aliases). An answer with no parsable list is re-asked (sampled) up to ``retries``
  times, then recorded as null tags with the error.

Tags are cached by text (see ``datakit.cache``) under the tagger's fingerprint, so a text is tagged once
across iterations and runs; changing the tagger, its settings or the taxonomy starts a new cache.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
import yaml
from tqdm.auto import tqdm

from datakit.backends import Backend
from datakit.cache import PartCache, text_hash
from datakit.config import ExecutorConfig, Params, TagConfig
from datakit.embed import Embedder
from datakit.errors import ConfigError, DataError, bound_failures
from datakit.executor import map_frames, text_chunks
from datakit.generate import conversation, user_message
from datakit.schemas import Table
from datakit.shards import model_fingerprint, work_key

_TAGGED = {"key": pl.Utf8, "tags": pl.List(pl.Utf8), "error": pl.Utf8}  # one chunk, as tagged
TAGS = Table(
    "tags",
    {
        "id": pl.Utf8,
        "text_hash": pl.Utf8,
        "tags": pl.List(pl.Utf8),
        "error": pl.Utf8,
        "tagger": pl.Utf8,
    },
    required=("id", "text_hash", "tagger"),
    unique=("id",),
    doc={
        "id": "id of the tagged row",
        "text_hash": "hash of the tagged text (instruction + input): the tag cache's key",
        "tags": "skill tags, best first; null when the tagger's answer could not be parsed",
        "error": "why tags is null, else null",
        "tagger": "tagger kind and fingerprint (tagger, settings, taxonomy, model)",
    },
)


# ---------------------------------------------------------------------------------------------- taxonomy


@dataclass(frozen=True)
class Tag:
    name: str
    description: str
    examples: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Taxonomy:
    tags: tuple[Tag, ...]
    text: str  # its content (part of the tagger's fingerprint)
    canon: dict[str, str] = field(default_factory=dict)  # normalised name or alias -> tag name

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tags]


def default_taxonomy_path() -> Path:
    return Path(str(resources.files("datakit") / "resources" / "taxonomy.yaml"))


def _strings(value: object, path: str, row: int, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(path, "must be a list of non-empty strings", row=row, field=name)
    return tuple(v.strip() for v in value)


def load_taxonomy(path: str | Path = "") -> Taxonomy:
    """Read and check a taxonomy YAML (``tags:`` list of name, description, examples, aliases).

    Raises:
        DataError: naming the file, the tag's 1-based position and the field at fault.
    """
    path = Path(path) if path else default_taxonomy_path()
    if not path.is_file():
        raise DataError(path, "taxonomy file not found (tag.taxonomy)")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(path, f"not valid YAML: {exc}") from exc
    entries = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(path, "expected a non-empty 'tags:' list")
    tags, canon = [], {}
    for row, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise DataError(path, "expected a mapping with name and description", row=row)
        unknown = set(entry) - {"name", "description", "examples", "aliases"}
        if unknown:
            raise DataError(
                path,
                "unknown key (known: name, description, examples, aliases)",
                row=row,
                field=sorted(unknown)[0],
            )
        for name in ("name", "description"):
            if not isinstance(entry.get(name), str) or not entry[name].strip():
                raise DataError(path, "missing or empty", row=row, field=name)
        tag = Tag(
            " ".join(entry["name"].split()),
            entry["description"].strip(),
            _strings(entry.get("examples"), str(path), row, "examples"),
            _strings(entry.get("aliases"), str(path), row, "aliases"),
        )
        for label, value in [("name", tag.name)] + [("aliases", a) for a in tag.aliases]:
            key = _tag_key(value)
            if key in canon and canon[key] != tag.name:
                raise DataError(path, f"{value!r} already names tag {canon[key]!r}", row=row, field=label)
            canon[key] = tag.name
        tags.append(tag)
    return Taxonomy(tuple(tags), text, canon)


# ------------------------------------------------------------------------------------------ normalising


def _words(raw: str) -> list[str]:
    text = raw.lower().replace("_", " ").replace("'", "").replace("\u2019", "")
    return re.sub(r"[^\w+#]+", " ", text).split()


def _singular(word: str) -> str:
    """English plural -> singular, for matching tags against the taxonomy ("categories" -> "category")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ics", "news")):
        return word[:-1]
    return word


def _plain_singular(word: str) -> str:
    """The safe subset of ``_singular`` for tags outside the taxonomy: a bare trailing 's' only."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "es", "ics", "news")):
        return word[:-1]
    return word


def _tag_key(raw: str) -> str:
    """Case-, space-, punctuation- and plural-insensitive form of a tag ("Word  problems" -> "word problem")."""
    words = _words(raw)
    if words:
        words[-1] = _singular(words[-1])
    return " ".join(words)


def normalise_tag(raw: str, canon: dict[str, str]) -> str | None:
    """One free-text tag -> its canonical form: the taxonomy name it or an alias matches, else Title Case
    (with a plain trailing plural 's' dropped).

    Returns None for a tag with no letters or digits.
    """
    key = _tag_key(raw)
    if not key:
        return None
    if key in canon:
        return canon[key]
    words = _words(raw)
    words[-1] = _plain_singular(words[-1])
    return " ".join(w if w.isupper() else w.capitalize() for w in words)


# --------------------------------------------------------------------------------------------- taggers


class Tagger(Protocol):
    fingerprint: str  # everything that decides the tags: the cache folder's name

    def tag(self, texts: Sequence[str]) -> list[tuple[list[str] | None, str | None]]:
        """(tags, error) per text, in order: what the cache keeps."""
        ...

    def normalise(self, tags: list[str]) -> list[str]:
        """Tags as stored (cached or fresh) -> tags as output (the LLM tagger applies the taxonomy here,
        so editing the taxonomy's aliases does not throw its cached answers away)."""
        ...


class EmbeddingTagger:
    """Zero-shot tagging against the taxonomy's prototype vectors (see the module docstring)."""

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, top_k: int = 3, min_similarity: float = 0.3):
        self.taxonomy, self.embedder = taxonomy, embedder
        self.top_k, self.min_similarity = top_k, min_similarity
        self.fingerprint = "embedding-" + work_key(embedder.fingerprint, taxonomy.text, top_k, min_similarity)
        self.prototypes = self._prototypes()

    def _prototypes(self) -> np.ndarray:
        """(n_tags, dim): the normalised mean of each tag's description and example embeddings."""
        strings = [[f"{t.name}: {t.description}", *t.examples] for t in self.taxonomy.tags]
        vecs = self.embedder.embed([s for group in strings for s in group], desc="taxonomy")
        rows, start = [], 0
        for group in strings:
            mean = vecs[start : start + len(group)].mean(axis=0)
            rows.append(mean / np.linalg.norm(mean))
            start += len(group)
        return np.asarray(rows, dtype=np.float32)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.prototypes.T

    def tag_vectors(self, vectors: np.ndarray) -> list[list[str]]:
        names = self.taxonomy.names
        out = []
        for row in self.scores(vectors):
            order = np.argsort(-row, kind="stable")[: self.top_k]
            keep = [i for i in order if row[i] >= self.min_similarity] or [int(order[0])]
            out.append([names[i] for i in keep])
        return out

    def tag(self, texts: Sequence[str]) -> list[tuple[list[str] | None, str | None]]:
        vectors = self.embedder.embed(list(texts), desc="embed for tags")
        return [(tags, None) for tags in self.tag_vectors(vectors)]

    def normalise(self, tags: list[str]) -> list[str]:
        return tags  # already taxonomy names


INSTAG_PROMPT = (
    "You are a helpful assistant. Please identify tags of user intentions in the following user query and "
    "provide an explanation for each tag. Please respond in the JSON format "
    '[{{"tag": str, "explanation": str}}], a list with one object per tag.\n\nUser query: {query}'
)


def parse_tags(text: str) -> tuple[list[str] | None, str | None]:
    """An LLM tagger's answer -> (its tags as written, None), or (None, why).

    The answer's own list is the last top-level JSON list in it (lists inside an item, say in an
    explanation, do not count). Items may be strings or objects with a "tag" key. An answer cut off by the
    token limit keeps the complete ``"tag": "..."`` items it has.
    """
    decoder = json.JSONDecoder()
    found, pos = None, 0
    while (start := text.find("[", pos)) != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        if isinstance(value, list):
            found = value
        pos = end  # resume after the decoded value: nested lists are part of it
    if found is None:
        salvaged = [t for t in re.findall(r'"tag"\s*:\s*"([^"\\]+)"', text) if t.strip()]
        if salvaged:
            return salvaged, None
        return None, f"no JSON list in the answer: {text[:60]!r}"
    tags = [item.get("tag") if isinstance(item, dict) else item for item in found]
    tags = [t for t in tags if isinstance(t, str) and t.strip()]
    if not tags:
        return None, f"the JSON list holds no tags: {json.dumps(found)[:60]}"
    return tags, None


def normalise_tags(tags: Sequence[str], canon: dict[str, str]) -> list[str]:
    """Normalise each tag (``normalise_tag``) and drop the repeats that makes, keeping the order."""
    out: list[str] = []
    for raw in tags:
        tag = normalise_tag(raw, canon)
        if tag and tag not in out:
            out.append(tag)
    return out


class LlmTagger:
    """InsTag-style tagging with any generation backend; unparsable answers are re-asked, then null.

    The cache keeps the tags as the model wrote them; ``normalise`` maps them onto the taxonomy on the way
    out, so the cache key holds only what changes the model's answer (backend, model files, settings).
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        backend: Backend,
        model_key: object,
        params_hash: str,
        *,
        retries: int = 2,
        seed: int = 0,
        system_prompt: str = "",
    ):
        self.taxonomy, self.backend = taxonomy, backend
        self.retries, self.seed, self.system_prompt = retries, seed, system_prompt
        self.fingerprint = "llm-" + work_key(
            backend.name, model_key, params_hash, INSTAG_PROMPT, system_prompt
        )

    def normalise(self, tags: list[str]) -> list[str]:
        return normalise_tags(tags, self.taxonomy.canon)

    def tag(self, texts: Sequence[str]) -> list[tuple[list[str] | None, str | None]]:
        results: list[tuple[list[str] | None, str | None]] = [(None, "not asked")] * len(texts)
        pending = list(range(len(texts)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            # A greedy re-ask would repeat itself, so retries sample with a fresh seed (as the judge does).
            overrides = {} if attempt == 0 else {"temperature": 0.7, "seed": self.seed + attempt}
            outs = self.backend.generate(
                [conversation(INSTAG_PROMPT.format(query=texts[i]), self.system_prompt) for i in pending],
                **overrides,
            )
            still = []
            for i, out in zip(pending, outs, strict=True):
                if out.finish_reason == "error":
                    results[i] = (None, out.error or "request failed")
                else:
                    tags, err = parse_tags(out.text)
                    if tags is not None and not self.normalise(tags):
                        tags, err = None, f"no usable tag in {tags[:3]!r}"
                    results[i] = (tags, err)
                if results[i][0] is None:
                    still.append(i)
            pending = still
        return results


def make_tagger(cfg: TagConfig, embedder: Embedder, lazy: bool = False) -> Tagger:
    """The tagger ``tag.tagger`` names. The llm tagger's backend is built only when it is the one asked for;
    ``lazy``: it loads its model on first use, and can be sent to Ray workers (``executor.kind: ray``)."""
    if cfg.tagger == "embedding":
        return EmbeddingTagger(load_taxonomy(cfg.taxonomy), embedder, cfg.top_k, cfg.min_similarity)
    from datakit.backends import make_backend

    if not cfg.model and not (cfg.generation.backend == "openai" and cfg.generation.openai.model):
        raise ConfigError("tag.model: set the tagging model for tagger 'llm'")
    taxonomy = load_taxonomy(cfg.taxonomy)
    backend = make_backend(cfg.generation, cfg.model, lazy=lazy)
    return LlmTagger(
        taxonomy,
        backend,
        # The model's files (names, sizes, mtimes), not where they live; a served model by its name.
        model_fingerprint(cfg.model)[1:]
        if Path(cfg.model).is_dir()
        else (cfg.model or cfg.generation.openai.model),
        cfg.generation.params_hash(),
        retries=cfg.retries,
        seed=cfg.generation.seed,
        system_prompt=cfg.generation.system_prompt,
    )


# ----------------------------------------------------------------------------------------------- cached


@dataclass
class TagStats:
    texts: int = 0  # distinct texts asked for
    cached: int = 0  # served from the cache
    computed: int = 0  # run through the tagger now
    failed: int = 0  # still untagged (null tags, error kept)


def tag_cache(cache_root: str | Path, tagger: Tagger) -> PartCache:
    schema = {"key": pl.Utf8, "tags": pl.List(pl.Utf8)}
    return PartCache(Path(cache_root) / "tags" / tagger.fingerprint, schema)


def tag_frame(
    ids: Sequence[str],
    texts: Sequence[str],
    tagger: Tagger,
    cache: PartCache | None,
    *,
    chunk_size: int = 256,
    progress: bool = True,
    desc: str = "tag",
    executor: ExecutorConfig | None = None,
) -> tuple[pl.DataFrame, TagStats]:
    """Tag ``texts`` (row ``ids``) through the cache; return a ``TAGS`` frame in input order and counts.

    The cache keeps what ``tagger.tag`` returns; the frame holds ``tagger.normalise`` of it.

    Uncached texts go to the tagger in chunks (here, or on Ray workers with a Ray ``executor``); each
    chunk's successes are cached as it finishes, so a killed run resumes. Failures are not cached (a rerun
    asks again); they come back as null tags with the error.
    """
    keys = [text_hash(t) for t in texts]
    known: dict[str, list[str]] = {}
    if cache is not None:
        hit = cache.get(keys)
        known = dict(zip(hit["key"].to_list(), hit["tags"].to_list(), strict=True))
    todo: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in known:
            todo.setdefault(key, text)
    stats = TagStats(texts=len(set(keys)), cached=len(set(keys)) - len(todo), computed=len(todo))
    errors: dict[str, str] = {}
    items = list(todo.items())
    chunks = text_chunks(items, chunk_size)

    def tag_chunk(chunk: pl.DataFrame, bar) -> pl.DataFrame:
        tags, errs = zip(*tagger.tag(chunk["text"].to_list()), strict=True) if chunk.height else ((), ())
        bar.update(chunk.height)
        return pl.DataFrame(
            {"key": chunk["key"], "tags": list(tags), "error": list(errs)}, schema=_TAGGED, strict=False
        )

    with tqdm(total=len(items), desc=desc, unit="text", disable=not progress or not items) as bar:
        for _, done in map_frames(chunks, tag_chunk, executor, bar):
            good = done.filter(pl.col("tags").is_not_null())
            bad = done.filter(pl.col("tags").is_null())
            errors.update((k, err or "no tags") for k, err in bad.select("key", "error").iter_rows())
            if cache is not None and good.height:
                cache.put(good.select("key", "tags"))
            known.update(good.select("key", "tags").iter_rows())
    stats.failed = len(errors)
    frame = pl.DataFrame(
        {
            "id": list(ids),
            "text_hash": keys,
            "tags": [tagger.normalise(known[k]) if k in known else None for k in keys],
            "error": [errors.get(k) for k in keys],
            "tagger": [tagger.fingerprint] * len(keys),
        },
        schema=dict(TAGS.schema),
    )
    return frame, stats


# --- the loop the tag stages share (tag, tag_domain, retrieve's bad cases) ---


def tag_texts(df: pl.DataFrame) -> list[str]:
    """What is tagged and embedded: the user message (instruction, then input)."""
    return [user_message(i, x) for i, x in zip(df["instruction"], df["input"], strict=True)]


def tag_rows(
    params: Params, df: pl.DataFrame, tagger: Tagger, progress: bool, desc: str
) -> tuple[pl.DataFrame, TagStats]:
    """Tag ``df``'s rows through the cache and fail above ``tag.max_failure_rate``."""
    cfg = params.tag
    chunk = params.embed.chunk_size if cfg.tagger == "embedding" else cfg.generation.shard_size
    tags, stats = tag_frame(
        df["id"].to_list(),
        tag_texts(df),
        tagger,
        tag_cache(params.paths.cache, tagger),
        chunk_size=chunk,
        progress=progress,
        desc=desc,
        executor=params.executor,
    )
    bound_failures(
        tags,
        pl.col("tags").is_null(),
        cfg.max_failure_rate,
        f"{desc}: texts could not be tagged (tag.max_failure_rate)",
    )
    return tags, stats


def tag_metrics(tags: pl.DataFrame, stats: TagStats) -> dict:
    """A tag table's metrics: rows, cache use, failures, tags in use and the most frequent ones."""
    flat = tags.select(pl.col("tags").explode().drop_nulls())["tags"]
    counts = flat.value_counts(sort=True, name="n")
    return {
        "rows": tags.height,
        "texts": stats.texts,
        "cached": stats.cached,
        "tagged_now": stats.computed,
        "failed": int(tags["tags"].null_count()),
        "tags_in_use": counts.height,
        "mean_tags_per_row": round(flat.len() / max(tags.height - tags["tags"].null_count(), 1), 3),
        "top_tags": {r["tags"]: r["n"] for r in counts.head(10).iter_rows(named=True)},
    }
