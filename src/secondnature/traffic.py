"""An application's traffic as the loop's nouns: a recorded call with its feedback is a scored rollout, and the
requests of one scope are a task set whose tasks replay the application's own messages.

Feedback is combined so that what a person said last about a reply counts: the newest value given on the call
itself, else the newest given on its conversation. Every comment, demonstration and judge rationale becomes the
feedback text reflection reads, newest last."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from .inject import content_text, own_system
from .store import LessonStore
from .store import traffic as db
from .types import Call, Feedback, Reward, Rollout, Score, Task, TaskSet

# a scope's name fits a header, a URL and a command line: serve and the trace importer both hold names to it
SCOPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:+-]{0,79}$")
DEFAULT_SCOPE = "default"  # a request (or a logged call) that names no scope and resembles none
THUMBS = {"up": 1.0, "down": 0.0, True: 1.0, False: 0.0, "+1": 1.0, "-1": 0.0}  # 1 and 0 hash as True and False


def feedback_value(score: object = None, thumbs: object = None) -> float | None:
    """A feedback value in [0, 1] from a score or thumbs; None when neither is given. ValueError says what is wrong."""
    if score is not None and thumbs is not None:
        raise ValueError("give a score or thumbs, not both")
    if thumbs is not None:
        key = thumbs.strip().lower() if isinstance(thumbs, str) else thumbs
        if key not in THUMBS:
            raise ValueError(f"thumbs must be 'up' or 'down' (or true/false), not {thumbs!r}")
        return THUMBS[key]
    if score is None:
        return None
    if isinstance(score, bool):
        return float(score)
    try:
        value = float(score)  # a string such as "0.5" from a form or the command line
    except (TypeError, ValueError):
        raise ValueError(f"score must be a number in [0, 1], not {score!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"score must be a number in [0, 1], not {score!r}; rescale a 1-5 or 1-10 rating first")
    return value


FEEDBACK_SOURCES = ("person", "app", "judge", "majority", "checker")
MAX_FEEDBACK_TEXT = 20_000  # characters of a comment or demonstration


def parse_feedback(body: Mapping, sources: Sequence[str] = FEEDBACK_SOURCES) -> Feedback:
    """A feedback request (serve's `/v1/feedback` body, or the MCP tool's arguments) as the store keeps it. ValueError
    says what is wrong and how to send it. Whether the call or conversation exists is the caller's to check."""
    call_id, conversation = body.get("id") or body.get("call_id") or "", body.get("conversation") or ""
    if not isinstance(call_id, str) or not isinstance(conversation, str):
        raise ValueError("'id' and 'conversation' must be strings")
    if not call_id and not conversation:
        raise ValueError("say what the feedback is about: 'id' (a response's id) or 'conversation'")
    value = feedback_value(body.get("score"), body.get("thumbs"))
    comment, demonstration = body.get("comment") or "", body.get("demonstration") or ""
    if not isinstance(comment, str) or not isinstance(demonstration, str):
        raise ValueError("'comment' and 'demonstration' must be strings")
    if value is None and not comment.strip() and not demonstration.strip():
        raise ValueError("send a 'score' in [0, 1], 'thumbs' ('up' or 'down'), a 'comment' or a 'demonstration'")
    if len(comment) > MAX_FEEDBACK_TEXT or len(demonstration) > MAX_FEEDBACK_TEXT:
        raise ValueError(f"a comment or demonstration may be at most {MAX_FEEDBACK_TEXT} characters")
    source = body.get("source") or "person"
    if source not in sources:
        raise ValueError(f"'source' must be one of {', '.join(sources)}")
    return Feedback(call_id, conversation if not call_id else "", value, comment, demonstration, source)


def score_of(call: Call, feedback: Sequence[Feedback]) -> Score | None:
    """The call's score from its feedback (None when nothing gave a value), with every comment as its text."""
    own = [f for f in feedback if f.call_id == call.id and f.value is not None]
    episode = [f for f in feedback if not f.call_id and f.value is not None]
    chosen = (own or episode or [None])[-1]
    if chosen is None:
        return None
    return Score(float(chosen.value), feedback_text(feedback))


