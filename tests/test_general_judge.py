"""The general judge, per category of the synthetic pool: for every category the reference, a bare short
answer, a sentence and a chain of thought ending in the right value score right; near misses and another
category's answer score wrong. Each row is a literal item as datakit.synth.general writes it."""

import pytest

from datakit.evaluate import general_score
from datakit.synth import make_general
from datakit.synth.general import CATEGORIES

# category: (instruction, reference, [right answers], [wrong answers])
CASES = {
    "unit_conversion": (
        "How many metres are there in 3 kilometres?",
        "3 kilometres is 3000 metres.",
        ["3000", "There are 3000 metres in 3 kilometres.", "1 km = 1000 m, so 3 × 1000 = 3000 metres.",
         "3,000 m (that is 3 km)."],
        ["300", "3 kilometres is 300 metres.", "30000 metres", "The reversed string is \"olleh\"."],
    ),
    "string_ops": (
        'Convert "red fox" to uppercase.',
        'In uppercase it is "RED FOX".',
        ["RED FOX", 'The uppercase version is "RED FOX".', "Each letter becomes a capital: R, E, D... so RED FOX."],
        ["red fox", "RED FOXES", "Red Fox", "3000"],
    ),
    "counting": (
        'How many vowels are in the word "banana"?',
        '"banana" has 3 vowels.',
        ["3", "The word banana has 3 vowels.", "b-a-n-a-n-a: the vowels are a, a, a, so there are 3."],
        ["2", "There are 6 letters.", "banana", "No, it is not."],
    ),
    "list_ops": (
        "Sort these numbers in ascending order: 5, 14, 3, 8.",
        "The sorted list is 3, 5, 8, 14.",
        ["3, 5, 8, 14", "The sorted list is 3, 5, 8, 14.", "Smallest is 3, then 5, then 8, then 14: 3, 5, 8, 14."],
        ["14, 8, 5, 3", "3, 8, 5, 14", "5, 14, 3, 8", "14"],
    ),
    "dates": (
        "What date is 10 days after 25 December 2020?",
        "10 days after 25 December 2020 is 4 January 2021.",
        ["4 January 2021", "It is 4 January 2021.",
         "December has 31 days, so 6 days take us to 31 December 2020 and 4 more to 4 January 2021."],
        ["5 January 2021", "4 January 2020", "25 December 2020", "Monday"],
    ),
    "number_words": (
        "Write 65 in English words.",
        '65 in words is "sixty-five".',
        ["sixty-five", "65 in words is sixty five.", "60 is sixty and 5 is five, so it is Sixty-Five."],
        ["fifty-six", "sixty", "six five", "65"],
    ),
    "python": (
        "What does this Python code print?\n\n```python\nprint(3 * 4 + 1)\n```",
        "It prints `13`.",
        ["13", "It prints 13.", "3 * 4 is 12, plus 1 gives 13."],
        ["12", "14", "It prints 3 * 4 + 1.", "thirteen apples 7"],
    ),
    "definition": (
        "Define overfitting.",
        "A model fits the noise of its training data so closely that it does worse on new data.",
        [
            "A model fits the noise of its training data so closely that it does worse on new data.",
            "When a model fits noise in the training data and then does worse on new data.",
            "Overfitting means the model has learned the noise of its training data too closely, so it "
            "performs worse on new, unseen data.",
            "Think of memorising: the model fits its training data, noise included, so closely that on new "
            "data it does worse. That is overfitting.",
        ],
        [
            "A model is too simple to capture the real pattern in the data, so it does badly even on its "
            "training set.",
            "The step size that scales each parameter update during training.",
            "Overfitting is a type of exercise.",
            "42",
        ],
    ),
    "term_lookup": (
        "Which term means: The step size that scales each parameter update during training.",
        'The term is "learning rate".',
        ["learning rate", "This is the learning rate.", "Step size of each update... that is the Learning Rate."],
        ["batch size", "learning", "rate", "gradient descent"],
    ),
    "comparison": (
        "Which is larger, 47 or 82?",
        "82 is larger.",
        ["82", "82 is larger than 47.", "Comparing 47 and 82: the tens digit 8 beats 4, so 82 is larger.",
         "The larger number is 82."],
        ["47", "47 is larger than 82.", "47 or 82?", "Yes"],
    ),
    "ages": (
        "Ana was born in 1990. How old does Ana turn in 2020?",
        "Ana turns 30 in 2020.",
        ["30", "Ana turns 30 in 2020.", "2020 - 1990 = 30, so she turns 30."],
        ["29", "Ana turns 2020.", "1990", "31 years old"],
    ),
    "clock": (
        "It is 09:15. What time will it be in 30 minutes?",
        "It will be 09:45.",
        ["09:45", "It will be 9:45.", "15 + 30 = 45 minutes past nine, so the time is 09:45."],
        ["10:45", "09:15", "09:30", "45"],
    ),
    "percentages": (
        "What percentage of 80 is 20?",
        "20 is 25% of 80.",
        ["25%", "20 is 25% of 80.", "20 / 80 = 0.25, which is 25%."],
        ["20%", "It is 80.", "4", "25 apples 26"],
    ),
    "sequences": (
        "What number comes next: 2, 4, 6, 8, 10, ?",
        "The next number is 12.",
        ["12", "The next number is 12.", "Each term adds 2, so after 10 comes 12."],
        ["10", "14", "2, 4, 6, 8, 10", "The next letter is L."],
    ),
    "logic": (
        "What is the value of the Boolean expression: not (True and False) or False?",
        "The expression is True.",
        ["True", "The expression is True.", "True and False is False; not False is True; True or False is True."],
        ["False", "The expression is False.", "not (True and False) or False", "Yes"],
    ),
    "spelling": (
        'Spell "apple" letter by letter, separated by hyphens.',
        "A-P-P-L-E",
        ["A-P-P-L-E", "It is spelled a-p-p-l-e.", "Letter by letter: A - P - P - L - E"],
        ["A-P-L-E", "A-P-P-L-E-S", "apple", "E-L-P-P-A"],
    ),
    "format_conversion": (
        "Write Ana, Ben, Cy as a JSON list.",
        '["Ana", "Ben", "Cy"]',
        ['["Ana", "Ben", "Cy"]', 'Here it is: ["Ana","Ben","Cy"]', 'Quote each name and wrap them: ["Ana", "Ben", "Cy"]'],
        ['["Ana", "Ben"]', "Ana, Ben, Cy", '["Cy", "Ben", "Ana"]', '{"name": "Ana"}'],
    ),
    "roman_numerals": (
        "Write 14 in Roman numerals.",
        "14 in Roman numerals is XIV.",
        ["XIV", "14 in Roman numerals is XIV.", "10 is X and 4 is IV, so 14 is XIV."],
        ["XVI", "XIIII", "xiv apples X", "14"],
    ),
    "number_facts": (
        "What is the greatest common divisor of 12 and 18?",
        "The greatest common divisor of 12 and 18 is 6.",
        ["6", "The GCD of 12 and 18 is 6.", "12 = 2·2·3 and 18 = 2·3·3 share 2·3, so the GCD is 6."],
        ["3", "36", "12", "The greatest common divisor is 12 and 18."],
    ),
}  # fmt: skip

