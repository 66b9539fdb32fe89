"""The screen every proposed lesson passes before it can cost a gate: what a lesson may never say.

A lesson is an instruction the policy will follow on every call, written by a model from text that
models produced. So the reflector's chat ("Certainly! Please provide the inputs."), template
placeholders, headings, talk about the attempts it was shown ("Task 3", "the correct attempts"), and
advice that copies a training item (a quoted word of a task, eight words in a row of one, a
distinctive answer: overfitting) are refused here, with the reason, and never reach the policy.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from .inject import EXAMPLE_PREFIX, INSTRUCTION_PREFIX, MAX_INSTRUCTION_WORDS
from .text import words as _words
from .types import Task

CONTEXT_TALK = re.compile(r"\b(task|attempt|example)s?\s*(\d|[AB]\b)|\b(correct|wrong|incorrect) attempts?\b|"
                          r"\bthe checker\b", re.I)
FILLER = re.compile(r"please provide|let me know|i'd be happy|i would be happy|certainly[!,.]|as an ai\b|"
                    r"here (are|is) (the|some|my)|feel free|sure[!,.]|if you have any|hope this helps", re.I)

MAX_EXAMPLE_WORDS = 160
MAX_RULE_WORDS = 80


def problem_with(text: str) -> str:
    """Why a proposed lesson text is not a lesson ('' if it is one)."""
    words = text.split()
    if len(words) < 4:
        return "too short to be a lesson"
    if text.startswith(INSTRUCTION_PREFIX):
        words, limit = text[len(INSTRUCTION_PREFIX):].split(), MAX_INSTRUCTION_WORDS
    else:
        limit = MAX_EXAMPLE_WORDS if text.startswith(EXAMPLE_PREFIX) else MAX_RULE_WORDS
    if len(words) > limit:
        return f"too long ({len(words)} words; at most {limit})"
    if re.sub(r"[*_#`\s]+$", "", text).endswith(":"):
        return "a heading, not a lesson"
    if FILLER.search(text):
        return "chat filler, not a lesson"
    if re.search(r"<(new|better|another new) lesson>", text):
        return "the template placeholder, not a lesson"
    if CONTEXT_TALK.search(text):
        return "talks about the attempts it was shown instead of advising the next one"
    return ""


COPY_NGRAM = 8  # words in a row shared with a task prompt: a copied sentence, not advice


def _distinctive(answer: str) -> bool:
    """An answer specific enough that a lesson naming it names the item: a date, a long number, a phrase."""
    a = answer.strip()
    return (len(a) >= 4 and any(ch.isdigit() for ch in a)) or len(a.split()) >= 2


def copied_item(text: str, tasks: Sequence[Task]) -> str:
    """What a proposed lesson copies from a task shown ('' if nothing): a quoted word or phrase of 4+
    characters from its prompt, a run of COPY_NGRAM words of its prompt, or its answer when that answer
    is distinctive. A lesson that names a training item's specifics teaches that item, not the skill
    (overfitting). Worked examples are exempt: they are a labelled copy by design, one at most, and gated."""
    if text.startswith(EXAMPLE_PREFIX):
        return ""
    # a lookahead, so quotes overlap: in "the letter 'n' in the word 'obsession'" the quote that closes one
    # span opens the next, and a consuming match would skip 'obsession'
    for q in re.findall(r"(?=['\"‘“]([^'\"’”]{4,})['\"’”])", text):
        for t in tasks:
            if q.lower() in t.prompt.lower():
                return q
    words = _words(text)
    grams = {tuple(words[i:i + COPY_NGRAM]) for i in range(len(words) - COPY_NGRAM + 1)}
    low = " ".join(words)
    for t in tasks:
        tw = _words(t.prompt)
        for i in range(len(tw) - COPY_NGRAM + 1):
            if tuple(tw[i:i + COPY_NGRAM]) in grams:
                return " ".join(tw[i:i + COPY_NGRAM])
        if _distinctive(t.answer) and (aw := " ".join(_words(t.answer))) and re.search(rf"\b{re.escape(aw)}\b", low):
            return t.answer.strip()
    return ""
