"""Reflection: show the reflector groups of attempts with their rewards, and parse the lesson edits it proposes.

Groups with mixed rewards come first (a right and a wrong attempt at the same task is the most
informative contrast, as in group-relative methods), then all-wrong groups with the reference
answer; all-right groups teach nothing new and are left out. The parser is tolerant (JSON, fenced
JSON, a plain list) and strict about what counts as a lesson: chat filler such as "Certainly!
Please provide the inputs." is rejected here, before it can cost a gate.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from .episode import episode_stats, failed_steps, render_trajectory
from .inject import INSTRUCTION_PREFIX, MAX_INSTRUCTION_WORDS
from .rewards import extract_answer
from .types import Edit, Lesson, Rollout, Task

REFLECT_SYSTEM = ("You coach a small AI assistant. You read its attempts at tasks, with the correct answers, and "
                  "write short, general lessons that will make its next attempts correct.")

# Every reflector prompt of a step opens with the same evidence (instruction, lessons, scored attempts, tallies) and
# only its closing request differs: a local reflector's prefix cache then reads the long evidence once per step.
EVIDENCE_PROMPT = """The assistant works under this instruction (its whole system prompt):
<instruction>
{instruction}
</instruction>

Lessons it already follows:
{lessons}

Below are its attempts at {n_tasks} tasks, each scored by an automatic checker (1 = correct, 0 = wrong).

{groups}
{tally}
"""

REFLECT_ASK = """First, in two or three sentences, diagnose: what did the correct attempts do that the wrong ones did \
not, and what mistake do the wrong ones share? Then write lessons that fix that mistake. A good lesson:
- is a direct instruction to the assistant: a concrete method for working out the answer step by step, or a check \
to run before answering ("First do X, then Y, then answer"),
- works for ANY task of this kind: never mention a task, an attempt, a specific word, number or answer from above,
- is at most 40 words.
Propose up to 3 edits, each a different idea.{ops}

