"""Compose the policy's system prompt from kept lessons, under a token budget. Pure.

Lessons are rendered in a stable order (by id) so that a provider's prefix cache keeps hitting
from one call to the next; when the budget is short, the lowest-credit lessons are dropped first.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .types import Lesson

LESSONS_HEADER = "Lessons learned from earlier attempts (follow them):"


def lesson_order(lesson: Lesson) -> int:
    return int(lesson.id[1:]) if lesson.id[1:].isdigit() else 0


def render(instruction: str, lessons: Sequence[Lesson]) -> str:
    if not lessons:
        return instruction
    items = "\n".join(f"{i}. {lesson.text}" for i, lesson in enumerate(lessons, 1))
    return f"{instruction}\n\n{LESSONS_HEADER}\n{items}"


def select(lessons: Sequence[Lesson], budget_tokens: int | None, count_tokens: Callable[[str], int]) -> list[Lesson]:
    """Keep the highest-credit lessons whose rendered list fits in `budget_tokens`; return them by id.

    Credit is the gain measured when the lesson passed its gate, then how often it was used; newer
    lessons break ties (they were gated against the older ones). None means no budget.
    """
    ordered = sorted(lessons, key=lesson_order)
    if budget_tokens is None:
        return ordered
    by_credit = sorted(ordered, key=lambda x: (-x.gain, -x.uses, -lesson_order(x)))
    kept: list[Lesson] = []
    for lesson in by_credit:
        trial = sorted(kept + [lesson], key=lesson_order)
        if lesson_tokens(trial, count_tokens) <= budget_tokens:
            kept = trial
    return kept


def lesson_tokens(lessons: Sequence[Lesson], count_tokens: Callable[[str], int]) -> int:
    """Tokens the lessons add to the system prompt (header and numbering included)."""
    if not lessons:
        return 0
    return count_tokens(render("", lessons))


def system_prompt(instruction: str, lessons: Sequence[Lesson], budget_tokens: int | None,
                  count_tokens: Callable[[str], int]) -> tuple[str, list[Lesson]]:
    kept = select(lessons, budget_tokens, count_tokens)
    return render(instruction, kept), kept
