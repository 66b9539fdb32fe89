"""A user's own tasks from a JSONL file: the one place where untrusted task data enters.

The whole file is validated before anything runs, and every problem is reported with its line and
field and how to fix it: a typo on line 900 should fail in a second, not after an hour of rollouts.
Nothing in a file runs code: a line may name a built-in checker only; a 'module:function' checker is
imported when the user names it (--checker, or `checker=`), never because a file says so.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from secondnature.rewards import CHECKERS, get_checker, reference_problem
from secondnature.tasks.builtin import ANSWER_SHAPES, instruction
from secondnature.types import Reward, Score, Task, TaskSet

_EXAMPLE = '{"prompt": ..., "answer": ...}'
_MAX_REPORTED = 10
_MAX_DIGITS = 4300  # Python's int() refuses longer digit strings (sys.int_info.default_max_str_digits)
_MAX_DEPTH = 100    # arrays and objects inside one another in one field: task data needs a few


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file, line and field, and the fix."""


class _LongInt(str):
    """An integer literal too long for int(), kept as its digits so that the problem can name its field."""


def _int(digits: str) -> int | str:
    return int(digits) if len(digits.lstrip("-")) <= _MAX_DIGITS else _LongInt(digits)


def _dispatch(default: str) -> Reward:
    """One reward for a set whose lines pick their own checkers (via task.metadata['checker'])."""
    cache: dict[str, Reward] = {}

    def reward(task: Task, completion: str) -> Score:
        name = task.metadata.get("checker", default)
        try:
            if name not in cache:
                cache[name] = get_checker(name)
        except ValueError as err:
            return Score(0.0, str(err))
        return cache[name](task, completion)

    return reward


def _brief(value: Any) -> str:
    """A value as a message shows it: JSON, escaped (a lone surrogate cannot be printed), at most 60 characters."""
    if isinstance(value, (dict, list)):
        return "a JSON object" if isinstance(value, dict) else "a JSON array"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad_value(value: Any) -> str:
    """What makes a parsed field unusable anywhere ('' if nothing): a lone surrogate, an over-long integer, too
    deep a nesting. Walked with a stack, not recursion: a field may be nested hundreds of levels deep."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return f"is nested too deeply (more than {_MAX_DEPTH} levels of arrays and objects)"
        if isinstance(item, _LongInt):
            return (f"holds an integer of {len(item)} digits, more than Python reads ({_MAX_DIGITS}) — "
                    "write it as a string if it is text")
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:  # "\ud800" in the JSON: SQLite and every printer refuse it later
                return ("is not valid Unicode (a lone surrogate such as \\ud800) — write the character itself, "
                        "or both halves of its surrogate pair")
        elif isinstance(item, dict):
            stack += [(k, depth + 1) for k in item] + [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
    return ""


def _field(key: str) -> str:
    return key if not _bad_value(key) else json.dumps(key)[1:-1]  # escaped: a surrogate cannot be printed


def _answer_text(answer: Any, n: int) -> tuple[str, str]:
    """(the answer as the checkers read it, '') or ('', the problem)."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or not str(answer).strip():
        return "", f'line {n}: field "answer" must be a non-empty string or a number, got {_brief(answer)}'
    if isinstance(answer, float):
        if answer != answer or answer in (float("inf"), float("-inf")):
            return "", (f'line {n}: field "answer" is {answer!r}, which no checker can match — write the number '
                        "itself (e.g. 2.5), or a string")
        return format(Decimal(repr(answer)), "f"), ""  # 1e-07 as 0.0000001: the number checker reads no exponent
    return str(answer), ""


def _checker(value: Any, n: int, explicit: str | None) -> str:
    """The problem with a line's own "checker" field ('' if none): built-in names only, or the one the user
    named; a file naming a module to import would run that module's code on load."""
    if not isinstance(value, str):
        return f'line {n}: field "checker" must be a string, got {_brief(value)}'
    if value in CHECKERS or value == explicit:
        return ""
    valid = ", ".join(CHECKERS)
    if ":" in value:
        return (f'line {n}: field "checker" names code to import ({_brief(value)}); a file may name only the '
                f"built-in checkers ({valid}) — to use your own function, pass it with --checker {value} "
                "(checker= in load_jsonl) and leave it out of the file")
    return f'line {n}: field "checker": unknown checker {_brief(value)} — use one of {valid}, or leave it out'


