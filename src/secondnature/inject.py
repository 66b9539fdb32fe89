"""Compose the policy's system prompt from kept lessons, under a token budget. Pure.

Lessons are rendered in a stable order (by id) so that a provider's prefix cache keeps hitting
from one call to the next; when the budget is short, the lessons with the least measured gain per
token are dropped first. Lessons retrieved for one query go after that stable block.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

from .skills import block as skills_block
from .skills import card, is_skill, skills_in
from .text import approx_tokens
from .types import Lesson

LESSONS_HEADER = "Lessons learned from earlier attempts (follow them):"
# A lesson that starts so is a rewritten task instruction: it takes the instruction's place instead of joining
# the list (a revision holds at most one). It is text like any lesson, so a person reads and edits it the same way.
INSTRUCTION_PREFIX = "Instruction (replaces the task's own):"
MAX_INSTRUCTION_WORDS = 120  # after the prefix: a whole prompt, longer than any lesson, written or edited by hand
# A lesson that starts so is a worked example (a question and a good answer): at most one a revision, kept apart from
# the rules, which a rewrite replaces
EXAMPLE_PREFIX = "Worked example."


def is_instruction(lesson: Lesson) -> bool:
    return lesson.text.startswith(INSTRUCTION_PREFIX)


def in_force(instruction: str, lessons: Sequence[Lesson]) -> tuple[str, list[Lesson]]:
    """The instruction the policy gets (the task's own, or the last instruction lesson's text) and the other lessons."""
    own = [x for x in lessons if is_instruction(x)]
    if own:
        instruction = own[-1].text[len(INSTRUCTION_PREFIX):].strip()
    return instruction, [x for x in lessons if not is_instruction(x)]


def lesson_order(lesson: Lesson) -> int:
    return int(lesson.id[1:]) if lesson.id[1:].isdigit() else 0


def render(instruction: str, lessons: Sequence[Lesson]) -> str:
    """The instruction, the numbered lessons, then the skills' cards (their code is not shown: it runs)."""
    instruction, lessons = in_force(instruction, lessons)
    rules = [x for x in lessons if not is_skill(x.text)]
    out = instruction
    if rules:
        out += f"\n\n{LESSONS_HEADER}\n" + "\n".join(f"{i}. {lesson.text}" for i, lesson in enumerate(rules, 1))
    if found := skills_in(lessons):
        last = instruction.strip().splitlines()[-1] if instruction.strip() else ""
        out += "\n\n" + skills_block(found, last if last.startswith("Answer:") else "")
    return out


def shown(lesson: Lesson) -> str:
    """What the policy reads of a lesson: its text, or a skill's card."""
    found = skills_in([lesson]) if is_skill(lesson.text) else []
    return card(found[0]) if found else lesson.text


def listed(lesson: Lesson) -> str:
    """A lesson in a table a person reads: its text, or for a skill its card and how long its code is."""
    found = skills_in([lesson]) if is_skill(lesson.text) else []
    return f"Skill. {card(found[0])[2:]} ({len(found[0].code.splitlines())} lines of Python)" if found else lesson.text


@lru_cache(maxsize=1 << 18)
def _tokens(count_tokens: Callable[[str], int], text: str) -> int:
    """Memoised: selecting from a large store tokenizes each lesson line once, not on every query. It holds a head of
    a few hundred thousand lessons (tens of MB): a smaller memo re-tokenized a 100,000-lesson head on every select."""
    return count_tokens(text)


