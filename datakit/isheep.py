"""I-SHEEP (seeds/004): the model writes new instructions from a few seed tasks, answers them, grades its own
pairs 1-10, keeps the good ones and is fine-tuned on them, round after round.

This module is the pure core of the recipe's own stages (frames and text in, frames and text out):

- synthesize: ``synth_prompt`` (k tasks shown in context, Alpaca-style requirements), ``parse_instructions``
  (the model's list, in whatever shape it comes, into (instruction, input) rows), ``rule_filter``
  (Self-Instruct's heuristics: length bounds, banned words, odd starts, duplicates, ROUGE-L > 0.7 against
  every instruction already there), each drop counted by reason;
- assess: ``assess_prompt`` in three variants (``simple``, ``combined``, ``icl``); the answer is prefilled
  with ``Score:`` and ``parse_self_score`` reads the whole number 1-10 it opens with, or gives a null score
  with the error (never a guess); the judge's machinery asks, re-asks and records;
- filter: ``choose`` keeps pairs by self-score, perplexity, density (k-means over the model's last-layer
  states, one pair per cluster) or density + perplexity; ``pair_stats`` computes the perplexities and
  states with one forward pass per batch.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Sequence

import numpy as np
import polars as pl

from datakit.config import FilterConfig, Iteration, Params, SynthesizeConfig
from datakit.errors import ConfigError
from datakit.generate import user_message
from datakit.schemas import Table

# ---------------------------------------------------------------------------------------------------
# synthesize: the prompt, the parser, the rule filters
# ---------------------------------------------------------------------------------------------------


def task_text(instruction: str, input_text: str) -> str:
    """A task on one line: the instruction, then its input after ``Input:`` when it has one."""
    one_line = " ".join(instruction.split())
    return f"{one_line} Input: {' '.join(input_text.split())}" if input_text.strip() else one_line


def synth_prompt(tasks: Sequence[tuple[str, str]], n_new: int) -> str:
    """The instruction-generation prompt: Alpaca's requirements, short, and ``tasks`` as a numbered list that
    the model continues with ``n_new`` new ones."""
    shown = "\n".join(f"{i}. {task_text(ins, inp)}" for i, (ins, inp) in enumerate(tasks, start=1))
    first = len(tasks) + 1
    return (
        "You are asked to come up with a set of diverse task instructions for a helpful assistant.\n"
        "Requirements:\n"
        "- Do not repeat verbs or topics; mix kinds of tasks: questions, writing, rewriting, classification, "
        "math, coding, advice, brainstorming.\n"
        "- Each task is one or two sentences, in English, and can be done with text only.\n"
        "- When a task needs an input, put it after 'Input:' on the same line.\n\n"
        f"Example tasks:\n{shown}\n\n"
        f"Write {n_new} new tasks, one per line, numbered from {first} to {first + n_new - 1}."
    )


# The start of a list item: "3.", "3)", "(3)", "Task 3:", "Sentence 3:", "**3.**", "#3", "- ", "* ", "• ".
_ITEM = re.compile(
    r"^\s*(?:\*\*|__)?\s*(?:[a-z]+\s*#?\s*\d{1,3}\s*[:.)-]|#?\(?\d{1,3}\s*[.):]|[-*•]\s)"
    r"\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
# "Task:", "New instruction:", "Sentence 2:", "Example 3:" before the text itself.
_LABEL = re.compile(
    r"^(?:\*\*|__)?\s*(?:(?:new\s+)?(?:task|instruction|question)|[A-Za-z]+\s+\d{1,3})\s*(?:\*\*|__)?\s*:\s*",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"^([\"'`“‘])(.+?)([\"'`”’])(?:\s*[-–—:(].*)?$")
_INPUT = re.compile(r"(?:^|\s)(?:\*\*|__)?input(?:\*\*|__)?\s*:\s*", re.IGNORECASE)
_OUTPUT = re.compile(r"(?:^|\s)(?:\*\*|__)?(?:output|answer|response)(?:\*\*|__)?\s*:", re.IGNORECASE)


def _clean(text: str) -> str:
    text = _LABEL.sub("", text.strip())
    text = text.replace("**", "").replace("__", "").strip()
    quoted = _QUOTED.match(text)  # '"Explain X" - 2-8': the quoted task, not the trailing note
    if quoted:
        text = quoted.group(2).strip()
    return " ".join(text.split())


def parse_instructions(text: str, truncated: bool = False) -> list[tuple[str, str]]:
    """The new tasks in a model's list, as (instruction, input).

    Items start with a number (``3.``, ``3)``, ``Task 3:``, ``**3.**``) or a bullet; the lines under an item
    continue it until a blank line or the next item; text before the first item and after a blank line
    (preambles, closing remarks) is not a task. ``Input:`` splits off the input; an ``Output:`` / ``Answer:``
    part is dropped (the model answers each task afresh). When the generation was cut at the token limit
    (``truncated``) the last item may be cut too, so it is dropped.
    """
    items: list[str] = []
    current: list[str] | None = None
    for line in (text or "").splitlines():
        start = _ITEM.match(line)
        if start:
            current = [line[start.end() :]]
            items.append(current)  # type: ignore[arg-type]
        elif not line.strip():
            current = None
        elif current is not None:
            current.append(line.strip())
    if truncated and items:
        items.pop()
    out = []
    for item in items:
        body = " ".join(part.strip() for part in item)
        out_at = _OUTPUT.search(body)
        if out_at:
            body = body[: out_at.start()]
        in_at = _INPUT.search(body)
        instruction, input_text = (body[: in_at.start()], body[in_at.end() :]) if in_at else (body, "")
        instruction = _clean(instruction)
        if instruction:
            out.append((instruction, _clean(input_text)))
    return out


def _starts_badly(text: str) -> bool:
    first = text[0]
    return first in string.punctuation or not first.isascii()


def rule_filter(
    candidates: pl.DataFrame, existing: Sequence[str], cfg: SynthesizeConfig
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Self-Instruct's rule filters over ``candidates`` (``instruction, input``, in generation order).

    Each candidate gets ``dropped_by`` (null = kept) from the first filter it fails, in this order:
    ``length`` (words outside ``min_words..max_words``), ``banned`` (a banned word or phrase: tasks a text
    model cannot do), ``format`` (starts with punctuation or a non-ASCII character), ``duplicate`` (the same
    text as an existing or earlier kept one), ``rouge`` (ROUGE-L F above ``rouge_threshold`` against any
    existing instruction or earlier kept candidate). ``rouge_max`` is the highest ROUGE-L it met.

    Returns:
        The candidates with ``dropped_by`` and ``rouge_max``, and how many each filter dropped.
    """
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    banned = [re.compile(rf"(?<!\w){re.escape(w.lower())}(?!\w)") for w in cfg.banned]
    pool = list(dict.fromkeys(existing))
    seen = {p.lower() for p in pool}
    dropped, rouge = [], []
    for ins in candidates["instruction"]:
        n_words = len(ins.split())
        reason, best = None, None
        if not cfg.min_words <= n_words <= cfg.max_words:
            reason = "length"
        elif any(b.search(ins.lower()) for b in banned):
            reason = "banned"
        elif _starts_badly(ins):
            reason = "format"
        elif ins.lower() in seen:
            reason = "duplicate"
        else:
            best = max((scorer.score(p, ins)["rougeL"].fmeasure for p in pool), default=0.0)
            if best > cfg.rouge_threshold:
                reason = "rouge"
        dropped.append(reason)
        rouge.append(best)
        if reason is None:
            pool.append(ins)
            seen.add(ins.lower())
    out = candidates.with_columns(
        dropped_by=pl.Series(dropped, dtype=pl.Utf8), rouge_max=pl.Series(rouge, dtype=pl.Float64)
    )
    counts = {name: dropped.count(name) for name in ("length", "banned", "format", "duplicate", "rouge")}
    return out, counts


