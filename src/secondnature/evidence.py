"""What the reflector is shown: groups of attempts with their rewards, tallies of the round, trajectories.

Groups with mixed rewards come first (a right and a wrong attempt at the same task is the most
informative contrast, as in group-relative methods), then all-wrong groups with the reference
answer; all-right groups teach nothing new and are left out. Every reflector prompt of a step opens
with the same evidence (instruction, lessons, scored attempts, tallies) and only its closing request
differs (reflect.py): a local reflector's prefix cache then reads the long evidence once per step.
Long replies and tool outputs are clipped with a marker, and groups are dropped from the end until
the prompt fits the reflector's window.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from .rewards import extract_answer
from .rollout import episode_stats, failed_steps, is_episode
from .text import elide
from .tools import OUTPUT_HEADER, TOOLS, structured_call
from .types import Lesson, Rollout, Task, ToolCall

REFLECT_SYSTEM = ("You coach a small AI assistant. You read its attempts at tasks, with the correct answers, and "
                  "write short, general lessons that will make its next attempts correct.")

# Every reflector prompt of a step opens with the same evidence (instruction, lessons, scored attempts, tallies) and
# only its closing request differs: a local reflector's prefix cache then reads the long evidence once per step.
EVIDENCE_PROMPT = """The assistant works under this instruction (its whole system prompt):
<instruction>
{instruction}
</instruction>

Lessons it already follows:
{lessons}

Below are its attempts at {n_tasks} tasks, each scored by an automatic checker (1 = correct, 0 = wrong).