def select(lessons: Sequence[Lesson], budget_tokens: int | None, count_tokens: Callable[[str], int],
           reserved: int = 0) -> list[Lesson]:
    """Keep the lessons with the most gain per token whose rendered list fits in `budget_tokens`; return them by id.

    Gain is what the lesson won when it passed its gate; then how often it was used; newer lessons break
    ties (they were gated against the older ones). `reserved` tokens are already taken (a block rendered
    before these). None means no budget."""
    ordered = sorted(lessons, key=lesson_order)
    if budget_tokens is None:
        return ordered
    room = budget_tokens - reserved - (0 if reserved else _tokens(count_tokens, LESSONS_HEADER))
    cost = {x.id: _tokens(count_tokens, f"10. {shown(x)}\n") for x in ordered}
    by_value = sorted(ordered, key=lambda x: (-x.gain / max(1, cost[x.id]), -x.gain, -x.uses, -lesson_order(x)))  # -gain: a quotient that underflows
    kept: list[Lesson] = []
    for lesson in by_value:
        if cost[lesson.id] <= room:
            kept.append(lesson)
            room -= cost[lesson.id]
    kept.sort(key=lesson_order)
    # line costs are estimates (numbering, merges at line breaks): drop the least valuable until the real count fits
    while kept and lesson_tokens(kept, count_tokens) + reserved > budget_tokens:
        kept.remove(min(kept, key=lambda x: (x.gain / max(1, cost[x.id]), x.gain, x.uses, lesson_order(x))))
    return kept


def lesson_tokens(lessons: Sequence[Lesson], count_tokens: Callable[[str], int]) -> int:
    """Tokens the lessons add to the system prompt (header and numbering included)."""
    if not lessons:
        return 0
    return count_tokens(render("", lessons))  # an instruction lesson counts whole: it is text the loop chose


def compose(instruction: str, lessons: Sequence[Lesson], budget_tokens: int | None,
            count_tokens: Callable[[str], int]) -> tuple[str, list[Lesson]]:
    """The system prompt and the lessons that made it under the budget."""
    kept = select(lessons, budget_tokens, count_tokens)
    return render(instruction, kept), kept


def system_prompt(instruction: str, lessons: Sequence[Lesson], budget_tokens: int | None = 400,
                  count_tokens: Callable[[str], int] = approx_tokens) -> str:
    """Your own calls' system prompt: `instruction`, then the lessons worth the most gain per token that fit in
    `budget_tokens` (None: all), in a stable order so a provider's prefix cache keeps hitting. Pass the model's
    own tokenizer as `count_tokens` (e.g. `model.count_tokens`) for an exact budget."""
    return compose(instruction, lessons, budget_tokens, count_tokens)[0]


def lessons_block(lessons: Sequence[Lesson]) -> str:
    """The lessons as the block `into_messages` adds to an application's own prompt (instruction lessons left out:
    an application's instruction is its own; skills too: they run in our episodes, not in an application)."""
    return render("", [x for x in lessons if not is_instruction(x) and not is_skill(x.text)]).strip()


def content_text(content: object, sep: str = " ") -> str:
    """A chat message's content as text: a string as it is, or the text of its parts joined by `sep`."""
    if isinstance(content, list):
        return sep.join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def own_system(messages: Sequence[dict]) -> str:
    """An application's own system prompt: the text of its leading system (or developer) messages."""
    texts = []
    for m in messages:
        if m.get("role") not in ("system", "developer"):
            break
        texts.append(content_text(m.get("content")))
    return "\n\n".join(texts)


def into_messages(messages: Sequence[dict], block: str) -> list[dict]:
    """An application's messages with `block` appended to its own system prompt (the last of its leading system or
    developer messages), or as a first system message when it has none. The application's text comes first and the
    block is stable per revision, so a provider's prefix cache keeps hitting. The caller's messages are not changed."""
    out = [dict(m) for m in messages]
    if not block:
        return out
    lead = 0
    while lead < len(out) and out[lead].get("role") in ("system", "developer"):
        lead += 1
    if not lead:
        return [{"role": "system", "content": block}, *out]
    last = out[lead - 1]
    content = last.get("content")
    if isinstance(content, list):  # content parts: the block is one more text part
        last["content"] = [*content, {"type": "text", "text": block}]
    else:
        last["content"] = f"{content}\n\n{block}" if content else block
    return out