def sample_tasks(
    seeds: Sequence[tuple[str, str]],
    earlier: Sequence[tuple[str, str]],
    cfg: SynthesizeConfig,
    rng: random.Random,
) -> list[tuple[str, str]]:
    """The tasks one prompt shows: ``cfg.earlier`` from earlier rounds (when there are any), the rest seeds."""
    n_earlier = min(cfg.earlier, len(earlier))
    n_seed = min(cfg.examples - n_earlier, len(seeds))
    shown = rng.sample(list(seeds), n_seed) + rng.sample(list(earlier), n_earlier)
    rng.shuffle(shown)
    return shown


# ---------------------------------------------------------------------------------------------------
# assess: the self-assessment prompts; the answer starts with "Score:" (prefilled) and is parsed or null
# ---------------------------------------------------------------------------------------------------

ASSESS_PREFILL = "Score:"  # the start of the assessor's answer: the score comes first, then feedback
_ASSESS_FORMAT = "Give the score first, a whole number from 1 to 10, then one sentence of feedback."
_ASSESS_STANDARDS = {
    "simple": "Rate the response from 1 to 10. A poor response gets a low score; a good response gets a high score.",
    "combined": (
        "Rate the response from 1 to 10 on two standards together:\n"
        "- Quality: is it correct, helpful, clear and complete, without repetition or irrelevant text?\n"
        "- Instruction following: does it do exactly what the instruction asks, in the form it asks for?\n"
        "1 means wrong or off-task; 5 means partly right or partly on task; 10 means an excellent, complete "
        "answer that follows the instruction exactly."
    ),
}
# In-context examples for the icl variant (after the case study of seeds/004, appendix B).
_ICL_EXAMPLES = (
    (
        "Remove the spaces from this text.\n\nHere is a text with spaces.",
        "Here is a text with spaces.",
        2,
        "The spaces were not removed.",
    ),
    ("Give a synonym for the word.\n\nhappy", "Joyful", 10, "A correct synonym, exactly as asked."),
    (
        "Explain the following joke.\n\nWhy do programmers prefer dark mode? Because light attracts bugs.",
        "It is about computers.",
        4,
        "On task, but too vague to explain the pun.",
    ),
    (
        "Write a SQL query that counts the rows of the table users.",
        "SELECT COUNT(*) FROM users;",
        9,
        "Correct and complete.",
    ),
)


