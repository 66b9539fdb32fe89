"""Multi-turn episodes: the policy acts, the Python tool answers, and so on until a final answer or a step limit.

A rollout of an episode keeps the whole trajectory in its messages (every reply, every tool result,
with the step timings in the tool messages' metadata), and its completion is the final reply, which
the reward scores as for a single-turn task. The tool protocol here is plain text, which every chat
model can follow: a reply that holds a ```python block and no final answer line is a tool call.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import rollout as single
from .models import Model
from .rewards import extract_answer
from .sandbox import Limits, run_python
from .types import Lesson, Reward, Rollout, Score, Task

TOOL_NOTE = """You can run Python to help you. To run code, reply with one block
```python
<code that prints what you need>
```
and nothing after it; you will then see what it printed. Run code as often as you need. When you are \
sure, end your reply with the final line the instruction asks for."""

CODE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


@dataclass(frozen=True)
class EpisodeConfig:
    max_steps: int = 4           # model turns per episode; the last one must answer
    limits: Limits = Limits()


def tool_call(reply: str) -> str:
    """The code a reply asks to run ('' if it gives a final answer or holds no code block)."""
    if extract_answer(reply):
        return ""
    blocks = CODE.findall(reply)
    return blocks[-1].strip() if blocks else ""


def run_episode(model: Model, messages: list[dict], config: EpisodeConfig, *, temperature: float, max_tokens: int,
                seed: int) -> tuple[list[dict], str, dict]:
    """Play one episode from `messages`; returns the trajectory, the final reply and its tally
    (steps, tool calls, model and tool seconds, error)."""
    msgs = list(messages)
    tally = {"steps": 0, "tool_calls": 0, "model_s": 0.0, "tool_s": 0.0, "error": "", "prompt_tokens": 0,
             "completion_tokens": 0}
    final = ""
    for step in range(config.max_steps):
        c = model.chat(msgs, n=1, temperature=temperature, max_tokens=max_tokens, seed=seed + 7919 * step)[0]
        tally["steps"] += 1
        tally["model_s"] += c.latency_s
        tally["prompt_tokens"] += c.prompt_tokens
        tally["completion_tokens"] += c.completion_tokens
        if c.error:
            tally["error"] = c.error
            break
        msgs.append({"role": "assistant", "content": c.text})
        final = c.text
        code = tool_call(c.text)
        if not code:
            break
        if step == config.max_steps - 1:
            break  # no turn left to read the result: the episode ends on this reply
        t0 = time.perf_counter()
        result = run_python(code, config.limits)
        tally["tool_calls"] += 1
        tally["tool_s"] += time.perf_counter() - t0
        msgs.append({"role": "user", "content": f"Output of your code:\n{result.as_text()}"})
    return msgs, final, tally


def run(model: Model, tasks: Sequence[Task], reward: Reward, system: str, lessons: Sequence[Lesson], *,
        n: int = 1, temperature: float = 0.0, max_tokens: int = 384, seed: int = 0, purpose: str = "train",
        config: EpisodeConfig = EpisodeConfig(), on_done: Callable[[Rollout], None] | None = None) -> list[Rollout]:
    """As rollout.run, but each attempt is an episode with the Python tool; sample i uses seed + i."""
    system = f"{system}\n\n{TOOL_NOTE}"
    lesson_ids = tuple(x.id for x in lessons)
    out = []
    for task in tasks:
        start = single.messages_for(task, system)
        for i in range(n):
            t0 = time.perf_counter()
            msgs, final, tally = run_episode(model, start, config, temperature=temperature, max_tokens=max_tokens,
                                             seed=seed + i)
            score = (Score(0.0, f"model call failed: {tally['error']}") if tally["error"] and not final
                     else single._score(reward, task, final))
            if not score.value and tally["steps"] == config.max_steps and tool_call(final):
                score = Score(0.0, f"{score.feedback}; the episode hit its {config.max_steps}-step limit while "
                                   f"still running code")
            r = Rollout(single.rollout_id(model.name, msgs, seed, i, temperature), task.id, tuple(msgs), final,
                        score, lesson_ids, model.name, seed, i, tally["prompt_tokens"], tally["completion_tokens"],
                        time.perf_counter() - t0, tally["error"], purpose)
            out.append(r)
            if on_done:
                on_done(r)
    return out
