"""A general instruction pool: many small skills, each with an answer the generator computes itself.

Every category is a function ``(rng) -> (instruction, output)``. Answers come from code (``datetime``,
``json``, executing the generated Python snippet, the shipped glossary), never from a hand-typed table, so
they are right by construction.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import io
import json
import random
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from math import gcd, isqrt, lcm

import yaml

# Common, unambiguous lowercase words for the string, counting and spelling tasks.
WORDS = tuple(
    dict.fromkeys(
        (
            "apple banana cherry garden window pencil rocket planet silver forest river mountain castle dragon "
            "butter coffee orange purple yellow market doctor teacher library picture kitchen blanket candle "
            "island jacket ladder magnet needle ocean pepper rabbit saddle ticket turtle violin wallet zebra "
            "anchor bridge camera desert engine falcon guitar hammer insect jungle kettle lemon mirror number "
            "oyster parrot quartz rhythm spider tomato umbrella valley walrus yogurt acorn basket cactus dolphin "
            "eagle feather giraffe harbor igloo jigsaw koala lantern meadow nectar orchid pillow quiver raisin "
            "shadow thunder unicorn velvet whistle almond breeze canyon dinner echo fabric glacier helmet "
            "iceberg journal kitten lobster marble noodle office pirate puzzle rainbow salmon tiger village "
            "winter blossom cookie sunset bottle sandwich compass elephant festival harvest notebook penguin "
            "squirrel tractor cabinet pumpkin airport balloon chimney diamond feather hamster keyboard lettuce "
            "mushroom necklace printer sweater teapot vulture"
        ).split()
    )
)  # dict.fromkeys drops repeats but keeps order, so draws stay deterministic

ANAGRAM_PAIRS = (
    ("listen", "silent"),
    ("heart", "earth"),
    ("night", "thing"),
    ("below", "elbow"),
    ("state", "taste"),
    ("angel", "glean"),
    ("cider", "cried"),
    ("dusty", "study"),
    ("inch", "chin"),
    ("lemon", "melon"),
    ("peach", "cheap"),
    ("secure", "rescue"),
    ("stressed", "desserts"),
    ("thorn", "north"),
    ("vase", "save"),
    ("worth", "throw"),
    ("brag", "grab"),
    ("debit", "bidet"),
    ("fluster", "restful"),
    ("rats", "star"),
    ("act", "cat"),
    ("lump", "plum"),
    ("sword", "words"),
    ("tops", "spot"),
)

NAMES = (
    "Ana Ben Chloe Omar Priya Liam Sofia Kenji Maya Carlos Leila Noah Fatima Ravi Emma Hugo Yuki Mateo "
    "Grace Tariq Nora Felix Zara Ivan Clara Arjun Mei Oscar Rosa Daniel"
).split()

MONTHS = ("January February March April May June July August September October November December").split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ((1_000_000, "million"), (1_000, "thousand"))


class _Reject(Exception):
    """The draw gave a degenerate item (empty answer, tie, ...); draw again."""


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        if rest < 20:
            parts.append(ONES[rest])
        else:
            tens, ones = divmod(rest, 10)
            parts.append(TENS[tens] + (f"-{ONES[ones]}" if ones else ""))
    return " ".join(parts)


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 10**9, e.g. 1205 -> 'one thousand two hundred five'."""
    if not 0 <= n < 1_000_000_000:
        raise ValueError(f"number_to_words supports 0..999,999,999, got {n}")
    if n == 0:
        return "zero"
    parts = []
    for scale, name in SCALES:
        if n >= scale:
            parts.append(f"{_below_thousand(n // scale)} {name}")
            n %= scale
    if n:
        parts.append(_below_thousand(n))
    return " ".join(parts)


def words_to_number(text: str) -> int:
    """Inverse of :func:`number_to_words`; also accepts 'and' and commas ('one hundred and five')."""
    values = {w: i for i, w in enumerate(ONES)} | {w: 10 * i for i, w in enumerate(TENS) if i >= 2}
    total = current = 0
    tokens = text.lower().replace(",", " ").replace("-", " ").split()
    if not tokens:
        raise ValueError("no number words")
    for tok in tokens:
        if tok == "and":
            continue
        if tok in values:
            current += values[tok]
        elif tok == "hundred":
            current *= 100
        elif tok in ("thousand", "million"):
            total += current * (1000 if tok == "thousand" else 1_000_000)
            current = 0
        else:
            raise ValueError(f"not a number word: {tok!r}")
    return total + current


ROMAN = ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"))
ROMAN += ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))


def to_roman(n: int) -> str:
    if not 1 <= n <= 3999:
        raise ValueError(f"Roman numerals cover 1..3999, got {n}")
    out = []
    for value, sym in ROMAN:
        count, n = divmod(n, value)
        out.append(sym * count)
    return "".join(out)


