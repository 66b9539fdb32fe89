"""The reflector's requests, each beside the parser of its reply.

Every request opens with the step's evidence (evidence.py) and differs only in what it asks for:
lesson edits as JSON (add / edit / delete), all the rules rewritten as one paragraph (the way GEPA
proposes whole instructions), the solution of one failed task written out (a demonstration the
reward must accept), or, with the Python tool, the program that solves it (run in the sandbox, and
checked). Parsers are tolerant of form (JSON, fenced JSON, a plain list, missing tags) and strict
about content: what is not a lesson is refused by the screen (screen.py) with the reason, before it
can cost a gate. A parser never raises, and its time is linear in a reply it reads at most MAX_REPLY
characters of: a reply is model output, and a reply of 20,000 '{' must not stall a step.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from .evidence import evidence, reflector_messages
from .inject import EXAMPLE_PREFIX
from .sandbox import Limits
from .screen import FILLER, MAX_EXAMPLE_WORDS, copied_item, problem_with
from .tools import TOOLS, fenced_call
from .types import Edit, Lesson, Rollout, Score, Task

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


def build_prompt(instruction: str, lessons: Sequence[Lesson], groups: Sequence[Sequence[Rollout]],
                 tasks: dict[str, Task], batch: Sequence[Rollout] = (), tools: Sequence[str] = (),
                 max_tokens: int = 0) -> list[dict]:
    """The reflector's messages asking for lesson edits (the evidence, then the request)."""
    example = EXAMPLE_ALL % (lessons[0].id, lessons[-1].id) if lessons else EXAMPLE_ADD
    ask = REFLECT_ASK.format(ops=OPS_NOTE if lessons else "", example=example)
    return reflector_messages(evidence(instruction, lessons, groups, tasks, batch, tools, max_tokens) + ask)


# ---------------------------------------------------------------- lesson edits

# A reflector's reply is a few hundred tokens (reflect_max_tokens, 400 by default: about 2,000 characters); a
# parser reads at most this much of one, so even its linear passes stay cheap.
MAX_REPLY = 20_000
MAX_LESSON_CHARS = 3_000  # 160 words of a worked example fit; the screen (screen.py) reads no more than this
MAX_EDITS = 30            # the request asks for up to 3: the rest of a longer list is not read
_MAX_CANDIDATES = 50      # JSON spans tried, longest first

_FENCED_JSON = re.compile(r"```(?:json)?\s*+(.*?)```", re.S)  # possessive \s*+: no retries over a run of spaces


