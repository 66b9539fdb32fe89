"""Candidates beside the reflector's edits, each gated like any lesson: the policy's own best attempt as a worked
example, a demonstration the reflector writes for a failed task (kept only if the reward accepts it), all the
rules rewritten as one paragraph that replaces them, and the task instruction itself rewritten (the way GEPA
evolves whole prompts)."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .episode import render_trajectory
from .inject import INSTRUCTION_PREFIX, MAX_INSTRUCTION_WORDS
from .reflect import (
    EXAMPLE_PREFIX,
    FILLER,
    MAX_EXAMPLE_WORDS,
    build_prompt,
    copied_item,
    evidence,
    fit_groups,
    problem_with,
    reflector_messages,
)
from .sandbox import Limits
from .tools import TOOLS, fenced_call
from .types import Lesson, Rollout, Score, Task


def worked_example(groups: Sequence[Sequence[Rollout]], tasks: dict[str, Task]) -> str:
    """A lesson made of the policy's own best work: a correct attempt that shows its working, from a group where
    other attempts failed (SIMBA-style demonstrations). Small models often copy a method from an example that
    they would not follow as a rule; the gate decides whether it helps. '' if no attempt qualifies.

    From an episode the example is the whole working, step by step: the code that ran (lines kept), what
    came back and the answer, so a solver the policy once wrote becomes one it can reuse."""
    shows_work = [(len(_working(r).split()), r) for g in groups if min(x.score.value for x in g) < 1
                  for r in g if r.score.value >= 1.0]
    shows_work = [(words, r) for words, r in shows_work if 12 <= words <= MAX_EXAMPLE_WORDS - 30]
    if not shows_work:
        return ""
    best = max(shows_work, key=lambda wr: wr[0])[1]  # the first of the longest, as before
    return f"{EXAMPLE_PREFIX} Question: {' '.join(tasks[best.task_id].prompt.split())} Good answer: {_working(best)}"


def _working(r: Rollout) -> str:
    if len(r.messages) <= 3:  # one reply
        return plain_math(" ".join(r.completion.split()))
    return "\n" + render_trajectory(r.messages)  # code stays as it ran: its backslashes are not LaTeX


# LaTeX the policy writes in its working, as the plain text it stands for: an example is read on every call, and
# "\[ \text{age} = \frac{50}{2} \]" costs three times the tokens of "age = 50/2" without saying more
_LATEX = ((r"\\\[\s*(.*?)\s*\\\]", r"\1;"), (r"\\[()]", ""), (r"\\(?:text|mathrm|textbf|mathbf|boxed)\{([^{}]*)\}", r"\1"),
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


def demo_task(groups: Sequence[Sequence[Rollout]], tasks: dict[str, Task]) -> Task | None:
    """The task to demonstrate: the shortest question among those the policy got wrong at least once."""
    failed = [tasks[g[0].task_id] for g in groups if min(r.score.value for r in g) < 1]
    return min(failed, key=lambda t: len(t.prompt)) if failed else None


def demo_lesson(raw: str, task: Task, reward: Callable[[Task, str], Score]) -> tuple[str, str]:
    """(lesson, '') for a demonstration the checker accepts, else ('', why not)."""
    text = re.sub(r"^```\w*\s*|\s*```$", "", raw.strip()).strip()
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
    found = fenced_call(raw, (TOOLS["python"],))
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
    m = re.search(r"<guide>(.*?)(?:</guide>|$)", raw, re.S | re.I)
    if m:
        body = m.group(1)
    else:
        paragraphs = [re.sub(r"[*_#`]+", "", p).strip() for p in re.split(r"\n\s*\n", raw)]
        plain = [p for p in paragraphs if len(p.split()) >= 12 and not re.match(r"(lesson|step)\s*\d|[{\[]", p, re.I)]
        if not plain:
            return "", "no <guide> paragraph in the reply"
        body = plain[0]
        for p in paragraphs[paragraphs.index(plain[0]) + 1:]:  # "...step by step:" goes on into its list
            if not body.rstrip().endswith(":") and not re.match(r"\d+[.)]|[-•]", p):
                break
            body += " " + re.sub(r"^\s*(?:\d+[.)]|[-•])\s*", "", p, flags=re.M)
    # the reflector often overshoots the word limit (a third of its guides on object_counting): keep its first
    # sentences up to the limit rather than lose the guide
    text = ""
    for sentence in re.split(SENTENCE_END + r"\s+", " ".join(body.split())):
        if text and len((text + " " + sentence).split()) > REWRITE_WORDS + 10:
            break
        text = f"{text} {sentence}".strip()
    text = re.sub(r"\s+", " ", text).strip().strip('"')
    why = problem_with(text)
    if not why and (copied := copied_item(text, shown)):
        why = f"copies {copied!r} from a training task"
    return ("", f"rewrite rejected: {why}: {text[:60]!r}") if why else (text, "")


INSTRUCT_ASK = """First, in one sentence, say what the correct replies did that the wrong ones did not. Then write \
a NEW instruction to take the place of the current one, so that the assistant gets more tasks of this kind right; a \
copy of the current instruction is worthless. Anything in it may change: the method it asks for, how much working \
it asks to see, the order of the steps, any limit it sets, if the attempts show that it hurts. {answer_rule}Never \
mention a task, a word, a number or an answer shown above. At most {words} words. Put the new instruction between \
<new_instruction> and </new_instruction>."""

INSTRUCT_WORDS = 90
ANSWER_LINE = re.compile(r"^\s*Answer:.*$", re.M)


def instruct_prompt(instruction: str, lessons: Sequence[Lesson], groups: Sequence[Sequence[Rollout]],
                    tasks: dict[str, Task], batch: Sequence[Rollout] = (), tools: Sequence[str] = (),
                    max_tokens: int = 0) -> list[dict]:
    """Ask for the task instruction itself rewritten, the way GEPA evolves its prompt. Lessons can only add to an
    instruction; this candidate can also drop what in it holds the policy back (a length limit, a method), and
    the gate judges it like any lesson. The answer line the checker reads is kept (parse_instruction)."""
    line = ANSWER_LINE.search(instruction)
    rule = (f"End it with the line the checker reads, unchanged:\n{line.group(0).strip()}\n" if line else
            "Keep what it says about the form of the final answer: the checker reads it. ")
    ask = INSTRUCT_ASK.format(answer_rule=rule, words=INSTRUCT_WORDS)
    return reflector_messages(evidence(instruction, lessons, groups, tasks, batch, tools, max_tokens) + ask)


def step_prompts(instruction: str, lessons: Sequence[Lesson], groups: Sequence[Sequence[Rollout]],
                 tasks: dict[str, Task], batch: Sequence[Rollout], tools: Sequence[str], max_tokens: int,
                 count_tokens: Callable[[str], int], limit: int) -> tuple[int, list[dict], list[dict], list[dict]]:
    """A step's reflection, rule-rewrite and instruction prompts, over as many groups as fit the reflector's window
    (`limit` tokens), and how many groups that is. The three open with the same evidence, so a local reflector
    asked them in a row reads it once; learn and benchmarks/prefix_cache.py both build them here."""
    msgs, kept = fit_groups(lambda gs: build_prompt(instruction, lessons, gs, tasks, batch, tools, max_tokens),
                            groups, count_tokens, limit)
    shared = (instruction, lessons, groups[:kept], tasks, batch, tools, max_tokens)
    return kept, msgs, rewrite_prompt(*shared), instruct_prompt(*shared)


def parse_instruction(raw: str, instruction: str, shown: Sequence[Task] = ()) -> tuple[str, str]:
    """(lesson text, '') from an instruction rewrite, else ('', why not): the first tagged block that is not a copy
    of the current instruction. Its answer line is put back if the rewrite lost it: the checker needs it, and a
    candidate the checker cannot read would only waste its gate."""
    same = " ".join(instruction.split()).lower()
    tagged = [b for b in re.findall(r"<(?:new_|current_)?instruction>(.*?)(?:</(?:new_|current_)?instruction>|$)",
                                    raw, re.S | re.I)
              if len(b.split()) >= 8 and " ".join(b.split()).lower() != same]  # small reflectors often echo it
    if not tagged:  # untagged replies of a small reflector are diagnosis and headings, not an instruction
        return "", "no <new_instruction> in the reply, or only a copy of the current one"
    text = re.sub(r"^```\w*\s*|\s*```$", "", tagged[0].strip())
    lines = [" ".join(x.split()) for x in text.strip().splitlines()]
    text = "\n".join(x for x in lines if x)
    answer = ANSWER_LINE.search(instruction)
    if answer and not ANSWER_LINE.search(text):
        text = f"{text}\n{answer.group(0).strip()}"
    words = len(text.split())
    if words < 8:
        return "", f"instruction rewrite rejected: too short: {text[:60]!r}"
    if words > MAX_INSTRUCTION_WORDS:
        return "", f"instruction rewrite rejected: too long ({words} words; at most {MAX_INSTRUCTION_WORDS})"
    if " ".join(text.split()) == " ".join(instruction.split()):
        return "", "instruction rewrite rejected: the same as the current instruction"
    if FILLER.search(text):
        return "", f"instruction rewrite rejected: chat filler: {text[:60]!r}"
    if copied := copied_item(text, shown):
        return "", f"instruction rewrite rejected: copies {copied!r} from a training task"
    return f"{INSTRUCTION_PREFIX}\n{text}", ""


def ablations(instruction: str) -> list[str]:
    """Instruction lessons for the instruction less one of its sentences, for each sentence in turn.

    A weak reflector mostly copies the instruction it is asked to rewrite, so a constraint in it that holds the
    policy back is never dropped; leaving out each sentence, judged by the gate, finds it without the reflector
    (leave-one-out, as curation does for lessons). The answer-line sentence is left out too: a small policy
    answers at once whenever its prompt ends on an answer format, and a checker that reads the last number needs
    no answer line (if the checker does need it, the gate's screen rejects the candidate)."""
    parts = re.split(SENTENCE_END + r"([ \t]+)", instruction.strip())  # sentences at even places, their gaps at odd
    if len(parts) < 3:  # one sentence: nothing to leave out
        return []
    out = []
    for i in range(0, len(parts), 2):
        rest = "".join(parts[:i] + parts[i + 2:] if i + 2 < len(parts) else parts[:max(0, i - 1)]).strip()
        if len(rest.split()) >= 3:
            out.append(f"{INSTRUCTION_PREFIX}\n{rest}")
    return out
