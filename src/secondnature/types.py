"""The nouns of the loop as frozen dataclasses. No IO here: everything else passes these around."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Task:
    """One problem instance. `answer` is the reference the reward compares against."""

    id: str
    prompt: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Score:
    """A reward's verdict: value in [0, 1] and one sentence a reflector can learn from."""

    value: float
    feedback: str = ""


Reward = Callable[[Task, str], Score]


@dataclass(frozen=True)
class TaskSet:
    """A named collection of tasks with its reward and the base instruction the policy always sees."""

    name: str
    tasks: tuple[Task, ...]
    reward: Reward
    instruction: str
    tools: tuple[str, ...] = ()  # ("python",): every attempt is an episode with the sandboxed Python tool


@dataclass(frozen=True)
class ToolCall:
    """A call the model made in the chat tool-calling format; `arguments` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """One sampled answer with its cost. `error` is set (and text empty) when the call failed."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str = ""
    cached: bool = False
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Rollout:
    """One attempt at a task, with the lessons that were in context and its score."""

    id: str
    task_id: str
    messages: tuple[dict, ...]
    completion: str
    score: Score
    lesson_ids: tuple[str, ...]
    model: str
    seed: int
    sample: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str = ""
    purpose: str = "train"


@dataclass(frozen=True)
class Lesson:
    """One itemized piece of advice. Immutable: an edit makes a new lesson whose `parent` is the old one."""

    id: str
    text: str
    scope: str
    evidence: tuple[str, ...] = ()
    reflection_id: str = ""
    parent: str = ""
    uses: int = 0
    gain: float = 0.0
    status: str = "active"
    tags: tuple[str, ...] = ()   # words that say what the lesson is about, beside its scope (for retrieval)
    loo: float | None = None     # leave-one-out effect on val accuracy, measured by curation (None: not yet)
    loo_n: int = 0               # paired items behind `loo`
    note: str = ""               # why it was retired, when it was


@dataclass(frozen=True)
class Revision:
    """An immutable version of a scope's lesson set. Restoring an old one makes a new revision."""

    id: int
    scope: str
    lesson_ids: tuple[str, ...]
    parent: int | None = None
    note: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class Edit:
    """One change a reflector proposes: add (text), edit (id + text), delete (id), or rewrite (text: all rules
    replaced by one)."""

    op: str
    text: str = ""
    id: str = ""