# More kinds inside a category: yes/no, choices, weekdays, times, JSON fields, letters.
EXTRA = [
    ("dates", "Is 2000 a leap year?", "Yes, 2000 is a leap year.",
     ["Yes", "Yes, it is.", "2000 is divisible by 400, so yes"], ["No", "No, 2000 is not a leap year."]),
    ("dates", "What day of the week is 1 January 2000?", "1 January 2000 is a Saturday.",
     ["Saturday", "It was a Saturday.", "Counting from a known Monday, it lands on Saturday."],
     ["Sunday", "Friday, not Saturday"]),
    ("dates", "How many days are there from 1 March 2021 to 11 March 2021?", "There are 10 days from 1 March 2021 to 11 March 2021.",
     ["10", "There are 10 days from 1 March 2021 to 11 March 2021.", "11 - 1 = 10 days."], ["11", "2021"]),
    ("comparison", 'Which comes first in alphabetical order, "butter" or "rabbit"?', '"butter" comes first.',
     ["butter", 'The answer is "butter" in alphabetical order, while "rabbit" is the second word.'],
     ["rabbit", '"butter" or "rabbit"? It is "rabbit".']),
    ("logic", "Ana is taller than Ben. Ben is taller than Cy. Who is the tallest?", "Ana is the tallest.",
     ["Ana", "Ana is the tallest.", "Ana is taller than Ben, who is taller than Cy, so Ana is the tallest."],
     ["Cy", "Ben is the tallest.", "Cy is shorter than Ana"]),
    ("spelling", 'Which spelling is correct: "necklace" or "neckalce"?', 'The correct spelling is "necklace".',
     ["necklace", 'The correct spelling is "necklace", not "neckalce".', '"neckalce" is misspelled; the right one is necklace.'],
     ["neckalce", 'The correct spelling is "neckalce", not "necklace".']),
    ("spelling", 'What is the 3rd letter of "apple"?', 'The 3rd letter of "apple" is "p".',
     ["p", 'The 3rd letter is "p".', "a, p, then p: it is P."], ["a", 'The 3rd letter is "l".']),
    ("clock", "Convert 13:05 to 12-hour time.", "13:05 is 1:05 PM.",
     ["1:05 PM", "13:05 is 1:05 p.m.", "13 - 12 = 1, so it is 1:05 PM."], ["1:05 AM", "13:05", "1:50 PM"]),
    ("format_conversion", 'What is the value of "age" in this JSON: {"name": "Ana", "age": 30}', 'The value of "age" is 30.',
     ["30", 'The value of "age" is 30.', "The age field holds 30."], ["31", "Ana"]),
    ("comparison", "Is 3/4 bigger or smaller than 2/3?", "3/4 is bigger than 2/3.",
     ["bigger", "3/4 is larger than 2/3.", "3/4 = 0.75 and 2/3 = 0.67, so 3/4 is bigger."], ["smaller", "3/4 is smaller than 2/3."]),
    ("sequences", "What letter comes next: A, C, E, G, ?", "The next letter is I.",
     ["I", "The next letter is I.", "Skip one letter each time: G, then I."], ["H", "The next letter is K.", "I think so"]),
]  # fmt: skip


