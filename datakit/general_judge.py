"""The general evaluation's judge, made valid per category of the synthetic pool.

The generic reference-match rule (``datakit.evaluate.match_score``) reads one expected string out of the
reference and looks for it in the answer. For several categories that cannot work: a logic reference is the
sentence "The expression is False", so the answer "False" scores wrong; a definition would have to repeat
the reference sentence; a comparison answer "82 is larger than 47" contains both numbers; a long answer
that lists numbers contains the expected one by chance. Here each category of ``datakit.synth.general``
says what its answer is (``key_for``) and how an answer states it (``check``):

- ``number``: the answer's *final* number (after "the answer is", else the last number), leaving out the
  numbers the instruction itself gives (unless the expected one is among them), so a restatement of the
  question ("3 km is 3000 m", "30 minutes from 09:15 is 09:45") does not count as the answer;
- ``numbers``: a list (sorted, deduplicated, ...): the answer's last numbers, in order;
- ``choice``: one of the options the instruction names (which is larger, who is tallest, which spelling):
  the option the answer settles on (the last one it names, not counting one that follows "than", "not"
  or "instead of");
- ``yesno``: a leading yes/no, else the last one; ``word``: the last of a closed set (True/False,
  bigger/smaller, a weekday); ``letter``: the last single letter (quoted, or standing alone);
- ``spelled``: the last run of hyphen-joined letters spells the word;
- ``words``: number words, hyphens, commas and 'and' aside;
- ``text`` / ``exact``: the expected words as whole tokens (``exact``: case kept, for uppercase, reversed
  or Roman-numeral answers); ``date`` / ``time``: the last date or clock time, parsed;
- ``json`` / ``yaml``: the first JSON value (YAML mapping) in the answer equals the reference's;
- ``definition``: the answer shares at least ``DEFINITION_OVERLAP`` of the reference's content words, and
  and fits it better (Jaccard) than any other glossary definition (so another term's definition scores wrong).

Rows of other sources (a user's own general set) keep the generic rule.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import yaml

from datakit.judges import NUMBER, to_number

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = "january february march april may june july august september october november december".split()
DEFINITION_OVERLAP = 0.35  # least share of the reference definition's content words an answer must share


@dataclass(frozen=True)
class Key:
    """What a right answer states: ``kind`` (see the module doc) and the expected ``value``."""

    kind: str
    value: object
    ignore: tuple[Decimal, ...] = ()  # number: the instruction's own numbers, skipped when reading one
    options: tuple[str, ...] = ()  # choice: every option the instruction offers
    words: tuple[str, ...] = ()  # word: the closed set the answer picks from


# --------------------------------------------------------------------------------------- reading answers

_ANSWER_IS = re.compile(r"(?:the answer|answer)\s*(?:is|=|:)\s*", re.IGNORECASE)
_DATE_TEXT = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2} (?:" + "|".join(MONTHS) + r") \d{4}\b|\b(?:" + "|".join(MONTHS) + r") "
    r"\d{1,2}, \d{4}\b",
    re.IGNORECASE,
)
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?:\s*([AaPp])\.?\s*[Mm]\.?)?")


def numbers_in(text: str) -> list[Decimal]:
    """Every number in ``text`` as the math judge reads one (commas, $, decimals, fractions)."""
    found = (to_number(n) for n in NUMBER.findall(text))
    return [n for n in found if n is not None]


def final_number(response: str, ignore: tuple[Decimal, ...] = ()) -> Decimal | None:
    """The number an answer ends on: the first after its last "the answer is", else its last number;
    numbers in ``ignore`` are passed over either way."""
    marks = list(_ANSWER_IS.finditer(response))
    if marks:
        after = [n for n in numbers_in(response[marks[-1].end() :]) if n not in ignore]
        if after:
            return after[0]
    kept = [n for n in numbers_in(response) if n not in ignore]
    return kept[-1] if kept else None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[\"'`“”‘’]", " ", text).split())


def _has(haystack: str, needle: str, case: bool) -> bool:
    """``needle`` in ``haystack`` as whole tokens (quotes and spacing ignored; case too unless ``case``)."""
    h, n = _norm(haystack), _norm(needle).strip(" .")
    if not case:
        h, n = h.lower(), n.lower()
    return bool(n) and re.search(r"(?<![\w-])" + re.escape(n) + r"(?![\w-]|\.\d)", h) is not None


def _yesno(response: str) -> str | None:
    found = re.findall(r"\b(yes|no)\b", response.lower())
    if not found:
        return None
    lead = re.match(r"\W*(yes|no)\b", response.lower())
    return lead.group(1) if lead else found[-1]


def _last_word(response: str, words: tuple[str, ...]) -> str | None:
    alts = "|".join(map(re.escape, words))
    response = re.sub(r"(?i)\b(?:not|rather than|instead of)\s+(?:" + alts + r")\b", " ", response)
    found = re.findall(r"\b(" + "|".join(map(re.escape, words)) + r")\b", response.lower())
    return found[-1] if found else None


def _letter(response: str) -> str | None:
    """The last single letter an answer names: quoted, else standing alone (not the word "a", nor "I" or
    "A" starting a sentence's words: "I think", "A letter")."""
    quoted = re.findall(r"[\"'`“‘]([A-Za-z])[\"'`”’]", response)
    if quoted:
        return quoted[-1].lower()
    alone = [
        m.group(1)
        for m in re.finditer(r"(?<![\w'-])([A-Za-z])(?![\w'-])(?!\s+[a-z])", response)
        if m.group(1) != "a"
    ]
    return alone[-1].lower() if alone else None


def _picked(response: str, options: tuple[str, ...]) -> str | None:
    """The option an answer settles on: the last it names, leaving out "than X", "not X", "instead of X",
    "X or Y" (an echo of the question) and "X is misspelled"."""
    text = response
    alts = "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True))
    quote = r"[\"'`“”‘’]?"
    opt = quote + r"(?:" + alts + r")" + quote
    text = re.sub(r"(?i)\b(?:than|not|instead of|rather than|over)\s+" + opt, " ", text)
    text = re.sub(r"(?i)" + opt + r"\s*,?\s+or\s+" + opt, " ", text)
    text = re.sub(r"(?i)" + opt + r"\s+is\s+(?:misspelled|incorrect|wrong|smaller|shorter)", " ", text)
    said = re.search(r"(?i)\bthe answer is\s*:?\s*" + quote + r"(" + alts + r")(?![\w-]|\.\d)", text)
    if said:  # an explicit "the answer is X" settles it, whatever the explanation names after it
        return next(o for o in options if o.lower() == said.group(1).lower())
    found = re.findall(r"(?<![\w.-])(" + alts + r")(?![\w-]|\.\d)", text, flags=re.IGNORECASE)
    if not found:
        return None
    last = found[-1].lower()
    return next(o for o in options if o.lower() == last)


def _dates(text: str) -> list[dt.date]:
    out = []
    for m in _DATE_TEXT.findall(text):
        for fmt in ("%Y-%m-%d", "%d %B %Y", "%B %d, %Y"):
            try:
                out.append(dt.datetime.strptime(m, fmt).date())
                break
            except ValueError:
                continue
    return out


def _times(text: str) -> list[tuple[int, int, str]]:
    out = []
    for h, m, half in _TIME.findall(text):
        hour, minute = int(h), int(m)
        if half:  # 12-hour: keep it as said, the reference says which clock it wants
            out.append((hour, minute, half.lower() + "m"))
        else:
            out.append((hour, minute, ""))
    return out


def _first_json(text: str) -> object:
    """The first JSON object or array in ``text`` (None if there is none)."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "[{":
            try:
                return decoder.raw_decode(text[i:])[0]
            except json.JSONDecodeError:
                continue
    return None


def _yaml_mapping(text: str) -> object:
    lines = [ln.strip() for ln in text.replace("```yaml", "").replace("```", "").splitlines()]
    pairs = "\n".join(ln for ln in lines if re.match(r"^[A-Za-z_]\w*:\s*\S", ln))
    try:
        return yaml.safe_load(pairs) if pairs else None
    except yaml.YAMLError:
        return None


_STOP = set(
    "a an the of to in on and or is are be by for with that which this it its as so at from into than then "
    "such each any all one two can may more most very not no their them they there when where how what who "
    "does do done has have had being been over under about between so also only even much many".split()
)


def _content(text: str) -> set[str]:
    words = re.findall(r"[a-z]+", text.lower())
    return {_stem(w) for w in words if w not in _STOP and len(w) > 2}


def _stem(word: str) -> str:
    for suffix in ("ings", "ing", "ies", "ied", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=1)
def _definitions() -> tuple[frozenset[str], ...]:
    from datakit.synth.general import glossary

    return tuple(frozenset(_content(meaning)) for _, meaning in glossary())


def _jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _definition_ok(response: str, reference: str) -> bool:
    said, want = _content(response), frozenset(_content(reference))
    if not want or len(said & want) / len(want) < DEFINITION_OVERLAP:
        return False
    # No other glossary definition may fit the answer as well (it would be that term's answer).
    own = _jaccard(said, want)
    return all(own > _jaccard(said, d) for d in _definitions() if d != want)


# ------------------------------------------------------------------------------------- the answer keys


def _num_key(value: Decimal | None, instruction: str) -> Key:
    given = tuple(n for n in numbers_in(instruction) if n != value)
    return Key("number", value, ignore=given)


def _last_num(text: str) -> Decimal | None:
    found = numbers_in(text)
    return found[-1] if found else None


def _words(text: str) -> str:
    """Number words compared loosely: case, hyphens, commas and 'and' do not matter."""
    return " ".join(w for w in re.sub(r"[-,]", " ", text.lower()).split() if w != "and")


def _quoted(text: str) -> list[str]:
    return [a or b for a, b in re.findall(r'"([^"\n]+)"|`([^`\n]+)`', text)]


def _options(instruction: str) -> tuple[str, ...]:
    """The options of a 'which is ..., A or B?' question: quoted if they are, else the words around 'or'."""
    quoted = _quoted(instruction)
    if len(quoted) >= 2:
        return tuple(quoted)
    m = re.search(r"([^\s,:]+)\s+or\s+([^\s?,]+)\s*\??\s*$", instruction)
    return tuple(x.strip("\"'.") for x in m.groups()) if m else ()


def key_for(category: str, reference: str, instruction: str) -> Key | None:
    """The answer key of a row of ``general/<category>``; None for a category this module does not know."""
    ref = reference.strip()
    lead = re.match(r"(yes|no)\b", ref, flags=re.IGNORECASE)
    if lead and category in ("dates", "logic", "spelling", "number_facts", "comparison"):
        return Key("yesno", lead.group(1).lower())
    if category in ("unit_conversion", "counting", "number_facts"):
        return _num_key(_last_num(ref), instruction)
    if category == "ages":
        return _num_key(numbers_in(ref)[0], instruction)
    if category == "percentages":
        m = re.match(r"\S+ is (\d+)% of", ref)
        return _num_key(Decimal(m.group(1)) if m else _last_num(ref), instruction)
    if category == "list_ops":
        nums = numbers_in(ref)
        return Key("numbers", tuple(nums)) if len(nums) > 1 else Key("number", nums[0])
    if category == "string_ops":
        return Key("exact", _quoted(ref)[-1])
    if category == "term_lookup":
        return Key("text", _quoted(ref)[-1])
    if category == "definition":
        return Key("definition", ref)
    if category == "dates":
        if ref.rstrip(".").lower().endswith(WEEKDAYS):
            days = tuple(d.capitalize() for d in WEEKDAYS)
            return Key("choice", ref.rstrip(".").split()[-1], options=days)
        if ref.startswith("There are"):
            return Key("number", numbers_in(ref)[0], ignore=(), words=("dates",))
        return Key("date", _dates(ref)[-1])
    if category == "number_words":
        if ref.startswith('"'):
            return _num_key(_last_num(ref), instruction)
        return Key("words", _words(_quoted(ref)[-1]))
    if category == "python":
        out = _quoted(ref)[-1]
        if re.fullmatch(r"[\d\s,.\[\]-]+", out) and numbers_in(out):
            nums = numbers_in(out)
            return Key("numbers", tuple(nums)) if len(nums) > 1 else Key("number", nums[0])
        return Key("exact", out)
    if category == "comparison":
        if "increasing order" in ref:
            return Key("numbers", tuple(numbers_in(ref)))
        m = re.match(r"(\S+) is (bigger|smaller) than", ref)
        if m:
            return Key("word", m.group(2), words=("bigger", "larger", "greater", "smaller", "less", "lower"))
        picked = _quoted(ref)[0] if ref.startswith('"') else ref.split()[0]
        return Key("choice", picked, options=_options(instruction) or (picked,))
    if category == "logic":
        m = re.match(r"The expression is (True|False)", ref)
        if m:
            return Key("word", m.group(1).lower(), words=("true", "false"))
        names = tuple(
            n for n in dict.fromkeys(re.findall(r"\b[A-Z][a-z]+\b", instruction)) if n not in ("Who", "Is")
        )
        return Key("choice", ref.split()[0], options=names)
    if category == "spelling":
        quoted = _quoted(ref)
        if not quoted:  # letter by letter, joined by hyphens
            return Key("spelled", ref.replace("-", "").upper())
        if ref.startswith("The correct spelling"):
            return Key("choice", quoted[-1], options=tuple(_quoted(instruction)))
        if len(quoted[-1]) == 1:
            return Key("letter", quoted[-1].lower())
        return Key("text", quoted[-1])
    if category == "format_conversion":
        if ref[:1] in "[{":
            return Key("json", json.loads(ref))
        m = re.match(r'The value of "[^"]+" is (.+)\.$', ref)
        if m:
            value = json.loads(m.group(1))
            if isinstance(value, int | float):
                return Key("number", Decimal(str(value)))
            return Key("text", str(value))
        return Key("yaml", yaml.safe_load(ref))
    if category == "roman_numerals":
        if "Roman numerals is" in ref:
            return Key("exact", ref.rstrip(".").split()[-1])
        return _num_key(_last_num(ref), instruction)
    if category == "clock":
        if ref.endswith("minutes."):
            return _num_key(_last_num(ref), instruction)
        return Key("time", _times(ref)[-1])
    if category == "sequences":
        if ref.startswith("The next letter"):
            return Key("letter", ref.rstrip(".").split()[-1].lower())
        return _num_key(_last_num(ref), instruction)
    return None


def check(key: Key, response: str) -> bool:
    """Whether ``response`` states the answer ``key`` describes (see the module doc)."""
    kind = key.kind
    if kind == "number":
        text = _DATE_TEXT.sub(" ", response) if "dates" in key.words else response
        got = final_number(text, key.ignore)
        return got is not None and got == key.value
    if kind == "numbers":
        want = list(key.value)
        got = numbers_in(response)
        return len(got) >= len(want) and got[-len(want) :] == want
    if kind == "yesno":
        return _yesno(response) == key.value
    if kind == "word":
        said = _last_word(response, key.words)
        if said in ("larger", "greater"):
            said = "bigger"
        if said in ("less", "lower"):
            said = "smaller"
        return said == key.value
    if kind == "letter":
        return _letter(response) == key.value
    if kind == "choice":
        return _picked(response, key.options) == key.value
    if kind == "spelled":
        runs = re.findall(r"(?<![\w-])[A-Za-z](?:\s*-\s*[A-Za-z])+(?![\w-])", response)
        return bool(runs) and re.sub(r"[\s-]", "", runs[-1]).upper() == key.value
    if kind == "text":
        return _has(response, str(key.value), False)
    if kind == "words":
        return _has(_words(response), str(key.value), False)
    if kind == "exact":
        return _has(response, str(key.value), True)
    if kind == "date":
        found = _dates(response)
        return bool(found) and found[-1] == key.value
    if kind == "time":
        found = _times(response)
        if not found:
            return False
        h, m, half = found[-1]
        wh, wm, whalf = key.value
        return (h, m) == (wh, wm) and (half == whalf or not whalf and not half)
    if kind == "json":
        return _first_json(response) == key.value
    if kind == "yaml":
        return _yaml_mapping(response) == key.value
    if kind == "definition":
        return _definition_ok(response, str(key.value))
    raise ValueError(f"unknown answer kind {kind!r}")  # a bug in key_for


def describe(key: Key) -> str:
    """The expected answer as the ``extracted`` column shows it."""
    value = key.value
    if isinstance(value, tuple) and key.kind == "time":
        h, m, half = value
        return f"{h:02d}:{m:02d}" + (f" {half.upper()}" if half else "")
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if key.kind in ("json", "yaml"):
        return json.dumps(value)
    return str(value)
