"""Candidate domain families of short arithmetic problems, each with templates held out for evaluation.

A family is a set of templates; each template is a scenario *and* its phrasing, ``(rng) -> (text, steps,
answer)`` as in ``datakit.synth.math``. Every family names the templates that only the validation and
test splits use (``Family.heldout``), so a gain on test means the skill carried over to problems worded
and set up in ways training never showed, not that a template was memorised.

The families (``FAMILIES``) are what ``datakit probe`` measures a base model on; the default domain is the
one whose base accuracy leaves headroom (README, "Choosing the domain"). ``multistep`` is the 2-5-step
word-problem domain of ``datakit.synth.math``, kept as the hard regime.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from datakit.synth.math import MAX_STALL, PEOPLE, Problem, _Reject, calc, draw_from, normalise
from datakit.synth.math import TEMPLATES as MULTISTEP

Template = Callable[[random.Random], tuple[str, list[str], int]]

_ITEMS = (
    "apples",
    "marbles",
    "stickers",
    "pencils",
    "stamps",
    "seashells",
    "cookies",
    "books",
    "cards",
    "coins",
    "balloons",
    "beads",
    "toy cars",
    "shells",
    "buttons",
    "flowers",
)


def _two(rng: random.Random) -> tuple:
    """Two different people."""
    return tuple(rng.sample(PEOPLE, 2))


def _ab(rng: random.Random, lo: int = 2, hi: int = 20) -> tuple[int, int]:
    return rng.randint(lo, hi), rng.randint(lo, hi)


# ------------------------------------------------------------------------- add_sub: one step, + or -


def gain(rng):
    p, item = rng.choice(PEOPLE), rng.choice(_ITEMS)
    a, b = _ab(rng)
    c, eq = calc(a, "+", b)
    return (
        f"{p.name} has {a} {item}. {p.Subj} gets {b} more {item}. How many {item} does {p.name} have now?",
        [f"{p.Subj} has {eq} {item}."],
        c,
    )


def give_away(rng):
    p, item = rng.choice(PEOPLE), rng.choice(_ITEMS)
    a, b = _ab(rng)
    c, eq = calc(a, "-", b)
    return (
        f"{p.name} had {a} {item} and gave {b} of them to a friend. How many {item} does {p.subj} have left?",
        [f"{p.Subj} has {eq} {item} left."],
        c,
    )


def together(rng):
    (p, q), item = _two(rng), rng.choice(_ITEMS)
    a, b = _ab(rng)
    c, eq = calc(a, "+", b)
    return (
        f"{p.name} has {a} {item} and {q.name} has {b} {item}. How many {item} do they have altogether?",
        [f"Together they have {eq} {item}."],
        c,
    )


def spend(rng):
    p = rng.choice(PEOPLE)
    a, b = _ab(rng)
    c, eq = calc(a, "-", b)
    thing = rng.choice(["a book", "a toy", "lunch", "a ticket", "a T-shirt", "a game"])
    return (
        f"{p.name} had ${a}. {p.Subj} spent ${b} on {thing}. How many dollars does {p.subj} have left?",
        [f"{p.Subj} has {eq} dollars left."],
        c,
    )


def sold_two_days(rng):
    a, b = _ab(rng)
    c, eq = calc(a, "+", b)
    shop, thing = rng.choice(
        [("A bakery", "loaves"), ("A café", "cups of tea"), ("A shop", "hats"), ("A kiosk", "newspapers")]
    )
    return (
        f"{shop} sold {a} {thing} on Monday and {b} {thing} on Tuesday. How many {thing} did it sell on the two days?",
        [f"It sold {eq} {thing}."],
        c,
    )


def how_many_more(rng):
    (p, q), item = _two(rng), rng.choice(_ITEMS)
    a, b = _ab(rng)
    c, eq = calc(max(a, b), "-", min(a, b))
    if not c:
        raise _Reject
    hi, lo = (p, q) if a > b else (q, p)
    return (
        f"{p.name} has {a} {item}. {q.name} has {b} {item}. How many more {item} does {hi.name} have than {lo.name}?",
        [f"{hi.name} has {eq} more {item}."],
        c,
    )


def empty_seats(rng):
    seats = rng.randint(10, 40)
    taken = rng.randint(5, seats - 1)
    c, eq = calc(seats, "-", taken)
    place = rng.choice(["bus", "theatre row", "train carriage", "classroom", "plane cabin"])
    return (
        f"A {place} has {seats} seats and {taken} of them are taken. How many seats are empty?",
        [f"{eq} seats are empty."],
        c,
    )


def pages_left(rng):
    p = rng.choice(PEOPLE)
    pages = rng.randint(10, 40)
    read = rng.randint(5, pages - 1)
    c, eq = calc(pages, "-", read)
    return (
        f"A book has {pages} pages. {p.name} has read {read} pages so far. How many pages are left to read?",
        [f"There are {eq} pages left."],
        c,
    )


def arrive(rng):
    a, b = _ab(rng)
    c, eq = calc(a, "+", b)
    place = rng.choice(["park", "museum", "pool", "library", "zoo"])
    return (
        f"There were {a} people at the {place}. Then {b} more people arrived. How many people are at the {place} now?",
        [f"There are {eq} people."],
        c,
    )


# ---------------------------------------------------------------------- mul_div: one step, x or /


def groups(rng):
    p, item = rng.choice(PEOPLE), rng.choice(_ITEMS)
    n, per = rng.randint(2, 12), rng.randint(2, 12)
    c, eq = calc(n, "×", per)
    box = rng.choice(["boxes", "bags", "jars", "packs"])
    return (
        f"{p.name} has {n} {box} with {per} {item} in each. How many {item} does {p.subj} have in all?",
        [f"{p.Subj} has {eq} {item}."],
        c,
    )


def unit_price(rng):
    p = rng.choice(PEOPLE)
    price, n = rng.randint(2, 15), rng.randint(2, 9)
    c, eq = calc(price, "×", n)
    thing = rng.choice(["notebook", "pen", "sandwich", "ticket", "plant", "mug"])
    return (
        f"One {thing} costs ${price}. {p.name} buys {n} of them. How many dollars does {p.subj} pay?",
        [f"{p.Subj} pays {eq} dollars."],
        c,
    )


def share(rng):
    p, item = rng.choice(PEOPLE), rng.choice(_ITEMS)
    k, each = rng.randint(2, 9), rng.randint(2, 12)
    total = k * each
    c, eq = calc(total, "÷", k)
    return (
        f"{p.name} shares {total} {item} equally among {k} friends. How many {item} does each friend get?",
        [f"Each friend gets {eq} {item}."],
        c,
    )


def rows_of_chairs(rng):
    r, per = rng.randint(2, 12), rng.randint(3, 12)
    c, eq = calc(r, "×", per)
    what = rng.choice(["chairs", "trees", "desks", "tomato plants", "parked cars"])
    return (
        f"There are {r} rows of {what} with {per} {what} in each row. How many {what} are there?",
        [f"There are {eq} {what}."],
        c,
    )


def cartons(rng):
    per, k = rng.choice([6, 8, 10, 12]), rng.randint(2, 12)
    total = per * k
    c, eq = calc(total, "÷", per)
    return (
        f"A farmer packs {total} eggs into cartons that hold {per} eggs each. How many cartons does the farmer fill?",
        [f"The farmer fills {eq} cartons."],
        c,
    )


def daily(rng):
    p = rng.choice(PEOPLE)
    per, days = rng.randint(2, 15), rng.randint(2, 9)
    c, eq = calc(per, "×", days)
    what, unit = rng.choice([("runs", "km"), ("reads", "pages"), ("swims", "lengths"), ("walks", "km")])
    return (
        f"{p.name} {what} {per} {unit} every day. How many {unit} does {p.subj} cover in {days} days?",
        [f"{p.Subj} covers {eq} {unit}."],
        c,
    )


def times_as_many(rng):
    (p, q), item = _two(rng), rng.choice(_ITEMS)
    a, k = rng.randint(2, 15), rng.randint(2, 5)
    c, eq = calc(a, "×", k)
    word = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}[k]
    return (
        f"{p.name} has {a} {item}. {q.name} has {word} as many {item} as {p.name}. How many {item} does {q.name} have?",
        [f"{q.name} has {eq} {item}."],
        c,
    )


def teams(rng):
    size, k = rng.randint(2, 9), rng.randint(2, 10)
    total = size * k
    c, eq = calc(total, "÷", size)
    return (
        f"A coach splits {total} players into teams of {size}. How many teams are there?",
        [f"There are {eq} teams."],
        c,
    )


def wheels(rng):
    n = rng.randint(2, 20)
    thing, per = rng.choice([("bicycles", 2), ("cars", 4), ("tricycles", 3), ("trucks", 6)])
    c, eq = calc(n, "×", per)
    return (
        f"A car park has {n} {thing}. Each has {per} wheels. How many wheels are there in total?",
        [f"There are {eq} wheels."],
        c,
    )


def times_word(rng):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    c, eq = calc(a, "×", b)
    return f"What is {a} times {b}?", [f"{eq}."], c


def multiplied_by(rng):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    c, eq = calc(a, "×", b)
    return f"What do you get when you multiply {a} by {b}?", [f"{eq}."], c


def legs(rng):
    n = rng.randint(2, 12)
    animal, per = rng.choice([("dogs", 4), ("chickens", 2), ("spiders", 8), ("insects", 6), ("cows", 4)])
    c, eq = calc(n, "×", per)
    return (
        f"A farm has {n} {animal}. Each has {per} legs. How many legs do the {animal} have altogether?",
        [f"The {animal} have {eq} legs."],
        c,
    )


# ------------------------------------------------------------------------------- units: conversions

_UNITS = (
    ("metre", "metres", "centimetres", 100),
    ("kilometre", "kilometres", "metres", 1000),
    ("hour", "hours", "minutes", 60),
    ("minute", "minutes", "seconds", 60),
    ("kilogram", "kilograms", "grams", 1000),
    ("day", "days", "hours", 24),
    ("week", "weeks", "days", 7),
    ("litre", "litres", "millilitres", 1000),
    ("year", "years", "months", 12),
    ("dozen", "dozen", "items", 12),
)


def _unit(rng):
    one, many, small, f = rng.choice(_UNITS)
    v = rng.randint(2, 40)
    return v, many, small, f


def convert_down(rng):
    v, many, small, f = _unit(rng)
    c, eq = calc(v, "×", f)
    return f"How many {small} are in {v} {many}?", [f"{eq}, so there are {c} {small}."], c


def convert_express(rng):
    v, many, small, f = _unit(rng)
    c, eq = calc(v, "×", f)
    return f"Express {v} {many} in {small}.", [f"{eq}, so it is {c} {small}."], c


def convert_up(rng):
    v, many, small, f = _unit(rng)
    c, eq = calc(v * f, "÷", f)
    return f"How many {many} are {v * f} {small}?", [f"{eq}, so it is {c} {many}."], c


def convert_story(rng):
    p = rng.choice(PEOPLE)
    v, many, small, f = _unit(rng)
    c, eq = calc(v, "×", f)
    return (
        f"{p.name} measured something as {v} {many}. What is that in {small}?",
        [f"{eq}, so it is {c} {small}."],
        c,
    )


def convert_equal(rng):
    v, many, small, f = _unit(rng)
    c, eq = calc(v * f, "÷", f)
    return f"{v * f} {small} is equal to how many {many}?", [f"{eq}, so it is {c} {many}."], c


# --------------------------------------------------------------------------- bare: a op b, no story


def _bare(op: str, phrasing: str) -> Template:
    def template(rng):
        if op in "+-":
            a, b = _ab(rng, 2, 20)
            if op == "-" and a < b:
                a, b = b, a
        elif op == "×":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
        else:
            b, q = rng.randint(2, 12), rng.randint(2, 12)
            a = b * q
        c, eq = calc(a, op, b)
        sym = {"+": "+", "-": "-", "×": "×", "÷": "÷"}[op]
        return phrasing.format(a=a, b=b, op=sym), [f"{eq}."], c

    template.__name__ = (
        f"bare_{ {'+': 'add', '-': 'sub', '×': 'mul', '÷': 'div'}[op] }_{phrasing.split()[0].lower()}"
    )
    return template


_BARE = {
    f.__name__: f
    for f in (
        _bare("+", "What is {a} {op} {b}?"),
        _bare("-", "What is {a} {op} {b}?"),
        _bare("×", "What is {a} {op} {b}?"),
        _bare("÷", "What is {a} {op} {b}?"),
        _bare("+", "Calculate {a} {op} {b}."),
        _bare("-", "Calculate {a} {op} {b}."),
        _bare("×", "Compute {a} {op} {b}."),
        _bare("÷", "Compute {a} {op} {b}."),
    )
}


# ------------------------------------------------------------- number_line: one/ten more or less


def _step(word: str, d: int, phrasing: str, name: str) -> Template:
    def template(rng):
        n = rng.randint(11, 989)
        c, eq = calc(n, "+" if d > 0 else "-", abs(d))
        return phrasing.format(n=n, w=word), [f"{eq}."], c

    template.__name__ = name
    return template


_NUMBER_LINE = {
    f.__name__: f
    for f in (
        _step("one", 1, "What number is {w} more than {n}?", "one_more"),
        _step("one", -1, "What number is {w} less than {n}?", "one_less"),
        _step("ten", 10, "What number is {w} more than {n}?", "ten_more"),
        _step("ten", -10, "What number is {w} less than {n}?", "ten_less"),
        _step("", 1, "What number comes right after {n}?", "after"),
        _step("", -1, "What number comes just before {n}?", "before"),
        _step("", 100, "Add one hundred to {n}.", "hundred_more"),
        _step("", -100, "Take one hundred away from {n}.", "hundred_less"),
    )
}


# --------------------------------------------------------- list_stats: one number about a short list


def _nums(rng, k_lo: int = 3, k_hi: int = 6, hi: int = 50) -> list[int]:
    return rng.sample(range(1, hi), rng.randint(k_lo, k_hi))


def _shown(nums: list[int]) -> str:
    return ", ".join(map(str, nums))


def largest(rng):
    nums = _nums(rng)
    return (
        f"What is the largest number in the list {_shown(nums)}?",
        [f"The largest is {max(nums)}."],
        max(nums),
    )


def smallest(rng):
    nums = _nums(rng)
    return (
        f"What is the smallest number in the list {_shown(nums)}?",
        [f"The smallest is {min(nums)}."],
        min(nums),
    )


def biggest(rng):
    nums = _nums(rng)
    return f"Which number in {_shown(nums)} is the biggest?", [f"The biggest is {max(nums)}."], max(nums)


def least(rng):
    nums = _nums(rng)
    return f"Which number in {_shown(nums)} is the least?", [f"The least is {min(nums)}."], min(nums)


def count_items(rng):
    nums = _nums(rng, 3, 9)
    return (
        f"Count how many numbers there are in: {_shown(nums)}.",
        [f"There are {len(nums)} numbers."],
        len(nums),
    )


def count_above(rng):
    nums, t = _nums(rng, 4, 7), rng.choice([10, 20, 25, 30])
    c = sum(n > t for n in nums)
    return (
        f"How many numbers in {_shown(nums)} are greater than {t}?",
        [f"{c} of them are greater than {t}."],
        c,
    )


def max_story(rng):
    people = rng.sample(PEOPLE, rng.randint(3, 4))
    item = rng.choice(_ITEMS)
    nums = _nums(rng, len(people), len(people), 30)
    facts = ", ".join(f"{p.name} has {n}" for p, n in zip(people, nums, strict=True))
    return (
        f"{facts} {item}. What is the largest number of {item} any of them has?",
        [f"The largest is {max(nums)}."],
        max(nums),
    )


def min_story(rng):
    people = rng.sample(PEOPLE, rng.randint(3, 4))
    item = rng.choice(_ITEMS)
    nums = _nums(rng, len(people), len(people), 30)
    facts = ", ".join(f"{p.name} has {n}" for p, n in zip(people, nums, strict=True))
    return (
        f"{facts} {item}. What is the smallest number of {item} any of them has?",
        [f"The smallest is {min(nums)}."],
        min(nums),
    )


def top_score(rng):
    nums = _nums(rng, 3, 6, 100)
    game = rng.choice(["a quiz", "a darts game", "a spelling bee", "a bowling match", "a video game"])
    return (
        f"In {game} the scores were {_shown(nums)}. What was the highest score?",
        [f"The highest score was {max(nums)}."],
        max(nums),
    )


def low_price(rng):
    nums = _nums(rng, 3, 6, 60)
    thing = rng.choice(["a kettle", "a lamp", "a backpack", "a chair", "a bike helmet"])
    prices = ", ".join(f"${n}" for n in nums)
    return (
        f"Shops sell {thing} for {prices}. What is the lowest price, in dollars?",
        [f"The lowest price is {min(nums)} dollars."],
        min(nums),
    )


# ------------------------------------------------------------------ fractions_of: half, third, ...

_PARTS = ((2, "half"), (3, "a third"), (4, "a quarter"), (5, "a fifth"), (10, "a tenth"))


def _part(rng):
    d, word = rng.choice(_PARTS)
    n = d * rng.randint(2, 90)
    return d, word, n


def part_of(rng):
    d, word, n = _part(rng)
    c, eq = calc(n, "÷", d)
    return f"What is {word} of {n}?", [f"{eq}."], c


def part_story(rng):
    p, item = rng.choice(PEOPLE), rng.choice(_ITEMS)
    d, word, n = _part(rng)
    c, eq = calc(n, "÷", d)
    return (
        f"{p.name} has {n} {item} and gives away {word} of them. How many {item} does {p.subj} give away?",
        [f"{p.Subj} gives away {eq} {item}."],
        c,
    )


def part_class(rng):
    d, word, n = _part(rng)
    c, eq = calc(n, "÷", d)
    return (
        f"There are {n} students in a school club, and {word} of them play chess. How many students play chess?",
        [f"{eq} students play chess."],
        c,
    )


def part_find(rng):
    d, word, n = _part(rng)
    c, eq = calc(n, "÷", d)
    return f"Find {word} of {n}.", [f"{eq}."], c


# ------------------------------------------------------------------------- rounding: nearest 10^k


def _round(n: int, to: int) -> int:
    return (n + to // 2) // to * to  # half up, as taught in school


def _rounding(to: int, phrasing: str, name: str) -> Template:
    def template(rng):
        n = rng.randint(to + 1, to * 100 - 1)
        if n % to == 0:
            raise _Reject
        r = _round(n, to)
        return phrasing.format(n=n, to=to), [f"{n} rounded to the nearest {to} is {r}."], r

    template.__name__ = name
    return template


_ROUNDING = {
    f.__name__: f
    for f in (
        _rounding(10, "Round {n} to the nearest {to}.", "round_ten"),
        _rounding(100, "Round {n} to the nearest {to}.", "round_hundred"),
        _rounding(10, "What is {n} rounded to the nearest ten?", "round_ten_what"),
        _rounding(100, "What is {n} rounded to the nearest hundred?", "round_hundred_what"),
        _rounding(1000, "Round {n} to the nearest thousand.", "round_thousand"),
    )
}


# ------------------------------------------------------------------------------------- the families


@dataclass(frozen=True)
class Family:
    name: str
    about: str  # one line for the probe table and the README
    templates: dict[str, Template]
    heldout: tuple[str, ...]  # templates only validation and test use

    def __post_init__(self) -> None:
        unknown = set(self.heldout) - set(self.templates)
        if unknown or not self.heldout or len(self.heldout) >= len(self.templates):
            raise ValueError(f"family {self.name}: bad held-out templates {sorted(unknown) or self.heldout}")

    def split_templates(self, split: str) -> list[str]:
        """Template names a split draws from: train the rest, validation and test the held-out ones."""
        if split == "train":
            return [t for t in self.templates if t not in self.heldout]
        return list(self.heldout)


def _fam(name: str, about: str, fns, heldout: tuple[str, ...]) -> Family:
    templates = fns if isinstance(fns, dict) else {f.__name__: f for f in fns}
    return Family(name, about, templates, heldout)


def _mix(name: str, about: str, parts: tuple[str, ...]) -> Family:
    """A family made of other families' templates, each keeping its held-out status."""
    fams = [_BY_NAME[p] for p in parts]
    templates = {t: f for fam in fams for t, f in fam.templates.items()}
    return Family(name, about, templates, tuple(t for fam in fams for t in fam.heldout))


