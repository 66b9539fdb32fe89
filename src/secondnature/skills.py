"""Skills: lessons that are code. A skill is a small Python function that answers a task from its text.

A skill lesson's text is a person-readable page: the `Skill.` line, the function in a ```python block (its
signature and docstring first) and the training tasks it passed. The policy is shown only the function's
signature and docstring (the card, whose tokens count against the lesson budget) and how to call it; the
body is defined in the sandbox, where the question is waiting in the variable `question`, so a call is
one line the smallest policy can copy: print(solve(question)).

Skill code runs only inside the sandbox (sandbox.py), never in the learning process: here it is parsed,
never executed. The screen refuses code that could read files, the environment or the network (imports
outside a short list of computing modules; open, exec, __import__ and the like; any private attribute),
and inside the sandbox `eval` evaluates arithmetic alone.
"""
from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .models import Model
from .redact import redact, redact_messages
from .rewards import score
from .sandbox import Limits, run_python
from .tools import OUTPUT_HEADER, TOOLS, Tool
from .types import Lesson, Reward, Score, Task

SKILL_PREFIX = "Skill."
MAX_SKILL_CHARS = 4000
ALLOWED_IMPORTS = frozenset({"re", "math", "itertools", "fractions", "functools", "collections", "operator",
                             "string", "decimal", "statistics", "heapq", "bisect", "datetime", "calendar", "typing",
                             "dataclasses", "json"})
FORBIDDEN_NAMES = frozenset({"open", "exec", "compile", "__import__", "globals", "locals", "vars", "getattr",
                             "setattr", "delattr", "input", "breakpoint", "help", "memoryview", "exit", "quit",
                             "__builtins__", "__loader__", "__spec__"})
# What every skill finds defined: the computing modules already imported, and an `eval` for arithmetic alone
# (search programs build expressions as strings and evaluate them; nothing else is evaluated).
PRELUDE = '''import re, math, itertools, fractions, functools, collections, operator
import ast as _ast
def eval(source, *_, **__):
    """Arithmetic only: numbers, + - * / // % ** and parentheses."""
    def value(n):
        if isinstance(n, _ast.Constant) and type(n.value) in (int, float):
            return n.value
        if isinstance(n, _ast.UnaryOp) and isinstance(n.op, (_ast.USub, _ast.UAdd)):
            return -value(n.operand) if isinstance(n.op, _ast.USub) else value(n.operand)
        if isinstance(n, _ast.BinOp):
            a, b, op = value(n.left), value(n.right), type(n.op).__name__
            if op == "Pow" and abs(b) > 64:
                raise ValueError("exponent too large")
            ops = {"Add": operator.add, "Sub": operator.sub, "Mult": operator.mul, "Div": operator.truediv,
                   "FloorDiv": operator.floordiv, "Mod": operator.mod, "Pow": operator.pow}
            if op in ops:
                return ops[op](a, b)
        raise ValueError("eval here evaluates arithmetic only")
    return value(_ast.parse(str(source).strip(), mode="eval").body)
'''


@dataclass(frozen=True)
class Skill:
    name: str
    code: str        # the whole source: helpers, then the entry function
    signature: str   # 'solve(question: str) -> str'
    doc: str         # the entry function's docstring, one paragraph
    example: tuple[str, str] | None = None   # a training question and what the skill printed for it


def is_skill(text: str) -> bool:
    return text.startswith(SKILL_PREFIX)


