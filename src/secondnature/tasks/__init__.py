"""Task sets by name: the built-in ones (letters, game24, gsm8k, bbh/<task>) or a user's JSONL file.

`load_taskset` is the one entry point the CLI and the learning loop use; `split` gives every task set
the same deterministic train / val / test cut, so a lesson is always judged on tasks it never saw.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Sequence

from secondnature.rewards import as_reward, get_checker, reference_problem
from secondnature.tasks.builtin import ANSWER_SHAPES, BBH_TASKS, LETTER_TIERS, bbh, game24, gsm8k, letters
from secondnature.tasks.builtin import instruction as default_instruction
from secondnature.tasks.jsonl import TaskFileError, load_jsonl
from secondnature.text import slug
from secondnature.types import Task, TaskSet

__all__ = ["TaskFileError", "list_tasksets", "load_taskset", "slug", "split", "task_set", "with_tools"]


def task_set(name: str, tasks: Iterable[Task | dict], reward: str | Callable[[Task, str], Any], *,
             instruction: str | None = None, tools: Sequence[str] = ()) -> TaskSet:
    """Your own task set: `tasks` as Task objects or dicts with "prompt" and "answer" (an "id" is made if missing),
    `reward` a built-in checker's name ("number", "exact", "choice", "regex") or your function of (task, completion)
    returning a Score, float or bool. The instruction defaults to one that asks for a final "Answer: ..." line in
    the shape the checker reads. With your own reward (a judge's, say: judge.judge_reward) a task may leave out
    its answer. Raises ValueError naming the first bad task."""
    made = []
    for i, t in enumerate(tasks):
        if isinstance(t, dict):
            if not str(t.get("prompt", "")).strip() or ("answer" not in t and isinstance(reward, str)):
                raise ValueError(f"task {i} of {name!r} needs a non-empty \"prompt\" and an \"answer\"; got keys "
                                 f"{sorted(t)}")
            t = Task(str(t.get("id", f"{i}")), str(t["prompt"]), str(t.get("answer", "")),
                     {k: v for k, v in t.items() if k not in ("id", "prompt", "answer")})
        if not isinstance(t, Task):
            raise ValueError(f"task {i} of {name!r} is a {type(t).__name__}; pass Task objects or dicts")
        made.append(t)
    if len({t.id for t in made}) < len(made):
        raise ValueError(f"task ids of {name!r} repeat; give every task its own id")
    if isinstance(reward, str):
        shape, fn = ANSWER_SHAPES.get(reward, "<answer>"), get_checker(reward)
        # a reference the checker cannot read would score every attempt 0: say so now, not after a run
        bad = next(((i, why) for i, t in enumerate(made) if (why := reference_problem(reward, t))), None)
        if bad:
            raise ValueError(f"task {bad[0]} of {name!r}: {bad[1]}")
    else:
        shape, fn = "<answer>", as_reward(reward)
    ts = TaskSet(name, tuple(made), fn, instruction or default_instruction(shape))
    for tool in tools:
        ts = with_tools(ts, tool)
    return ts


def list_tasksets() -> list[str]:
    """The built-in specs `load_taskset` accepts (besides 'letters:<tiers>', 'gsm8k:train' and file paths)."""
    return ["letters", "game24", "gsm8k"] + [f"bbh/{t}" for t in BBH_TASKS]


def _letters(tiers_spec: str) -> TaskSet:
    tiers = tuple(t.strip() for t in tiers_spec.split(",") if t.strip())
    unknown = [t for t in tiers if t not in LETTER_TIERS]
    if unknown or not tiers:
        raise ValueError(f"unknown letters tier(s) {', '.join(unknown) or '(none given)'}: "
                         f"use letters:<tier>,<tier> with tiers from {', '.join(LETTER_TIERS)}")
    return letters(tiers)


def with_tools(taskset: TaskSet, tool: str) -> TaskSet:
    """The same tasks as multi-turn episodes with a tool; the name says so ('game24+python')."""
    from secondnature.tools import TOOLS, tool_instruction
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r} in '{taskset.name}+{tool}': the tools are {', '.join(TOOLS)}")
    return replace(taskset, name=f"{taskset.name}+{tool}", instruction=tool_instruction(taskset.instruction, (tool,)),
                   tools=(tool,))


def load_taskset(spec: str, checker: str | None = None, *, answers_required: bool = True) -> TaskSet:
    """A task set by spec: 'letters[:tiers]', 'game24', 'gsm8k[:train]', 'bbh/<task>', or a path to a .jsonl file;
    '+python' (or '+calculator') after any of them makes every attempt an episode with that tool.

    `checker` is the default for a file's lines; for a built-in set it replaces the set's own checker.
    `answers_required=False` (the caller will score with a judge): a file's lines may leave out their answers.
    """
    spec = spec.strip()
    if "+" in spec and not spec.endswith(".jsonl"):
        base, _, tool = spec.rpartition("+")
        return with_tools(load_taskset(base, checker, answers_required=answers_required), tool.strip())
    if spec.endswith(".jsonl"):
        return load_jsonl(spec, checker, answers_required=answers_required)
    name, _, arg = spec.partition(":")
    if name == "letters":
        taskset = _letters(arg) if arg else letters()
    elif spec == "game24":
        taskset = game24()
    elif name == "gsm8k":
        taskset = gsm8k(arg or "test")
    elif spec.startswith("bbh/"):
        taskset = bbh(spec[len("bbh/"):])
    else:
        raise ValueError(f"unknown task set {spec!r}: use one of {', '.join(list_tasksets())}, "
                         "letters:<tiers>, gsm8k:train, or a path to a .jsonl file")
    return replace(taskset, reward=get_checker(checker)) if checker else taskset


def split(tasks: Sequence[Task], seed: int = 0,
          fractions: tuple[float, float, float] = (0.4, 0.2, 0.4)) -> dict[str, tuple[Task, ...]]:
    """Deterministic train / val / test split: sorted by id first, so input order never matters.

    test = round(fractions[2] * n), val = round(fractions[1] * n), train = the rest. A set with a published
    test split (tasks marked `standard_test`, e.g. game24's ids 900-999) keeps it, and the rest is cut into
    train and val in the same proportions.
    """
    ordered = sorted(tasks, key=lambda t: (t.id, t.prompt))
    if ordered and all("standard_test" in t.metadata for t in ordered):
        test = tuple(t for t in ordered if t.metadata["standard_test"])
        rest = [t for t in ordered if not t.metadata["standard_test"]]
        random.Random(seed).shuffle(rest)
        n_val = round(fractions[1] / (fractions[0] + fractions[1]) * len(rest))
        return {"train": tuple(rest[n_val:]), "val": tuple(rest[:n_val]), "test": test}
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    n_test = min(n, round(fractions[2] * n))
    n_val = min(n - n_test, round(fractions[1] * n))
    return {
        "train": tuple(ordered[n_test + n_val:]),
        "val": tuple(ordered[n_test:n_test + n_val]),
        "test": tuple(ordered[:n_test]),
    }