After the diagnosis, give the edits as JSON in exactly this form:
{example}"""

OPS_NOTE = " You may also rewrite a lesson that misleads (edit, by its id) or remove one that hurts (delete, by its id)."
EXAMPLE_ADD = '{"edits": [{"op": "add", "text": "<new lesson>"}, {"op": "add", "text": "<another new lesson>"}]}'
EXAMPLE_ALL = ('{"edits": [{"op": "add", "text": "<new lesson>"}, {"op": "edit", "id": "%s", "text": "<better lesson>"}, '
               '{"op": "delete", "id": "%s"}]}')

MAX_ATTEMPT_CHARS = 700
CONTEXT_TALK = re.compile(r"\b(task|attempt|example)s?\s*(\d|[AB]\b)|\b(correct|wrong|incorrect) attempts?\b|"
                          r"\bthe checker\b", re.I)
FILLER = re.compile(r"please provide|let me know|i'd be happy|i would be happy|certainly[!,.]|as an ai\b|"
                    r"here (are|is) (the|some|my)|feel free|sure[!,.]|if you have any|hope this helps", re.I)


def order_groups(rollouts: Sequence[Rollout]) -> list[list[Rollout]]:
    """Group by task; mixed-reward groups first (widest spread first), then all-wrong; drop all-right groups."""
    by_task: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        by_task[r.task_id].append(r)
    mixed, wrong = [], []
    for group in by_task.values():
        values = [r.score.value for r in group]
        if max(values) > min(values):
            mixed.append(sorted(group, key=lambda r: -r.score.value))
        elif max(values) < 1.0:
            wrong.append(group)
    mixed.sort(key=lambda g: -(g[0].score.value - g[-1].score.value))
    return mixed + wrong


def _clip(text: str) -> str:
    text = text.strip() or "(empty answer)"
    if len(text) <= MAX_ATTEMPT_CHARS:
        return text
    half = MAX_ATTEMPT_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters elided ...]\n{text[-half:]}"


def render_group(i: int, task: Task, group: Sequence[Rollout]) -> str:
    """A task with at most two attempts: the best and the worst (a contrast), or one if all scored the same."""
    picks = [group[0], group[-1]] if group[0].score.value != group[-1].score.value else [group[0]]
    parts = [f"### Task {i}\nQuestion: {task.prompt}\nCorrect answer: {task.answer}"]
    for label, r in zip("AB", picks):
        verdict = "correct" if r.score.value >= 1.0 else ("partly correct" if r.score.value > 0 else "wrong")
        length = r.completion_tokens or len(r.completion.split())
        parts.append(f"Attempt {label} (score {r.score.value:g}, {verdict}, {length} tokens; checker: {r.score.feedback}):\n"
                     f"{render_trajectory(r.messages) if len(r.messages) > 3 else _clip(r.completion)}")
    return "\n\n".join(parts)


def fit_groups(build: Callable[[Sequence[Sequence[Rollout]]], list[dict]], groups: Sequence[Sequence[Rollout]],
               count_tokens: Callable[[str], int], limit: int) -> tuple[list[dict], int]:
    """The reflector's messages with as many groups as fit in `limit` tokens (dropping the last ones first),
    and how many groups were kept. One group is always kept: its attempts and tool outputs are clipped
    already, so only a question longer than the window could still overflow it."""
    kept = len(groups)
    while True:
        msgs = build(groups[:kept])
        if kept <= 1 or sum(count_tokens(m["content"]) for m in msgs) <= limit:
            return msgs, kept
        kept -= 1


MAX_TALLY_LABELS = 6  # answers that take more distinct values than this are not labels worth counting


def final_label(text: str) -> str:
    """The answer an attempt ended on: its 'Answer:' line, else the last 'answer (is) X' in the text."""
    label = extract_answer(text)
    if not label:
        found = re.findall(r'answer"?\s*(?:is\s*)?[:=]?\s*(\(?[A-Za-z0-9/-]+\)?)', text, re.IGNORECASE)
        label = found[-1] if found else ""
    return label.strip().rstrip(".")[:20] or "no answer"


def answer_tally(batch: Sequence[Rollout], tasks: dict[str, Task]) -> str:
    """One line comparing the assistant's final answers with the correct ones over the whole batch, when answers
    are short labels (a number, an option): a skew such as answering 2 nearly every time is a mistake that no
    single attempt shows. '' when the answers are not labels."""
    gold = Counter(tasks[r.task_id].answer.strip() for r in batch)
    if not batch or len(gold) > MAX_TALLY_LABELS or any(len(a) > 12 for a in gold):
        return ""
    given = Counter(final_label(r.completion) for r in batch)

    def fmt(c: Counter) -> str:
        return ", ".join(f"{k} ({v} times)" for k, v in c.most_common(MAX_TALLY_LABELS))
    return (f"\nOver all {len(batch)} attempts of this round, the assistant's final answers were: {fmt(given)}; "
            f"the correct answers were: {fmt(gold)}.\n")


def tool_tally(batch: Sequence[Rollout], tools: Sequence[str]) -> str:
    """For episodes with tools: how often the round's attempts called a tool and how those fared, against the
    attempts that answered without one. Which step mattered shows across attempts, not in any one of them."""
    if not tools or not batch:
        return ""
    stats = [(episode_stats(r), r) for r in batch]
    used = [(s, r) for s, r in stats if s["tool_calls"]]
    bare = [r for s, r in stats if not s["tool_calls"]]
    errors = sum(len(failed_steps(r.messages)) for _, r in used)
    return (f"\nTools over all {len(batch)} attempts of this round: {len(used)} called a tool "
            f"({sum(r.score.value >= 1 for _, r in used)} of them correct; {errors} calls ended in a tool error), "
            f"{len(bare)} answered without one ({sum(r.score.value >= 1 for r in bare)} correct). The assistant can "
            f"call: {', '.join(tools)}. A lesson may say when to call a tool and exactly what to run in it, or name "
            f"the step of an attempt that went wrong and say what to do at that step instead.\n")


def length_tally(batch: Sequence[Rollout], max_tokens: int) -> str:
    """How long the correct and the wrong attempts were, and how many ran into the length limit: whether to ask
    for more working or less shows over the whole round, not in any one attempt."""
    def mean(rs: list[Rollout]) -> str:
        return f"{sum(r.completion_tokens for r in rs) / len(rs):.0f} tokens" if rs else "none"
    right = [r for r in batch if r.score.value >= 1.0]
    wrong = [r for r in batch if r.score.value < 1.0]
    cut = sum(r.completion_tokens >= max_tokens for r in batch)
    if not batch or not max_tokens or not any(r.completion_tokens for r in batch):
        return ""
    return (f"Length of the replies this round: correct ones {mean(right)} on average, wrong ones {mean(wrong)}; "
            f"{cut} of {len(batch)} were cut off at the limit of {max_tokens} tokens.\n")


def evidence(instruction: str, lessons: Sequence[Lesson], groups: Sequence[Sequence[Rollout]],
             tasks: dict[str, Task], batch: Sequence[Rollout] = (), tools: Sequence[str] = (),
             max_tokens: int = 0) -> str:
    """The opening every reflector prompt of a step shares: `batch` (every rollout of the round, shown or not)
    adds the answer tally, with `tools` the tool tally, and with `max_tokens` (the policy's limit) the length tally."""
    lesson_list = "\n".join(f"{x.id}. {x.text}" for x in lessons) or "(none yet)"
    body = "\n\n".join(render_group(i, tasks[g[0].task_id], g) for i, g in enumerate(groups, 1))
    tally = answer_tally(batch, tasks) + tool_tally(batch, tools) + length_tally(batch, max_tokens)
    return EVIDENCE_PROMPT.format(instruction=instruction, lessons=lesson_list, n_tasks=len(groups), groups=body,
                                  tally=tally)


def build_prompt(instruction: str, lessons: Sequence[Lesson], groups: Sequence[Sequence[Rollout]],
                 tasks: dict[str, Task], batch: Sequence[Rollout] = (), tools: Sequence[str] = (),
                 max_tokens: int = 0) -> list[dict]:
    """The reflector's messages asking for lesson edits (the evidence, then the request)."""
    example = EXAMPLE_ALL % (lessons[0].id, lessons[-1].id) if lessons else EXAMPLE_ADD
    ask = REFLECT_ASK.format(ops=OPS_NOTE if lessons else "", example=example)
    return reflector_messages(evidence(instruction, lessons, groups, tasks, batch, tools, max_tokens) + ask)


def reflector_messages(user: str) -> list[dict]:
    """The chat the reflector is asked in: its one system prompt, then the request."""
    return [{"role": "system", "content": REFLECT_SYSTEM}, {"role": "user", "content": user}]


# ---------------------------------------------------------------- parsing

def _json_candidates(raw: str) -> list[str]:
    """Fenced blocks first, then every balanced {...} or [...] span, longest first."""
    out = [m.group(1) for m in re.finditer(r"```(?:json)?\s*(.*?)```", raw, re.S)]
    for opener, closer in (("{", "}"), ("[", "]")):
        for start in [m.start() for m in re.finditer(re.escape(opener), raw)]:
            depth, in_str, esc = 0, False, False
            for j in range(start, len(raw)):
                ch = raw[j]
                if in_str:  # an escaped quote (\") stays inside the string
                    if esc:
                        esc = False
                    elif ch == "\\":
                        esc = True
                    elif ch == '"':
                        in_str = False
                    continue
                if ch == '"':
                    in_str = True
                elif ch == opener:
                    depth += 1
                elif ch == closer:
                    depth -= 1
                    if depth == 0:
                        out.append(raw[start:j + 1])
                        break
    return sorted(set(out), key=len, reverse=True)


def _edits_from_obj(obj: object) -> list[Edit] | None:
    if isinstance(obj, dict):
        for key in ("edits", "lessons", "changes", "operations"):
            if isinstance(obj.get(key), list):
                return _edits_from_obj(obj[key])
        if any(k in obj for k in ("op", "text", "lesson")):
            return _edits_from_obj([obj])
        return None
    if not isinstance(obj, list):
        return None
    edits = []
    for item in obj:
        if isinstance(item, str):
            edits.append(Edit("add", item.strip()))
        elif isinstance(item, dict):
            op = str(item.get("op") or item.get("action") or item.get("type") or "add").lower().strip()
            op = {"create": "add", "new": "add", "insert": "add", "update": "edit", "modify": "edit",
                  "rewrite": "edit", "replace": "edit", "remove": "delete", "del": "delete"}.get(op, op)
            text = item.get("text") or item.get("lesson") or item.get("content") or ""
            edits.append(Edit(op, str(text).strip(), str(item.get("id") or item.get("lesson_id") or "").strip()))
    return edits


# A list item that names its operation ("**Edit L1**: ...", "Delete L2:", "**Add lesson 3:** ..."): only a bold
# or colon-ended label counts, so a lesson that merely starts with "Add" or "Remove" stays a lesson.
_LABEL = r"(?P<op>add|new|edit|replace|revise|update|delete|remove|drop)(?:\s+(?:lesson|rule))?(?:\s+(?P<id>L?\d+))?"
_OP_LABELS = (re.compile(rf"\*\*\s*{_LABEL}\s*:?\s*\*\*\s*:?\s*(?P<rest>.*)", re.I),  # bold
              re.compile(rf"{_LABEL}\s*:\s*(?P<rest>.*)", re.I))                        # colon-ended
_LABEL_OPS = {"add": "add", "new": "add", "edit": "edit", "replace": "edit", "revise": "edit", "update": "edit",
              "delete": "delete", "remove": "delete", "drop": "delete"}


def _label(item: str) -> re.Match | None:
    return next((m for p in _OP_LABELS if (m := p.fullmatch(item.strip()))), None)


def _labelled(item: str) -> Edit | None:
    m = _label(item)
    if not m:
        return None
    op = _LABEL_OPS[m.group("op").lower()]
    num, rest = m.group("id") or "", m.group("rest").strip()
    lid = f"L{num.lstrip('Ll')}" if num else ""
    if op == "add" or not lid:  # "Add lesson 3:" numbers the list; an edit that names no lesson is new advice
        return Edit("add", rest)
    return Edit(op, "" if op == "delete" else rest, lid)


def _edits_from_lines(raw: str) -> list[Edit]:
    edits = []
    for line in raw.splitlines():
        m = re.match(r"\s*(?:[-*•]|\d+[.)])\s+(.*)", line) or re.match(r"\s*(?:ADD|LESSON)\s*:\s*(.*)", line, re.I)
        item = (m.group(1) if m else line).strip()
        if _label(item) or (m and len(item.split()) >= 4):  # parse() reads the label
            edits.append(Edit("add", item))
    return edits


# a reflector that narrates its edit ('Add a lesson that gives a general guideline: "Always ..."'): the lesson is
# what follows the colon (such a preamble reached a store on gsm8k)
META = re.compile(r"^(?:add|create|write|include|here is|new)\b[^:\"“]{0,80}?\blesson\b[^:\"“]*:\s*", re.I)

# a bold title before the lesson ('**Check the Work:** "Do X"'); a title alone, ending on its colon, is a heading
TITLE = re.compile(r"^\*\*[^*]{1,60}\*\*\s*:?\s*")

EXAMPLE_PREFIX = "Worked example."
MAX_EXAMPLE_WORDS = 160


def problem_with(text: str) -> str:
    """Why a proposed lesson text is not a lesson ('' if it is one)."""
    words = text.split()
    if len(words) < 4:
        return "too short to be a lesson"
    if text.startswith(INSTRUCTION_PREFIX):
        words, limit = text[len(INSTRUCTION_PREFIX):].split(), MAX_INSTRUCTION_WORDS
    else:
        limit = MAX_EXAMPLE_WORDS if text.startswith(EXAMPLE_PREFIX) else 80
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


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


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


def parse(raw: str, known_ids: set[str], shown: Sequence[Task] = ()) -> tuple[list[Edit], list[str]]:
    """Edits the reflector proposed, and notes on what was dropped and why. Never raises."""
    edits: list[Edit] | None = None
    for cand in _json_candidates(raw):
        try:
            edits = _edits_from_obj(json.loads(cand))
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; deep nesting overflows
            continue
        if edits:
            break
    if not edits:
        edits = _edits_from_lines(raw)
    notes, good, seen = [], [], set()
    for e in edits:
        if e.op == "add" and (labelled := _labelled(e.text)):  # '**Edit L1**: ...' sent as an addition, in JSON too
            e = labelled
        text = re.sub(r"\s+", " ", e.text).strip().strip('"')
        text = re.sub(r"^(L\d+|\d+)[.:)]\s+", "", text)  # "L3. Do X" -> "Do X": the id is not part of the lesson
        text = META.sub("", text).strip().strip('"“”')  # 'Add a lesson that ...: "Do X"' -> 'Do X'
        # '**Do X.**' -> 'Do X.': markup costs tokens, and a bold copy of a kept lesson once passed as a new one
        text = re.sub(r"^\*\*([^*]+)\*\*$", r"\1", text).strip()
        if len((untitled := TITLE.sub("", text)).split()) >= 4:  # '**Check the Work**: Do X' -> 'Do X'
            text = untitled.strip().strip('"“”')  # a title costs tokens
        if e.op not in ("add", "edit", "delete"):
            notes.append(f"unknown op {e.op!r}")
            continue
        if e.op in ("edit", "delete") and e.id not in known_ids:
            notes.append(f"{e.op} of unknown lesson {e.id!r}")
            continue
        if e.op != "delete":
            why = problem_with(text)
            if not why and (copied := copied_item(text, shown)):
                why = f"copies {copied!r} from a training task"
            if why:
                notes.append(f"{e.op} rejected: {why}: {text[:60]!r}")
                continue
            if text.lower() in seen:
                continue
            seen.add(text.lower())
        good.append(Edit(e.op, text, e.id))
    if not good and not notes:
        notes.append("no edits found in the reply (neither JSON nor a list)")
    return good, notes
