"""Run the policy on tasks with a given set of lessons and score every attempt.

The only place with concurrency: endpoints are called from a thread pool; the embedded model is
one process-wide instance, so it runs one call at a time.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from .models import Model
from .types import Lesson, Reward, Rollout, Score, Task


def messages_for(task: Task, system: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": task.prompt}]


def _score(reward: Reward, task: Task, text: str) -> Score:
    try:  # rewards promise not to raise; a user's checker might anyway, and one item must not end a run
        s = reward(task, text)
        return Score(min(1.0, max(0.0, float(s.value))), s.feedback)
    except Exception as e:
        return Score(0.0, f"checker raised {type(e).__name__}: {e}")


def rollout_id(model: str, messages: list[dict], seed: int, sample: int, temperature: float) -> str:
    blob = json.dumps([model, messages, seed, sample, temperature], sort_keys=True)
    return "r" + hashlib.sha256(blob.encode()).hexdigest()[:15]


def run(model: Model, tasks: Sequence[Task], reward: Reward, system: str, lessons: Sequence[Lesson], *,
        n: int = 1, temperature: float = 0.0, max_tokens: int = 384, seed: int = 0, purpose: str = "train",
        workers: int = 1, on_done: Callable[[Rollout], None] | None = None,
        tools: Sequence[str] = ()) -> list[Rollout]:
    """`n` attempts at each task; sample i of a task uses seed + i, the same for every lesson set (paired).
    With `tools` (a task set's, e.g. ("python",)) each attempt is a multi-turn episode (episode.run)."""
    if tools:
        from . import episode  # episode builds on this module
        return episode.run(model, tasks, reward, system, lessons, n=n, temperature=temperature,
                           max_tokens=max_tokens, seed=seed, purpose=purpose, on_done=on_done,
                           config=episode.EpisodeConfig(tools=tuple(tools)))
    lesson_ids = tuple(lesson.id for lesson in lessons)

    def one(task: Task) -> list[Rollout]:
        msgs = messages_for(task, system)
        out = []
        for i, c in enumerate(model.chat(msgs, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)):
            score = Score(0.0, f"model call failed: {c.error}") if c.error else _score(reward, task, c.text)
            r = Rollout(rollout_id(model.name, msgs, seed, i, temperature), task.id, tuple(msgs), c.text, score,
                        lesson_ids, model.name, seed, i, c.prompt_tokens, c.completion_tokens, c.latency_s, c.error,
                        purpose)
            out.append(r)
            if on_done:
                on_done(r)
        return out

    if workers <= 1:
        results = [one(t) for t in tasks]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, tasks))
    return [r for group in results for r in group]
