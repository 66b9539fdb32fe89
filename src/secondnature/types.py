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
    """One change to a lesson set: add (text), edit (id + text), delete (id), or rewrite (text: all the rules
    replaced by one paragraph; worked examples stay)."""

    op: str
    text: str = ""
    id: str = ""


@dataclass(frozen=True)
class Reflection:
    """One reflector call: what it was shown and asked, its raw answer, the edits parsed from it and why the rest
    was dropped. Kept in the store as the evidence behind every lesson it led to."""

    id: str
    model: str
    prompt: str
    raw: str
    rollout_ids: tuple[str, ...] = ()
    edits: tuple[Edit, ...] = ()
    notes: str = ""            # what the parser or the screen refused, and why
    tokens: int = 0            # prompt + completion tokens


@dataclass(frozen=True)
class Candidate:
    """A proposed revision: the edit, the whole lesson set it would make (new lessons still without their store
    id), which proposer made it, and the reflection and rollouts it came from."""

    edit: Edit
    lessons: tuple[Lesson, ...]
    kind: str                  # the proposer: "edit", "example", "demo", "rewrite", or a user's own
    reflection_id: str = ""
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateRecord:
    """One gate decision as the store keeps it: what was proposed, the paired scores, the verdict and why."""

    scope: str
    proposed: tuple[Edit, ...]
    n: int
    current_score: float
    proposed_score: float
    wins: int
    losses: int
    p_value: float
    decision: str              # "accepted" or "rejected"
    reason: str
    run_id: int | None = None
    step: int | None = None
    candidate: int | None = None  # its place among the step's candidates: a resumed step rewrites, never repeats
    current_revision: int | None = None
    reflection_id: str = ""
    revision_id: int | None = None  # the revision an accepted gate made
    id: int | None = None           # the store's, once recorded
    created_at: str = ""


@dataclass(frozen=True)
class Call:
    """One chat call an application made through `serve` (or logged itself and imported): a rollout whose reward
    arrives later as feedback. `messages` are the application's own, before lessons were injected; `params` the
    rest of its request (model, temperature, tools, ...), passed upstream untouched."""

    id: str
    scope: str
    model: str
    messages: tuple[dict, ...]
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    reply: str = ""
    tool_calls: tuple[dict, ...] = ()
    status: str = "open"          # open (reply under way), done, broken (the stream ended early), error
    revision: int | None = None   # the scope's revision whose lessons were in context
    lesson_ids: tuple[str, ...] = ()
    conversation: str = ""        # an episode: feedback may be given for all its calls at once
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str = ""
    learn: bool = True            # False: the application asked that this call not be learned from
    source: str = "serve"         # serve, or the log format it was imported from
    created_at: str = ""
    cost: float | None = None     # as the upstream reported it, or from the token prices serve was given


@dataclass(frozen=True)
class Feedback:
    """A reward that arrived after the reply, for one call or a whole conversation: a value in [0, 1] (thumbs up is
    1, down 0), and the text reflection reads (a comment, a judge's rationale, a demonstration of a better reply)."""

    call_id: str = ""
    conversation: str = ""
    value: float | None = None
    comment: str = ""
    demonstration: str = ""
    source: str = "person"        # person, app, judge, majority, checker, import
    id: int | None = None
    created_at: str = ""
