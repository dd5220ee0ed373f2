"""The code domain: write a Python function with a given name and signature, judged by running it.

Each template draws an *instance* (its parameters: the divisor, the shift, the bounds...), a function name
and argument values. A task carries its reference solution (the ``output``, in a fenced block) and hidden
tests: argument lists and the expected results in the sandbox harness's encoding (``datakit.sandbox.encode``).
The expected results come from running the reference source at generation time, and each is checked
against the template's own independent implementation (the oracle), so a wrong reference cannot ship.
Two examples from the tests are shown in the instruction, as HumanEval's docstrings do.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datakit.sandbox import encode

N_CALLS = 8  # hidden test calls per task (the first two are shown as examples)
WORDS = (
    "apple river stone cloud tiger lamp orbit candle maple quartz ember violet harbor pixel frost "
    "garden meadow rocket silver window anchor basket copper desert falcon island jungle kettle "
    "a an ox sky sun cat tree road blue mountain elephant notebook sunflower lighthouse"
).split()


@dataclass(frozen=True)
class CodeTask:
    template: str
    key: tuple  # the instance: template, parameters and function name (train and test never share one)
    name: str  # the function to write
    signature: str  # "name(a, b)"
    text: str  # what it must return, in words
    source: str  # the reference solution
    oracle: Callable[..., Any]  # the same function written independently, for verification
    calls: list[list[Any]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (*self.key, self.name))

    def expected(self) -> list[Any]:
        ns: dict[str, Any] = {}
        exec(compile(self.source, f"<{self.template}>", "exec"), ns)  # our own reference code
        fn = ns[self.name]
        out = []
        for args in self.calls:
            got, want = fn(*_copy(args)), self.oracle(*_copy(args))
            if encode(got) != encode(want):
                raise AssertionError(f"code template {self.template}: reference {got!r} != oracle {want!r}")
            out.append(encode(got))
        return out

    def instruction(self, expected: list[Any]) -> str:
        shown = "\n".join(
            f"{self.name}({_args(a)}) == {_show(e)}" for a, e in zip(self.calls[:2], expected, strict=False)
        )
        return (
            f"Write a Python function `{self.signature}` that {self.text}.\n\nExamples:\n{shown}\n\n"
            "Answer with the function in a ```python code block."
        )

    def tests(self, expected: list[Any]) -> str:
        return json.dumps({"entry": self.name, "calls": self.calls, "expected": expected})


def _copy(args: list[Any]) -> list[Any]:
    return json.loads(json.dumps(args))


def _args(args: list[Any]) -> str:
    return ", ".join(repr(a) for a in args)


def _show(encoded: Any) -> str:
    return repr(decode(encoded))


def decode(value: Any) -> Any:
    """The harness encoding back to Python values (for display; the judge compares encodings)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(decode(v) for v in value["__tuple__"])
        if "__set__" in value:
            return {decode(v) for v in value["__set__"]}
        if "__map__" in value:
            return {k: decode(v) for k, v in value["__map__"].items()}
        if "__dict__" in value:
            return {decode(k): decode(v) for k, v in value["__dict__"]}
        if "__float__" in value:
            return float(value["__float__"])
    return value


def _name(rng: random.Random, *names: str) -> str:
    return rng.choice(names)


