"""Traffic in the store: the calls `serve` forwarded (or an application's logs held) and the feedback that scores
them later. A call is written when it starts (status "open") and finished when its reply ends, so a server killed
mid-reply leaves the request on record; feedback is one row per verdict, never overwritten."""
from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace

from ..types import Call, Feedback
from . import backend
from .errors import guarded
from .rows import now
from .sqlite import LessonStore

CALL_COLUMNS = ("id, scope, model, messages, params, reply, tool_calls, status, revision, lesson_ids, conversation, "
                "prompt_tokens, completion_tokens, latency_s, error, learn, source, created_at, updated_at, cost")
PLACES = ",".join("?" * 20)


def new_call_id() -> str:
    """An id in the form OpenAI's chat completions use, unique across servers and restarts."""
    return "chatcmpl-sn" + uuid.uuid4().hex[:24]


def _row(c: Call) -> tuple:
    t = c.created_at or now()
    return (c.id, c.scope, c.model, json.dumps(c.messages), json.dumps(c.params), c.reply, json.dumps(c.tool_calls),
            c.status, c.revision, json.dumps(c.lesson_ids), c.conversation, c.prompt_tokens, c.completion_tokens,
            c.latency_s, c.error, int(c.learn), c.source, t, now(), c.cost)


@guarded
def open_call(store: LessonStore, c: Call) -> None:
    """Record a call as its request arrives."""
    with store.transaction() as db:
        db.execute(f"INSERT INTO calls ({CALL_COLUMNS}) VALUES ({PLACES})", _row(c))


@guarded
def finish_call(store: LessonStore, call_id: str, *, reply: str, tool_calls: Sequence[dict] = (), status: str = "done",
                prompt_tokens: int = 0, completion_tokens: int = 0, latency_s: float = 0.0, error: str = "",
                cost: float | None = None) -> None:
    """Record how a call ended: its reply (whole, or as far as a broken stream got), tokens, latency, error."""
    with store.transaction() as db:
        db.execute("UPDATE calls SET reply=?, tool_calls=?, status=?, prompt_tokens=?, completion_tokens=?, "
                   "latency_s=?, error=?, cost=?, updated_at=? WHERE id=?",
                   (reply, json.dumps(list(tool_calls)), status, prompt_tokens, completion_tokens, latency_s, error,
                    cost, now(), call_id))


@guarded
def add_calls(store: LessonStore, calls: Sequence[Call]) -> int:
    """Record finished calls (an import); a call whose id is already there is kept as it is. How many were new."""
    sql = backend.upsert(store.postgres, "calls", CALL_COLUMNS.split(", "), "id", keep=True)
    with store.transaction() as db:
        return db.executemany(sql, [_row(c) for c in calls]).rowcount if calls else 0  # the rows it inserted


@guarded
def get_call(store: LessonStore, call_id: str) -> Call | None:
    r = store.db.execute(f"SELECT {CALL_COLUMNS} FROM calls WHERE id=?", (call_id,)).fetchone()
    return _call(r) if r else None


@guarded
def calls(store: LessonStore, scope: str | None = None, *, conversation: str | None = None, status: str | None = None,
          learnable: bool = False, limit: int | None = None, offset: int = 0, newest_first: bool = False) -> list[Call]:
    """A scope's (or every scope's) calls in the order they arrived."""
    where, args = [], []
    for column, value in (("scope", scope), ("conversation", conversation), ("status", status)):
        if value is not None:
            where.append(f"{column}=?")
            args.append(value)
    if learnable:
        where.append("learn=1")
    sql = f"SELECT {CALL_COLUMNS} FROM calls" + (f" WHERE {' AND '.join(where)}" if where else "")
    sql += f" ORDER BY created_at {'DESC' if newest_first else 'ASC'}, rowid {'DESC' if newest_first else 'ASC'}"
    if limit is not None or offset:  # no LIMIT is "all" on both backends (SQLite needs one before an OFFSET)
        sql += f" LIMIT {int(limit) if limit is not None else 2 ** 62} OFFSET {int(offset)}"
    return [_call(r) for r in store.db.execute(sql, args)]


@guarded
def traffic_scopes(store: LessonStore) -> list[str]:
    return [r[0] for r in store.db.execute("SELECT DISTINCT scope FROM calls ORDER BY scope")]


@guarded
def add_feedback(store: LessonStore, f: Feedback) -> Feedback:
    """Record one verdict on a call or a conversation; returns it with its id and time."""
    t = f.created_at or now()
    with store.transaction() as db:
        fid = backend.insert_id(db, store.postgres, "INSERT INTO feedback (call_id, conversation, value, comment, "
                                "demonstration, source, created_at) VALUES (?,?,?,?,?,?,?)",
                                (f.call_id, f.conversation, f.value, f.comment, f.demonstration, f.source, t))
    return replace(f, id=fid, created_at=t)


@guarded
def feedback(store: LessonStore, call: Call | None = None, *, conversation: str | None = None) -> list[Feedback]:
    """The feedback given on a call (and on its conversation), or on a conversation, oldest first."""
    if call is not None:
        rows = store.db.execute("SELECT * FROM feedback WHERE call_id=? OR (conversation!='' AND conversation=?) "
                                "ORDER BY id", (call.id, call.conversation))
    else:
        rows = store.db.execute("SELECT * FROM feedback WHERE conversation=? ORDER BY id", (conversation or "",))
    return [Feedback(r["call_id"], r["conversation"], r["value"], r["comment"], r["demonstration"], r["source"],
                     r["id"], r["created_at"]) for r in rows]


@guarded
def scored_ids(store: LessonStore, scope: str) -> set[str]:
    """Ids of a scope's calls that have feedback with a value (on the call or its conversation)."""
    rows = store.db.execute(
        "SELECT c.id FROM calls c JOIN feedback f ON f.value IS NOT NULL AND (f.call_id=c.id OR "
        "(f.conversation!='' AND f.conversation=c.conversation)) WHERE c.scope=?", (scope,))
    return {r[0] for r in rows}


def _call(r) -> Call:
    return Call(r["id"], r["scope"], r["model"], tuple(json.loads(r["messages"])), json.loads(r["params"]), r["reply"],
                tuple(json.loads(r["tool_calls"])), r["status"], r["revision"], tuple(json.loads(r["lesson_ids"])),
                r["conversation"], r["prompt_tokens"] or 0, r["completion_tokens"] or 0, r["latency_s"] or 0.0,
                r["error"], bool(r["learn"]), r["source"], r["created_at"], r["cost"])
