"""A user's own tasks from a JSONL file: the one place where untrusted task data enters.

The whole file is validated before anything runs, and every problem is reported with its line and
field and how to fix it: a typo on line 900 should fail in a second, not after an hour of rollouts.
"""
from __future__ import annotations

import json
from pathlib import Path

from secondnature.rewards import get_checker
from secondnature.tasks.builtin import ANSWER_SHAPES, instruction
from secondnature.types import Reward, Score, Task, TaskSet

_EXAMPLE = '{"prompt": ..., "answer": ...}'
_MAX_REPORTED = 10


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file, line and field, and the fix."""


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


def _parse_line(text: str, n: int, default_checker: str) -> tuple[Task | None, list[str]]:
    """One line -> (task, []) or (None, [problems]). Messages omit the file name; the caller adds it."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        return None, [f"line {n}: not valid JSON ({err.msg} at column {err.colno}) — each line needs {_EXAMPLE}"]
    if not isinstance(row, dict):
        return None, [f"line {n}: expected a JSON object, got {type(row).__name__} — each line needs {_EXAMPLE}"]
    problems = []
    prompt = row.pop("prompt", None)
    if prompt is None:
        problems.append(f'line {n}: missing field "prompt" — each line needs {_EXAMPLE}')
    elif not isinstance(prompt, str) or not prompt.strip():
        problems.append(f'line {n}: field "prompt" must be a non-empty string, got {prompt!r}')
    answer = row.pop("answer", None)
    if answer is None:
        problems.append(f'line {n}: missing field "answer" — each line needs {_EXAMPLE}')
    elif isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or not str(answer).strip():
        problems.append(f'line {n}: field "answer" must be a non-empty string or a number, got {answer!r}')
    task_id = row.pop("id", f"line{n}")
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)) or not str(task_id).strip():
        problems.append(f'line {n}: field "id" must be a non-empty string or integer, got {task_id!r} '
                        "(or leave it out to use the line number)")
    checker = row.pop("checker", None)
    if checker is not None:
        if not isinstance(checker, str):
            problems.append(f'line {n}: field "checker" must be a string, got {checker!r}')
        else:
            try:
                get_checker(checker)
            except ValueError as err:
                problems.append(f'line {n}: field "checker": {err}')
    if problems:
        return None, problems
    row["checker"] = checker or default_checker
    return Task(str(task_id), prompt, str(answer), row), []


def load_jsonl(path: str | Path, checker: str | None = None) -> TaskSet:
    """Tasks from `path`, one JSON object per line; each line's checker, else `checker`, else 'exact'."""
    path = Path(path)
    default = checker or "exact"
    get_checker(default)  # a bad --checker is the caller's mistake: plain ValueError with the valid names
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TaskFileError(f"{path}: no such file — give the path of a .jsonl file with one task per line") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TaskFileError(f"{path}: cannot read it as UTF-8 text ({err})") from None
    tasks: list[Task] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends, which splitlines breaks on.
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        task, line_problems = _parse_line(line, n, default)
        problems += line_problems
        if task is None:
            continue
        if task.id in first_line:
            problems.append(f'line {n}: duplicate id "{task.id}" (first used on line {first_line[task.id]}) '
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