_BY_NAME: dict[str, Family] = {
    "list_minmax": _fam(
        "list_minmax",
        "the largest or smallest number of a short list, asked or in a story",
        (largest, smallest, biggest, least, max_story, min_story, top_score, low_price),
        ("max_story", "min_story", "top_score", "low_price"),
    )
} | {
    f.name: f
    for f in (
        _fam(
            "add_sub",
            "one-step addition and subtraction word problems (numbers up to 20)",
            (gain, give_away, together, spend, sold_two_days, arrive, how_many_more, empty_seats, pages_left),
            ("how_many_more", "empty_seats", "pages_left"),
        ),
        _fam(
            "mul_div",
            "one-step multiplication and division word problems (times tables)",
            (groups, unit_price, share, rows_of_chairs, daily, cartons, times_as_many, teams, wheels),
            ("times_as_many", "teams", "wheels"),
        ),
        _fam(
            "units",
            "unit conversions by one factor (hours to minutes, metres to centimetres, ...)",
            (convert_down, convert_up, convert_express, convert_story, convert_equal),
            ("convert_story", "convert_equal"),
        ),
        _fam(
            "bare",
            "bare two-number arithmetic (+ and - up to 20, x and / on times tables)",
            _BARE,
            ("bare_add_calculate", "bare_sub_calculate", "bare_mul_compute", "bare_div_compute"),
        ),
        _fam(
            "number_line",
            "one, ten or a hundred more or less than a number; the number just before or after",
            _NUMBER_LINE,
            ("before", "hundred_less"),
        ),
        _fam(
            "list_stats",
            "the largest, smallest or count of numbers in a short list",
            (
                largest,
                smallest,
                biggest,
                least,
                count_items,
                count_above,
                max_story,
                min_story,
                top_score,
                low_price,
            ),
            ("max_story", "min_story", "top_score", "low_price"),
        ),
        _fam(
            "fractions_of",
            "a half, third, quarter, fifth or tenth of a whole number",
            (part_of, part_story, part_class, part_find),
            ("part_class", "part_find"),
        ),
        _fam(
            "rounding",
            "rounding to the nearest ten, hundred or thousand",
            _ROUNDING,
            ("round_ten_what", "round_hundred_what"),
        ),
    )
}