def assess_prompt(variant: str, instruction: str, input_text: str, response: str) -> str:
    """The self-assessment prompt for one pair (``simple``, ``combined`` or ``icl``); the answer is
    prefilled with ``ASSESS_PREFILL``."""
    pair = f"### Instruction:\n{user_message(instruction, input_text)}\n\n### Response:\n{response}"
    if variant == "icl":
        shots = "\n\n".join(
            f"### Instruction:\n{i}\n\n### Response:\n{r}\n\n{ASSESS_PREFILL} {n}. {f}"
            for i, r, n, f in _ICL_EXAMPLES
        )
        return f"Rate each response from 1 to 10 for its quality and how well it follows the instruction.\n\n{shots}\n\n{pair}"
    return f"{_ASSESS_STANDARDS[variant]}\n\n{pair}\n\n{_ASSESS_FORMAT}"


# The score as the first thing after "Score:": "8", "8/10", "8 out of 10", "**8**", then a break or the end.
_SELF_SCORE = re.compile(
    r"^\s*\**\s*(\d{1,2})\**(?:\s*(?:/\s*10|out of 10))?(?=$|\s|[.)!*:](?!\d))", re.IGNORECASE
)


def parse_self_score(text: str) -> tuple[int | None, str, str | None]:
    """Parse the assessor's answer (what follows the prefilled ``Score:``) into (score, feedback, error).

    The answer must open with a whole number 1-10 (``8``, ``8/10``, ``8 out of 10``) followed by a break,
    punctuation or the end; the rest is feedback. Anything else ("100%", "3.5", "2, 5, 9" echoing the
    response) is a null score with the error: never a guess.
    """
    text = text or ""
    m = _SELF_SCORE.match(text)
    if not m:
        return None, text.strip(), f"no score 1-10 after {ASSESS_PREFILL!r}: {text.strip()[:40]!r}"
    score = int(m.group(1))
    feedback = text[m.end() :].strip(" .:-*\n")
    if not 1 <= score <= 10:
        return None, feedback, f"score {score} is outside 1-10"
    return score, feedback, None


# ---------------------------------------------------------------------------------------------------
# filter
# ---------------------------------------------------------------------------------------------------


