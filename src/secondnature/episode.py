"""Multi-turn episodes: the policy acts, the Python tool answers, and so on until a final answer or a step limit.

A rollout of an episode keeps the whole trajectory in its messages: every reply, every tool call and
tool result, each with the seconds it took (a `seconds` key, stripped before messages go back to a
model). Its completion is the final reply, which the reward scores as for a single-turn task.

Two ways to call a tool (tools.py), both always accepted:
- the chat tool-calling format (`tools=[tool.spec()]`, calls come back as `tool_calls`, results go back
  as `tool` messages), offered to models that call tools reliably: OpenAI-compatible endpoints, or any
  model when SECONDNATURE_TOOL_FORMAT=native;
- plain text, which every chat model can follow: a reply that holds a ```python (or ```calc) block is a
  call, and the output comes back as the next user message. The packaged GGUF models never emitted a
  structured call in our trials, so this is the default for the embedded runtime.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import rollout as single
from .models import Model, OpenAIModel
from .sandbox import Limits
from .tools import TOOLS, Tool, fenced_call, structured_call
from .types import Lesson, Reward, Rollout, Score, Task, ToolCall

PYTHON_TOOL = TOOLS["python"].spec()
TOOL_NOTE = TOOLS["python"].note

WIRE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


@dataclass(frozen=True)
class EpisodeConfig:
    max_steps: int = 4           # model turns per episode; the last one must answer
    limits: Limits = Limits()
    native: bool | None = None   # chat tool-calling format; None: by model (see native_tools)
    tools: tuple[str, ...] = ("python",)


def tool_instruction(instruction: str, tools: tuple[str, ...] = ("python",)) -> str:
    """A task set's instruction for episodes with tools: how to call them, then the answer line it asks for
    (the single-turn 'keep your reasoning short' is dropped: with a tool, the work happens in the calls)."""
    notes = "\n".join(TOOLS[t].note for t in tools)
    lines = instruction.strip().splitlines()
    if lines and lines[-1].startswith("Answer:"):
        return f"Solve the problem. {notes}\nWhen you know the answer, end with a final line exactly of the form:\n" \
               f"{lines[-1]}"
    return f"{instruction.strip()}\n\n{notes}"


def native_tools(model: Model) -> bool:
    """Whether to offer the tool in the chat tool-calling format: endpoints yes, embedded models no, unless
    SECONDNATURE_TOOL_FORMAT says native or text."""
    choice = os.environ.get("SECONDNATURE_TOOL_FORMAT", "").strip().lower()
    if choice in ("native", "text"):
        return choice == "native"
    return isinstance(getattr(model, "inner", model), OpenAIModel)


OUTPUT_HEADER = "Tool output:"  # starts the user message that answers a plain-text call


def _call(tool: Tool, arg: str, limits: Limits) -> tuple[str, float]:
    t0 = time.perf_counter()
    out = tool.run(arg, limits)
    return out, time.perf_counter() - t0


def wire(messages: Sequence[dict]) -> list[dict]:
    """Messages as a chat API takes them: our bookkeeping keys (step seconds) removed."""
    return [{k: v for k, v in m.items() if k in WIRE_KEYS} for m in messages]


def run_episode(model: Model, messages: list[dict], config: EpisodeConfig, *, temperature: float, max_tokens: int,
                seed: int) -> tuple[list[dict], str, dict]:
    """Play one episode from `messages`; returns the trajectory, the final reply and its tally
    (steps, tool calls, model and tool seconds, error)."""
    native = native_tools(model) if config.native is None else config.native
    offered = tuple(TOOLS[t] for t in config.tools)
    tools = [t.spec() for t in offered] if native else None
    msgs = list(messages)
    tally = {"steps": 0, "tool_calls": 0, "model_s": 0.0, "tool_s": 0.0, "error": "", "prompt_tokens": 0,
             "completion_tokens": 0, "open": False}
    final = ""
    for step in range(config.max_steps):
        kw = {"tools": tools} if tools else {}
        c = model.chat(wire(msgs), n=1, temperature=temperature, max_tokens=max_tokens, seed=seed + 7919 * step, **kw)[0]
        tally["steps"] += 1
        tally["model_s"] += c.latency_s
        tally["prompt_tokens"] += c.prompt_tokens
        tally["completion_tokens"] += c.completion_tokens
        if c.error:
            tally["error"] = c.error
            break
        final = c.text
        reply: dict = {"role": "assistant", "content": c.text, "seconds": round(c.latency_s, 3)}
        calls = [ToolCall(f"call_{step}_{i}", t.name, t.arguments) for i, t in enumerate(c.tool_calls)]
        if calls:
            reply["tool_calls"] = [{"id": t.id, "type": "function",
                                    "function": {"name": t.name, "arguments": t.arguments}} for t in calls]
        msgs.append(reply)
        fenced = None if calls else fenced_call(c.text, offered)
        tally["open"] = bool(calls or fenced)
        if not tally["open"] or step == config.max_steps - 1:
            break  # an answer, or no turn left to read a result: the episode ends on this reply
        for t in calls:  # each structured call gets its own tool message
            tool, arg, err = structured_call(t, offered)
            out, dt = _call(tool, arg, config.limits) if tool and arg else (err, 0.0)
            tally["tool_calls"] += 1
            tally["tool_s"] += dt
            msgs.append({"role": "tool", "tool_call_id": t.id, "content": out, "seconds": round(dt, 3)})
        if fenced:
            out, dt = _call(fenced[0], fenced[1], config.limits)
            tally["tool_calls"] += 1
            tally["tool_s"] += dt
            msgs.append({"role": "user", "content": f"{OUTPUT_HEADER}\n{out}", "seconds": round(dt, 3)})
    return msgs, final, tally


MAX_REPLY_CHARS = 700  # a reply in a rendered trajectory, head and tail kept
MAX_TOOL_CHARS = 300   # a tool's output, clipped harder: the reflector needs its gist, not every line


def _elide(text: str, bound: int, what: str) -> str:
    if len(text) <= bound:
        return text
    half = bound // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters of {what} elided ...]\n{text[-half:]}"


def render_trajectory(messages: Sequence[dict]) -> str:
    """A multi-turn attempt, step by step: replies and the code they ran clipped, tool outputs clipped harder
    (marked), so a reflector can name the step that went wrong without reading every line the code printed."""
    lines, step = [], 0
    for m in messages[2:]:  # after the system prompt and the question
        if m["role"] == "assistant":
            step += 1
            body = (m.get("content") or "").strip()
            for c in m.get("tool_calls") or []:
                tool, arg, err = structured_call(ToolCall(c.get("id", ""), c["function"]["name"],
                                                          c["function"]["arguments"]), tuple(TOOLS.values()))
                body += f"\n[calls {c['function']['name']}]\n" + (f"```{tool.fences[0]}\n{arg}\n```" if arg else err)
            lines.append(f"Step {step}, the assistant:\n{_elide(body.strip() or '(empty reply)', MAX_REPLY_CHARS, 'reply')}")
        else:
            text = str(m.get("content") or "").strip()
            text = text.removeprefix(OUTPUT_HEADER).strip() or "(no output)"
            lines.append(f"Step {step}, the tool answered:\n{_elide(text, MAX_TOOL_CHARS, 'tool output')}")
    return "\n".join(lines)


def failed_steps(messages: Sequence[dict]) -> list[tuple[int, str]]:
    """(step, reason) for each tool call that ended in an error, so the feedback can point at the step."""
    out, step = [], 0
    for m in messages[2:]:
        if m["role"] == "assistant":
            step += 1
        elif "[tool error]" in str(m.get("content", "")):
            lines = [x.strip() for x in str(m["content"]).splitlines() if x.strip()]
            cause = [x for x in lines if not x.startswith("[")]
            out.append((step, (cause[-1] if cause else lines[-1].removeprefix("[tool error] "))[:120]))
    return out


def episode_stats(r: Rollout) -> dict:
    """Steps (model turns) and tool calls of a rollout's trajectory; a single-turn rollout has 1 and 0."""
    steps = sum(m["role"] == "assistant" for m in r.messages) or 1
    calls = sum(m["role"] == "tool" or (m["role"] == "user" and str(m.get("content", "")).startswith(OUTPUT_HEADER))
                for m in r.messages)
    return {"steps": steps, "tool_calls": calls}


