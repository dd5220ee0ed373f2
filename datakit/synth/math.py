"""Multi-step arithmetic word problems with worked, checkable solutions.

Every template draws its numbers so that each step is one integer operation ``a op b = c`` with
``0 <= c < 10,000``; divisions are made exact by choosing the quotient first (or a divisor of the
dividend). A step that would break these rules raises ``_Reject`` and the template is drawn again, so
no template has to reason about every corner of its own number ranges.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_NUMBER = 10_000
# The template space holds millions of distinct problems; the cap keeps a typo in a config (1e9 rows)
# from spinning for hours before the stall detector notices.
MAX_UNIQUE = 100_000
# A template that gives only duplicates this many times in a row is treated as exhausted.
MAX_STALL = 200


class _Reject(Exception):
    """The drawn numbers broke a rule (negative, fractional or too large); draw again."""


@dataclass(frozen=True)
class Person:
    name: str
    subj: str  # she / he

    @property
    def poss(self) -> str:
        return "her" if self.subj == "she" else "his"

    @property
    def obj(self) -> str:
        return "her" if self.subj == "she" else "him"

    @property
    def Subj(self) -> str:  # sentence-initial form, so call sites read naturally
        return self.subj.capitalize()


@dataclass(frozen=True)
class Problem:
    template: str
    text: str
    steps: tuple[str, ...]
    answer: int

    def solution(self) -> str:
        return "\n".join((*self.steps, f"#### {self.answer}"))


_FEMALE = (
    "Ana Maya Priya Sofia Leila Emma Chloe Fatima Yuki Olivia Grace Hannah Isabel Mei Nadia Rosa Zara Amara "
    "Lucia Ingrid Aisha Clara Elena Nora Keiko Tara Wendy Julia Marta Sara"
).split()
_MALE = (
    "Ben Omar Liam Kenji Carlos Ravi Noah Lucas Samuel David Ethan Hugo Ivan Jamal Kofi Mateo Oscar Pablo "
    "Tariq Victor Diego Felix Arjun Leo Marco Tom Wei Yusuf Daniel Sam"
).split()
PEOPLE = tuple(Person(n, "she") for n in _FEMALE) + tuple(Person(n, "he") for n in _MALE)


def calc(a: int, op: str, b: int) -> tuple[int, str]:
    """Apply one step; return the result and the equation text ``"a op b = c"``."""
    if op == "+":
        c = a + b
    elif op == "-":
        c = a - b
    elif op == "×":
        c = a * b
    elif op == "÷":
        if b == 0 or a % b:
            raise _Reject
        c = a // b
    else:
        raise ValueError(f"unknown operator {op!r}")
    if c < 0 or max(a, b, c) >= MAX_NUMBER:
        raise _Reject
    return c, f"{a} {op} {b} = {c}"


def _divisor(rng: random.Random, n: int, lo: int = 2, hi: int = 30) -> int:
    """A divisor of ``n`` in [lo, hi] other than ``n`` itself, so the division is exact and non-trivial."""
    options = [d for d in range(lo, min(hi, n - 1) + 1) if n % d == 0]
    if not options:
        raise _Reject
    return rng.choice(options)


def _pl(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


# ---------------------------------------------------------------------------------------------- templates
# Each template takes the rng and returns (text, steps, answer). Steps are whole sentences.


def shopping(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    item, pack = rng.choice(
        [
            ("pencils", "box"),
            ("markers", "pack"),
            ("stickers", "sheet"),
            ("batteries", "pack"),
            ("candles", "box"),
            ("buttons", "card"),
            ("tea bags", "box"),
            ("balloons", "bag"),
            ("crayons", "box"),
            ("envelopes", "pack"),
        ]
    )
    packs, per, price = rng.randint(2, 9), rng.randint(4, 24), rng.randint(2, 15)
    packs_word = "boxes" if pack == "box" else pack + "s"
    if rng.random() < 0.5:
        extra, extra_price = (
            rng.choice(["notebook", "water bottle", "ruler", "umbrella", "lamp"]),
            rng.randint(3, 30),
        )
        n_extra = rng.randint(1, 4)
        cost, eq1 = calc(packs, "×", price)
        extra_cost, eq2 = calc(n_extra, "×", extra_price)
        total, eq3 = calc(cost, "+", extra_cost)
        bill = rng.choice([b for b in (50, 100, 200, 500) if b > total] or [total + 10])
        change, eq4 = calc(bill, "-", total)
        text = (
            f"{p.name} buys {packs} {packs_word} of {item} at ${price} per {pack} and "
            f"{_pl(n_extra, extra)} at ${extra_price} each. {p.Subj} pays with a ${bill} bill. "
            f"How much change, in dollars, does {p.subj} get?"
        )
        steps = [
            f"The {item} cost {eq1} dollars.",
            f"The {extra}s cost {eq2} dollars.",
            f"Altogether {p.subj} spends {eq3} dollars.",
            f"{p.Subj} gets {eq4} dollars in change.",
        ]
        return text, steps, change
    had, given = rng.randint(0, 40), rng.randint(1, 30)
    bought, eq1 = calc(packs, "×", per)
    steps = [f"{p.Subj} buys {packs} {packs_word} of {per} {item}, so {p.subj} buys {eq1} {item}."]
    text = f"{p.name} buys {packs} {packs_word} of {item} with {per} {item} in each {pack}. "
    now = bought
    if had:
        now, eq = calc(bought, "+", had)
        text += f"{p.Subj} already had {had} {item} at home. "
        steps.append(f"With the {had} {p.subj} already had, {p.subj} has {eq} {item}.")
    now, eq = calc(now, "-", given)
    text += f"{p.Subj} gives {given} {item} to {p.poss} {rng.choice(['sister', 'brother', 'friend', 'cousin', 'neighbour'])}. "
    text += f"How many {item} does {p.name} have left?"
    steps.append(f"After giving away {given}, {p.subj} has {eq} {item} left.")
    return text, steps, now


def travel(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    verb, lo, hi = rng.choice(
        [("drives", 40, 110), ("cycles", 10, 30), ("rides a scooter", 20, 45), ("sails", 8, 25)]
    )
    if rng.random() < 0.5:
        s1, h1, s2, h2 = rng.randint(lo, hi), rng.randint(1, 6), rng.randint(lo, hi), rng.randint(1, 5)
        d1, eq1 = calc(s1, "×", h1)
        d2, eq2 = calc(s2, "×", h2)
        total, eq3 = calc(d1, "+", d2)
        text = (
            f"{p.name} {verb} at {s1} km per hour for {_pl(h1, 'hour')}, "
            f"then at {s2} km per hour for {_pl(h2, 'more hour')}. "
        )
        steps = [
            f"In the first part {p.subj} covers {eq1} km.",
            f"In the second part {p.subj} covers {eq2} km.",
            f"In total {p.subj} travels {eq3} km.",
        ]
        if rng.random() < 0.5:
            trip = total + rng.randint(5, 300)
            left, eq4 = calc(trip, "-", total)
            text += f"The whole trip is {trip} km long. How many kilometres are still left to go?"
            steps.append(f"There are {eq4} km left.")
            return text, steps, left
        text += f"How many kilometres does {p.subj} travel in total?"
        return text, steps, total
    speed, hours, hours2 = rng.randint(lo, hi), rng.randint(2, 8), rng.randint(2, 12)
    dist = speed * hours
    v, eq1 = calc(dist, "÷", hours)
    d2, eq2 = calc(v, "×", hours2)
    vehicle = rng.choice(["train", "bus", "ferry", "truck", "tram"])
    text = (
        f"A {vehicle} travels {dist} km in {_pl(hours, 'hour')} at a steady speed. "
        f"At the same speed, how many kilometres does it travel in {hours2} hours?"
    )
    steps = [f"Its speed is {eq1} km per hour.", f"In {hours2} hours it travels {eq2} km."]
    return text, steps, d2


def recipe(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    food = rng.choice(
        ["cookies", "pancakes", "muffins", "dumplings", "scones", "waffles", "crepes", "brownies"]
    )
    ing, ing2 = rng.sample(["flour", "sugar", "butter", "oats", "rice flour", "cocoa", "milk powder"], 2)
    per_batch, batches = rng.randint(4, 24), rng.randint(2, 9)
    want = per_batch * batches
    grams, grams2 = rng.randint(2, 30) * 10, rng.randint(1, 20) * 10
    n, eq1 = calc(want, "÷", per_batch)
    need, eq2 = calc(n, "×", grams)
    text = f"A recipe makes {per_batch} {food} with {grams} grams of {ing}. {p.name} wants to make {want} {food}. "
    steps = [f"{p.Subj} needs {eq1} batches.", f"That takes {eq2} grams of {ing}."]
    roll = rng.random()
    if roll < 0.35:
        text += f"How many grams of {ing} does {p.subj} need?"
        return text, steps, need
    if roll < 0.7:
        have = need + rng.randint(1, 80) * 10
        left, eq3 = calc(have, "-", need)
        text += f"{p.Subj} has {have} grams of {ing}. How many grams of {ing} will be left over?"
        steps.append(f"{p.Subj} will have {eq3} grams left.")
        return text, steps, left
    need2, eq3 = calc(n, "×", grams2)
    total, eq4 = calc(need, "+", need2)
    text = (
        f"A recipe makes {per_batch} {food} with {grams} grams of {ing} and {grams2} grams of {ing2}. "
        f"{p.name} wants to make {want} {food}. How many grams of {ing} and {ing2} does {p.subj} need together?"
    )
    steps += [f"{p.Subj} also needs {eq3} grams of {ing2}.", f"Together that is {eq4} grams."]
    return text, steps, total


def savings(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    thing = rng.choice(
        ["bicycle", "guitar", "tablet", "pair of skates", "telescope", "camera", "game console", "tent"]
    )
    if rng.random() < 0.5:
        weekly, weeks = rng.randint(5, 40), rng.randint(3, 20)
        saved, eq1 = calc(weekly, "×", weeks)
        gift = rng.randint(10, 100)
        total, eq2 = calc(saved, "+", gift)
        spend = rng.randint(10, max(11, total - 1))
        left, eq3 = calc(total, "-", spend)
        text = (
            f"{p.name} saves ${weekly} every week for {weeks} weeks. For {p.poss} birthday {p.subj} also gets "
            f"${gift}. Then {p.subj} spends ${spend} on a {thing}. How many dollars does {p.subj} have left?"
        )
        steps = [
            f"{p.Subj} saves {eq1} dollars.",
            f"With the gift {p.subj} has {eq2} dollars.",
            f"After the purchase {p.subj} has {eq3} dollars left.",
        ]
        return text, steps, left
    weekly, weeks, have = rng.randint(5, 50), rng.randint(2, 30), rng.randint(0, 200)
    price = have + weekly * weeks
    missing, eq1 = calc(price, "-", have)
    n, eq2 = calc(missing, "÷", weekly)
    text = (
        f"{p.name} wants a {thing} that costs ${price}. {p.Subj} has ${have} and saves ${weekly} a week. "
        f"How many weeks must {p.subj} save to buy it?"
    )
    steps = [f"{p.Subj} still needs {eq1} dollars.", f"Saving {weekly} dollars a week takes {eq2} weeks."]
    return text, steps, n


def inventory(rng: random.Random) -> tuple[str, list[str], int]:
    shop, items = rng.choice(
        [
            ("hardware store", ["lamps", "hammers", "paint tins", "ladders"]),
            ("toy shop", ["puzzles", "kites", "board games", "teddy bears"]),
            ("pet shop", ["bags of seed", "dog collars", "fish tanks", "cat toys"]),
            ("garden centre", ["flower pots", "seed packets", "watering cans", "rose bushes"]),
            ("bookshop", ["notebooks", "calendars", "novels", "maps"]),
            ("home store", ["mugs", "chairs", "umbrellas", "cushions"]),
        ]
    )
    item = rng.choice(items)
    deliveries, per, daily, days = (
        rng.randint(2, 6),
        rng.randint(10, 60),
        rng.randint(5, 40),
        rng.randint(2, 7),
    )
    box = rng.choice([0, 0, 4, 5, 6, 8, 10])
    sold = daily * days
    delivered = deliveries * per
    if box:
        remaining = box * rng.randint(2, 40)
        stock = remaining + sold - delivered
        if stock <= 0:
            raise _Reject
    else:
        stock = rng.randint(20, 400)
    got, eq1 = calc(deliveries, "×", per)
    after, eq2 = calc(stock, "+", got)
    out, eq3 = calc(daily, "×", days)
    left, eq4 = calc(after, "-", out)
    text = (
        f"A {shop} has {stock} {item} in stock. It receives {deliveries} deliveries of {per} {item} each, "
        f"then sells {daily} {item} a day for {days} days. "
    )
    steps = [
        f"The deliveries bring {eq1} {item}.",
        f"The stock grows to {eq2} {item}.",
        f"Over {days} days the shop sells {eq3} {item}.",
        f"That leaves {eq4} {item}.",
    ]
    if box:
        boxes, eq5 = calc(left, "÷", box)
        text += f"The rest are packed into crates of {box}. How many crates are filled?"
        steps.append(f"They fill {eq5} crates.")
        return text, steps, boxes
    return text + f"How many {item} are left?", steps, left


def classroom(rng: random.Random) -> tuple[str, list[str], int]:
    school = rng.choice(["school", "summer camp", "language academy", "music school", "sports club"])
    classes, size = rng.randint(2, 12), rng.randint(15, 35)
    absent = rng.randint(0, 20)
    students, eq1 = calc(classes, "×", size)
    text = f"A {school} has {classes} groups of {size} students. "
    steps = [f"There are {eq1} students in total."]
    if absent:
        students, eq = calc(students, "-", absent)
        text += f"On Monday {_pl(absent, 'student')} {'is' if absent == 1 else 'are'} absent. "
        steps.append(f"On Monday {eq} students are present.")
    team = _divisor(rng, students, 2, 12)
    teams, eq = calc(students, "÷", team)
    steps.append(f"They form {eq} teams.")
    text += f"The students {'present ' if absent else ''}are split into teams of {team}. "
    if rng.random() < 0.5:
        item = rng.choice(["balls", "maps", "worksheets", "whistles", "folders"])
        each = rng.randint(2, 6)
        total, eq = calc(teams, "×", each)
        text += f"Each team gets {each} {item}. How many {item} are needed?"
        steps.append(f"They need {eq} {item}.")
        return text, steps, total
    return text + "How many teams are there?", steps, teams


def farming(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    plant, fruit = rng.choice(
        [
            ("apple trees", "apples"),
            ("orange trees", "oranges"),
            ("tomato plants", "tomatoes"),
            ("pepper plants", "peppers"),
            ("lemon trees", "lemons"),
            ("plum trees", "plums"),
            ("melon vines", "melons"),
        ]
    )
    rows, per_row, yield_ = rng.randint(2, 12), rng.randint(3, 15), rng.randint(4, 40)
    plants, eq1 = calc(rows, "×", per_row)
    total, eq2 = calc(plants, "×", yield_)
    text = (
        f"Farmer {p.name} has {rows} rows of {plant} with {per_row} in each row. "
        f"Each plant gives {yield_} {fruit}. "
    )
    steps = [f"{p.Subj} has {eq1} {plant}.", f"They give {eq2} {fruit}."]
    if rng.random() < 0.3:
        return text + f"How many {fruit} does {p.subj} harvest?", steps, total
    crate = _divisor(rng, total, 4, 50)
    crates, eq3 = calc(total, "÷", crate)
    text += f"{p.Subj} packs them into crates of {crate}. "
    steps.append(f"{p.Subj} fills {eq3} crates.")
    if rng.random() < 0.5:
        price = rng.randint(3, 25)
        money, eq4 = calc(crates, "×", price)
        text += f"Each crate sells for ${price}. How many dollars does {p.subj} earn?"
        steps.append(f"{p.Subj} earns {eq4} dollars.")
        return text, steps, money
    return text + f"How many crates does {p.subj} fill?", steps, crates


def sports(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    if rng.random() < 0.5:
        twos, threes, free = rng.randint(1, 15), rng.randint(1, 9), rng.randint(1, 12)
        a, eq1 = calc(twos, "×", 2)
        b, eq2 = calc(threes, "×", 3)
        pts, eq3 = calc(a, "+", b)
        text = (
            f"In a basketball game {p.name} scores {twos} two-point baskets, {threes} three-pointers "
            f"and {free} free throws worth 1 point each. "
        )
        steps = [
            f"Two-point baskets give {eq1} points.",
            f"Three-pointers give {eq2} points.",
            f"Together that is {eq3} points.",
        ]
        pts, eq4 = calc(pts, "+", free)
        steps.append(f"Adding the free throws gives {eq4} points.")
        if rng.random() < 0.4:
            games = rng.randint(2, 9)
            season, eq5 = calc(pts, "×", games)
            text += f"{p.Subj} scores the same way in each of {games} games. How many points does {p.subj} score in all?"
            steps.append(f"Over {games} games that is {eq5} points.")
            return text, steps, season
        return text + f"How many points does {p.subj} score?", steps, pts
    team = rng.choice(["Rovers", "United", "Falcons", "Tigers", "Comets", "Harbour FC", "Wanderers"])
    wins, draws = rng.randint(2, 20), rng.randint(1, 10)
    a, eq1 = calc(wins, "×", 3)
    pts, eq2 = calc(a, "+", draws)
    text = f"In a league a win is worth 3 points and a draw 1 point. The {team} have {wins} wins and {_pl(draws, 'draw')}. "
    steps = [f"Wins give {eq1} points.", f"With the draws they have {eq2} points."]
    if rng.random() < 0.5:
        target = pts + rng.randint(1, 30)
        more, eq3 = calc(target, "-", pts)
        text += f"They need {target} points to win the title. How many more points do they need?"
        steps.append(f"They need {eq3} more points.")
        return text, steps, more
    return text + "How many points do they have?", steps, pts


def factory(rng: random.Random) -> tuple[str, list[str], int]:
    product = rng.choice(
        ["bolts", "bottles", "toy cars", "light bulbs", "bricks", "jars", "phone cases", "tiles"]
    )
    per_hour, hours = rng.randint(10, 90), rng.randint(2, 10)
    daily, eq1 = calc(per_hour, "×", hours)
    text = f"A machine makes {per_hour} {product} an hour and runs {hours} hours a day. "
    steps = [f"It makes {eq1} {product} a day."]
    days = rng.randint(2, 6)
    total, eq = calc(daily, "×", days)
    text += f"It runs for {days} days. "
    steps.append(f"In {days} days it makes {eq} {product}.")
    bad = rng.randint(1, 60)
    good, eq = calc(total, "-", bad)
    text += f"{bad} of them are faulty and thrown away. "
    steps.append(f"Without the faulty ones there are {eq} {product}.")
    if rng.random() < 0.5:
        box = _divisor(rng, good, 2, 40)
        boxes, eq = calc(good, "÷", box)
        text += f"The good {product} are packed in boxes of {box}. How many boxes are filled?"
        steps.append(f"They fill {eq} boxes.")
        return text, steps, boxes
    return text + f"How many good {product} are made?", steps, good


def bakery(rng: random.Random) -> tuple[str, list[str], int]:
    bake = rng.choice(
        ["muffins", "croissants", "bagels", "cupcakes", "rolls", "doughnuts", "pretzels", "tarts"]
    )
    trays, per_tray = rng.randint(3, 15), rng.randint(6, 24)
    made, eq1 = calc(trays, "×", per_tray)
    morning = rng.randint(5, max(6, made // 2))
    afternoon = rng.randint(1, max(2, made - morning - 1))
    sold, eq2 = calc(morning, "+", afternoon)
    left, eq3 = calc(made, "-", sold)
    if left == 0:
        raise _Reject
    text = (
        f"A bakery bakes {trays} trays of {bake} with {per_tray} on each tray. "
        f"It sells {morning} in the morning and {afternoon} in the afternoon. "
    )
    steps = [f"The bakery bakes {eq1} {bake}.", f"It sells {eq2} {bake}.", f"There are {eq3} {bake} left."]
    if rng.random() < 0.5 and left > 3:
        box = _divisor(rng, left, 2, 12)
        boxes, eq4 = calc(left, "÷", box)
        text += f"The leftovers are packed into bags of {box} for a food bank. How many bags are packed?"
        steps.append(f"That makes {eq4} bags.")
        return text, steps, boxes
    return text + f"How many {bake} are left at closing time?", steps, left


def library(rng: random.Random) -> tuple[str, list[str], int]:
    kind = rng.choice(
        ["novels", "comics", "cookbooks", "atlases", "poetry books", "picture books", "biographies"]
    )
    shelves, per_shelf = rng.randint(3, 20), rng.randint(10, 45)
    books, eq1 = calc(shelves, "×", per_shelf)
    donated, lent = rng.randint(5, 120), rng.randint(5, 150)
    more, eq2 = calc(books, "+", donated)
    left, eq3 = calc(more, "-", lent)
    text = (
        f"A library has {shelves} shelves of {kind} with {per_shelf} on each shelf. "
        f"It is given {donated} more {kind} and lends out {lent}. "
    )
    steps = [
        f"The shelves hold {eq1} {kind}.",
        f"After the gift there are {eq2} {kind}.",
        f"After lending, {eq3} {kind} are in the library.",
    ]
    if rng.random() < 0.5:
        cap = _divisor(rng, left, 5, 60)
        n, eq4 = calc(left, "÷", cap)
        text += f"The librarian puts the {kind} still in the library on new shelves that hold {cap} each. How many shelves are filled?"
        steps.append(f"They fill {eq4} shelves.")
        return text, steps, n
    return text + f"How many {kind} are in the library now?", steps, left


def fuel(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    town = rng.choice(
        ["Riverton", "Lakeside", "Hillford", "Oakbridge", "Port Ellis", "Stonebury", "Millbrook"]
    )
    km_per_litre, litres = rng.randint(8, 20), rng.randint(2, 30) * 2
    round_trip = km_per_litre * litres
    one_way = round_trip // 2
    total_km, eq1 = calc(one_way, "×", 2)
    used, eq2 = calc(total_km, "÷", km_per_litre)
    text = f"{p.name}'s car goes {km_per_litre} km on one litre of fuel. {p.Subj} drives to {town}, {one_way} km away, and back. "
    steps = [f"The round trip is {eq1} km.", f"The car uses {eq2} litres of fuel."]
    if rng.random() < 0.5:
        price = rng.randint(1, 3)
        cost, eq3 = calc(used, "×", price)
        text += f"Fuel costs ${price} a litre. How many dollars does the fuel for the trip cost?"
        steps.append(f"The fuel costs {eq3} dollars.")
        return text, steps, cost
    tank = used + rng.randint(1, 40)
    left, eq3 = calc(tank, "-", used)
    text += f"{p.Subj} starts with {tank} litres in the tank. How many litres are left after the trip?"
    steps.append(f"{p.Subj} has {eq3} litres left.")
    return text, steps, left


def tickets(rng: random.Random) -> tuple[str, list[str], int]:
    event = rng.choice(
        ["the cinema", "a concert", "the zoo", "a museum", "a theme park", "the aquarium", "a play"]
    )
    adults, kids = rng.randint(1, 8), rng.randint(1, 10)
    pa, pk = rng.randint(8, 60), rng.randint(3, 30)
    a, eq1 = calc(adults, "×", pa)
    k, eq2 = calc(kids, "×", pk)
    total, eq3 = calc(a, "+", k)
    text = (
        f"A group goes to {event}: {_pl(adults, 'adult')} at ${pa} per ticket and "
        f"{_pl(kids, 'child', 'children')} at ${pk} per ticket. "
    )
    steps = [
        f"Adult tickets cost {eq1} dollars.",
        f"Child tickets cost {eq2} dollars.",
        f"The tickets cost {eq3} dollars in total.",
    ]
    if rng.random() < 0.5:
        families = _divisor(rng, total, 2, 6)
        share, eq4 = calc(total, "÷", families)
        text += f"{families} families split the cost equally. How many dollars does each family pay?"
        steps.append(f"Each family pays {eq4} dollars.")
        return text, steps, share
    return text + "How many dollars do the tickets cost altogether?", steps, total


def party(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    food, unit = rng.choice(
        [("pizzas", "slices"), ("cakes", "pieces"), ("pies", "slices"), ("chocolate bars", "squares")]
    )
    n, per = rng.randint(2, 12), rng.randint(6, 16)
    guests, each = rng.randint(4, 30), rng.randint(1, 4)
    total, eq1 = calc(n, "×", per)
    eaten, eq2 = calc(guests, "×", each)
    left, eq3 = calc(total, "-", eaten)
    text = (
        f"For a party {p.name} buys {n} {food}, each cut into {per} {unit}. "
        f"{guests} guests eat {each} {unit if each > 1 else unit[:-1]} each. "
    )
    steps = [
        f"There are {eq1} {unit}.",
        f"The guests eat {eq2} {unit}.",
        f"There are {eq3} {unit} left.",
    ]
    if left > 3 and rng.random() < 0.4:
        share = _divisor(rng, left, 2, 8)
        got, eq4 = calc(left, "÷", share)
        text += f"{p.Subj} shares the leftovers equally among {share} neighbours. How many {unit} does each neighbour get?"
        steps.append(f"Each neighbour gets {eq4} {unit}.")
        return text, steps, got
    return text + f"How many {unit} are left over?", steps, left


def wages(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    job = rng.choice(
        ["a café", "a bike shop", "a farm", "a call centre", "a bookshop", "a warehouse", "a hotel"]
    )
    rate, hours, days = rng.randint(8, 30), rng.randint(2, 9), rng.randint(2, 6)
    day_pay, eq1 = calc(rate, "×", hours)
    week, eq2 = calc(day_pay, "×", days)
    text = f"{p.name} works at {job} for ${rate} an hour, {hours} hours a day, {days} days a week. "
    steps = [f"{p.Subj} earns {eq1} dollars a day.", f"In a week {p.subj} earns {eq2} dollars."]
    roll = rng.random()
    if roll < 0.4:
        bonus = rng.randint(10, 150)
        total, eq3 = calc(week, "+", bonus)
        spend = rng.randint(5, total - 1)
        left, eq4 = calc(total, "-", spend)
        text += (
            f"This week {p.subj} also gets a ${bonus} bonus and pays ${spend} for rent. "
            f"How many dollars does {p.subj} keep this week?"
        )
        steps += [f"With the bonus that is {eq3} dollars.", f"After rent {p.subj} keeps {eq4} dollars."]
        return text, steps, left
    if roll < 0.7:
        weeks = rng.randint(2, 4)
        total, eq3 = calc(week, "×", weeks)
        text += f"How many dollars does {p.subj} earn in {weeks} weeks?"
        steps.append(f"In {weeks} weeks {p.subj} earns {eq3} dollars.")
        return text, steps, total
    return text + f"How many dollars does {p.subj} earn in a week?", steps, week


def water_tank(rng: random.Random) -> tuple[str, list[str], int]:
    container = rng.choice(["water tank", "swimming pool", "rain barrel", "fish pond", "water trough"])
    if rng.random() < 0.5:
        rate, minutes, have = rng.randint(3, 40), rng.randint(4, 60), rng.randint(10, 500)
        cap = have + rate * minutes
        need, eq1 = calc(cap, "-", have)
        t, eq2 = calc(need, "÷", rate)
        text = (
            f"A {container} holds {cap} litres and already has {have} litres in it. "
            f"A hose adds {rate} litres a minute. How many minutes does it take to fill it?"
        )
        return (
            text,
            [f"It still needs {eq1} litres.", f"At {rate} litres a minute that takes {eq2} minutes."],
            t,
        )
    r1, r2, minutes = rng.randint(2, 30), rng.randint(2, 30), rng.randint(3, 40)
    cap = (r1 + r2) * minutes
    both, eq1 = calc(r1, "+", r2)
    t, eq2 = calc(cap, "÷", both)
    text = (
        f"An empty {container} holds {cap} litres. Two pipes fill it, one at {r1} litres a minute and the other "
        f"at {r2} litres a minute. How many minutes do both pipes together take to fill it?"
    )
    return text, [f"Together they add {eq1} litres a minute.", f"Filling it takes {eq2} minutes."], t


def reading(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    book = rng.choice(
        [
            "a mystery novel",
            "a history book",
            "a fantasy saga",
            "a science book",
            "a biography",
            "a travel guide",
        ]
    )
    rate, days = rng.randint(5, 40), rng.randint(2, 10)
    read, eq1 = calc(rate, "×", days)
    rate2, days2 = rng.randint(5, 60), rng.randint(1, 10)
    rest = rate2 * days2
    pages = read + rest
    left, eq2 = calc(pages, "-", read)
    text = (
        f"{p.name} is reading {book} with {pages} pages. {p.Subj} reads {rate} pages a day for {days} days. "
    )
    steps = [f"{p.Subj} reads {eq1} pages.", f"There are {eq2} pages left."]
    if rng.random() < 0.6:
        n, eq3 = calc(left, "÷", rate2)
        text += f"Then {p.subj} reads {rate2} pages a day. How many more days does {p.subj} need to finish?"
        steps.append(f"At {rate2} pages a day {p.subj} needs {eq3} more days.")
        return text, steps, n
    return text + "How many pages are left to read?", steps, left


def garden(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    length, width = rng.randint(3, 40), rng.randint(2, 30)
    if rng.random() < 0.5:
        half, eq1 = calc(length, "+", width)
        per, eq2 = calc(half, "×", 2)
        price = rng.randint(2, 15)
        cost, eq3 = calc(per, "×", price)
        text = (
            f"{p.name}'s garden is a rectangle {length} m long and {width} m wide. {p.Subj} puts a fence all "
            f"around it. Fencing costs ${price} per metre. How many dollars does the fence cost?"
        )
        steps = [
            f"One length and one width make {eq1} m.",
            f"The perimeter is {eq2} m.",
            f"The fence costs {eq3} dollars.",
        ]
        return text, steps, cost
    area, eq1 = calc(length, "×", width)
    bag = _divisor(rng, area, 2, 25)
    bags, eq2 = calc(area, "÷", bag)
    text = (
        f"{p.name} wants to sow grass on a lawn {length} m long and {width} m wide. "
        f"One bag of seed covers {bag} square metres. "
    )
    steps = [f"The lawn covers {eq1} square metres.", f"{p.Subj} needs {eq2} bags."]
    if rng.random() < 0.5:
        price = rng.randint(3, 20)
        cost, eq3 = calc(bags, "×", price)
        text += f"A bag costs ${price}. How many dollars does the seed cost?"
        steps.append(f"The seed costs {eq3} dollars.")
        return text, steps, cost
    return text + f"How many bags does {p.subj} need?", steps, bags


def collection(rng: random.Random) -> tuple[str, list[str], int]:
    p = rng.choice(PEOPLE)
    thing = rng.choice(["trading cards", "stamps", "marbles", "seashells", "coins", "postcards", "badges"])
    have, packs, per = rng.randint(5, 300), rng.randint(2, 10), rng.randint(3, 25)
    got, eq1 = calc(packs, "×", per)
    now, eq2 = calc(have, "+", got)
    friends, each = rng.randint(2, 6), rng.randint(1, 15)
    given, eq3 = calc(friends, "×", each)
    left, eq4 = calc(now, "-", given)
    text = (
        f"{p.name} has {have} {thing}. {p.Subj} buys {packs} packs of {per} {thing} and then gives {each} "
        f"to each of {friends} friends. How many {thing} does {p.subj} have now?"
    )
    steps = [
        f"The packs hold {eq1} {thing}.",
        f"{p.Subj} then has {eq2} {thing}.",
        f"{p.Subj} gives away {eq3} {thing}.",
        f"{p.Subj} has {eq4} {thing} left.",
    ]
    return text, steps, left


TEMPLATES: dict[str, Callable[[random.Random], tuple[str, list[str], int]]] = {
    f.__name__: f
    for f in (
        shopping,
        travel,
        recipe,
        savings,
        inventory,
        classroom,
        farming,
        sports,
        factory,
        bakery,
        library,
        fuel,
        tickets,
        party,
        wages,
        water_tank,
        reading,
        garden,
        collection,
    )
}

_NUM = re.compile(r"\d+")


def normalise(text: str) -> str:
    """The dedupe key: case, spacing and punctuation do not make a problem new."""
    return " ".join(re.sub(r"[^\w$]+", " ", text.lower()).split())


def draw_from(fn: Callable, template: str, rng: random.Random, min_steps: int = 2) -> Problem:
    """One valid problem from template function ``fn`` (redrawn until its numbers obey the rules and it has
    ``min_steps``-5 worked steps)."""
    for _ in range(1000):
        try:
            text, steps, answer = fn(rng)
        except _Reject:
            continue
        if min_steps <= len(steps) <= 5 and all(int(n) < MAX_NUMBER for n in _NUM.findall(text)):
            return Problem(template, text, tuple(steps), answer)
    raise RuntimeError(f"template {template!r} keeps rejecting its own draws")  # a generator bug


def draw(rng: random.Random, template: str) -> Problem:
    """One valid problem from ``template`` (redrawn until its numbers obey the rules)."""
    return draw_from(TEMPLATES[template], template, rng)


def generate(n: int, rng: random.Random, seen: set[str], max_steps: int = 5) -> list[Problem]:
    """``n`` problems new to ``seen`` (which is updated), templates taken in turn so each is used evenly.

    Problems with more than ``max_steps`` worked steps are skipped (a template that cannot make short
    enough problems drops out like an exhausted one).

    Raises:
        ValueError: when every template has stopped producing new problems before ``n`` were found.
    """
    names = list(TEMPLATES)
    rng.shuffle(names)
    active = names[:]
    out: list[Problem] = []
    i = 0
    while len(out) < n:
        if not active:
            raise ValueError(
                f"make_math: the templates ran out of unique problems after {len(seen)}; ask for fewer rows"
            )
        name = active[i % len(active)]
        i += 1
        for _ in range(MAX_STALL):
            prob = draw(rng, name)
            key = normalise(prob.text)
            if len(prob.steps) <= max_steps and key not in seen:
                seen.add(key)
                out.append(prob)
                break
        else:
            active.remove(name)
    return out