def _parse_line(text: str, n: int, default: str, explicit: str | None,
                answers_required: bool = True) -> tuple[Task | None, list[str]]:
    """One line -> (task, []) or (None, [problems]). Messages omit the file name; the caller adds it."""
    try:
        row = json.loads(text, parse_int=_int)
    except json.JSONDecodeError as err:
        return None, [f"line {n}: not valid JSON ({err.msg} at column {err.colno}) — each line needs {_EXAMPLE}"]
    except RecursionError:
        return None, [f"line {n}: nested too deeply to read (arrays or objects inside one another) — "
                      f"each line needs {_EXAMPLE}"]
    except ValueError as err:  # a float the decoder cannot build, and the like
        return None, [f"line {n}: not valid JSON ({err}) — each line needs {_EXAMPLE}"]
    if not isinstance(row, dict):
        return None, [f"line {n}: expected a JSON object, got {type(row).__name__} — each line needs {_EXAMPLE}"]
    bad = [f'line {n}: field "{_field(k)}" {why}' for k, v in row.items() if (why := _bad_value(k) or _bad_value(v))]
    if bad:  # nothing below may print or store such a value
        return None, bad
    problems = []
    prompt = row.pop("prompt", None)
    if prompt is None:
        problems.append(f'line {n}: missing field "prompt" — each line needs {_EXAMPLE}')
    elif not isinstance(prompt, str) or not prompt.strip():
        problems.append(f'line {n}: field "prompt" must be a non-empty string, got {_brief(prompt)}')
    answer = row.pop("answer", None)
    answer_text = ""  # no answer, where a judge scores the replies: no reference needed
    if answer is not None:
        answer_text, why = _answer_text(answer, n)
        problems += [why] if why else []
    elif answers_required:
        problems.append(f'line {n}: missing field "answer" — each line needs {_EXAMPLE} (or, to score replies '
                        "without reference answers, give a rubric judge: --judge MODEL --rubric FILE)")
    task_id = row.pop("id", f"line{n}")
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)) or not str(task_id).strip():
        problems.append(f'line {n}: field "id" must be a non-empty string or integer, got {_brief(task_id)} '
                        "(or leave it out to use the line number)")
    checker = row.pop("checker", None)
    if checker is not None and (why := _checker(checker, n, explicit)):
        problems.append(why)
    if problems:
        return None, problems
    row["checker"] = checker or default
    task = Task(str(task_id), prompt, answer_text, row)
    if answer is not None and (why := reference_problem(row["checker"], task)):
        return None, [f"line {n}: {why}"]
    return task, []


def _read(path: Path) -> str:
    """The file's text, or TaskFileError saying why it has none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TaskFileError(f"{path}: no such file — give the path of a .jsonl file with one task per line") from None
    except IsADirectoryError:
        raise TaskFileError(f"{path}: is a directory — give the path of a .jsonl file with one task per line") from None
    except OSError as err:
        raise TaskFileError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise TaskFileError(f"{path} line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}) "
                            "— save the file as UTF-8") from None


def load_jsonl(path: str | Path, checker: str | None = None, *, answers_required: bool = True) -> TaskSet:
    """Tasks from `path`, one JSON object per line; each line's checker, else `checker`, else 'exact'.

    A line's "checker" must be a built-in name (or the `checker` given here); `checker` itself may be
    'package.module:function', imported because the caller named it. `answers_required=False` says the caller
    replaces the reward with a judge (judge.py): a line may then leave out "answer" (its task's answer is '')."""
    path = Path(path)
    default = checker or "exact"
    get_checker(default)  # a bad --checker is the caller's mistake: plain ValueError with the valid names
    text = _read(path)
    tasks: list[Task] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends, which splitlines breaks on.
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        task, line_problems = _parse_line(line, n, default, checker, answers_required)
        problems += line_problems
        if task is None:
            continue
        if task.id in first_line:
            problems.append(f"line {n}: duplicate id {_brief(task.id)} (first used on line {first_line[task.id]}) "
                            "— give every task a unique id")
            continue
        first_line[task.id] = n
        tasks.append(task)
    if problems:
        more = len(problems) - _MAX_REPORTED
        shown = [f"{path} {p}" for p in problems[:_MAX_REPORTED]] + ([f"... and {more} more"] if more > 0 else [])
        raise TaskFileError("\n".join(shown))
    if not tasks:
        raise TaskFileError(f"{path}: the file is empty — write one task per line, e.g. {_EXAMPLE}")
    names = {t.metadata["checker"] for t in tasks}
    if len(names) == 1:
        (name,) = names
        return TaskSet(path.stem, tuple(tasks), get_checker(name), instruction(ANSWER_SHAPES.get(name, "<answer>")))
    return TaskSet(path.stem, tuple(tasks), _dispatch(default), instruction("<answer>"))