def run(model: Model, tasks: Sequence[Task], reward: Reward, system: str, lessons: Sequence[Lesson], *,
        n: int = 1, temperature: float = 0.0, max_tokens: int = 384, seed: int = 0, purpose: str = "train",
        config: EpisodeConfig = EpisodeConfig(), on_done: Callable[[Rollout], None] | None = None) -> list[Rollout]:
    """As rollout.run, but each attempt is an episode with the config's tools; sample i uses seed + i.
    `system` should already say how to call them (tool_instruction)."""
    lesson_ids = tuple(x.id for x in lessons)
    out = []
    for task in tasks:
        start = single.messages_for(task, system)
        for i in range(n):
            msgs, final, tally = run_episode(model, start, config, temperature=temperature, max_tokens=max_tokens,
                                             seed=seed + i)
            score = (Score(0.0, f"model call failed: {tally['error']}") if tally["error"] and not final
                     else single._score(reward, task, final))
            if not score.value and tally["open"] and tally["steps"] == config.max_steps:
                score = Score(0.0, f"{score.feedback}; the episode hit its {config.max_steps}-step limit while "
                                   f"still running code")
            if score.value < 1.0 and (failed := failed_steps(msgs)):
                score = Score(score.value, f"{score.feedback}; " + "; ".join(f"step {k}'s tool call failed ({why})"
                                                                             for k, why in failed[:2]))
            r = Rollout(single.rollout_id(model.name, wire(msgs), seed, i, temperature), task.id, tuple(msgs), final,
                        score, lesson_ids, model.name, seed, i, tally["prompt_tokens"], tally["completion_tokens"],
                        # model latency (as first measured, so a cached replay reports it too) plus the tools' time
                        tally["model_s"] + tally["tool_s"], tally["error"], purpose)
            out.append(r)
            if on_done:
                on_done(r)
    return out