def feedback_text(feedback: Sequence[Feedback]) -> str:
    parts = []
    for f in feedback:
        who = f.source if f.source != "person" else "a person"
        if f.comment:
            parts.append(f"{who} said: {f.comment}")
        if f.demonstration:
            parts.append(f"{who} showed a better reply: {f.demonstration}")
    return "; ".join(parts)


def last_user_text(messages: Sequence[dict]) -> str:
    """The text of the last user message (content parts joined): what a request asks, for routing and display."""
    return next((content_text(m.get("content"), "\n") for m in reversed(messages) if m.get("role") == "user"), "")


def as_rollout(call: Call, score: Score) -> Rollout:
    """A recorded call as a rollout: the application's messages and the reply it got, scored by its feedback."""
    messages = (*call.messages, {"role": "assistant", "content": call.reply})
    return Rollout(f"r{call.id[-15:]}", call.id, messages, call.reply, score, call.lesson_ids, call.model, 0, -1,
                   call.prompt_tokens, call.completion_tokens, call.latency_s, call.error, "traffic")


def as_task(call: Call, score: Score | None = None, demonstration: str = "") -> Task:
    """A recorded request as a task: replayed with its own messages; a demonstration, if a person gave one, is its
    reference; the reply it got is the anchor a pairwise judge compares against, and with its score it is what
    reflection is shown beside the replays."""
    meta: dict = {"messages": list(call.messages), "anchor": call.reply, "scope": call.scope}
    if score is not None:
        meta["observed"] = as_rollout(call, score)
    return Task(call.id, last_user_text(call.messages), demonstration, meta)


def traffic_taskset(scope: str, scored: Sequence[tuple[Call, Score | None, Sequence[Feedback]]],
                    reward: Reward) -> TaskSet:
    """A scope's recorded requests as a task set scored by `reward` (a judge, or the application's checker). Each
    request carries its own system prompt; when they all share one it is the task set's instruction, so reflection
    reads it (a replay does not send it twice: rollout.messages_for)."""
    tasks = tuple(as_task(call, score, next((f.demonstration for f in reversed(fb) if f.demonstration), ""))
                  for call, score, fb in scored)
    prompts = {own_system(call.messages) for call, _, _ in scored}
    return TaskSet(scope, tasks, reward, prompts.pop() if len(prompts) == 1 else "")


def learnable_calls(store: LessonStore, scope: str, max_calls: int | None = None) -> list[Call]:
    """A scope's finished calls with a reply that may be learned from: the newest `max_calls`, oldest first."""
    calls = [c for c in db.calls(store, scope, status="done", learnable=True) if c.reply.strip()]
    return calls[-max_calls:] if max_calls else calls


def recorded_taskset(store: LessonStore, scope: str, reward: Reward, *, calls: Sequence[Call] | None = None,
                     with_demonstration: bool = False) -> TaskSet:
    """A scope's calls (`calls`, else all its `learnable_calls`), with their feedback, as a task set scored by
    `reward`. `with_demonstration`: only calls a person gave a better reply for, whose demonstration is then the
    reference a checker compares with."""
    calls = learnable_calls(store, scope) if calls is None else calls
    scored = [(c, score_of(c, fb), fb) for c in calls for fb in [db.feedback(store, c)]]
    if with_demonstration:
        scored = [s for s in scored if any(f.demonstration for f in s[2])]
    return traffic_taskset(scope, scored, reward)


def observed(tasks: Sequence[Task]) -> list[Rollout]:
    """The recorded replies (with the application's feedback) of a step's tasks, shown to reflection beside the
    replays: the words a person wrote about a reply reach the reflector this way."""
    return [t.metadata["observed"] for t in tasks if isinstance(t.metadata.get("observed"), Rollout)]
