"""Score a lesson set on a split: accuracy with a Wilson interval, and paired differences between two sets."""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from . import inject, rollout
from .models import Model
from .rollout import episode_stats
from .stats import paired_bootstrap, wilson
from .tasks import split
from .text import approx_tokens
from .types import Lesson, Rollout, Task, TaskSet


@dataclass(frozen=True)
class EvalResult:
    split: str
    n: int
    accuracy: float
    ci95: tuple[float, float]
    scores: tuple[float, ...]
    task_ids: tuple[str, ...]
    lesson_ids: tuple[str, ...]
    lesson_tokens: int
    completion_tokens: int
    errors: int
    wall_s: float
    completions: tuple[str, ...] = ()
    prompt_tokens: int = 0  # the whole system prompt: instruction and lessons
    steps: float = 1.0      # model turns per attempt (episodes with tools take several)
    tool_calls: float = 0.0  # tool calls per attempt
    model_s: float = 0.0     # summed latency of the attempts (tools included): their cost, the same on a cached rerun


def split_tasks(taskset: TaskSet, name: str, seed: int = 0, limit: int | None = None) -> list[Task]:
    if name == "all":
        tasks = list(taskset.tasks)
    else:
        parts = split(taskset.tasks, seed)
        if name not in parts:
            raise ValueError(f"unknown split {name!r}; use train, val, test or all")
        tasks = list(parts[name])
    return tasks[:limit] if limit else tasks


def evaluate(policy: Model, taskset: TaskSet, tasks: Sequence[Task], lessons: Sequence[Lesson], *,
             split_name: str = "test", lesson_tokens: int | None = 400, max_tokens: int = 384, seed: int = 0,
             on_done: Callable | None = None, instruction: str | None = None,
             route: Callable[[Task], Sequence[Lesson]] | None = None) -> EvalResult:
    """Greedy, one attempt per task, the same seed for every lesson set: results pair item by item.

    `instruction` replaces the task set's own (a prompt optimised by another method is scored the same way).
    `route` gives each task its own lessons (retrieval; already within the budget) instead of `lessons`;
    token counts are then means per task."""
    t0 = time.perf_counter()
    base = taskset.instruction if instruction is None else instruction
    count = getattr(policy, "count_tokens", approx_tokens)  # a model of your own may have no tokenizer
    if route is None:
        system, kept = inject.compose(base, lessons, lesson_tokens, count)
        rs = rollout.run(policy, tasks, taskset.reward, system, kept, n=1, temperature=0.0, max_tokens=max_tokens,
                         seed=seed, purpose=split_name, on_done=on_done, tools=taskset.tools)
        ids, ltok, ptok = tuple(x.id for x in kept), inject.lesson_tokens(kept, count), count(system)
    else:
        groups: dict[tuple[Lesson, ...], list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault(tuple(route(t)), []).append(i)
        by_index: dict[int, Rollout] = {}
        used: dict[str, Lesson] = {}
        ltok = ptok = 0
        for group, idx in groups.items():
            system = inject.render(base, group)  # the router already applied the budget and the order
            out = rollout.run(policy, [tasks[i] for i in idx], taskset.reward, system, group, n=1, temperature=0.0,
                              max_tokens=max_tokens, seed=seed, purpose=split_name, on_done=on_done,
                              tools=taskset.tools)
            by_index.update(zip(idx, out))
            used.update((x.id, x) for x in group)
            ltok += inject.lesson_tokens(group, count) * len(idx)
            ptok += count(system) * len(idx)
        rs = [by_index[i] for i in range(len(tasks))]
        ids = tuple(x.id for x in sorted(used.values(), key=inject.lesson_order))
        ltok, ptok = round(ltok / max(1, len(tasks))), round(ptok / max(1, len(tasks)))
    scores = tuple(r.score.value for r in rs)
    n = len(scores)
    acc = sum(scores) / n if n else 0.0
    stats = [episode_stats(r) for r in rs]
    return EvalResult(split_name, n, acc, wilson(sum(scores), n), scores, tuple(r.task_id for r in rs), ids,
                      ltok, sum(r.completion_tokens for r in rs), sum(bool(r.error) for r in rs),
                      time.perf_counter() - t0, tuple(r.completion for r in rs), ptok,
                      sum(x["steps"] for x in stats) / max(1, n), sum(x["tool_calls"] for x in stats) / max(1, n),
                      sum(r.latency_s for r in rs))


def majority_reference(taskset: TaskSet, tasks: Sequence[Task], seed: int = 0) -> tuple[str, tuple[float, ...]]:
    """Scores of always giving the train split's most common answer: a reference that needs no model.

    Lessons that only shift a policy towards the most common answer look like learning unless this
    constant is reported beside them."""
    answer = Counter(t.answer for t in split_tasks(taskset, "train", seed)).most_common(1)[0][0]
    return answer, tuple(taskset.reward(t, f"Answer: {answer}").value for t in tasks)


def balanced_accuracy(tasks: Sequence[Task], scores: Sequence[float], min_items: int = 5) -> float | None:
    """Mean over the correct answers of the accuracy on the items with that answer, counting answers that at least
    `min_items` items have; None unless two answers do.

    Plain accuracy rewards moving towards the most common answer; this does not: always giving one answer
    scores 1/k here (k answers counted), so a gain in it is a gain in telling the items apart."""
    by: dict[str, list[float]] = {}
    for t, v in zip(tasks, scores, strict=True):
        by.setdefault(t.answer.strip(), []).append(v)
    groups = [v for v in by.values() if len(v) >= min_items]
    return sum(sum(v) / len(v) for v in groups) / len(groups) if len(groups) >= 2 else None


def balanced_diff(tasks: Sequence[Task], before: Sequence[float], after: Sequence[float], *, resamples: int = 2000,
                  seed: int = 0) -> tuple[float, tuple[float, float]] | None:
    """Balanced accuracy after minus before on the same items, with a 95% bootstrap interval over items (both
    arms on each resample); None where balanced accuracy is (the answers are not labels)."""
    b, a = balanced_accuracy(tasks, before), balanced_accuracy(tasks, after)
    if b is None or a is None:
        return None
    rng, diffs = random.Random(seed), []
    for _ in range(resamples):
        idx = [rng.randrange(len(tasks)) for _ in tasks]
        pick = [tasks[i] for i in idx]
        got = balanced_accuracy(pick, [after[i] for i in idx]), balanced_accuracy(pick, [before[i] for i in idx])
        if None not in got:
            diffs.append(got[0] - got[1])
    diffs.sort()
    return a - b, (diffs[int(0.025 * len(diffs))], diffs[int(0.975 * len(diffs)) - 1])


def balanced_over_seeds(tasks: Sequence[Task], per_seed: Sequence[Sequence[float]]) -> float | None:
    """The mean over seeds of `balanced_accuracy` (each seed's scores on the same tasks); None where it is."""
    values = [balanced_accuracy(tasks, scores) for scores in per_seed]
    return None if None in values or not values else sum(values) / len(values)


def paired(base: EvalResult, other: EvalResult, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean paired difference other - base with a 95% paired-bootstrap interval (same tasks, same order)."""
    if base.task_ids != other.task_ids:
        raise ValueError("paired comparison needs the same tasks in the same order")
    return paired_bootstrap(base.scores, other.scores, seed=seed)
