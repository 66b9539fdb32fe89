"""Lesson injection: the budget is never exceeded, low-credit lessons go first, the order is stable by id."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from secondnature.inject import LESSONS_HEADER, compose, lesson_tokens, render, select
from secondnature.types import Lesson


def words(s: str) -> int:
    return len(s.split())


def lesson(n: int, text: str | None = None, gain: float = 0.0, uses: int = 0) -> Lesson:
    return Lesson(f"L{n}", text or f"lesson {n} says do one careful thing", "letters", gain=gain, uses=uses)


lesson_lists = st.lists(
    st.builds(lambda n, k, gain, uses: lesson(n, " ".join(["word"] * k), gain, uses),
              st.integers(1, 500), st.integers(1, 30), st.floats(-1, 1), st.integers(0, 20)),
    max_size=12, unique_by=lambda x: x.id)


@settings(max_examples=300)
@given(lessons=lesson_lists, budget=st.integers(0, 200))
def test_select_never_exceeds_the_budget(lessons: list[Lesson], budget: int) -> None:
    kept = select(lessons, budget, words)
    assert lesson_tokens(kept, words) <= budget
    assert set(kept) <= set(lessons)
    assert [int(x.id[1:]) for x in kept] == sorted(int(x.id[1:]) for x in kept)
    # nothing left out would still have fitted
    for x in set(lessons) - set(kept):
        assert lesson_tokens([*kept, x], words) > budget


@settings(max_examples=200)
@given(gains=st.lists(st.floats(-1, 1), min_size=1, max_size=10, unique=True), fit=st.integers(0, 10))
def test_equal_cost_lessons_keep_the_highest_gains(gains: list[float], fit: int) -> None:
    lessons = [lesson(i + 1, gain=g) for i, g in enumerate(gains)]
    fit = min(fit, len(lessons))
    budget = lesson_tokens(lessons[:fit], words)  # every lesson has the same word count
    kept = select(lessons, budget, words)
    assert {x.id for x in kept} == {x.id for x in sorted(lessons, key=lambda x: -x.gain)[:fit]}


def test_lowest_gain_is_dropped_first() -> None:
    lessons = [lesson(1, gain=0.3), lesson(2, gain=-0.1), lesson(3, gain=0.5)]
    budget = lesson_tokens(lessons, words) - 1
    assert [x.id for x in select(lessons, budget, words)] == ["L1", "L3"]
    budget = lesson_tokens(lessons[:1], words)
    assert [x.id for x in select(lessons, budget, words)] == ["L3"]


def test_uses_then_newer_break_ties_in_gain() -> None:
    lessons = [lesson(1, uses=5), lesson(2, uses=1), lesson(3, uses=1)]
    budget = lesson_tokens(lessons[:1], words)
    assert [x.id for x in select(lessons, budget, words)] == ["L1"]
    budget = lesson_tokens(lessons[:2], words)
    assert [x.id for x in select(lessons, budget, words)] == ["L1", "L3"]


def test_a_long_high_gain_lesson_yields_to_short_ones_that_fit() -> None:
    long = lesson(1, " ".join(["word"] * 50), gain=0.9)
    short = lesson(2, "count every letter one by one", gain=0.1)
    assert select([long, short], lesson_tokens([short], words), words) == [short]


def test_order_is_numeric_by_id_whatever_the_input_order() -> None:
    lessons = [lesson(10), lesson(2), lesson(1), lesson(33), lesson(3)]
    for seed in range(5):
        shuffled = lessons[:]
        random.Random(seed).shuffle(shuffled)
        assert [x.id for x in select(shuffled, None, words)] == ["L1", "L2", "L3", "L10", "L33"]
        assert [x.id for x in select(shuffled, 10_000, words)] == ["L1", "L2", "L3", "L10", "L33"]


def test_budget_none_keeps_all_and_zero_keeps_none() -> None:
    lessons = [lesson(i, " ".join(["w"] * 100)) for i in range(1, 6)]
    assert select(lessons, None, words) == lessons
    assert select(lessons, 0, words) == []


def test_render_puts_the_instruction_first_and_numbers_lessons() -> None:
    text = render("Count the letters.", [lesson(2, "Spell it out first."), lesson(7, "Answer on one line.")])
    assert text == f"Count the letters.\n\n{LESSONS_HEADER}\n1. Spell it out first.\n2. Answer on one line."


def test_render_without_lessons_is_the_instruction_alone() -> None:
    assert render("Count the letters.", []) == "Count the letters."
    assert lesson_tokens([], words) == 0


def test_system_prompt_renders_what_it_selects() -> None:
    lessons = [lesson(3, gain=0.1), lesson(1, gain=0.5), lesson(2, gain=-0.5)]
    budget = lesson_tokens(lessons[:2], words)
    prompt, kept = compose("Count.", lessons, budget, words)
    assert [x.id for x in kept] == ["L1", "L3"]
    assert prompt == render("Count.", kept)
    assert "lesson 2 " not in prompt


def test_select_prefers_gain_per_token() -> None:
    long = lesson(1, " ".join(["word"] * 20), gain=0.15)
    short = [lesson(2, " ".join(["word"] * 10), gain=0.1), lesson(3, " ".join(["word"] * 10), gain=0.1)]
    budget = lesson_tokens(short, words)  # room for the two short ones or for the long one
    assert lesson_tokens([long], words) <= budget < lesson_tokens([long, short[0]], words)
    assert select([long, *short], budget, words) == short  # more gain than the long one in the same room


def test_an_instruction_lesson_takes_the_instructions_place_and_is_not_listed() -> None:
    from secondnature.inject import INSTRUCTION_PREFIX, in_force
    own = lesson(4, f"{INSTRUCTION_PREFIX}\nWork it out step by step.\nAnswer: <number>")
    rule = lesson(2, "Spell it out first.")
    assert render("Be brief.\nAnswer: <number>", [rule, own]) == (
        f"Work it out step by step.\nAnswer: <number>\n\n{LESSONS_HEADER}\n1. Spell it out first.")
    assert render("Be brief.", [own]) == "Work it out step by step.\nAnswer: <number>"
    assert in_force("Be brief.", [rule]) == ("Be brief.", [rule])
    assert lesson_tokens([own], words) == words("Work it out step by step.\nAnswer: <number>")