{groups}
{tally}
"""

MAX_ATTEMPT_CHARS = 700  # a single reply, head and tail kept
MAX_REPLY_CHARS = 700    # a reply in a rendered trajectory, likewise
MAX_TOOL_CHARS = 300   # a tool's output, clipped harder: the reflector needs its gist, not every line


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
            lines.append(f"Step {step}, the assistant:\n{elide(body.strip() or '(empty reply)', MAX_REPLY_CHARS, 'reply')}")
        else:
            text = str(m.get("content") or "").strip()
            text = text.removeprefix(OUTPUT_HEADER).strip() or "(no output)"
            lines.append(f"Step {step}, the tool answered:\n{elide(text, MAX_TOOL_CHARS, 'tool output')}")
    return "\n".join(lines)


def order_groups(rollouts: Sequence[Rollout]) -> list[list[Rollout]]:
    """Group by task; mixed-reward groups first (widest spread first), then all-wrong; drop all-right groups."""
    by_task: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        by_task[r.task_id].append(r)
    mixed, wrong = [], []
    for group in by_task.values():
        values = [r.score.value for r in group]
        if max(values) > min(values):
            mixed.append(sorted(group, key=lambda r: -r.score.value))
        elif max(values) < 1.0:
            wrong.append(group)
    mixed.sort(key=lambda g: -(g[0].score.value - g[-1].score.value))
    return mixed + wrong


def clip_reply(text: str) -> str:
    """A single reply as the reflector reads it: head and tail of a long one."""
    return elide(text.strip() or "(empty answer)", MAX_ATTEMPT_CHARS)


def render_group(i: int, task: Task, group: Sequence[Rollout]) -> str:
    """A task with at most two attempts: the best and the worst (a contrast), or one if all scored the same."""
    picks = [group[0], group[-1]] if group[0].score.value != group[-1].score.value else [group[0]]
    seen = next((r for r in group if r.purpose == "traffic"), None)  # the reply an application got, with its feedback
    if seen is not None and seen not in picks:  # shown in place of a replay that scored the same: its words teach more
        picks = [seen if p.score.value == seen.score.value else p for p in picks]
    # a task scored by a judge has no reference answer: nothing to show
    parts = [f"### Task {i}\nQuestion: {task.prompt}" + (f"\nCorrect answer: {task.answer}" if task.answer else "")]
    for label, r in zip("AB", picks):
        verdict = "correct" if r.score.value >= 1.0 else ("partly correct" if r.score.value > 0 else "wrong")
        length = r.completion_tokens or len(r.completion.split())
        said = "feedback" if r.purpose == "traffic" else "checker"
        parts.append(f"Attempt {label} (score {r.score.value:g}, {verdict}, {length} tokens; {said}: {r.score.feedback}):\n"
                     f"{render_trajectory(r.messages) if is_episode(r) else clip_reply(r.completion)}")
    return "\n\n".join(parts)


def fit_groups(build: Callable[[Sequence[Sequence[Rollout]]], list[dict]], groups: Sequence[Sequence[Rollout]],
               count_tokens: Callable[[str], int], limit: int) -> tuple[list[dict], int]:
    """The reflector's messages with as many groups as fit in `limit` tokens (dropping the last ones first),
    and how many groups were kept. One group is always kept: its attempts and tool outputs are clipped
    already, so only a question longer than the window could still overflow it."""
    kept = len(groups)
    while True:
        msgs = build(groups[:kept])
        if kept <= 1 or sum(count_tokens(m["content"]) for m in msgs) <= limit:
            return msgs, kept
        kept -= 1


MAX_TALLY_LABELS = 6  # answers that take more distinct values than this are not labels worth counting


def final_label(text: str) -> str:
    """The answer an attempt ended on: its 'Answer:' line, else the last 'answer (is) X' in the text."""
    label = extract_answer(text)
    if not label:
        found = re.findall(r'answer"?\s*(?:is\s*)?[:=]?\s*(\(?[A-Za-z0-9/-]+\)?)', text, re.IGNORECASE)
        label = found[-1] if found else ""
    return label.strip().rstrip(".")[:20] or "no answer"


def answer_tally(batch: Sequence[Rollout], tasks: dict[str, Task]) -> str:
    """One line comparing the assistant's final answers with the correct ones over the whole batch, when answers
    are short labels (a number, an option): a skew such as answering 2 nearly every time is a mistake that no
    single attempt shows. '' when the answers are not labels."""
    gold = Counter(tasks[r.task_id].answer.strip() for r in batch)
    if not batch or len(gold) > MAX_TALLY_LABELS or any(len(a) > 12 or not a for a in gold):
        return ""
    given = Counter(final_label(r.completion) for r in batch)

    def fmt(c: Counter) -> str:
        return ", ".join(f"{k} ({v} times)" for k, v in c.most_common(MAX_TALLY_LABELS))
    return (f"\nOver all {len(batch)} attempts of this round, the assistant's final answers were: {fmt(given)}; "
            f"the correct answers were: {fmt(gold)}.\n")


def tool_tally(batch: Sequence[Rollout], tools: Sequence[str]) -> str:
    """For episodes with tools: how often the round's attempts called a tool and how those fared, against the
    attempts that answered without one. Which step mattered shows across attempts, not in any one of them."""
    if not tools or not batch:
        return ""
    stats = [(episode_stats(r), r) for r in batch]
    used = [(s, r) for s, r in stats if s["tool_calls"]]
    bare = [r for s, r in stats if not s["tool_calls"]]
    errors = sum(len(failed_steps(r.messages)) for _, r in used)
    return (f"\nTools over all {len(batch)} attempts of this round: {len(used)} called a tool "
            f"({sum(r.score.value >= 1 for _, r in used)} of them correct; {errors} calls ended in a tool error), "
            f"{len(bare)} answered without one ({sum(r.score.value >= 1 for r in bare)} correct). The assistant can "
            f"call: {', '.join(tools)}. A lesson may say when to call a tool and exactly what to run in it, or name "
            f"the step of an attempt that went wrong and say what to do at that step instead.\n")


def length_tally(batch: Sequence[Rollout], max_tokens: int) -> str:
    """How long the correct and the wrong attempts were, and how many ran into the length limit: whether to ask
    for more working or less shows over the whole round, not in any one attempt."""
    def mean(rs: list[Rollout]) -> str:
        return f"{sum(r.completion_tokens for r in rs) / len(rs):.0f} tokens" if rs else "none"
    right = [r for r in batch if r.score.value >= 1.0]
    wrong = [r for r in batch if r.score.value < 1.0]
    cut = sum(r.completion_tokens >= max_tokens for r in batch)
    if not batch or not max_tokens or not any(r.completion_tokens for r in batch):
        return ""
    return (f"Length of the replies this round: correct ones {mean(right)} on average, wrong ones {mean(wrong)}; "
            f"{cut} of {len(batch)} were cut off at the limit of {max_tokens} tokens.\n")


def evidence(instruction: str, lessons: Sequence[Lesson], groups: Sequence[Sequence[Rollout]],
             tasks: dict[str, Task], batch: Sequence[Rollout] = (), tools: Sequence[str] = (),
             max_tokens: int = 0) -> str:
    """The opening every reflector prompt of a step shares: `batch` (every rollout of the round, shown or not)
    adds the answer tally, with `tools` the tool tally, and with `max_tokens` (the policy's limit) the length tally."""
    lesson_list = "\n".join(f"{x.id}. {x.text}" for x in lessons) or "(none yet)"
    body = "\n\n".join(render_group(i, tasks[g[0].task_id], g) for i, g in enumerate(groups, 1))
    tally = answer_tally(batch, tasks) + tool_tally(batch, tools) + length_tally(batch, max_tokens)
    return EVIDENCE_PROMPT.format(instruction=instruction, lessons=lesson_list, n_tasks=len(groups), groups=body,
                                  tally=tally)


def reflector_messages(user: str) -> list[dict]:
    """The chat the reflector is asked in: its one system prompt, then the request."""
    return [{"role": "system", "content": REFLECT_SYSTEM}, {"role": "user", "content": user}]
