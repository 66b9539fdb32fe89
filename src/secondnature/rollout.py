"""Rollouts: the policy attempts tasks under a system prompt, and the reward scores every attempt.

One loop serves single replies and multi-turn episodes. An attempt is a conversation: the policy
replies; if the reply calls a tool the task set offers (tools.py), the tool's output comes back and
the policy replies again, until it answers or reaches the step limit; without tools that is one
reply. The rollout keeps the whole trajectory (every reply, call and output, each with the seconds
it took, in a `seconds` key stripped before messages go back to a model); the reward scores the
final reply, and the feedback names the steps whose tool call failed.

Two ways to call a tool, both always accepted: the chat tool-calling format (offered to models that
call tools reliably: OpenAI-compatible endpoints, or any model when SECONDNATURE_TOOL_FORMAT=native),
and plain text, a reply holding a ```python (or ```calc) block, whose output comes back as the next
user message. The packaged GGUF models never emitted a structured call in our trials, so plain text
is the default for the embedded runtime.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence

from . import sandbox
from .executor import current, in_flight
from .inject import into_messages, own_system
from .models import Model, OpenAIModel, as_completion
from .redact import redact
from .rewards import score
from .sandbox import Limits
from .skills import primed, skill_tool, skills_in
from .tools import OUTPUT_HEADER, TOOLS, Tool, fenced_call, structured_call
from .types import Completion, Lesson, Reward, Rollout, Score, Task, ToolCall

WIRE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
MAX_STEPS = 4  # model turns in an episode with tools; the last one must answer


def messages_for(task: Task, system: str) -> list[dict]:
    """The opening messages of an attempt. A task recorded from an application's traffic replays its own messages,
    the lessons added after its system prompt as `serve` adds them."""
    if recorded := task.metadata.get("messages"):
        own = own_system(recorded)  # a task set of one application's traffic shows its prompt as the instruction
        return into_messages(recorded, (system[len(own):] if own and system.startswith(own) else system).strip())
    return [{"role": "system", "content": system}, {"role": "user", "content": task.prompt}]


def wire(messages: Sequence[dict]) -> list[dict]:
    """Messages as a chat API takes them: our bookkeeping keys (step seconds) removed."""
    return [{k: v for k, v in m.items() if k in WIRE_KEYS} for m in messages]


def rollout_id(model: str, messages: list[dict], seed: int, sample: int, temperature: float) -> str:
    blob = json.dumps([model, messages, seed, sample, temperature], sort_keys=True)
    return "r" + hashlib.sha256(blob.encode()).hexdigest()[:15]


def native_tools(model: Model) -> bool:
    """Whether to offer tools in the chat tool-calling format: endpoints yes, embedded models no, unless
    SECONDNATURE_TOOL_FORMAT says native or text."""
    choice = os.environ.get("SECONDNATURE_TOOL_FORMAT", "").strip().lower()
    if choice in ("native", "text"):
        return choice == "native"
    return isinstance(getattr(model, "inner", model), OpenAIModel)


def run(model: Model, tasks: Sequence[Task], reward: Reward, system: str, lessons: Sequence[Lesson], *,
        n: int = 1, temperature: float = 0.0, max_tokens: int = 384, seed: int = 0, purpose: str = "train",
        on_done: Callable[[Rollout], None] | None = None, tools: Sequence[str] = (), max_steps: int = MAX_STEPS,
        limits: Limits = Limits(), native: bool | None = None, concurrency: int | None = None) -> list[Rollout]:
    """`n` attempts at each task, scored. Sample i of a task uses seed + i, the same for every lesson set, so
    two lesson sets pair attempt by attempt. With `tools` (a task set's, e.g. ("python",)) an attempt may take
    up to `max_steps` turns; `system` should then say how to call them (tools.tool_instruction). Up to
    `concurrency` tasks are attempted at once (default: the model's own, an endpoint's --concurrency), on the
    current executor (local threads, or Ray workers: executor.executing); the rollouts come back, and `on_done`
    is called here, in the tasks' order all the same."""
    own = tuple(TOOLS[t] for t in tools)
    found = skills_in(lessons)  # skills in context: Python with them defined is offered, whatever the task set's tools
    if "python" in tools or found:
        sandbox.check()  # before any call: no boundary, no run (unless the user opted out), with the fix
    names = [t.name for t in own] + (["python"] if found and "python" not in tools else [])
    specs = [TOOLS[t].spec() for t in names] if names and (native_tools(model) if native is None else native) else None

    def attempts(task: Task) -> list[Rollout]:
        if "python" in names:
            sandbox.check()  # again where the attempt runs: a Ray worker's machine may lack what this one has
        offered = own if not found else (*(t for t in own if t.name != "python"), skill_tool(found, task.prompt))
        start = messages_for(task, system) + (primed(found, task.prompt, limits, native=bool(specs)) if found else [])
        # the first turn of every attempt in one call: n samples of one prompt share its prefix
        firsts = [as_completion(c) for c in model.chat(wire(start), n=n, temperature=temperature, max_tokens=max_tokens,
                                                       seed=seed, **({"tools": specs} if specs else {}))]
        got = []
        for i, first in enumerate(firsts):
            msgs, tally = _attempt(model, start, first, offered, specs, limits, max_steps if offered else 1,
                                   temperature=temperature, max_tokens=max_tokens, seed=seed + i)
            got.append(Rollout(rollout_id(model.name, start, seed, i, temperature), task.id, tuple(msgs),
                               tally["final"], _verdict(reward, task, msgs, tally, max_steps),
                               tuple(x.id for x in lessons), model.name, seed, i, tally["prompt_tokens"],
                               tally["completion_tokens"],
                               # model latency (as first measured, so a cached replay reports it too) + the tools' time
                               tally["seconds"], tally["error"], purpose))
        return got

    out = []
    # local threads unless the caller chose another executor (`executor.executing`, --executor ray)
    for got in current().map(attempts, tasks, in_flight(model) if concurrency is None else concurrency):
        for r in got:
            out.append(r)
            if on_done:
                on_done(r)
    return out


def _attempt(model: Model, start: list[dict], first: Completion, offered: tuple[Tool, ...], specs: list | None,
             limits: Limits, max_steps: int, *, temperature: float, max_tokens: int,
             seed: int) -> tuple[list[dict], dict]:
    """Play one attempt from its first reply: run the tool calls it makes and ask again, until it answers or the
    step limit. The trajectory, and its tally (final reply, steps, tokens, seconds, error, whether it ended
    while still calling a tool)."""
    msgs = list(start)
    tally = {"final": "", "steps": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "error": "",
             "open": False}
    c = first
    for step in range(max_steps):
        if step:
            c = as_completion(model.chat(wire(msgs), n=1, temperature=temperature, max_tokens=max_tokens,
                                         seed=seed + 7919 * step, **({"tools": specs} if specs else {}))[0])
        tally["steps"] += 1
        tally["seconds"] += c.latency_s
        tally["prompt_tokens"] += c.prompt_tokens
        tally["completion_tokens"] += c.completion_tokens
        if c.error:
            tally["error"] = c.error
            break
        tally["final"] = text = redact(c.text)
        reply: dict = {"role": "assistant", "content": text, "seconds": round(c.latency_s, 3)}
        calls = [ToolCall(f"call_{step}_{i}", t.name, t.arguments) for i, t in enumerate(c.tool_calls)]
        if calls:
            reply["tool_calls"] = [{"id": t.id, "type": "function",
                                    "function": {"name": t.name, "arguments": t.arguments}} for t in calls]
        msgs.append(reply)
        fenced = None if calls or not offered else fenced_call(text, offered)
        tally["open"] = bool(calls or fenced)
        if not tally["open"] or step == max_steps - 1:
            break  # an answer, or no turn left to read a result: the attempt ends on this reply
        for t in calls:  # each structured call gets its own tool message
            tool, arg, err = structured_call(t, offered)
            output, dt = _call(tool, arg, limits) if tool and arg else (err, 0.0)
            tally["seconds"] += dt
            msgs.append({"role": "tool", "tool_call_id": t.id, "content": output, "seconds": round(dt, 3)})
        if fenced:
            output, dt = _call(fenced[0], fenced[1], limits)
            tally["seconds"] += dt
            msgs.append({"role": "user", "content": f"{OUTPUT_HEADER}\n{output}", "seconds": round(dt, 3)})
    return msgs, tally


def _call(tool: Tool, arg: str, limits: Limits) -> tuple[str, float]:
    t0 = time.perf_counter()
    output = redact(tool.run(arg, limits))  # a key the code found never reaches the model, the store or the reflector
    return output, time.perf_counter() - t0


def _verdict(reward: Reward, task: Task, msgs: list[dict], tally: dict, max_steps: int) -> Score:
    """The reward's score of the final reply, its feedback naming what went wrong on the way."""
    if tally["error"] and not tally["final"]:
        return Score(0.0, f"model call failed: {tally['error']}")
    s = score(reward, task, tally["final"])
    if not s.value and tally["open"] and tally["steps"] == max_steps:
        s = Score(0.0, f"{s.feedback}; the episode hit its {max_steps}-step limit while still running code")
    if s.value < 1.0 and (failed := failed_steps(msgs)):
        s = Score(s.value, f"{s.feedback}; " + "; ".join(f"step {k}'s tool call failed ({why})" for k, why in failed[:2]))
    return s


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
    """Steps (model turns) and tool calls of a rollout's trajectory; a single reply has 1 and 0."""
    steps = sum(m["role"] == "assistant" for m in r.messages) or 1
    calls = sum(m["role"] == "tool" or (m["role"] == "user" and str(m.get("content", "")).startswith(OUTPUT_HEADER))
                for m in r.messages)
    return {"steps": steps, "tool_calls": calls}


def is_episode(r: Rollout) -> bool:
    """Whether an attempt went beyond one reply (a tool was called)."""
    return len(r.messages) > 3