@lru_cache(maxsize=1)
def glossary() -> tuple[tuple[str, str], ...]:
    """(term, definition) pairs from the glossary shipped in ``datakit/resources``, in file order."""
    text = (importlib.resources.files("datakit") / "resources" / "glossary.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return tuple((str(k), str(v).strip()) for k, v in data.items())


# ----------------------------------------------------------------------------------------------- python


SAFE_BUILTINS = {
    f.__name__: f
    for f in (range, len, sum, max, min, sorted, enumerate, zip, str, int, list, set, dict, abs, reversed)
}


def run_snippet(code: str) -> str:
    """Run a snippet this module generated and return what it printed (trailing newline stripped).

    The namespace has no imports and a short builtin list: the code is ours, the restriction only keeps a
    generator bug from touching anything outside the snippet.
    """
    buf = io.StringIO()

    def _print(*args: object, sep: str = " ", end: str = "\n") -> None:
        buf.write(sep.join(str(a) for a in args) + end)

    exec(code, {"__builtins__": {**SAFE_BUILTINS, "print": _print}})  # the code is our own generated snippet
    return buf.getvalue().rstrip("\n")


def _snippet(rng: random.Random) -> str:
    kind = rng.randrange(12)
    word = rng.choice(WORDS)
    if kind == 0:
        a, b, k, init = rng.randint(0, 5), rng.randint(6, 15), rng.randint(1, 5), rng.randint(0, 10)
        return f"total = {init}\nfor i in range({a}, {b}):\n    total += i * {k}\nprint(total)"
    if kind == 1:
        i = rng.randint(0, len(word) - 2)
        j = rng.randint(i + 1, len(word))
        return f's = "{word}"\nprint(s[{i}:{j}].upper())'
    if kind == 2:
        nums = [rng.randint(1, 20) for _ in range(rng.randint(4, 7))]
        k = rng.randint(2, 5)
        op = rng.choice(["x % 2 == 0", "x % 2 == 1", f"x > {rng.randint(3, 15)}"])
        return f"nums = {nums}\nresult = [x * {k} for x in nums if {op}]\nprint(result)"
    if kind == 3:
        fruits = rng.sample(["apples", "pears", "plums", "kiwis", "figs", "limes"], 2)
        a, b, n = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 6)
        op = rng.choice(["*", "+", "-"])
        return (
            f'stock = {{"{fruits[0]}": {a}, "{fruits[1]}": {b}}}\n'
            f'stock["{fruits[0]}"] += {n}\n'
            f'print(stock["{fruits[0]}"] {op} stock["{fruits[1]}"])'
        )
    if kind == 4:
        n, d = rng.randint(10, 900), rng.choice([2, 3])
        return f"n = {n}\nsteps = 0\nwhile n > 1:\n    n = n // {d}\n    steps += 1\nprint(steps)"
    if kind == 5:
        a, b, c = rng.randint(2, 9), rng.randint(-5, 20), rng.randint(1, 12)
        return f"def f(x):\n    return x * {a} + {b}\n\nprint(f({c}))"
    if kind == 6:
        words = rng.sample(WORDS, rng.randint(3, 4))
        sep = rng.choice(["-", "", " ", "/", "+"])
        part = rng.choice(["w[0]", "w[-1]", "w[:2]", "w.upper()[0]"])
        return f'words = {json.dumps(words)}\nprint("{sep}".join({part} for w in words))'
    if kind == 7:
        names = rng.sample(NAMES, rng.randint(3, 5))
        idx = rng.randint(0, len(names) - 1)
        rev = rng.choice(["", ", reverse=True"])
        return f"names = {json.dumps(names)}\nprint(sorted(names{rev})[{idx}])"
    if kind == 8:
        a, b = rng.randint(20, 500), rng.randint(3, 19)
        return f"a = {a}\nb = {b}\nprint(a // b, a % b)"
    if kind == 9:
        items = [rng.randint(1, 50) for _ in range(rng.randint(3, 5))]
        n = rng.randint(1, 99)
        return f"x = {items}\nx.append({n})\nx.pop(0)\nprint(len(x), x[-1])"
    if kind == 10:
        a = sorted(rng.sample(range(1, 13), rng.randint(3, 6)))
        b = sorted(rng.sample(range(1, 13), rng.randint(3, 6)))
        op = rng.choice(["&", "|", "-"])
        return f"a = set({a})\nb = set({b})\nprint(sorted(a {op} b))"
    letters = rng.choice(["aeiou", "rst", "lmn", "aeiouy"])
    return f'count = 0\nfor ch in "{word}":\n    if ch in "{letters}":\n        count += 1\nprint(count)'


def python_output(rng: random.Random) -> tuple[str, str]:
    code = _snippet(rng)
    out = run_snippet(code)
    if not out.strip() or "\n" in out:
        raise _Reject
    ask = rng.choice(
        [
            "What does this Python code print?",
            "What is the output of the following Python snippet?",
            "Run this Python code in your head. What gets printed?",
            "Predict the exact output of this Python program.",
            "What will the following code print when executed with Python 3?",
        ]
    )
    return f"{ask}\n\n```python\n{code}\n```", f"It prints `{out}`."


# ------------------------------------------------------------------------------------------- categories