def _ints(rng: random.Random, n: int, lo: int = -20, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _lists(rng: random.Random, lo: int = -20, hi: int = 20, most: int = 8) -> list[list[list[int]]]:
    calls = [[_ints(rng, rng.randint(3, most), lo, hi)] for _ in range(N_CALLS - 1)]
    return calls + [[[]]]


def _sentence(rng: random.Random, lo: int = 2, hi: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


# ------------------------------------------------------------------------------------------- templates
def sum_multiples(rng: random.Random) -> CodeTask:
    a, b = sorted(rng.sample(range(2, 14), 2))
    name = _name(rng, "sum_multiples", "multiples_total", "sum_of_multiples")
    return CodeTask(
        "sum_multiples",
        ("sum_multiples", a, b),
        name,
        f"{name}(n)",
        f"returns the sum of all positive integers below `n` that are divisible by {a} or by {b}",
        f"def {name}(n):\n    return sum(i for i in range(1, n) if i % {a} == 0 or i % {b} == 0)\n",
        lambda n: sum(set(range(a, max(n, 0), a)) | set(range(b, max(n, 0), b))),
        [[rng.randint(10, 60)] for _ in range(N_CALLS - 2)] + [[1], [a]],
    )


def count_above(rng: random.Random) -> CodeTask:
    k = rng.randint(-15, 15)
    name = _name(rng, "count_above", "count_greater", "how_many_above")
    return CodeTask(
        "count_above",
        ("count_above", k),
        name,
        f"{name}(nums)",
        f"returns how many numbers in the list `nums` are strictly greater than {k}",
        f"def {name}(nums):\n    return sum(1 for x in nums if x > {k})\n",
        lambda nums: len([x for x in nums if x > k]),
        [[[k, k + 1, k - 1]]] + _lists(rng)[1:],  # the boundary itself is one of the cases
    )


def clamp_all(rng: random.Random) -> CodeTask:
    lo = rng.randint(-6, 0)
    hi = rng.randint(2, 9)
    name = _name(rng, "clamp_all", "clip_values", "clamp_list")
    return CodeTask(
        "clamp_all",
        ("clamp_all", lo, hi),
        name,
        f"{name}(nums)",
        f"returns a new list where every number of `nums` below {lo} becomes {lo} and every number above "
        f"{hi} becomes {hi}",
        f"def {name}(nums):\n    return [min(max(x, {lo}), {hi}) for x in nums]\n",
        lambda nums: [lo if x < lo else hi if x > hi else x for x in nums],
        _lists(rng),
    )


def rotate_left(rng: random.Random) -> CodeTask:
    k = rng.randint(1, 7)
    way = rng.choice(["left", "right"])
    name = _name(rng, f"rotate_{way}", f"shift_{way}", f"rotate_list_{way}")
    step = k if way == "left" else -k
    moves = "the first element moves to the end" if way == "left" else "the last element moves to the front"
    return CodeTask(
        "rotate_left",
        ("rotate_left", k, way),
        name,
        f"{name}(items)",
        f"returns the list `items` rotated {way} by {k} position{'s' if k > 1 else ''} ({moves} at each "
        "step); an empty list stays empty",
        f"def {name}(items):\n    if not items:\n        return []\n    k = {step} % len(items)\n"
        "    return items[k:] + items[:k]\n",
        lambda items: [items[(i + step) % len(items)] for i in range(len(items))] if items else [],
        _lists(rng, 0, 9),
    )


def chunks(rng: random.Random) -> CodeTask:
    k = rng.randint(2, 7)
    name = _name(rng, "chunks", "split_into_chunks", "group_by_size")
    return CodeTask(
        "chunks",
        ("chunks", k),
        name,
        f"{name}(items)",
        f"splits the list `items` into consecutive chunks of {k} elements (the last chunk may be shorter) and "
        "returns the list of chunks",
        f"def {name}(items):\n    return [items[i:i + {k}] for i in range(0, len(items), {k})]\n",
        lambda items: (
            [list(c) for c in zip(*[iter(items)] * k, strict=False)]
            + ([items[len(items) - len(items) % k :]] if len(items) % k else [])
        ),
        _lists(rng, 0, 9, most=11),
    )


def caesar(rng: random.Random) -> CodeTask:
    k = rng.randint(1, 25)
    name = _name(rng, "caesar", "shift_letters", "encode_caesar")
    lower = string.ascii_lowercase
    return CodeTask(
        "caesar",
        ("caesar", k),
        name,
        f"{name}(text)",
        f"returns `text` with every lowercase letter shifted {k} places forward in the alphabet (wrapping from "
        "z to a); other characters stay as they are",
        f"def {name}(text):\n    out = []\n    for c in text:\n        if 'a' <= c <= 'z':\n"
        f"            c = chr((ord(c) - ord('a') + {k}) % 26 + ord('a'))\n        out.append(c)\n"
        "    return ''.join(out)\n",
        lambda text: text.translate(str.maketrans(lower, lower[k:] + lower[:k])),
        [[_sentence(rng, 1, 3) + rng.choice(["", "!", " 42", "?"])] for _ in range(N_CALLS - 1)] + [[""]],
    )


def label_number(rng: random.Random) -> CodeTask:
    a, b = rng.sample(range(2, 8), 2)
    wa, wb = rng.choice([("Fizz", "Buzz"), ("Ping", "Pong"), ("Zap", "Bop")])
    name = _name(rng, "label", "label_number", "name_number")
    return CodeTask(
        "label_number",
        ("label_number", a, b, wa, wb),
        name,
        f"{name}(n)",
        f'returns "{wa}{wb}" if `n` is divisible by both {a} and {b}, "{wa}" if only by {a}, "{wb}" if only by '
        f"{b}, and otherwise `n` as a string",
        f"def {name}(n):\n    if n % {a} == 0 and n % {b} == 0:\n        return {wa + wb!r}\n"
        f"    if n % {a} == 0:\n        return {wa!r}\n    if n % {b} == 0:\n        return {wb!r}\n"
        "    return str(n)\n",
        lambda n: (wa if n % a == 0 else "") + (wb if n % b == 0 else "") or str(n),
        [[a * b], [a], [b]] + [[rng.randint(1, 60)] for _ in range(N_CALLS - 3)],
    )


def words_longer(rng: random.Random) -> CodeTask:
    k = rng.randint(2, 7)
    name = _name(rng, "long_words", "words_longer_than", "filter_long_words")
    return CodeTask(
        "words_longer",
        ("words_longer", k),
        name,
        f"{name}(sentence)",
        f"returns the list of words of `sentence` (split on spaces) that have more than {k} letters, in order",
        f"def {name}(sentence):\n    return [w for w in sentence.split() if len(w) > {k}]\n",
        lambda sentence: list(filter(lambda w: len(w) > k, sentence.split(" "))) if sentence else [],
        [[_sentence(rng)] for _ in range(N_CALLS - 1)] + [[""]],
    )


def every_nth(rng: random.Random) -> CodeTask:
    k = rng.randint(2, 6)
    start = rng.randint(0, k - 1)
    name = _name(rng, "every_nth", "pick_every", "take_every")
    return CodeTask(
        "every_nth",
        ("every_nth", k, start),
        name,
        f"{name}(items)",
        f"returns every {k}th element of the list `items`, starting with the element at index {start}",
        f"def {name}(items):\n    return items[{start}::{k}]\n",
        lambda items: [x for i, x in enumerate(items) if i >= start and (i - start) % k == 0],
        _lists(rng, 0, 30, most=12),
    )


def digit_sum_power(rng: random.Random) -> CodeTask:
    p = rng.randint(1, 4)
    name = _name(rng, "digit_power_sum", "sum_digit_powers", "digits_total")
    what = (
        "sum of the digits"
        if p == 1
        else f"sum of the {['', '', 'squares', 'cubes', 'fourth powers'][p]} of the digits"
    )
    return CodeTask(
        "digit_sum_power",
        ("digit_sum_power", p),
        name,
        f"{name}(n)",
        f"returns the {what} of the integer `n` (ignore its sign)",
        f"def {name}(n):\n    return sum(int(d) ** {p} for d in str(abs(n)))\n",
        lambda n: sum((abs(n) // 10**i % 10) ** p for i in range(len(str(abs(n))))),
        [[rng.randint(-999, 9999)] for _ in range(N_CALLS - 1)] + [[0]],
    )


def running_op(rng: random.Random) -> CodeTask:
    op = rng.choice(["sum", "max", "min"])
    name = _name(rng, f"running_{op}", f"cumulative_{op}", f"prefix_{op}")
    code = {
        "sum": "    out, acc = [], 0\n    for x in nums:\n        acc += x\n        out.append(acc)\n",
        "max": "    out = []\n    for x in nums:\n        out.append(x if not out else max(out[-1], x))\n",
        "min": "    out = []\n    for x in nums:\n        out.append(x if not out else min(out[-1], x))\n",
    }[op]
    fn = {"sum": sum, "max": max, "min": min}[op]
    return CodeTask(
        "running_op",
        ("running_op", op),
        name,
        f"{name}(nums)",
        f"returns the list whose i-th element is the {op} of the first i+1 numbers of `nums`",
        f"def {name}(nums):\n{code}    return out\n",
        lambda nums: [fn(nums[: i + 1]) for i in range(len(nums))],
        _lists(rng),
    )


def pair_diffs(rng: random.Random) -> CodeTask:
    gap = rng.randint(1, 5)
    name = _name(rng, "gaps", "differences", "pair_differences")
    return CodeTask(
        "pair_diffs",
        ("pair_diffs", gap),
        name,
        f"{name}(nums)",
        f"returns the list of differences `nums[i + {gap}] - nums[i]` for every index i where both exist",
        f"def {name}(nums):\n    return [nums[i + {gap}] - nums[i] for i in range(len(nums) - {gap})]\n",
        lambda nums: [b - a for a, b in zip(nums, nums[gap:], strict=False)],
        _lists(rng),
    )


def count_letter(rng: random.Random) -> CodeTask:
    c = rng.choice("aeioucdglmnprst")
    name = _name(rng, f"count_{c}", f"how_many_{c}", f"number_of_{c}")
    return CodeTask(
        "count_letter",
        ("count_letter", c),
        name,
        f"{name}(text)",
        f"returns how many times the letter '{c}' occurs in `text`, counting upper and lower case",
        f"def {name}(text):\n    return text.lower().count({c!r})\n",
        lambda text: sum(1 for ch in text if ch in (c, c.upper())),
        [[rng.choice([str.upper, str.lower, str.title])(_sentence(rng))] for _ in range(N_CALLS - 1)]
        + [[""]],
    )


def scale_round(rng: random.Random) -> CodeTask:
    factor = rng.choice([0.5, 1.5, 2.5, 0.25, 1.2, 3.0, 0.1, 4.5, 0.75, 2.0])
    digits = rng.randint(0, 3)
    name = _name(rng, "scale", "scale_all", "scaled")
    return CodeTask(
        "scale_round",
        ("scale_round", factor, digits),
        name,
        f"{name}(nums)",
        f"returns a new list with every number of `nums` multiplied by {factor} and rounded with "
        f"`round(x, {digits})`",
        f"def {name}(nums):\n    return [round(x * {factor}, {digits}) for x in nums]\n",
        lambda nums: [round(factor * x, digits) for x in nums],
        _lists(rng, -50, 50),
    )


def first_index(rng: random.Random) -> CodeTask:
    kind = rng.choice(["even", "odd", "negative", "multiple of 3"])
    test = {"even": "x % 2 == 0", "odd": "x % 2 != 0", "negative": "x < 0", "multiple of 3": "x % 3 == 0"}[
        kind
    ]
    name = _name(rng, "first_index", "find_first", "index_of_first")
    checks = {"even": lambda x: x % 2 == 0, "odd": lambda x: x % 2 == 1, "negative": lambda x: x < 0,
              "multiple of 3": lambda x: x % 3 == 0}[kind]  # fmt: skip
    return CodeTask(
        "first_index",
        ("first_index", kind),
        name,
        f"{name}(nums)",
        f"returns the index of the first {kind} number in `nums`, or -1 if there is none",
        f"def {name}(nums):\n    for i, x in enumerate(nums):\n        if {test}:\n            return i\n"
        "    return -1\n",
        lambda nums: next((i for i, x in enumerate(nums) if checks(x)), -1),
        _lists(rng) + [[[1, 5, 7]], [[-3, 9, 2]]],
    )


def word_lengths(rng: random.Random) -> CodeTask:
    case = rng.choice(["lower", "upper", "as given"])
    name = _name(rng, "word_lengths", "length_map", "lengths_by_word")
    key = {"lower": "w.lower()", "upper": "w.upper()", "as given": "w"}[case]
    fn = {"lower": str.lower, "upper": str.upper, "as given": str}[case]
    how = "as given" if case == "as given" else f"in {case} case"
    return CodeTask(
        "word_lengths",
        ("word_lengths", case),
        name,
        f"{name}(sentence)",
        f"returns a dict that maps each word of `sentence` (split on spaces, the word {how}) to its length",
        f"def {name}(sentence):\n    return {{{key}: len(w) for w in sentence.split()}}\n",
        lambda sentence: dict((fn(w), len(w)) for w in sentence.split()),
        [[rng.choice([str.title, str.lower])(_sentence(rng))] for _ in range(N_CALLS)],
    )


def dedupe(rng: random.Random) -> CodeTask:
    keep = rng.choice(["first", "last"])
    name = _name(rng, "dedupe", "unique_in_order", "remove_duplicates")
    src = (
        "    seen, out = set(), []\n    for x in items:\n        if x not in seen:\n            seen.add(x)\n"
        "            out.append(x)\n    return out\n"
    )
    if keep == "last":
        src = (
            "    seen, out = set(), []\n    for x in reversed(items):\n        if x not in seen:\n"
            "            seen.add(x)\n            out.append(x)\n    return out[::-1]\n"
        )
    return CodeTask(
        "dedupe",
        ("dedupe", keep),
        name,
        f"{name}(items)",
        f"returns `items` without repeated values, keeping the {keep} occurrence of each value and the order "
        "of the kept ones",
        f"def {name}(items):\n{src}",
        lambda items: [
            x
            for i, x in enumerate(items)
            if (x not in items[:i] if keep == "first" else x not in items[i + 1 :])
        ],
        _lists(rng, 0, 6, most=10),
    )


def gcd_lcm(rng: random.Random) -> CodeTask:
    which = rng.choice(["gcd", "lcm"])
    name = _name(rng, f"{which}_all", f"list_{which}", f"{which}_of")
    src = (
        f"def {name}(nums):\n    import math\n    out = nums[0]\n    for x in nums[1:]:\n"
        + (
            "        out = math.gcd(out, x)\n"
            if which == "gcd"
            else "        out = out * x // math.gcd(out, x)\n"
        )
        + "    return out\n"
    )
    fn = math.gcd if which == "gcd" else math.lcm
    what = "greatest common divisor" if which == "gcd" else "least common multiple"
    return CodeTask(
        "gcd_lcm",
        ("gcd_lcm", which),
        name,
        f"{name}(nums)",
        f"returns the {what} of the positive integers in the non-empty list `nums`",
        src,
        lambda nums: fn(*nums),
        [
            [[rng.choice([2, 3, 4, 6, 8, 9, 12]) * rng.randint(1, 5) for _ in range(rng.randint(2, 4))]]
            for _ in range(N_CALLS)
        ],  # fmt: skip
    )


def mean_round(rng: random.Random) -> CodeTask:
    digits = rng.randint(0, 3)
    empty = rng.choice([0, None, -1, 0.0])
    name = _name(rng, "mean", "average", "mean_value")
    return CodeTask(
        "mean_round",
        ("mean_round", digits, empty),
        name,
        f"{name}(nums)",
        f"returns the mean of the numbers in `nums` rounded with `round(x, {digits})`, or {empty!r} for an "
        "empty list",
        f"def {name}(nums):\n    if not nums:\n        return {empty!r}\n"
        f"    return round(sum(nums) / len(nums), {digits})\n",
        lambda nums: round(math.fsum(nums) / len(nums), digits) if nums else empty,
        _lists(rng),
    )


def max_run(rng: random.Random) -> CodeTask:
    of = rng.choice(["equal values", "increasing values"])
    name = _name(rng, "longest_run", "max_run", "longest_streak")
    cond = "items[i] == items[i - 1]" if of == "equal values" else "items[i] > items[i - 1]"
    strict = {"equal values": lambda a, b: a == b, "increasing values": lambda a, b: b > a}[of]

    def oracle(items):
        best = 0
        for i in range(len(items)):
            j = i
            while j + 1 < len(items) and strict(items[j], items[j + 1]):
                j += 1
            best = max(best, j - i + 1)
        return best

    return CodeTask(
        "max_run",
        ("max_run", of),
        name,
        f"{name}(items)",
        f"returns the length of the longest run of consecutive {of} in `items` (0 for an empty list)",
        f"def {name}(items):\n    if not items:\n        return 0\n    best = cur = 1\n"
        f"    for i in range(1, len(items)):\n        cur = cur + 1 if {cond} else 1\n"
        "        best = max(best, cur)\n    return best\n",
        oracle,
        _lists(rng, 0, 3, most=12),
    )


TEMPLATES: dict[str, Callable[[random.Random], CodeTask]] = {
    f.__name__: f
    for f in (
        sum_multiples,
        count_above,
        clamp_all,
        rotate_left,
        chunks,
        caesar,
        label_number,
        words_longer,
        every_nth,
        digit_sum_power,
        running_op,
        pair_diffs,
        count_letter,
        scale_round,
        first_index,
        word_lengths,
        dedupe,
        gcd_lcm,
        mean_round,
        max_run,
    )
}


def mutants(source: str) -> dict[str, str]:
    """For checking a judge: three mutations of a reference: an off-by-one (the first integer literal + 1), a wrong operator
    (the first comparison or arithmetic operator swapped) and a missing case (the first ``if`` branch taken
    out)."""
    out = {}
    m = re.search(r"(?<![\w.])(\d+)(?![\w.])", source.split("\n", 1)[1])
    if m:
        start = len(source.split("\n", 1)[0]) + 1 + m.start()
        out["off-by-one"] = source[:start] + str(int(m.group(1)) + 1) + source[start + len(m.group(1)) :]
    for a, b in ((" > ", " >= "), (" < ", " <= "), (" == ", " != "), (" + ", " - "), (" * ", " + "), (" - ", " + "),
                 (" % ", " // "), ("min(", "max("), ("max(", "min(")):  # fmt: skip
        if a in source:
            out["wrong operator"] = source.replace(a, b, 1)
            break
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip().startswith("if ") and line.rstrip().endswith(":"):
            out["missing case"] = "".join(lines[:i] + lines[i + 2 :])
            break
    return out


def held_out(key: tuple) -> bool:
    """Whether an instance belongs to the held-out side (validation and test) rather than training: a
    stable hash of the instance puts about 30% of each template's instances there, so every template is
    on both sides and no instance is on both."""
    return int(hashlib.sha1(repr(key).encode()).hexdigest()[:8], 16) % 10 < 3


def generate(n: int, side: str, rng: random.Random, used: set[tuple], max_stall: int = 300) -> list[CodeTask]:
    """``n`` tasks of ``side`` ("train" or "test": the held-out instances) whose instances are not in
    ``used`` (which grows), the templates taken in turn until each runs out.

    Raises:
        ValueError: when every template has run out of new instances.
    """
    from datakit.synth import take_in_turn

    want_held = side == "test"

    def draw_new(template: str) -> CodeTask | None:
        task = TEMPLATES[template](rng)
        if task.key in used or held_out(task.key) != want_held:
            return None
        used.add(task.key)
        return task

    return take_in_turn(list(TEMPLATES), n, draw_new, max_stall, f"code domain: the templates ({side} side)")