def _rows():
    for cat, (instruction, reference, right, wrong) in CASES.items():
        yield cat, instruction, reference, right, wrong
    yield from EXTRA


@pytest.mark.parametrize(("category", "instruction", "reference", "right", "wrong"), list(_rows()))
def test_right_answers_score_right_and_near_misses_wrong(category, instruction, reference, right, wrong):
    source = f"general/{category}"
    for answer in [reference, *right]:
        assert general_score(answer, reference, instruction, source)[0] == 5, answer
    for answer in wrong:
        assert general_score(answer, reference, instruction, source)[0] == 1, answer


def test_every_category_has_a_case():
    assert set(CASES) == set(CATEGORIES)


def test_every_reference_of_the_pool_scores_right():
    """A reference restated as the answer is right, for every generated row: the keys parse every format
    the generator writes."""
    pool, held_out = make_general(2000, 600, seed=3)
    for r in pool.vstack(held_out).iter_rows(named=True):
        assert general_score(r["output"], r["output"], r["instruction"], r["source"])[0] == 5, r


def test_another_categorys_reference_scores_wrong():
    """Answering with a different category's reference is wrong (no key accepts just anything)."""
    refs = {cat: case[1] for cat, case in CASES.items()}
    for cat, (instruction, reference, _, _) in CASES.items():
        for other, answer in refs.items():
            if other != cat:
                assert general_score(answer, reference, instruction, f"general/{cat}")[0] == 1, (cat, other)


def test_rows_of_other_sources_keep_the_generic_rule():
    # A user's own set: the reference's answer must appear in the response.
    ref = 'The capital is "Paris".'
    assert general_score("It is Paris.", ref, "Capital of France?", "mydata")[0] == 5
    assert general_score("It is Lyon.", ref, "Capital of France?", None)[0] == 1
