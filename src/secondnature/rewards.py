"""Pure checkers: `(task, completion) -> Score`.

The error contract (taken from gepa): a checker never raises on a bad completion; it scores it 0
and says why. The feedback sentence matters as much as the value: the reflector reads it to write
lessons, so it names what was expected, what was found and where it was found ("no 'Answer:' line;
took the last number ..." teaches the policy to write an answer line).
"""
from __future__ import annotations

import ast
import functools
import importlib
import math
import re
from fractions import Fraction
from typing import Any, Callable

import regex as regex_module  # user patterns only: unlike re, its matching takes a timeout

from secondnature.types import Reward, Score, Task

# A line that starts (after markdown such as "**", "#", "> ", "- ") with "Answer:" or "Final answer:".
# The colon may sit inside the bold ("**Answer:** 3") or after it ("**Answer**: 3").
_ANSWER_LINE = re.compile(r"^[ \t>#*_\-]*(?:final[ \t]+)?answer[ \t*_]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_BOXED = re.compile(r"^\\boxed\{(.*)\}$", re.DOTALL)
# A number not glued to a preceding word or digit, so "16-3" yields 16 and 3, not 16 and -3.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])-?\.\d+")
_SHOW = 80  # feedback quotes at most this many characters of the model's text
# A checker reads at most the last this many characters of a completion: a policy reply is a few hundred tokens,
# and every pattern below then costs a bounded time however a reply is built.
MAX_COMPLETION = 20_000


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SHOW else text[: _SHOW - 3] + "..."


def _clean(text: str) -> str:
    """Peel markdown and LaTeX wrappers until nothing changes: '**\\boxed{3}.**' -> '3'.

    At most 8 layers: real answers have two or three, and each layer costs a pass over the text."""
    for _ in range(8):
        before = text
        text = text.strip().strip("*`").strip()
        if text.endswith(".") and not text.endswith(".."):
            text = text[:-1]
        boxed = _BOXED.match(text)
        if boxed:
            text = boxed.group(1)
        if len(text) > 1 and text.startswith("$") and text.endswith("$"):
            text = text.strip("$")
        if text == before:
            break
    return text


def extract_answer(text: str) -> str | None:
    """The content of the last 'Answer:' line, cleaned; None when there is no such line.

    An empty 'Answer:' line takes the next non-empty line, since small models often break the line there.
    """
    matches = list(_ANSWER_LINE.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    content = last.group(1)
    if not _clean(content):
        rest = [line for line in text[last.end():].split("\n") if line.strip()]
        content = rest[0] if rest else ""
    return _clean(content)


def _last_line(text: str) -> str:
    lines = [line for line in text.split("\n") if line.strip()]
    return _clean(lines[-1]) if lines else ""


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _tail(completion: object) -> str:
    """The part of a completion a checker reads: its last MAX_COMPLETION characters, from a line start."""
    text = completion if isinstance(completion, str) else str(completion)
    if len(text) <= MAX_COMPLETION:
        return text
    text = text[-MAX_COMPLETION:]
    cut = text.find("\n")  # a line cut in half could pass for an 'Answer:' line
    return text[cut + 1:] if cut >= 0 else text


def _safe(checker: Callable[[Task, str], Score]) -> Reward:
    """Last line of defence for the never-raise contract: a bug in a checker scores 0, it does not crash a run."""

    @functools.wraps(checker)
    def wrapped(task: Task, completion: str) -> Score:
        try:
            return checker(task, _tail(completion))
        except Exception as err:  # noqa: BLE001 - the contract is to never raise
            return Score(0.0, f"checker {checker.__name__} failed: {type(err).__name__}: {err}")

    return wrapped


def score(reward: Reward, task: Task, text: str) -> Score:
    """`reward(task, text)` held to its contract: a value in [0, 1], and a user's checker that raises anyway scores 0
    with the reason, so one item never ends a run."""
    try:
        s = reward(task, text)
        return Score(min(1.0, max(0.0, float(s.value))), s.feedback)
    except Exception as e:  # noqa: BLE001 - the contract is to never raise
        return Score(0.0, f"checker raised {type(e).__name__}: {e}")


def _answer_or_last_line(completion: str) -> tuple[str, str]:
    """(the answer text, a note on where it came from; '' when it came from an 'Answer:' line)."""
    got = extract_answer(completion)
    if got is not None:
        return got, ""
    return _last_line(completion), "no 'Answer:' line; compared the last line"


def _verdict(ok: bool, expected: str, got: str, note: str) -> Score:
    if ok:
        return Score(1.0, f"correct: {_clip(got)}" + (f" ({note})" if note else ""))
    if note:
        return Score(0.0, f"{note} '{_clip(got)}': expected {_clip(expected)}")
    return Score(0.0, f"expected {_clip(expected)}, got {_clip(got)}")


@_safe
def exact(task: Task, completion: str) -> Score:
    """Case-insensitive string match with whitespace collapsed."""
    got, note = _answer_or_last_line(completion)
    if not got:
        return Score(0.0, f"no answer found: expected {_clip(task.answer)}")
    return _verdict(_norm(got) == _norm(_clean(task.answer)), task.answer, got, note)


def parse_number(text: str) -> Fraction | None:
    """The last number in `text` as an exact Fraction ('$1,234.50' -> 2469/2, '3/4' -> 3/4), or None."""
    found = _NUMBER.findall(text.replace("\u2212", "-"))
    if not found:
        return None
    token = found[-1].replace(",", "")
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _close(a: Fraction, b: Fraction) -> bool:
    return a == b or abs(a - b) <= Fraction(1, 10**6) * max(abs(a), abs(b))


def _fmt(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    try:
        return f"{x} ({float(x):g})"
    except OverflowError:  # past a float's range: the fraction alone
        return str(x)


def read_number(completion: str) -> tuple[Fraction | None, str]:
    """The number a reply answers with, and '' when its 'Answer:' line gave it; else the last number in the text (or
    None) and why the line did not give one."""
    line = extract_answer(completion)
    if line is not None:
        # "Answer: 16 - 3 - 4 = 9" means 9; "Answer: 2 (r at 3, 8, 9)" means 2: after the last '=', first number.
        first = _NUMBER.search(line.rsplit("=", 1)[-1])
        got = parse_number(first.group(0)) if first else None
        if got is not None:
            return got, ""
    return parse_number(completion), ("no 'Answer:' line" if line is None else
                                      f"'Answer:' line '{_clip(line)}' has no number")


@_safe
def number(task: Task, completion: str) -> Score:
    """Numeric match within 1e-6 relative. The 'Answer:' line wins; else the last number in the text."""
    expected = parse_number(task.answer)
    if expected is None:
        return Score(0.0, f"reference answer {task.answer!r} is not a number; use another checker")
    got, source = read_number(completion)
    if got is not None and not source:
        if _close(got, expected):
            return Score(1.0, f"correct: {_fmt(got)}")
        return Score(0.0, f"expected {_fmt(expected)}, got {_fmt(got)}")
    if got is None:
        return Score(0.0, f"no answer found ({source} and no number in the text): expected {task.answer}")
    if _close(got, expected):
        return Score(1.0, f"correct: {_fmt(got)} ({source}; took the last number in the text)")
    return Score(0.0, f"{source}; took the last number {_fmt(got)} from the text: expected {_fmt(expected)}")


_LETTER_REF = re.compile(r"^\(?([A-Za-z])\)?$")
# "(A)" and "a)" in any case; a bare capital must end the line or be followed by '.', ':' or ',':
# "I think (B)" is not option I.
_LEADING_LETTER = re.compile(r"^(?:\(?([A-Za-z])\)|([A-Z])(?:[.:,](?:\s|$)|$))")
_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_OPTION_LINE = re.compile(r"^\s*\(([A-Z])\)\s*(.+?)\s*$", re.MULTILINE)


def _choice_in(line: str, prompt: str) -> str | None:
    """The option letter an answer line names: '(A)', 'A', 'A)', '(A) text', '... (A) ...', or an option's text."""
    lead = _LEADING_LETTER.match(line)
    if lead:
        return (lead.group(1) or lead.group(2)).upper()
    inner = _PAREN_LETTER.findall(line)
    if inner:
        return inner[-1]
    for letter, text in _OPTION_LINE.findall(prompt):
        if _norm(text) == _norm(line):
            return letter
    return None


def read_choice(prompt: str, completion: str) -> tuple[str | None, str]:
    """The option letter a reply names, and '' when its 'Answer:' line named it; else the last '(X)' in the text (or
    None) and why the line did not name one."""
    line = extract_answer(completion)
    got = _choice_in(line, prompt) if line else None
    if got is not None:
        return got, ""
    where = "no 'Answer:' line" if line is None else f"'Answer:' line '{_clip(line)}' names no option"
    found = _PAREN_LETTER.findall(completion)
    return (found[-1], f"{where}; took the last (X) in the text") if found else (None, where)


def answer_label(task: Task, completion: str) -> str:
    """What a reply answered, read as the checker its reference calls for reads it: '(B)' for an option letter, the
    number for a number, else the 'Answer:' line or the last line (at most 20 characters); 'no answer' when there is
    none. For tallies of the answers given (bench records), where a whole line such as '(C) green present' would hide
    a skew towards one option."""
    text, ref = _tail(completion), task.answer.strip()
    if _LETTER_REF.match(ref):
        letter = read_choice(task.prompt, text)[0]
        return f"({letter})" if letter else "no answer"
    if _NUMBER.fullmatch(ref):
        value = read_number(text)[0]
        return _fmt(value).split(" ")[0] if value is not None else "no answer"
    return _answer_or_last_line(text)[0][:20] or "no answer"


@_safe
def choice(task: Task, completion: str) -> Score:
    """Multiple choice: the reference is '(A)' or 'A'; the last '(X)' in the text is the fallback."""
    ref = _LETTER_REF.match(task.answer.strip())
    if not ref:
        return Score(0.0, f"reference answer {task.answer!r} is not an option letter like (A); use another checker")
    expected = ref.group(1).upper()
    got, note = read_choice(task.prompt, completion)
    if got is None:
        return Score(0.0, f"no answer found ({note}): expected ({expected})")
    if got == expected:
        return Score(1.0, f"correct: ({got})" + (f" ({note})" if note else ""))
    if note:
        return Score(0.0, f"{note}, ({got}): expected ({expected})")
    return Score(0.0, f"expected ({expected}), got ({got})")


# A task author's pattern runs on model output, where '(a+)+$' backtracks for ever: it is searched with a
# timeout. Its size is bounded before it is compiled, since the regex module copies a counted repeat's body
# ('((a{1000}){1000}){1000}' alone exhausts memory): no part is copied more often than all counts multiplied.
REGEX_SECONDS = 0.1
_MAX_PATTERN = 1000       # characters
_MAX_PATTERN_SIZE = 100_000  # characters times every {n} / {m,n} count multiplied: ~50 ms to compile
_COUNT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


def _pattern_size(pattern: str) -> int:
    """An upper bound on the size of `pattern` with its counted repeats copied out."""
    counts = [max(1, *(int(n) for n in m.groups() if n)) for m in _COUNT.finditer(pattern) if any(m.groups())]
    return len(pattern) * math.prod(counts)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    """The compiled pattern, or ValueError saying why it cannot be one."""
    if len(pattern) > _MAX_PATTERN:
        raise ValueError(f"the pattern is {len(pattern)} characters long (at most {_MAX_PATTERN})")
    if (size := _pattern_size(pattern)) > _MAX_PATTERN_SIZE:
        raise ValueError(f"its counted repeats ({{n}}) make it too large to compile ({size} > {_MAX_PATTERN_SIZE} "
                         "characters times counts); use + or * for long runs")
    try:
        return regex_module.compile(pattern, regex_module.IGNORECASE)
    except (regex_module.error, RecursionError, OverflowError, MemoryError, ValueError) as err:
        raise ValueError(str(err)) from None


@_safe
def regex(task: Task, completion: str) -> Score:
    """task.answer is a regular expression searched (case-insensitively) in the answer, else the whole text."""
    try:
        pattern = _compiled(task.answer)
    except ValueError as err:
        return Score(0.0, f"invalid regular expression in reference {_clip(task.answer)!r}: {err}")
    line = extract_answer(completion)
    target = line if line is not None else completion
    where = "answer" if line is not None else "text (no 'Answer:' line)"
    try:
        found = pattern.search(target, timeout=REGEX_SECONDS)
    except TimeoutError:
        return Score(0.0, f"the checker's pattern /{_clip(task.answer)}/ took too long (over {REGEX_SECONDS:g} s) "
                          f"on the {where}; scored 0 — simplify the pattern (nested repeats like (a+)+ backtrack)")
    if found:
        return Score(1.0, f"correct: {where} '{_clip(target)}' matches /{_clip(task.answer)}/")
    return Score(0.0, f"{where} '{_clip(target)}' does not match /{_clip(task.answer)}/")


# --- Game of 24 ---------------------------------------------------------------------------------

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_SPELLINGS = {"\u00d7": "*", "\u00f7": "/", "\u2212": "-", "\\times": "*", "\\cdot": "*", "\\div": "/",
              "[": "(", "]": ")", "{": "(", "}": ")"}


class _Reject(Exception):
    """Why an expression is not a valid Game-of-24 answer; its message becomes the feedback."""


def _evaluate(node: ast.AST, used: list[int]) -> Fraction:
    """Exact value of a whitelisted AST: int literals, + - * / and parentheses. Never eval."""
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        op = type(node.op)
        if op is ast.Add:
            return left + right
        if op is ast.Sub:
            return left - right
        if op is ast.Mult:
            return left * right
        if right == 0:
            raise _Reject("division by zero")
        return left / right
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.Constant):
        raise _Reject(f"{node.value!r} is not a whole number; use the four given integers")
    if isinstance(node, ast.UnaryOp):
        raise _Reject("unary signs are not allowed; use each number once with + - * /")
    if isinstance(node, ast.BinOp):
        raise _Reject("only + - * / are allowed")
    raise _Reject(f"{type(node).__name__} is not allowed; only numbers, + - * / and parentheses")


def _expression_of(answer: str) -> str:
    """'(1-1)+(4*6) = 24' -> '(1-1)+(4*6)'; '24 = 4*6' -> '4*6'."""
    for spelled, op in _SPELLINGS.items():
        answer = answer.replace(spelled, op)
    answer = re.sub(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])", "*", answer)
    # (?<!\s): a match starts where a run of spaces starts, not at each of its spaces (quadratic on long runs)
    answer = re.sub(r"(?<!\s)\s*=\s*24(?:\.0*)?\s*$", "", answer)
    answer = re.sub(r"^\s*24\s*=\s*", "", answer)
    return answer.split("=", 1)[0].strip()


@_safe
def expression24(task: Task, completion: str) -> Score:
    """An arithmetic expression that uses exactly the puzzle's four numbers and equals 24."""
    numbers = task.metadata.get("numbers")
    if not isinstance(numbers, (list, tuple)) or not numbers:
        return Score(0.0, "task has no metadata['numbers']; cannot check a Game of 24 answer")
    line, note = _answer_or_last_line(completion)
    if not line:
        return Score(0.0, "no answer found: end with a line 'Answer: <expression>'")
    prefix = f"{note} '{_clip(line)}': " if note else ""
    if len(line) > 400:  # before any pattern runs on it
        return Score(0.0, f"{prefix}answer is too long ({len(line)} characters) for an expression")
    expr = _expression_of(line)
    if len(expr) > 200:
        return Score(0.0, f"{prefix}expression is too long ({len(expr)} characters)")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Score(0.0, f"{prefix}could not parse '{_clip(expr)}' as an arithmetic expression")
    used: list[int] = []
    try:
        value = _evaluate(tree.body, used)
    except _Reject as why:
        return Score(0.0, f"{prefix}'{_clip(expr)}': {why}")
    except RecursionError:
        return Score(0.0, f"{prefix}'{_clip(expr)}' is nested too deeply")
    if sorted(used) != sorted(numbers):
        return Score(0.0, f"{prefix}'{_clip(expr)}' uses {sorted(used)} but the puzzle has {sorted(numbers)};"
                          " use each number exactly once")
    if value != 24:
        return Score(0.0, f"{prefix}'{_clip(expr)}' evaluates to {_fmt(value)}, not 24")
    return Score(1.0, f"correct: {_clip(expr)} = 24" + (f" ({note})" if note else ""))


@_safe
def dyck(task: Task, completion: str) -> Score:
    """Exact match after removing all whitespace (closing brackets may be spaced or not)."""
    got, note = _answer_or_last_line(completion)
    if not got:
        return Score(0.0, f"no answer found: expected {_clip(task.answer)}")
    return _verdict("".join(got.split()) == "".join(task.answer.split()), task.answer, got, note)


CHECKERS: dict[str, Reward] = {
    "exact": exact,
    "number": number,
    "choice": choice,
    "regex": regex,
    "expression24": expression24,
    "dyck": dyck,
}


def reference_problem(name: str, task: Task) -> str:
    """Why the built-in checker `name` cannot score `task`, naming the field and the fix ('' when it can, or when
    `name` is not built in): a task file is checked with this before any model call."""
    answer, numbers, shown = task.answer, task.metadata.get("numbers"), repr(task.answer[:40])
    if name == "number" and parse_number(answer) is None:
        return (f'field "answer": {shown} is not a number the number checker can read — write it in digits '
                "(7, 2.5, 3/4), or use the exact checker")
    if name == "choice" and not _LETTER_REF.match(answer.strip()):
        return f'field "answer": {shown} is not an option letter — write it as (A), or use the exact checker'
    if name == "regex":
        try:
            _compiled(answer)
        except ValueError as err:
            return f'field "answer": invalid regular expression: {err}'
    if name in ("exact", "dyck") and not _norm(_clean(answer)):
        return f'field "answer": {shown} is empty once markup is removed, so the {name} checker could match nothing'
    if name == "expression24" and not (isinstance(numbers, list) and numbers and all(type(n) is int for n in numbers)):
        return 'field "numbers": the expression24 checker needs the puzzle\'s integers as a list, e.g. [1, 2, 3, 4]'
    return ""


def _as_score(result: Any, name: str) -> Score:
    """A user checker may return Score, float, int or bool; clamp to [0, 1] (NaN counts as 0)."""
    if isinstance(result, Score):
        value, feedback = result.value, result.feedback
    elif isinstance(result, (bool, int, float)):
        value, feedback = float(result), f"{name} returned {result!r}"
    else:
        return Score(0.0, f"checker {name} returned {type(result).__name__}; it must return Score, float, int or bool")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return Score(0.0, f"checker {name} returned a non-numeric value {value!r}")
    if math.isnan(value):
        value = 0.0
    return Score(min(1.0, max(0.0, value)), feedback or f"{name} returned {value:g}")


def get_checker(name: str) -> Reward:
    """A built-in checker by name, or a user's 'package.module:function' imported from the path."""
    if name in CHECKERS:
        return CHECKERS[name]
    valid = ", ".join(CHECKERS)
    if ":" not in name:
        raise ValueError(f"unknown checker {name!r}: use one of {valid}, or 'package.module:function'")
    module_name, _, func_name = name.rpartition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, but also any error the module raises while importing
        raise ValueError(
            f"cannot import checker module {module_name!r} ({type(err).__name__}: {err}); "
            "module:function must be importable from the current directory / PYTHONPATH"
        ) from err
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValueError(
            f"checker {name!r}: module {module_name!r} has no function {func_name!r}; "
            f"define {func_name}(task, completion) there, or use one of {valid}"
        )

    return as_reward(func, func_name)


def as_reward(func: Callable[[Task, str], Any], name: str | None = None) -> Reward:
    """A reward from your own function of (task, completion): it may return a Score, a float in [0, 1], an int
    or a bool, and may raise; whatever it does, the loop gets a Score and never an exception (a bug scores 0
    with the error as its feedback). Give feedback text in a Score where you can: the reflector learns from it.
    Like the built-in checkers it sees at most the last MAX_COMPLETION characters of a completion."""
    label = name or getattr(func, "__name__", "reward")

    def reward(task: Task, completion: str) -> Score:
        try:
            return _as_score(func(task, _tail(completion)), label)
        except Exception as err:  # noqa: BLE001 - a user's bug scores 0, it does not stop a run
            return Score(0.0, f"checker raised {type(err).__name__}: {err}")

    reward.__name__ = label
    return reward