# The default domain, then the hard regime (synth.domain: multistep).
FAMILIES: dict[str, Family] = {
    **_BY_NAME,
    "times": _fam(
        "times",
        "one-step multiplication on the times tables (2-12), in words and in small stories",
        (
            groups,
            rows_of_chairs,
            daily,
            legs,
            _BARE["bare_mul_what"],
            times_word,
            multiplied_by,
            wheels,
            times_as_many,
            _BARE["bare_mul_compute"],
        ),
        ("wheels", "times_as_many", "bare_mul_compute", "multiplied_by"),
    ),
    "numbers": _mix(
        "numbers",
        "a mix: one-step + - x / word problems, and the largest or smallest number of a list",
        ("add_sub", "mul_div", "list_minmax"),
    ),
    "multistep": _fam(
        "multistep",
        "word problems of 2-5 worked steps (the hard regime)",
        MULTISTEP,
        ("water_tank", "reading", "garden", "collection", "wages"),
    ),
}


def draw(family: Family, template: str, rng: random.Random) -> Problem:
    """One valid problem from ``template`` of ``family`` (redrawn until its numbers obey the rules)."""
    return draw_from(family.templates[template], template, rng, min_steps=1)


def generate(
    family: Family, split: str, n: int, rng: random.Random, seen: set[str], max_steps: int = 5
) -> list[Problem]:
    """``n`` problems of ``family`` new to ``seen`` (which is updated), from the templates of ``split``
    taken in turn; problems of more than ``max_steps`` worked steps are skipped.

    Raises:
        ValueError: when the split's templates stop producing new problems before ``n`` were found.
    """
    active = family.split_templates(split)
    rng.shuffle(active)
    out: list[Problem] = []
    i = 0
    while len(out) < n:
        if not active:
            raise ValueError(
                f"synth: the {split} templates of domain {family.name!r} ran out of unique problems after "
                f"{len(out)} of {n}; ask for fewer rows"
            )
        name = active[i % len(active)]
        i += 1
        for _ in range(MAX_STALL):
            prob = draw(family, name, rng)
            key = normalise(prob.text)
            if len(prob.steps) <= max_steps and key not in seen:
                seen.add(key)
                out.append(prob)
                break
        else:
            active.remove(name)
    return out