def pair_stats(
    lm,
    seqs: Sequence[tuple[list[int], int]],
    *,
    pad_id: int,
    batch_size: int = 8,
    device: str = "cpu",
    bar=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's response perplexity under ``lm`` and its last-layer state (mean over its tokens, unit length).

    ``seqs`` are (token ids, prompt length) as ``poft.tokenize_row`` makes them; one forward pass per batch
    gives both (``logprobs.sequence_logps`` with the hidden states asked for).
    """
    from datakit.logprobs import sequence_logps

    states = np.zeros((len(seqs), lm.config.hidden_size), dtype=np.float32)
    logps = sequence_logps(
        lm, seqs, pad_id=pad_id, batch_size=batch_size, device=device, bar=bar, states=states
    )
    ppl = np.array([math.exp(-s / n) if n else math.inf for s, n in logps])
    norms = np.linalg.norm(states, axis=1, keepdims=True)
    return ppl, states / np.where(norms == 0, 1, norms)


def choose(pairs: pl.DataFrame, cfg: FilterConfig, states: np.ndarray | None = None) -> pl.DataFrame:
    """Which pairs the filter keeps: ``pairs`` (``id, score, ppl, empty`` in a fixed order) with ``kept``,
    ``reason`` (why a pair was dropped; null when kept) and ``cluster`` (density strategies).

    - score: self-score >= ``threshold`` (an unscored pair is dropped);
    - ppl: perplexity <= ``max_ppl``;
    - density: k-means with round(keep * pairs) clusters over ``states``; one pair per cluster, drawn with
      ``seed``;
    - density_ppl: pairs above ``max_ppl`` out first, then k-means over the rest; per cluster the pair with
      the lowest perplexity.
    An empty response is never kept.
    """
    n = pairs.height
    reason: list[str | None] = ["empty response" if e else None for e in pairs["empty"]]
    cluster: list[int | None] = [None] * n
    if cfg.strategy == "score":
        for i, s in enumerate(pairs["score"]):
            if reason[i] is None and (s is None or s < cfg.threshold):
                reason[i] = "unscored" if s is None else f"score < {cfg.threshold}"
    if cfg.strategy in ("ppl", "density_ppl"):
        for i, p in enumerate(pairs["ppl"]):
            if reason[i] is None and not p <= cfg.max_ppl:
                reason[i] = f"ppl > {cfg.max_ppl:g}"
    if cfg.strategy in ("density", "density_ppl"):
        if states is None or len(states) != n:
            raise ValueError("density strategies need one state vector per pair")
        live = np.array([i for i in range(n) if reason[i] is None], dtype=int)
        k = min(len(live), max(1, round(cfg.keep * n))) if len(live) else 0
        if k:
            from sklearn.cluster import KMeans

            labels = KMeans(n_clusters=k, random_state=cfg.seed, n_init=10).fit(states[live]).labels_
            rng = random.Random(cfg.seed)
            ppl = pairs["ppl"].to_list()
            for c in range(k):
                members = [int(i) for i in live[labels == c]]
                if not members:
                    continue
                pick = (
                    rng.choice(members) if cfg.strategy == "density" else min(members, key=lambda i: ppl[i])
                )
                for i in members:
                    cluster[i] = c
                    if i != pick:
                        reason[i] = "not its cluster's pick"
    return pairs.with_columns(
        kept=pl.Series([r is None for r in reason], dtype=pl.Boolean),
        reason=pl.Series(reason, dtype=pl.Utf8),
        cluster=pl.Series(cluster, dtype=pl.Int64),
    )


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------

INSTRUCTIONS = Table(
    "instructions",
    {
        "id": pl.Utf8,
        "instruction": pl.Utf8,
        "input": pl.Utf8,
        "prompt_id": pl.Utf8,
        "iteration": pl.Int64,
        "dropped_by": pl.Utf8,
        "rouge_max": pl.Float64,
    },
    required=("id", "instruction", "prompt_id"),
    unique=("id",),
    doc={
        "id": "r<round>-<n>: the n-th instruction parsed in the round",
        "instruction": "the task the model wrote",
        "input": "its input ('' when none)",
        "prompt_id": "the synthesis prompt (and generation) it came from",
        "iteration": "the round",
        "dropped_by": "the first rule filter it failed (length, banned, format, duplicate, rouge); null = kept",
        "rouge_max": "its highest ROUGE-L F against the instructions already there (null: not compared)",
    },
)

FILTERED = Table(
    "filtered pairs",
    {
        "id": pl.Utf8,
        "score": pl.Int64,
        "ppl": pl.Float64,
        "empty": pl.Boolean,
        "kept": pl.Boolean,
        "reason": pl.Utf8,
        "cluster": pl.Int64,
    },
    required=("id",),
    unique=("id",),
    doc={
        "id": "the instruction's id",
        "score": "the self-assessment score 1-10 (null: unscored)",
        "ppl": "perplexity of the response under M_t (null when the strategy does not need it)",
        "empty": "the response is empty",
        "kept": "trained on",
        "reason": "why it was dropped; null when kept",
        "cluster": "its k-means cluster (density strategies)",
    },
)


def round_of(params: Params, iteration: str) -> Iteration:
    """I-SHEEP round ``iteration`` of params.yaml; a ConfigError when it is not one."""
    it = params.iteration(iteration)
    if it.recipe != "isheep":
        raise ConfigError(
            f"{iteration}: not an I-SHEEP round (known rounds: {', '.join(params.rounds) or 'none'})"
        )
    return it
