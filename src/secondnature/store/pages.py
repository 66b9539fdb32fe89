"""Pages of the store for a person to read (the web page): one page of lessons, rollouts, gates or calls at a time,
filtered and counted in SQL, so a store of a million rows shows its first page as fast as one of ten."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..types import Call, GateRecord, Lesson, Rollout
from . import backend
from .errors import guarded
from .rows import _gate, _lesson, _rollout, query_words
from .sqlite import LessonStore
from .traffic import CALL_COLUMNS, _call

T = TypeVar("T")
PAGE = 50


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: tuple[T, ...]
    total: int       # rows matching the filter, on every page
    page: int        # 1-based
    size: int = PAGE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def _where(filters: Sequence[tuple[str, object]]) -> tuple[str, list]:
    """` WHERE a=? AND b=?` for the filters whose value is given."""
    used = [(sql, v) for sql, v in filters if v not in (None, "")]
    return (" WHERE " + " AND ".join(sql for sql, _ in used) if used else ""), [v for _, v in used]


def _paged(store: LessonStore, table: str, where: str, args: list, order: str, page: int, size: int,
           columns: str = "*") -> tuple[list, int]:
    total = store.db.execute(f"SELECT COUNT(*) FROM {table}{where}", args).fetchone()[0]
    page = min(max(1, page), max(1, -(-total // size)))
    rows = store.db.execute(f"SELECT {columns} FROM {table}{where} ORDER BY {order} LIMIT ? OFFSET ?",
                            [*args, size, (page - 1) * size]).fetchall()
    return rows, total


@guarded
def lessons(store: LessonStore, *, scope: str | None = None, status: str | None = None, query: str = "",
            starts: str | None = None, starts_not: Sequence[str] = (), page: int = 1, size: int = PAGE) -> Page[Lesson]:
    """Lessons newest first; `query` searches their text and tags (full text, every word a word's start), `starts`
    and `starts_not` keep the texts that begin (or do not begin) with a prefix: a kind of lesson."""
    filters: list[tuple[str, object]] = [("scope=?", scope), ("status=?", status)]
    if words := query_words(query):
        filters.append((f"id IN (SELECT id FROM lesson_index WHERE {backend.matches(store.postgres, 'lesson_index')})",
                        backend.all_starts(store.postgres, words)))
    filters += [(f"substr(text, 1, {len(p)}) = ?", p) for p in [starts] if p]
    filters += [(f"substr(text, 1, {len(p)}) != ?", p) for p in starts_not]
    where, args = _where(filters)
    rows, total = _paged(store, "lessons", where, args, "seq DESC", page, size)
    return Page(tuple(_lesson(r) for r in rows), total, max(1, page), size)


@guarded
def rollouts(store: LessonStore, *, scope: str | None = None, purpose: str | None = None, task: str | None = None,
             page: int = 1, size: int = PAGE) -> Page[Rollout]:
    where, args = _where([("scope=?", scope), ("purpose=?", purpose), ("task_id=?", task)])
    rows, total = _paged(store, "rollouts", where, args, "rowid DESC", page, size)
    return Page(tuple(_rollout(r) for r in rows), total, max(1, page), size)


@guarded
def scopes(store: LessonStore) -> list[str]:
    """Every scope the store knows: learned in, committed to, or holding lessons (a run may have kept none yet)."""
    rows = store.db.execute("SELECT scope FROM runs UNION SELECT scope FROM revisions UNION SELECT scope FROM lessons "
                            "ORDER BY 1")
    return [r[0] for r in rows]


@guarded
def gates(store: LessonStore, *, scope: str | None = None, decision: str | None = None, page: int = 1,
          size: int = PAGE) -> Page[GateRecord]:
    where, args = _where([("scope=?", scope), ("decision=?", decision)])
    rows, total = _paged(store, "gates", where, args, "id DESC", page, size)
    return Page(tuple(_gate(r) for r in rows), total, max(1, page), size)


@guarded
def gate(store: LessonStore, gate_id: int) -> GateRecord | None:
    r = store.db.execute("SELECT * FROM gates WHERE id=?", (gate_id,)).fetchone()
    return _gate(r) if r else None


@guarded
def calls(store: LessonStore, *, scope: str | None = None, page: int = 1, size: int = PAGE) -> Page[Call]:
    where, args = _where([("scope=?", scope)])
    rows, total = _paged(store, "calls", where, args, "created_at DESC, rowid DESC", page, size, CALL_COLUMNS)
    return Page(tuple(_call(r) for r in rows), total, max(1, page), size)


@guarded
def feedback_counts(store: LessonStore, call_ids: Sequence[str]) -> dict[str, tuple[int, float | None]]:
    """(verdicts, mean value) per call, for a page of calls."""
    if not call_ids:
        return {}
    marks = ",".join("?" * len(call_ids))
    rows = store.db.execute(f"SELECT call_id, COUNT(*), AVG(value) FROM feedback WHERE call_id IN ({marks}) "
                            f"GROUP BY call_id", list(call_ids))
    return {r[0]: (r[1], r[2]) for r in rows}


@guarded
def val_rollouts(store: LessonStore, run_id: int) -> list[Rollout]:
    """A run's validation rollouts: the items every gate of the run was decided on."""
    rows = store.db.execute("SELECT * FROM rollouts WHERE run_id=? AND purpose='val' ORDER BY rowid", (run_id,))
    return [_rollout(r) for r in rows]


@guarded
def holding(store: LessonStore, scope: str) -> dict[str, list[int]]:
    """Each lesson id of a scope -> the revisions that held it, oldest first (one read of the scope's revisions)."""
    out: dict[str, list[int]] = {}
    for rev_id, ids in store.db.execute("SELECT id, lesson_ids FROM revisions WHERE scope=? ORDER BY id", (scope,)):
        for lid in json.loads(ids):
            out.setdefault(lid, []).append(rev_id)
    return out


@guarded
def accepted_by(store: LessonStore, revision_id: int) -> GateRecord | None:
    """The accepted gate that made a revision, if a gate made it."""
    r = store.db.execute("SELECT * FROM gates WHERE revision_id=? AND decision='accepted'", (revision_id,)).fetchone()
    return _gate(r) if r else None


@guarded
def runs(store: LessonStore, limit: int = 200) -> list[dict]:
    """The newest learning runs, as rows."""
    return [dict(r) for r in store.db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))]