def _json_candidates(raw: str) -> list[str]:
    """Fenced blocks, then balanced {...} or [...] spans: the longest _MAX_CANDIDATES, longest first.

    One pass per bracket kind with a stack of open brackets, not a scan from every bracket (quadratic on a
    reply of 20,000 '{'). Quotes count only inside brackets and only to the end of a line (a JSON string holds
    no raw newline), so a stray quote in the chatter cannot hide the JSON after it."""
    spans = [m.span(1) for m in _FENCED_JSON.finditer(raw)]
    for opener, closer in (("{", "}"), ("[", "]")):
        opened: list[int] = []
        in_str = esc = False
        for j, ch in enumerate(raw):
            if in_str:  # an escaped quote (\") stays inside the string
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch in '"\n':
                    in_str = False
            elif ch == '"' and opened:
                in_str = True
            elif ch == opener:
                opened.append(j)
            elif ch == closer and opened:
                spans.append((opened.pop(), j + 1))
    spans.sort(key=lambda se: se[1] - se[0], reverse=True)
    out: dict[str, None] = {}  # distinct, in order
    for start, end in spans:  # sliced only once chosen: 10,000 nested spans would be 10**8 characters
        if len(out) == _MAX_CANDIDATES:
            break
        out[raw[start:end]] = None
    return list(out)


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
# possessive \s*+: '\s*:?\s*' would try every split of a long run of spaces (quadratic)
_OP_LABELS = (re.compile(rf"\*\*\s*+{_LABEL}\s*+(?::\s*+)?\*\*\s*+(?::\s*+)?(?P<rest>.*)", re.I),  # bold
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

def parse(raw: str, known_ids: set[str], shown: Sequence[Task] = ()) -> tuple[list[Edit], list[str]]:
    """Edits the reflector proposed, and notes on what was dropped and why. Never raises."""
    raw = raw[:MAX_REPLY]
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
    for e in edits[:MAX_EDITS]:
        if len(e.text) > MAX_LESSON_CHARS:
            notes.append(f"{e.op} rejected: too long ({len(e.text)} characters): {e.text[:60]!r}")
            continue
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


# ---------------------------------------------------------------- a demonstration, a program, a rewrite

# LaTeX the policy writes in its working, as the plain text it stands for: an example is read on every call, and
# "\[ \text{age} = \frac{50}{2} \]" costs three times the tokens of "age = 50/2" without saying more
# \[ ... \] holds no other \[ or \] (a tempered token): '.*?' from every '\[' was cubic on '\[' and spaces
_LATEX = ((r"\\\[((?:(?!\\[\[\]]).)*)\\\]", lambda m: f"{m[1].strip()};"), (r"\\[()]", ""),
          (r"\\(?:text|mathrm|textbf|mathbf|boxed)\{([^{}]*)\}", r"\1"),
          (r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", lambda m: f"{_term(m[1])}/{_term(m[2])}"),
          (r"\\times", "×"), (r"\\cdot", "·"), (r"\\div", "÷"), (r"\\approx", "≈"), (r"\\(?:left|right)", ""),
          (r"\\([$%])", r"\1"), (r"\\[,;!]|\\quad", " "))


def _term(x: str) -> str:
    x = x.strip()
    return x if re.fullmatch(r"[\w.,]+", x) else f"({x})"


def plain_math(text: str) -> str:
    """text with its LaTeX markup rendered as plain text (anything not understood is left as it is)."""
    for pattern, repl in _LATEX:
        text = re.sub(pattern, repl, text)
    return " ".join(text.split())


DEMO_PROMPT = """A small AI assistant answers questions under this instruction:
<instruction>
{instruction}
</instruction>

It got this question wrong:
<question>
{question}
</question>
The correct answer is: {answer}

Write the reply the assistant should have given. Show the working itself, do not describe it: write out, one by \
one, every element the answer depends on with its value, then combine them, then end with the final answer line \
the instruction asks for. Use a method that works for any question of this kind. At most {words} words. Reply with \
that solution only, no preamble."""


def demo_prompt(instruction: str, task: Task) -> list[dict]:
    """Ask the reflector, who knows the answer, to write the solution the policy should have written.

    A worked solution by a stronger model shows a small policy a method it can copy, where its own
    correct attempts often show none; the reward checks the solution before it can become a candidate."""
    user = DEMO_PROMPT.format(instruction=instruction, question=task.prompt.strip(), answer=task.answer,
                              words=MAX_EXAMPLE_WORDS - 60)
    return reflector_messages(user)


def demo_lesson(raw: str, task: Task, reward: Callable[[Task, str], Score]) -> tuple[str, str]:
    """(lesson, '') for a demonstration the checker accepts, else ('', why not)."""
    text = re.sub(r"^```\w*", "", raw[:MAX_REPLY].strip()).removesuffix("```").strip()  # a fence around it
    first, _, rest = text.partition("\n")
    if FILLER.search(first) and rest.strip():  # "Sure. Here are the steps:" is not part of the solution
        text = rest.strip()
    if not text:
        return "", "empty demonstration"
    body = plain_math(text)
    lesson = f"{EXAMPLE_PREFIX} Question: {' '.join(task.prompt.split())} Good answer: {body}"
    if len(lesson.split()) > MAX_EXAMPLE_WORDS:
        return "", f"demonstration too long ({len(body.split())} words)"
    score = reward(task, text)
    if score.value < 1.0:
        return "", f"the checker rejects the demonstration: {score.feedback}"
    return lesson, ""


def bootstrap_lesson(raw: str, task: Task, reward: Callable[[Task, str], Score]) -> tuple[str, str]:
    """(lesson, '') for a stronger model's own reply that the reward accepts and that shows its working, else
    ('', why not)."""
    body = plain_math(raw[:MAX_REPLY].strip())
    if reward(task, raw).value < 1.0:
        return "", "the reflector's own answer is wrong"
    if len(body.split()) < 12:
        return "", "the reflector's own answer shows no working"
    lesson = f"{EXAMPLE_PREFIX} Question: {' '.join(task.prompt.split())} Good answer: {body}"
    if len(lesson.split()) > MAX_EXAMPLE_WORDS:
        return "", f"the reflector's own answer is too long ({len(body.split())} words)"
    return lesson, ""


TOOL_DEMO_PROMPT = """A small AI assistant solves tasks under this instruction, with a Python tool:
<instruction>
{instruction}
</instruction>

It failed this task:
<question>
{question}
</question>

Write the Python program it should have run: a general method that works for any task of this kind (a systematic \
search or an exact computation, not a guess), with this task's values in variables at the top, that prints the \
final answer alone, exactly as the answer line needs it. The answer is not shown to you: the program must find it. \
Reply with one ```python block only, at most {lines} lines."""

MAX_PROGRAM_WORDS = 240  # a program in a worked example: longer than prose, still well inside the lesson budget


def tool_demo_prompt(instruction: str, task: Task) -> list[dict]:
    """Ask the reflector for the program the policy should have run on a failed task (the answer withheld, so the
    program has to compute it: printing a given answer would teach nothing)."""
    user = TOOL_DEMO_PROMPT.format(instruction=instruction, question=task.prompt.strip(), lines=25)
    return reflector_messages(user)


def tool_demo_lesson(raw: str, task: Task, reward: Callable[[Task, str], Score],
                     limits: Limits = Limits()) -> tuple[str, str]:
    """(lesson, '') when the program runs in the sandbox and the checker accepts what it prints, else ('', why not).
    The lesson is a worked example of the episode the policy should play: run the program, read it, answer."""
    found = fenced_call(raw[:MAX_REPLY], (TOOLS["python"],))
    if not found:
        return "", "no ```python block in the reply"
    code = found[1]
    out = TOOLS["python"].run(code, limits)
    lines = [x.strip() for x in out.splitlines() if x.strip()]
    if "[tool error]" in out or not lines:
        cause = [x for x in lines if not x.startswith("[")] or lines or ["no output"]
        return "", f"the program failed: {cause[-1][:160]}"
    score = reward(task, f"Answer: {lines[-1]}")
    if score.value < 1.0:
        return "", f"the checker rejects what the program printed: {score.feedback}"
    lesson = (f"{EXAMPLE_PREFIX} Question: {' '.join(task.prompt.split())} Good answer:\nStep 1, the assistant:\n"
              f"```python\n{code}\n```\nStep 1, the tool answered:\n{lines[-1]}\nStep 2, the assistant:\n"
              f"Answer: {lines[-1]}")
    if len(lesson.split()) > MAX_PROGRAM_WORDS:
        return "", f"program too long for a lesson ({len(code.split())} words)"
    return lesson, ""


REWRITE_ASK = """Write the guidance that should replace those lessons (a worked example among them stays as it \
is): one short paragraph of at most {words} words telling the assistant how to work out the answer to any task of \
this kind, step by step, and which mistake to avoid. Keep what the correct attempts did, drop advice that misleads. \
Never mention a task, a word, a number or an answer shown above. Put the paragraph between <guide> and </guide>, \
and write nothing after it."""

REWRITE_WORDS = 70


def rewrite_prompt(instruction: str, lessons: Sequence[Lesson], groups: Sequence[Sequence[Rollout]],
                   tasks: dict[str, Task], batch: Sequence[Rollout] = (), tools: Sequence[str] = (),
                   max_tokens: int = 0) -> list[dict]:
    """Ask for the whole rule set rewritten as one paragraph, the way GEPA proposes whole instructions.

    Single added lessons change little in a small policy's behaviour; a coherent rewrite can change
    more at once, and since it is one candidate like any other, the gate still decides. Worked
    examples are kept apart: a rewrite replaces rules only."""
    user = evidence(instruction, lessons, groups, tasks, batch, tools, max_tokens) + REWRITE_ASK.format(words=REWRITE_WORDS)
    return reflector_messages(user)


# where a sentence may end: after . ! or ?, but not after a list item's number ("2." opens an item, at the start
# or after a space), so a numbered method is neither cut mid-list nor left ending on a dangling "5."
SENTENCE_END = r"(?<=[.!?])(?<!\s\d\.)(?<!\s\d\d\.)(?<!^\d\.)(?<!^\d\d\.)"


def parse_guide(raw: str, shown: Sequence[Task] = ()) -> tuple[str, str]:
    """(guide, '') from a rewrite reply, else ('', why not). Small reflectors often drop the tags: then the
    first plain paragraph of 12+ words is the guide, cut at a sentence end near the word limit."""
    raw = raw[:MAX_REPLY]
    m = re.search(r"<guide>(.*?)(?:</guide>|$)", raw, re.S | re.I)
    if m:
        body = m.group(1)
    else:
        paragraphs = [re.sub(r"[*_#`]+", "", p).strip() for p in re.split(r"\n\s*\n", raw)]
        plain = [p for p in paragraphs if len(p.split()) >= 12 and not re.match(r"(lesson|step)\s*\d|[{\[]", p, re.I)]
        if not plain:
            return "", "no <guide> paragraph in the reply"
        parts = [plain[0]]
        words = len(plain[0].split())
        for p in paragraphs[paragraphs.index(plain[0]) + 1:]:  # "...step by step:" goes on into its list
            # past the word limit nothing more is kept: stop reading (a long list made this quadratic)
            if words > REWRITE_WORDS + 10 or (not parts[-1].rstrip().endswith(":") and not re.match(r"\d+[.)]|[-•]", p)):
                break
            parts.append(re.sub(r"^\s*(?:\d+[.)]|[-•])\s*", "", p, flags=re.M))
            words += len(parts[-1].split())
        body = " ".join(parts)
    # the reflector often overshoots the word limit (a third of its guides on object_counting): keep its first
    # sentences up to the limit rather than lose the guide
    text = ""
    for sentence in re.split(SENTENCE_END + r"\s+", " ".join(body.split())):
        if text and len((text + " " + sentence).split()) > REWRITE_WORDS + 10:
            break
        text = f"{text} {sentence}".strip()
    text = re.sub(r"\s+", " ", text).strip().strip('"')
    why = f"too long ({len(text)} characters)" if len(text) > MAX_LESSON_CHARS else problem_with(text)
    if not why and (copied := copied_item(text, shown)):
        why = f"copies {copied!r} from a training task"
    return ("", f"rewrite rejected: {why}: {text[:60]!r}") if why else (text, "")