UNITS = (
    ("kilometre", "kilometres", "metre", "metres", 1000),
    ("metre", "metres", "centimetre", "centimetres", 100),
    ("centimetre", "centimetres", "millimetre", "millimetres", 10),
    ("kilogram", "kilograms", "gram", "grams", 1000),
    ("tonne", "tonnes", "kilogram", "kilograms", 1000),
    ("litre", "litres", "millilitre", "millilitres", 1000),
    ("hour", "hours", "minute", "minutes", 60),
    ("minute", "minutes", "second", "seconds", 60),
    ("day", "days", "hour", "hours", 24),
    ("week", "weeks", "day", "days", 7),
    ("year", "years", "month", "months", 12),
    ("foot", "feet", "inch", "inches", 12),
    ("yard", "yards", "foot", "feet", 3),
    ("mile", "miles", "yard", "yards", 1760),
    ("dollar", "dollars", "cent", "cents", 100),
    ("kilobyte", "kilobytes", "byte", "bytes", 1024),
)


def unit_conversion(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.12:
        c = rng.randrange(-40, 105, 5)
        f = c * 9 // 5 + 32
        if rng.random() < 0.5:
            q = rng.choice(
                [f"Convert {c} °C to degrees Fahrenheit.", f"What is {c} degrees Celsius in Fahrenheit?"]
            )
            return q, f"{c} °C is {f} °F."
        q = rng.choice([f"Convert {f} °F to degrees Celsius.", f"What is {f} degrees Fahrenheit in Celsius?"])
        return q, f"{f} °F is {c} °C."
    big, bigs, small, smalls, factor = rng.choice(UNITS)
    if rng.random() < 0.5:
        v = rng.randint(1, 60)
        x = v * factor
        src, dst_q, dst = (big if v == 1 else bigs), smalls, smalls
    else:
        x = rng.randint(1, 60)
        v = x * factor
        # the question asks in the plural ("how many kilometres"); the answer agrees with the number
        src, dst_q, dst = smalls, bigs, (big if x == 1 else bigs)
    q = rng.choice(
        [
            f"Convert {v} {src} to {dst_q}.",
            f"How many {dst_q} are there in {v} {src}?",
            f"{v} {src} is equal to how many {dst_q}?",
            f"Express {v} {src} in {dst_q}.",
            f"If something measures {v} {src}, how many {dst_q} is that?",
        ]
    )
    return q, f"{v} {src} is {x} {dst}."


def string_ops(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(7)
    word = rng.choice(WORDS)
    phrase = " ".join(rng.sample(WORDS, rng.randint(2, 4)))
    if kind == 0:
        q = rng.choice(
            [
                f'Reverse the string "{word}".',
                f'Write "{word}" backwards.',
                f'What is "{word}" spelled in reverse?',
            ]
        )
        return q, f'The reversed string is "{word[::-1]}".'
    if kind == 1:
        q = rng.choice([f'Convert "{phrase}" to uppercase.', f'Write "{phrase}" in capital letters.'])
        return q, f'In uppercase it is "{phrase.upper()}".'
    if kind == 2:
        q = rng.choice(
            [
                f'Convert "{phrase}" to title case.',
                f'Capitalise the first letter of every word in "{phrase}".',
            ]
        )
        return q, f'In title case it is "{phrase.title()}".'
    if kind == 3:
        out = "".join(c for c in word if c not in "aeiou")
        q = rng.choice(
            [f'Remove all vowels from "{word}".', f'Delete every vowel (a, e, i, o, u) in "{word}".']
        )
        return q, f'Without vowels it is "{out}".'
    if kind == 4:
        old = rng.choice(sorted(set(word)))
        new = rng.choice([c for c in "xzqjk*#" if c != old])
        q = rng.choice(
            [
                f'Replace every "{old}" in "{word}" with "{new}".',
                f'In the word "{word}", change each "{old}" to "{new}".',
            ]
        )
        return q, f'The result is "{word.replace(old, new)}".'
    if kind == 5:
        q = rng.choice(
            [
                f'Reverse the order of the words in "{phrase}".',
                f'Write the words of "{phrase}" in reverse order.',
            ]
        )
        return q, f'The result is "{" ".join(reversed(phrase.split()))}".'
    sep = rng.choice(["-", "_"])
    q = rng.choice(
        [
            f'Join the words of "{phrase}" with "{sep}" instead of spaces.',
            f'Replace the spaces in "{phrase}" with "{sep}".',
        ]
    )
    return q, f'The result is "{phrase.replace(" ", sep)}".'


def counting(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(6)
    word = rng.choice(WORDS)
    if kind == 0:
        n = sum(c in "aeiou" for c in word)
        q = rng.choice(
            [f'How many vowels are in the word "{word}"?', f'Count the vowels (a, e, i, o, u) in "{word}".']
        )
        return q, f'"{word}" has {n} vowel{"s" if n != 1 else ""}.'
    if kind == 1:
        letter = (
            rng.choice(sorted(set(word))) if rng.random() < 0.75 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        )
        n = word.count(letter)
        q = rng.choice(
            [
                f'How many times does the letter "{letter}" appear in "{word}"?',
                f'Count the letter "{letter}" in the word "{word}".',
                f'In "{word}", how many "{letter}"s are there?',
            ]
        )
        return q, f'The letter "{letter}" appears {n} time{"s" if n != 1 else ""} in "{word}".'
    if kind == 2:
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        sentence = " ".join(words).capitalize() + "."
        q = rng.choice(
            [f'How many words are in this sentence: "{sentence}"', f'Count the words in: "{sentence}"']
        )
        return q, f"The sentence has {len(words)} words."
    if kind == 3:
        q = rng.choice(
            [f'How many letters does the word "{word}" have?', f'What is the length of the string "{word}"?']
        )
        return q, f'"{word}" has {len(word)} letters.'
    if kind == 4:
        n = len(set(word))
        q = rng.choice(
            [f'How many different letters are used in "{word}"?', f'Count the distinct letters in "{word}".']
        )
        return q, f'"{word}" uses {n} different letters.'
    n = sum(c not in "aeiou" for c in word)
    q = rng.choice([f'How many consonants are in "{word}"?', f'Count the consonants in the word "{word}".'])
    return q, f'"{word}" has {n} consonant{"s" if n != 1 else ""}.'


def list_ops(rng: random.Random) -> tuple[str, str]:
    nums = [rng.randint(1, 99) for _ in range(rng.randint(5, 9))]
    kind = rng.randrange(9)
    if kind == 6:
        nums += rng.sample(nums, 2)
        rng.shuffle(nums)
    shown = ", ".join(map(str, nums))
    if kind == 0:
        q = rng.choice(
            [
                f"Sort these numbers in ascending order: {shown}.",
                f"Put {shown} in order from smallest to largest.",
            ]
        )
        return q, f"The sorted list is {', '.join(map(str, sorted(nums)))}."
    if kind == 1:
        q = rng.choice([f"Sort in descending order: {shown}.", f"Order {shown} from largest to smallest."])
        return q, f"The sorted list is {', '.join(map(str, sorted(nums, reverse=True)))}."
    if kind in (2, 3):
        # The largest/smallest of a list is a template family of the default domain (synth.arith
        # list_minmax); the pool asks the neighbouring skill, the range, so retrieval has a relative.
        q = rng.choice(
            [
                f"What is the difference between the largest and smallest of {shown}?",
                f"Find the range of {shown}.",
            ]
        )
        return q, f"The range is {max(nums) - min(nums)}."
    if kind == 4:
        q = rng.choice([f"What is the sum of {shown}?", f"Add up these numbers: {shown}."])
        return q, f"The sum is {sum(nums)}."
    if kind == 5:
        q = rng.choice(
            [f"How many numbers are in this list: {shown}?", f"Count the items in the list [{shown}]."]
        )
        return q, f"The list has {len(nums)} numbers."
    if kind == 6:
        uniq = list(dict.fromkeys(nums))
        q = rng.choice(
            [
                f"Remove the duplicates from [{shown}], keeping the first occurrence of each number in order.",
                f"Deduplicate this list while keeping the original order: {shown}.",
            ]
        )
        return q, f"Without duplicates the list is {', '.join(map(str, uniq))}."
    if kind == 7:
        distinct = sorted(set(nums), reverse=True)
        q = rng.choice(
            [
                f"What is the second largest distinct value in {shown}?",
                f"Find the second-highest different number in: {shown}.",
            ]
        )
        return q, f"The second largest value is {distinct[1]}."
    evens = [n for n in nums if n % 2 == 0]
    if not evens:
        raise _Reject
    q = rng.choice(
        [
            f"List only the even numbers from {shown}, in their original order.",
            f"Keep the even numbers of [{shown}].",
        ]
    )
    return q, f"The even numbers are {', '.join(map(str, evens))}."


def _fmt_date(d: dt.date, style: int) -> str:
    if style == 0:
        return f"{d.day} {MONTHS[d.month - 1]} {d.year}"
    if style == 1:
        return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
    return d.isoformat()


def dates(rng: random.Random) -> tuple[str, str]:
    lo, hi = dt.date(1950, 1, 1).toordinal(), dt.date(2049, 12, 31).toordinal()
    d = dt.date.fromordinal(rng.randint(lo, hi))
    style = rng.randrange(3)
    ds = _fmt_date(d, style)
    kind = rng.randrange(5)
    if kind == 0:
        q = rng.choice([f"What day of the week is {ds}?", f"On which weekday does {ds} fall?"])
        return q, f"{ds} is a {WEEKDAYS[d.weekday()]}."
    if kind in (1, 2):
        n = rng.randint(1, 400)
        sign = 1 if kind == 1 else -1
        word = "after" if sign == 1 else "before"
        res = _fmt_date(d + dt.timedelta(days=sign * n), style)
        q = rng.choice([f"What date is {n} days {word} {ds}?", f"Which date comes {n} days {word} {ds}?"])
        return q, f"{n} days {word} {ds} is {res}."
    if kind == 3:
        e = d + dt.timedelta(days=rng.randint(1, 500))
        es = _fmt_date(e, style)
        q = rng.choice([f"How many days are there from {ds} to {es}?", f"How many days after {ds} is {es}?"])
        return q, f"There are {(e - d).days} days from {ds} to {es}."
    year = rng.randint(1600, 2400)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    q = rng.choice([f"Is {year} a leap year?", f"Does the year {year} have a 29 February?"])
    return q, f"{'Yes' if leap else 'No'}, {year} is {'a' if leap else 'not a'} leap year."


def number_words(rng: random.Random) -> tuple[str, str]:
    n = rng.choice(
        [
            rng.randint(0, 99),
            rng.randint(100, 999),
            rng.randint(1000, 99_999),
            rng.randint(100_000, 9_999_999),
        ]
    )
    w = number_to_words(n)
    if rng.random() < 0.5:
        q = rng.choice(
            [f"Write {n} in English words.", f"Spell out the number {n}.", f"How do you write {n} in words?"]
        )
        return q, f'{n} in words is "{w}".'
    q = rng.choice(
        [f'Write "{w}" as a number using digits.', f'What number is "{w}"?', f'Convert "{w}" to digits.']
    )
    return q, f'"{w}" is {n}.'


_DEFINE = (
    "Define {t}.",
    "What does {t} mean?",
    'What is meant by "{t}"?',
    "Give a one-sentence definition of {t}.",
    "Explain in one sentence what {t} is.",
    "In one sentence, what is {t}?",
    'What is the meaning of the term "{t}"?',
    "Briefly define the term {t}.",
)
_TERM = (
    "Which term means: {d}",
    "What word or phrase is defined as follows? {d}",
    "Name the term that matches this definition: {d}",
    'Give the term for this definition. "{d}"',
    "Which concept is described here? {d}",
    "What is the name for the following? {d}",
)


def definition(rng: random.Random) -> tuple[str, str]:
    term, meaning = rng.choice(glossary())
    return rng.choice(_DEFINE).format(t=term), meaning


def term_lookup(rng: random.Random) -> tuple[str, str]:
    term, meaning = rng.choice(glossary())
    return rng.choice(_TERM).format(d=meaning), f'The term is "{term}".'


def comparison(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.sample(range(1, 10_000), 2)
        q = rng.choice([f"Which is larger, {a} or {b}?", f"Which number is bigger: {a} or {b}?"])
        return q, f"{max(a, b)} is larger."
    if kind == 1:
        a = rng.randint(1, 99) / 10 ** rng.randint(1, 2)
        b = rng.randint(1, 99) / 10 ** rng.randint(1, 2)
        if a == b:
            raise _Reject
        sa, sb = f"{a:g}", f"{b:g}"
        q = rng.choice([f"Which is greater, {sa} or {sb}?", f"Which decimal is larger: {sa} or {sb}?"])
        return q, f"{sa if a > b else sb} is greater."
    if kind == 2:
        fa = Fraction(rng.randint(1, 11), rng.randint(2, 12))
        fb = Fraction(rng.randint(1, 11), rng.randint(2, 12))
        if fa == fb or fa.denominator == 1 or fb.denominator == 1:
            raise _Reject
        q = rng.choice([f"Which fraction is larger, {fa} or {fb}?", f"Is {fa} bigger or smaller than {fb}?"])
        if q.startswith("Is"):
            return q, f"{fa} is {'bigger' if fa > fb else 'smaller'} than {fb}."
        return q, f"{max(fa, fb)} is larger."
    if kind == 3:
        nums = rng.sample(range(-50, 51), rng.randint(4, 6))
        shown = ", ".join(map(str, nums))
        q = rng.choice(
            [
                f"Order from smallest to largest: {shown}.",
                f"Arrange these numbers in increasing order: {shown}.",
            ]
        )
        return q, f"In increasing order: {', '.join(map(str, sorted(nums)))}."
    a, b = rng.sample(WORDS, 2)
    if len(a) == len(b):
        first = min(a, b)
        q = rng.choice(
            [
                f'Which comes first in alphabetical order, "{a}" or "{b}"?',
                f'Alphabetically, which is first: "{a}" or "{b}"?',
            ]
        )
        return q, f'"{first}" comes first.'
    q = rng.choice([f'Which word is longer, "{a}" or "{b}"?', f'Which has more letters: "{a}" or "{b}"?'])
    return q, f'"{max(a, b, key=len)}" is longer.'


def ages(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(NAMES, 2)
    kind = rng.randrange(6)
    if kind == 0:
        age, diff = rng.randint(3, 60), rng.randint(1, 30)
        return (
            f"{a} is {diff} years older than {b}. {b} is {age}. How old is {a}?",
            f"{a} is {age + diff} years old.",
        )
    if kind == 1:
        age, k, y = rng.randint(2, 20), rng.randint(2, 4), rng.randint(1, 15)
        times = {2: "twice", 3: "three times", 4: "four times"}[k]
        return (
            f"{a} is {times} as old as {b}, who is {age}. How old will {a} be in {y} years?",
            f"{a} will be {k * age + y} years old.",
        )
    if kind == 2:
        future, y, z = rng.randint(20, 80), rng.randint(1, 10), rng.randint(1, 10)
        return (
            f"In {y} years {a} will be {future}. How old was {a} {z} years ago?",
            f"{a} was {future - y - z} years old.",
        )
    if kind == 3:
        born = rng.randint(1930, 2015)
        year = born + rng.randint(1, 90)
        return (
            f"{a} was born in {born}. How old does {a} turn in {year}?",
            f"{a} turns {year - born} in {year}.",
        )
    if kind == 4:
        age, k = rng.randint(2, 40), rng.choice([2, 3])
        times = "twice" if k == 2 else "three times"
        return (
            f"{b} is {age} and {a} is {times} as old. What is the sum of their ages?",
            f"Their ages add up to {age + k * age}.",
        )
    older, gap, later = rng.randint(10, 70), rng.randint(1, 9), rng.randint(1, 30)
    younger = older - gap
    return (
        f"{a} is {older} and {b} is {younger}. How old will {a} be when {b} is {younger + later}?",
        f"{a} will be {older + later}.",
    )


def _hm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _twelve(minutes: int) -> str:
    h, m = divmod(minutes, 60)
    return f"{(h % 12) or 12}:{m:02d} {'AM' if h < 12 else 'PM'}"


def clock(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(5)
    start = rng.randrange(0, 24 * 60)
    if kind == 0:
        add = rng.randint(5, 600)
        end = (start + add) % (24 * 60)
        h, m = divmod(add, 60)
        dur = f"{h} hours and {m} minutes" if h else f"{m} minutes"
        q = rng.choice(
            [
                f"It is {_hm(start)}. What time will it be in {dur}?",
                f"What time is it {dur} after {_hm(start)}?",
            ]
        )
        return q, f"It will be {_hm(end)}."
    if kind == 1:
        q = rng.choice(
            [f"Convert {_hm(start)} to 12-hour time.", f"What is {_hm(start)} on a 12-hour clock with AM/PM?"]
        )
        return q, f"{_hm(start)} is {_twelve(start)}."
    if kind == 2:
        q = rng.choice(
            [f"Convert {_twelve(start)} to 24-hour time.", f"What is {_twelve(start)} in 24-hour format?"]
        )
        return q, f"{_twelve(start)} is {_hm(start)}."
    if kind == 3:
        end = rng.randint(start + 1, 24 * 60 - 1) if start < 24 * 60 - 1 else None
        if end is None:
            raise _Reject
        q = rng.choice(
            [
                f"How many minutes are there from {_hm(start)} to {_hm(end)} on the same day?",
                f"A meeting runs from {_hm(start)} to {_hm(end)}. How many minutes long is it?",
            ]
        )
        return q, f"It is {end - start} minutes."
    length = rng.randint(60, 200)
    if start + length >= 24 * 60:
        raise _Reject
    thing = rng.choice(["film", "concert", "train journey", "football match", "lecture"])
    return (
        f"A {thing} starts at {_hm(start)} and lasts {length} minutes. When does it end?",
        f"It ends at {_hm(start + length)}.",
    )


def percentages(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(4)
    p = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 80])
    step = 100 // gcd(p, 100)
    base = step * rng.randint(1, max(1, 2000 // step))
    part = p * base // 100
    if kind == 0:
        q = rng.choice([f"What is {p}% of {base}?", f"Calculate {p} percent of {base}."])
        return q, f"{p}% of {base} is {part}."
    if kind == 1:
        q = rng.choice([f"What percentage of {base} is {part}?", f"{part} is what percent of {base}?"])
        return q, f"{part} is {p}% of {base}."
    if kind == 2:
        item = rng.choice(["jacket", "lamp", "bicycle", "sofa", "kettle", "backpack"])
        return (
            f"A {item} costs ${base} and is {p}% off. What is the sale price?",
            f"The sale price is ${base - part}.",
        )
    return f"Increase {base} by {p}%.", f"{base} increased by {p}% is {base + part}."


def sequences(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(6)
    if kind == 0:
        a, d = rng.randint(-20, 50), rng.choice([i for i in range(-9, 13) if i])
        seq = [a + d * i for i in range(6)]
    elif kind == 1:
        a, r = rng.randint(1, 9), rng.choice([2, 3])
        seq = [a * r**i for i in range(6)]
    elif kind == 2:
        off = rng.randint(0, 10)
        seq = [i * i + off for i in range(1, 7)]
    elif kind == 3:
        x, y = rng.randint(1, 9), rng.randint(1, 9)
        seq = [x, y]
        while len(seq) < 6:
            seq.append(seq[-1] + seq[-2])
    elif kind == 4:
        a, p, m = rng.randint(1, 30), rng.randint(2, 9), rng.randint(1, 5)
        if p == m:
            raise _Reject
        seq = [a]
        for i in range(5):
            seq.append(seq[-1] + (p if i % 2 == 0 else -m))
    else:
        start, d = rng.randint(0, 12), rng.randint(1, 3)
        letters = [chr(ord("A") + start + d * i) for i in range(6)]
        if letters[-1] > "Z":
            raise _Reject
        shown = ", ".join(letters[:5])
        q = rng.choice(
            [f"What letter comes next: {shown}, ?", f"Continue the pattern with one letter: {shown}, ..."]
        )
        return q, f"The next letter is {letters[5]}."
    shown = ", ".join(map(str, seq[:5]))
    q = rng.choice(
        [
            f"What number comes next: {shown}, ?",
            f"Continue the sequence: {shown}, ...",
            f"Find the next term of {shown}.",
        ]
    )
    return q, f"The next number is {seq[5]}."


_TRAITS = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
)


def logic(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.3:
        vals = [rng.choice(["True", "False"]) for _ in range(3)]
        ops = [rng.choice(["and", "or"]) for _ in range(2)]
        neg = rng.choice(["", "not "])
        expr = f"{neg}({vals[0]} {ops[0]} {vals[1]}) {ops[1]} {vals[2]}"
        value = eval(expr, {"__builtins__": {}})  # built from literals just above
        return f"What is the value of the Boolean expression: {expr}?", f"The expression is {value}."
    more, less, most, least = rng.choice(_TRAITS)
    people = rng.sample(NAMES, rng.randint(3, 4))  # people[0] has the most of the trait
    facts = []
    for hi, lo in zip(people, people[1:], strict=False):
        facts.append(f"{hi} is {more} than {lo}." if rng.random() < 0.5 else f"{lo} is {less} than {hi}.")
    rng.shuffle(facts)
    text = " ".join(facts)
    kind = rng.randrange(3)
    if kind == 0:
        return f"{text} Who is the {most}?", f"{people[0]} is the {most}."
    if kind == 1:
        return f"{text} Who is the {least}?", f"{people[-1]} is the {least}."
    i, j = sorted(rng.sample(range(len(people)), 2))
    x, y = (people[i], people[j]) if rng.random() < 0.5 else (people[j], people[i])
    yes = people.index(x) < people.index(y)
    return (
        f"{text} Is {x} {more} than {y}?",
        f"{'Yes' if yes else 'No'}, {x} is {more if yes else less} than {y}.",
    )


def _misspell(rng: random.Random, word: str) -> str:
    i = rng.randrange(len(word) - 1)
    wrong = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if wrong == word:
        raise _Reject
    return wrong


def spelling(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(5)
    word = rng.choice(WORDS)
    if kind == 0:
        q = rng.choice(
            [
                f'Spell "{word}" letter by letter, separated by hyphens.',
                f'Write out the letters of "{word}" joined by dashes.',
            ]
        )
        return q, f"{'-'.join(word.upper())}"
    if kind == 1:
        n = rng.randint(1, len(word))
        q = rng.choice(
            [
                f'What is the {_ordinal(n)} letter of "{word}"?',
                f'Which letter is in position {n} of the word "{word}"?',
            ]
        )
        return q, f'The {_ordinal(n)} letter of "{word}" is "{word[n - 1]}".'
    if kind == 2:
        if rng.random() < 0.5:
            a, b = rng.choice(ANAGRAM_PAIRS)
        else:
            a, b = rng.sample(WORDS, 2)
        yes = sorted(a) == sorted(b)
        q = rng.choice(
            [
                f'Are "{a}" and "{b}" anagrams of each other?',
                f'Can the letters of "{a}" be rearranged to spell "{b}"?',
            ]
        )
        return q, f'{"Yes" if yes else "No"}, "{a}" and "{b}" are {"" if yes else "not "}anagrams.'
    if kind == 3:
        q = rng.choice(
            [
                f'Rearrange the letters of "{word}" in alphabetical order.',
                f'Sort the letters of "{word}" alphabetically.',
            ]
        )
        return q, f'In alphabetical order the letters are "{"".join(sorted(word))}".'
    long_words = [w for w in WORDS if len(w) >= 6]
    word = rng.choice(long_words)
    wrong = _misspell(rng, word)
    a, b = (word, wrong) if rng.random() < 0.5 else (wrong, word)
    q = rng.choice(
        [
            f'Which spelling is correct: "{a}" or "{b}"?',
            f'One of these is misspelled: "{a}", "{b}". Which is spelled correctly?',
        ]
    )
    return q, f'The correct spelling is "{word}".'


def format_conversion(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(5)
    name = rng.choice(NAMES)
    record = {
        "name": name,
        "age": rng.randint(18, 90),
        "city": rng.choice(["Lima", "Oslo", "Pune", "Accra", "Quito", "Hanoi", "Perth", "Lyon"]),
    }
    if rng.random() < 0.5:
        record["score"] = rng.randint(0, 100)
    if kind == 0:
        pairs = "; ".join(f"{k}={v}" for k, v in record.items())
        q = rng.choice(
            [
                f"Convert these key=value pairs into a JSON object (numbers as numbers): {pairs}",
                f"Write {pairs} as JSON, keeping numbers unquoted.",
            ]
        )
        return q, json.dumps(record)
    if kind == 1:
        key = rng.choice(list(record))
        q = rng.choice(
            [
                f'What is the value of "{key}" in this JSON: {json.dumps(record)}',
                f'Read the field "{key}" from {json.dumps(record)}.',
            ]
        )
        return q, f'The value of "{key}" is {json.dumps(record[key])}.'
    if kind == 2:
        q = rng.choice(
            [
                f"Convert this JSON object to YAML: {json.dumps(record)}",
                f"Rewrite {json.dumps(record)} as YAML.",
            ]
        )
        return q, "\n".join(f"{k}: {v}" for k, v in record.items())
    if kind == 3:
        words = rng.sample(WORDS, rng.randint(3, 6))
        q = rng.choice(
            [
                f"Turn this comma-separated list into a JSON array of strings: {', '.join(words)}",
                f"Write {', '.join(words)} as a JSON list.",
            ]
        )
        return q, json.dumps(words)
    people = [{"name": n, "age": rng.randint(18, 90)} for n in rng.sample(NAMES, rng.randint(2, 3))]
    csv = "name,age\n" + "\n".join(f"{p['name']},{p['age']}" for p in people)
    q = rng.choice(
        [
            f"Convert this CSV to a JSON list of objects with numeric ages:\n{csv}",
            f"Turn the CSV below into JSON (a list of objects, ages as numbers).\n{csv}",
        ]
    )
    return q, json.dumps(people)


def roman_numerals(rng: random.Random) -> tuple[str, str]:
    n = rng.choice([rng.randint(1, 50), rng.randint(51, 500), rng.randint(501, 3999)])
    r = to_roman(n)
    if rng.random() < 0.5:
        q = rng.choice(
            [
                f"Write {n} in Roman numerals.",
                f"What is {n} as a Roman numeral?",
                f"Convert {n} to Roman numerals.",
            ]
        )
        return q, f"{n} in Roman numerals is {r}."
    q = rng.choice(
        [
            f"What number is the Roman numeral {r}?",
            f"Convert the Roman numeral {r} to an ordinary number.",
            f"What is {r} in Arabic numerals?",
        ]
    )
    return q, f"{r} is {n}."


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def number_facts(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(6)
    if kind == 0:
        n = rng.randint(2, 500)
        p = _is_prime(n)
        q = rng.choice([f"Is {n} a prime number?", f"Is {n} prime?"])
        return q, f"{'Yes' if p else 'No'}, {n} is {'' if p else 'not '}prime."
    if kind == 1:
        a, b = rng.randint(2, 200), rng.randint(2, 200)
        q = rng.choice(
            [f"What is the greatest common divisor of {a} and {b}?", f"Find the GCD of {a} and {b}."]
        )
        return q, f"The greatest common divisor of {a} and {b} is {gcd(a, b)}."
    if kind == 2:
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        q = rng.choice(
            [f"What is the least common multiple of {a} and {b}?", f"Find the LCM of {a} and {b}."]
        )
        return q, f"The least common multiple of {a} and {b} is {lcm(a, b)}."
    if kind == 3:
        n = rng.randint(2, 300)
        divs = [d for d in range(1, n + 1) if n % d == 0]
        q = rng.choice([f"How many positive divisors does {n} have?", f"Count the divisors of {n}."])
        return q, f"{n} has {len(divs)} positive divisors."
    if kind == 4:
        n = rng.randint(10, 99_999)
        q = rng.choice([f"What is the sum of the digits of {n}?", f"Add up the digits of {n}."])
        return q, f"The digits of {n} add up to {sum(map(int, str(n)))}."
    n = rng.choice([rng.randint(2, 40) ** 2, rng.randint(5, 1600)])
    sq = isqrt(n) ** 2 == n
    return (
        f"Is {n} a perfect square?",
        f"{'Yes' if sq else 'No'}, {n} is {'' if sq else 'not '}a perfect square.",
    )


CATEGORIES: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "unit_conversion": unit_conversion,
    "string_ops": string_ops,
    "counting": counting,
    "list_ops": list_ops,
    "dates": dates,
    "number_words": number_words,
    "python": python_output,
    "definition": definition,
    "term_lookup": term_lookup,
    "comparison": comparison,
    "ages": ages,
    "clock": clock,
    "percentages": percentages,
    "sequences": sequences,
    "logic": logic,
    "spelling": spelling,
    "format_conversion": format_conversion,
    "roman_numerals": roman_numerals,
    "number_facts": number_facts,
}


def draw(rng: random.Random, category: str) -> tuple[str, str]:
    """One valid item from ``category`` (redrawn while the draw is degenerate)."""
    fn = CATEGORIES[category]
    for _ in range(1000):
        try:
            return fn(rng)
        except _Reject:
            continue
    raise RuntimeError(f"category {category!r} keeps rejecting its own draws")  # a generator bug