def code_of(text: str) -> str:
    """The source in a skill lesson's (or a reply's) ```python block, '' if none; a block the reply's length limit
    cut is read to its end."""
    m = re.search(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", text, re.S)
    return m.group(1).strip() if m else ""


def definitions(code: str) -> str:
    """The source with the statements that would run on definition left out (example calls, prints, a __main__
    block): a draft's own tests are not part of the skill. Unchanged if it does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef,
                                                    ast.Assign, ast.AnnAssign))
            and not (isinstance(n, (ast.Assign, ast.AnnAssign)) and isinstance(n.value, ast.Call))]
    return "\n\n".join("\n".join(lines[n.lineno - 1 - len(n.decorator_list if hasattr(n, "decorator_list") else []):
                                         n.end_lineno]) for n in keep)


@functools.lru_cache(maxsize=256)  # render, select and every rollout read the same skills again
def parse(code: str) -> tuple[Skill | None, str]:
    """The skill a piece of source defines (its last top-level function of one argument), or None and why not."""
    if len(code) > MAX_SKILL_CHARS:
        return None, f"too long ({len(code)} characters; at most {MAX_SKILL_CHARS})"
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return None, f"does not parse: {e.msg} (line {e.lineno})"
    entry = [f for f in tree.body if isinstance(f, ast.FunctionDef) and len(f.args.args) == 1]
    if not entry:
        return None, "defines no function of one argument (the question's text)"
    f = entry[-1]
    doc = " ".join((ast.get_docstring(f) or "").split()) or "Returns the answer to a question of this kind."
    doc = re.split(r"(?<=[.!?])\s", doc)[0] if len(doc.split()) > 40 else doc  # the card keeps its first sentence
    returns = f" -> {ast.unparse(f.returns)}" if f.returns else ""
    arg = f.args.args[0]
    signature = f"{f.name}({arg.arg}{': ' + ast.unparse(arg.annotation) if arg.annotation else ''}){returns}"
    return Skill(f.name, code.strip(), signature, doc), ""


def problem_with_code(code: str) -> str:
    """Why the screen refuses a skill's source ('' if it passes): whatever could reach files, the environment,
    the network or the interpreter's insides, and statements that would run when it is defined."""
    skill, why = parse(code)
    if skill is None:
        return why
    tree = ast.parse(code)
    for node in tree.body:
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.AnnAssign)) and not (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            return f"runs {type(node).__name__.lower()} statements when defined; only imports, functions and constants"
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
            if bad := [n for n in names if n.split(".")[0] not in ALLOWED_IMPORTS]:
                return f"imports {bad[0]}: a skill may import only {', '.join(sorted(ALLOWED_IMPORTS))}"
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            return f"uses {node.id}: a skill computes from its argument alone (no files, environment or network)"
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            return f"reaches the private attribute .{node.attr}"
        elif isinstance(node, (ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Await)):
            return f"uses {type(node).__name__.lower()}"
    return ""


EXAMPLE = re.compile(r"^Example: (.+) -> (.+)$", re.M)


def lesson_text(skill: Skill, passed: Sequence[str], tried: int, example: tuple[str, str] | None = None) -> str:
    """A skill as a lesson a person reads and edits: the code, the tests it passed (its evidence holds them) and one
    of them as the example of a call the policy is shown."""
    ids = ", ".join(passed[:8]) + (", ..." if len(passed) > 8 else "")
    shown = f"\nExample: {json.dumps(example[0])} -> {json.dumps(example[1])}" if example else ""
    return (f"{SKILL_PREFIX} {skill.signature}\n```python\n{skill.code}\n```\n"
            f"Passed {len(passed)} of {tried} training tasks it was not written from ({ids}).{shown}")


def skills_in(lessons: Sequence[Lesson]) -> list[Skill]:
    """The skills among `lessons`, each name once (a later one replaces an earlier), with their example call."""
    found: dict[str, Skill] = {}
    for x in lessons:
        if is_skill(x.text) and (s := parse(code_of(x.text))[0]):
            found[s.name] = replace(s, example=_example(x.text))
    return list(found.values())


def _example(text: str) -> tuple[str, str] | None:
    m = EXAMPLE.search(text.rsplit("```", 1)[-1])  # after the code
    try:
        return (str(json.loads(m.group(1))), str(json.loads(m.group(2)))) if m else None
    except ValueError:
        return None


CALL_NOTE = ("You can run these Python functions. They are already defined, and the question is in the variable "
             "`question`:")
CALL = "```python\nprint({name}(question))\n```"
CHECK = "Check it, then end with your answer line."
CALL_HOW = f"To use one, reply with only\n{CALL}\nThe next message shows what it printed. {CHECK}"
# A worked call on a real training question: told only how to call, the packaged 0.5B answered a skill's output with
# another code block, or rewrote the expression it printed; shown one whole exchange, it copies it (docs/skills.md)
CALL_EXAMPLE = ("For example, for the question \"{question}\" reply with only\n{call}\nand when the next message "
                "shows {output}, end with the line\nAnswer: {output}")


def card(skill: Skill) -> str:
    """What the policy sees of a skill: its signature and docstring."""
    return f"- {skill.signature}: {skill.doc}"


def block(skills: Sequence[Skill], answer_line: str = "") -> str:
    """The skills' part of the system prompt: the cards, how a call goes, and the task's answer line again, last,
    where a small policy reads it just before it answers."""
    if not skills:
        return ""
    lines = [CALL_NOTE, *(card(s) for s in skills), CALL_HOW.format(name=skills[0].name)]
    if shown := next((s for s in skills if s.example), None):
        lines.append(CALL_EXAMPLE.format(question=" ".join(shown.example[0].split()), output=shown.example[1].strip(),
                                         call=CALL.format(name=shown.name)))
    if answer_line:
        lines.append(f"When you know the answer, end with a final line exactly of the form:\n{answer_line}")
    return "\n".join(lines)


def primed(skills: Sequence[Skill], question: str, limits: Limits = Limits(), native: bool = False) -> list[dict]:
    """The first call of each skill, made for the policy: its call and what it printed, as the opening turns of the
    attempt, in the calling format the policy is offered (plain text, or the chat tool-calling format). The
    packaged small policies, told how to call a solver, answered without calling it (0 of 20 puzzles under each
    of four wordings; docs/skills.md), and answer from its output once it is in front of them; a policy may call
    again."""
    turns: list[dict] = []
    for i, s in enumerate(skills):
        out = redact(run_python(defined(skills, question) + f"print({s.name}(question))", limits).as_text())
        if native:
            call = {"id": f"call_skill_{i}", "type": "function",
                    "function": {"name": "python", "arguments": json.dumps({"code": f"print({s.name}(question))"})}}
            turns += [{"role": "assistant", "content": "", "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": call["id"], "content": f"{out}\n{CHECK}"}]
        else:
            turns += [{"role": "assistant", "content": CALL.format(name=s.name)},
                      {"role": "user", "content": f"{OUTPUT_HEADER}\n{out}\n{CHECK}"}]
    return turns


def defined(skills: Sequence[Skill], question: str) -> str:
    """The code that runs before the policy's own: the prelude, every skill, and the question."""
    return "\n".join([PRELUDE, *(s.code for s in skills), f"question = {question!r}", ""])


def skill_tool(skills: Sequence[Skill], question: str) -> Tool:
    """The Python tool of an attempt with skills in context: the skills and the question are defined before the
    policy's code runs, in the same sandbox."""
    prelude = defined(skills, question)
    return replace(TOOLS["python"], run=lambda code, limits: run_python(prelude + code, limits).as_text())


# ---------------------------------------------------------------- tests: the skill run on tasks, in the sandbox

_HARNESS = '''
import json as _json, signal as _signal
def _stop(*_):
    raise TimeoutError("over {per_call} s")
_signal.signal(_signal.SIGALRM, _stop)
for _q in _json.loads({questions!r}):
    try:
        _signal.alarm({per_call})
        _out = str({name}(_q))
    except BaseException as _e:
        _out = "[error] " + type(_e).__name__ + ": " + str(_e)[:200]
    finally:
        _signal.alarm(0)
    print(_json.dumps(_out[:500]), flush=True)
'''


@dataclass(frozen=True)
class TestResult:
    task_id: str
    output: str        # what the skill returned, or '[error] ...'
    score: Score


def run_tests(skill: Skill, tasks: Sequence[Task], reward: Reward, *, per_call_s: int = 2) -> tuple[list[TestResult], str]:
    """The skill run on each task in one sandboxed process, each return value scored by the task's reward as the
    answer line. The results, and the process's error output when it failed as a whole (e.g. a syntax error)."""
    source = defined([skill], "") + _HARNESS.format(questions=json.dumps([t.prompt for t in tasks]),
                                                   name=skill.name, per_call=per_call_s)
    res = run_python(source, Limits(wall_s=5.0 + per_call_s * len(tasks), cpu_s=2 + per_call_s * len(tasks),
                                    output_chars=600 * len(tasks) + 2000))
    outs = []
    for line in res.stdout.splitlines():
        try:
            outs.append(redact(str(json.loads(line))))
        except ValueError:
            continue  # the skill's own prints
    outs += ["[error] the program stopped before answering"] * (len(tasks) - len(outs))
    results = [TestResult(t.id, o, Score(0.0, o) if o.startswith("[error]") else score(reward, t, f"Answer: {o.strip()}"))
               for t, o in zip(tasks, outs)]
    return results, "" if res.ok else res.as_text()[-600:]


# ---------------------------------------------------------------- the search: many drafts, tested, then repaired

SEARCH_PROMPT = """Write a Python function `solve(question: str) -> str` that answers questions like these:

{examples}

The questions come with this instruction:
---
{instruction}
---
An answer is accepted when: {accepted}
Where several answers are correct, any one will do.

Write it in three parts:
1. read what it needs from the question text (the numbers, words or items it is about; re.findall helps);
2. work the answer out by an exact method; where it has to be found by trying possibilities, try every one \
systematically (itertools.permutations, itertools.product, recursion) and check each;
3. return just the answer, what goes after "Answer:", as a string.
It must work for every question of this kind, not only these. re, math, itertools, fractions, functools, collections \
and operator are already imported; use nothing else (no files, environment or network). Start the function with a \
one-line docstring saying what it returns. Reply with the code alone in one ```python block."""

FIX_PROMPT = """This Python function should answer questions like the one below, under this instruction:
---
{instruction}
---
```python
{code}
```
Run on the question {question!r} it {outcome}.{reference}
Find the mistake and write the whole function again, corrected. Reply with the code alone in one ```python block."""


def search_prompt(instruction: str, reward: Reward, shown: Sequence[Task]) -> list[dict]:
    examples = "\n".join(f"solve({t.prompt!r}) could return {t.answer!r}" if t.answer else f"solve({t.prompt!r})"
                         for t in shown)
    accepted = " ".join((getattr(reward, "__doc__", "") or "it is the correct answer").split())
    return [{"role": "user", "content": SEARCH_PROMPT.format(examples=examples, instruction=instruction.strip(),
                                                             accepted=accepted)}]


def fix_prompt(instruction: str, code: str, task: Task, result: TestResult | None, crash: str) -> list[dict]:
    if result is None:
        outcome = f"failed before answering:\n{crash.strip()}"
    elif result.output.startswith("[error]"):
        outcome = f"raised {result.output.removeprefix('[error] ')}"
    else:
        outcome = f"returned {result.output!r}, which is wrong: {result.score.feedback}"
    reference = f" A correct answer is {task.answer!r}." if task.answer else ""
    return [{"role": "user", "content": FIX_PROMPT.format(instruction=instruction.strip(), code=code,
                                                          question=task.prompt, outcome=outcome, reference=reference)}]


@dataclass(frozen=True)
class Draft:
    """One program the search wrote: its skill (None if it did not parse or was refused), why not, and its tests."""

    code: str
    skill: Skill | None
    refused: str = ""
    results: tuple[TestResult, ...] = ()
    crash: str = ""

    @property
    def passed(self) -> int:
        return sum(r.score.value >= 1.0 for r in self.results)


def draft(raw: str, tests: Sequence[Task], reward: Reward) -> Draft:
    """A reply's program, screened and then run on `tests` in the sandbox."""
    code = code_of(raw) or (raw.strip() if raw.lstrip().startswith(("def ", "import ", "from ")) else "")
    code = definitions(code)
    if not code:
        return Draft("", None, "no ```python block")
    if why := problem_with_code(code):
        return Draft(code, None, why)
    skill = parse(code)[0]
    results, crash = run_tests(skill, tests, reward)
    return Draft(code, skill, "", tuple(results), crash)


def constant(d: Draft, tests: Sequence[Task]) -> bool:
    """Whether the draft passes only by giving one answer to everything, where the tests' answers differ: on a label
    task the commonest label passes most tests, and teaches a shift, not a procedure."""
    right = {r.output.strip() for r in d.results if r.score.value >= 1}
    return len({t.answer.strip() for t in tests}) > 1 and len(right) < 2


def first_failure(d: Draft, tests: Sequence[Task]) -> tuple[Task, TestResult | None]:
    """A test the draft failed and its result (None when the program failed as a whole: its crash says why)."""
    bad = None if d.crash else next((r for r in d.results if r.score.value < 1.0), None)
    return (next(t for t in tests if t.id == bad.task_id), bad) if bad else (tests[0], None)


@dataclass(frozen=True)
class Search:
    """What a search found: the best draft (None if none passed enough tests) and every draft it wrote, each with
    the prompt it was written from and the reflector's reply (one reflector sample each)."""

    best: Draft | None
    drafts: tuple[Draft, ...]
    asked: tuple[tuple[str, str, int], ...]   # per draft: (prompt, raw reply, tokens)


def search(reflector: Model, instruction: str, reward: Reward, shown: Sequence[Task], tests: Sequence[Task], *,
           samples: int = 8, repairs: int = 1, seed: int = 0, max_tokens: int = 700,
           min_pass: float = 0.75) -> Search:
    """A pass@k search for a program that answers the task family: `samples` drafts from the examples in `shown`,
    each run on `tests` (training tasks it was not written from); then `repairs` rounds in which the three best
    distinct runnable drafts are shown a test they failed and rewritten, twice each. The best draft that passes `min_pass`
    of the tests (and at least two, not all by one answer) is found; repairs stop once a draft passes every test."""
    drafts: list[Draft] = []
    asked: list[tuple[str, str, int]] = []

    def ask(msgs: list[dict], n: int, s: int, temperature: float) -> list[Draft]:
        cs = reflector.chat(redact_messages(msgs), n=n, temperature=temperature, max_tokens=max_tokens, seed=s)
        made = [draft("" if c.error else c.text, tests, reward) for c in cs]
        drafts.extend(made)
        asked.extend((msgs[-1]["content"], f"[failed: {c.error}]" if c.error else c.text, c.prompt_tokens + c.completion_tokens)
                     for c in cs)
        return made

    pool = ask(search_prompt(instruction, reward, shown), samples, seed, 0.8)
    for r in range(repairs):
        if any(d.passed == len(tests) for d in drafts):
            break
        distinct = {d.code: d for d in pool if d.skill is not None}.values()
        ran = sorted(distinct, key=lambda d: (-d.passed, d.crash != ""))[:3]
        pool = []
        for k, d in enumerate(ran):
            task, result = first_failure(d, tests)
            pool += ask(fix_prompt(instruction, d.code, task, result, d.crash), 2, seed + 1000 * (r + 1) + k, 0.7)
    need = max(2, -(-int(min_pass * 100) * len(tests) // 100))
    good = [d for d in drafts if d.skill is not None and d.passed >= need and not constant(d, tests)]
    best = max(good, key=lambda d: (d.passed, -len(d.code)), default=None)
    return Search(best, tuple(drafts), tuple(asked))
