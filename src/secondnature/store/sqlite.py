"""The lesson store's queries, on one SQLite file (WAL) or a PostgreSQL database: base.py opens either and holds
the write transaction, schema.py the named migrations. With traffic.py and pages.py beside it, this is the only SQL
in the package; a query is one text for both backends, and the few that differ are in backend.py.

Rollouts and reflections are kept because they are the evidence behind every lesson. Lessons are
immutable rows (an edit adds a row whose `parent` is the old one); a revision is an immutable list
of lesson ids for a scope, and the newest revision of a scope is its head. Accepting a revision
writes its lessons, the revision, its gate record and the run's progress in one transaction, so a
killed process leaves either all of it or none.

Several processes may write one store (a learn run while lessons are edited by hand; learners and proxies on one
PostgreSQL server): a writer names the head it read when it commits (`parent`), and the check and the commit happen
under the store's write lock (base.py), so a change made on an old head is never committed as if the newer one did
not exist.
"""
from __future__ import annotations

import json
import os
import sqlite3  # noqa: F401  (the backend's module, reachable as before: tests patch sqlite3.connect through it)
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import EllipsisType
from typing import Any

from ..types import Completion, GateRecord, Lesson, Reflection, Revision, Rollout, ToolCall
from . import backend, postgres
from .base import APP_ID, BUSY_TIMEOUT_S, StoreBase, default_path
from .errors import HeadMoved, StoreError, guard
from .rows import _gate, _lesson, _revision, _rollout, index_words, now, query_words, rebased

__all__ = ["APP_ID", "BUSY_TIMEOUT_S", "LessonStore", "default_path", "fresh_store", "open_store", "rebased"]
RARE_MAX_DOCS = 1_000  # prompts a routing search may rank by its rarer words (the rarest is always searched)
COMPLETION_COLUMNS = ("key", "text", "prompt_tokens", "completion_tokens", "latency_s", "created_at", "tool_calls")
ROLLOUT_COLUMNS = ("id", "run_id", "scope", "task_id", "messages", "completion", "score", "feedback", "lesson_ids",
                   "model", "seed", "sample", "prompt_tokens", "completion_tokens", "latency_s", "error", "purpose",
                   "created_at")
REFLECTION_COLUMNS = ("id", "run_id", "scope", "model", "rollout_ids", "prompt", "raw", "edits", "parse_error",
                      "created_at")
GATE_COLUMNS = ("run_id", "scope", "current_revision", "proposed", "reflection_id", "n", "current_score",
                "proposed_score", "wins", "losses", "p_value", "decision", "reason", "revision_id", "created_at", "step",
                "candidate")


@guard  # every public method says what a full disk, a read-only place or a damaged file means, and the fix
class LessonStore(StoreBase):
    """The store: lessons, revisions, gates, runs, rollouts, reflections and the completion cache. Stateful (a
    connection), so a class; every method is one short query."""

    def get_completion(self, key: str) -> Completion | None:
        r = self._cache().execute("SELECT * FROM completions WHERE key=?", (key,)).fetchone()
        if r is None:
            return None
        calls = tuple(ToolCall(**t) for t in json.loads(r["tool_calls"]))
        return Completion(r["text"], r["prompt_tokens"], r["completion_tokens"], r["latency_s"], cached=True,
                          tool_calls=calls)

    def put_completion(self, key: str, c: Completion) -> None:
        sql = backend.upsert(self.postgres, "completions", COMPLETION_COLUMNS, "key")
        self._cache().execute(sql, (key, c.text, c.prompt_tokens, c.completion_tokens, c.latency_s, now(),
                                    json.dumps([asdict(t) for t in c.tool_calls])))

    # ------------------------------------------------------------ rollouts and reflections
    def add_rollouts(self, rollouts: list[Rollout], *, run_id: int | None = None, scope: str = "") -> None:
        with self.transaction() as db:
            db.executemany(
                backend.upsert(self.postgres, "rollouts", ROLLOUT_COLUMNS, "id"),
                [(r.id, run_id, scope, r.task_id, json.dumps(r.messages), r.completion, r.score.value, r.score.feedback,
                  json.dumps(r.lesson_ids), r.model, r.seed, r.sample, r.prompt_tokens, r.completion_tokens,
                  r.latency_s, r.error, r.purpose, now()) for r in rollouts])

    def rollout(self, rollout_id: str) -> Rollout | None:
        r = self.db.execute("SELECT * FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
        return _rollout(r) if r else None

    def scored(self, scope: str) -> list[tuple[str, float, tuple[str, ...], int]]:
        """(task id, sum of scores, lessons in context, attempts) of a scope's training and validation rollouts that
        ran, grouped by task and lesson set in SQL (a store of many rollouts has few such groups)."""
        rows = self.db.execute("SELECT task_id, SUM(score), lesson_ids, COUNT(*) FROM rollouts WHERE scope=? AND "
                               "purpose IN ('train','val') AND COALESCE(error,'')='' GROUP BY task_id, lesson_ids",
                               (scope,))
        return [(r[0], r[1], tuple(json.loads(r[2])), r[3]) for r in rows]

    def add_reflection(self, r: Reflection, *, run_id: int | None, scope: str) -> None:
        self.db.execute(backend.upsert(self.postgres, "reflections", REFLECTION_COLUMNS, "id"),
                        (r.id, run_id, scope, r.model, json.dumps(list(r.rollout_ids)), r.prompt, r.raw,
                         json.dumps([asdict(e) for e in r.edits]), r.notes, now()))

    def reflection(self, rid: str) -> dict | None:
        r = self.db.execute("SELECT * FROM reflections WHERE id=?", (rid,)).fetchone()
        return dict(r) if r else None

    def reflections(self, run_id: int | None = None) -> list[dict]:
        q = "SELECT * FROM reflections" + (" WHERE run_id=?" if run_id is not None else "") + " ORDER BY created_at"
        return [dict(r) for r in self.db.execute(q, (run_id,) if run_id is not None else ())]

    # ------------------------------------------------------------ lessons and revisions
    def next_lesson_id(self) -> str:
        seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM lessons").fetchone()[0]
        return f"L{seq}"

    def add_lesson(self, lesson: Lesson) -> Lesson:
        """Insert a new lesson; its id is assigned here (L1, L2, ...) so ids never collide."""
        with self.transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM lessons").fetchone()[0]
            lesson = Lesson(**{**asdict(lesson), "id": f"L{seq}"})
            db.execute("INSERT INTO lessons (id, seq, text, scope, evidence, reflection_id, parent, uses, gain, status, "
                       "created_at, tags, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (lesson.id, seq, lesson.text, lesson.scope, json.dumps(list(lesson.evidence)),
                        lesson.reflection_id, lesson.parent, lesson.uses, lesson.gain, lesson.status, now(),
                        json.dumps(list(lesson.tags)), lesson.note))
            db.execute("INSERT INTO lesson_index (id, scope, text, tags) VALUES (?,?,?,?)",
                       (lesson.id, lesson.scope, lesson.text, " ".join(lesson.tags)))
        return lesson

    def lesson(self, lesson_id: str) -> Lesson | None:
        r = self.db.execute("SELECT * FROM lessons WHERE id=?", (lesson_id,)).fetchone()
        return _lesson(r) if r else None

    def lessons(self, scope: str | None = None, status: str | None = None) -> list[Lesson]:
        q, args = "SELECT * FROM lessons WHERE 1=1", []
        if scope is not None:
            q, args = q + " AND scope=?", args + [scope]
        if status is not None:
            q, args = q + " AND status=?", args + [status]
        return [_lesson(r) for r in self.db.execute(q + " ORDER BY seq", args)]

    def credit(self, lesson_id: str, *, uses: int = 0, gain: float | None = None) -> None:
        if gain is None:
            self.db.execute("UPDATE lessons SET uses=uses+? WHERE id=?", (uses, lesson_id))
        else:
            self.db.execute("UPDATE lessons SET uses=uses+?, gain=? WHERE id=?", (uses, gain, lesson_id))

    def set_loo(self, lesson_id: str, effect: float, n: int) -> None:
        """Record a leave-one-out effect: score with the lesson minus score without it, over n paired items."""
        self.db.execute("UPDATE lessons SET loo=?, loo_n=? WHERE id=?", (effect, n, lesson_id))

    def set_status(self, lesson_id: str, status: str, note: str = "") -> None:
        """Retire (kept, with the reason, restorable) or reactivate a lesson, or decide a proposal ("rejected", with
        the gate's reason); membership is the revision's business."""
        self.db.execute("UPDATE lessons SET status=?, note=? WHERE id=?", (status, note, lesson_id))

    def commit_revision(self, scope: str, lesson_ids: Sequence[str], note: str, *,
                        parent: int | None | EllipsisType = ..., rebase: bool = False,
                        gate: GateRecord | None = None, run_progress: tuple[int, int, int] | None = None) -> Revision:
        """Make `lesson_ids` the new head of `scope`, atomically with its gate record and the run's progress.

        `parent` is the head the change was made on (its id, or None if the scope had none). If another writer has
        committed since, committing `lesson_ids` would silently drop their change, so HeadMoved is raised; or, with
        `rebase`, the change (parent -> lesson_ids) is applied to the new head instead and the note says so. Leaving
        `parent` out skips the check: only for a writer that is alone on the store (tests, setup)."""
        with self.transaction() as db:
            head = self.head(scope)
            if parent is not ... and parent != (head.id if head else None):
                if not rebase:
                    raise HeadMoved(scope, parent, head.id if head else None)
                base = self.revision(parent) if parent is not None else None
                lesson_ids = rebased(base.lesson_ids if base else (), lesson_ids, head.lesson_ids)
                made_on = f"revision {parent}" if parent is not None else "no revision (the scope was empty)"
                note += (f" (rebased onto revision {head.id}, which another writer committed meanwhile; this change "
                         f"was made, and any gate judged it, on {made_on})")
            rev_id = backend.insert_id(
                db, self.postgres, "INSERT INTO revisions (scope, parent, lesson_ids, note, created_at) VALUES "
                "(?,?,?,?,?)", (scope, head.id if head else None, json.dumps(list(lesson_ids)), note, now()))
            keep = set(lesson_ids)
            # an active lesson left out is retired; a proposal (waiting for its gate, or rejected by it) was never in
            # a head, so another change's commit leaves it as it is
            for lesson in self.lessons(scope):
                status = "active" if lesson.id in keep else ("retired" if lesson.status == "active" else lesson.status)
                if status == "active" != lesson.status:  # a lesson back in the head loses the note that said why
                    db.execute("UPDATE lessons SET status=?, note='' WHERE id=?", (status, lesson.id))
                elif status != lesson.status:
                    db.execute("UPDATE lessons SET status=? WHERE id=?", (status, lesson.id))
            if gate is not None:
                self.add_gate(replace(gate, revision_id=rev_id, decision="accepted"))
            if run_progress is not None:
                self.update_run(*run_progress)
        return self.revision(rev_id)

    def head(self, scope: str) -> Revision | None:
        rev_id = self.head_id(scope)
        return self.revision(rev_id) if rev_id else None

    def head_id(self, scope: str) -> int | None:
        """The head revision's id alone: a query's lessons are memoised by it, and reading the whole head (its list
        of lesson ids) for every query would cost in proportion to the head."""
        r = self.db.execute("SELECT id FROM revisions WHERE scope=? ORDER BY id DESC LIMIT 1", (scope,)).fetchone()
        return r[0] if r else None

    def revision(self, rev_id: int) -> Revision | None:
        r = self.db.execute("SELECT * FROM revisions WHERE id=?", (rev_id,)).fetchone()
        return _revision(r) if r else None

    def revisions(self, scope: str | None = None) -> list[Revision]:
        q = "SELECT * FROM revisions" + (" WHERE scope=?" if scope else "") + " ORDER BY id"
        return [_revision(r) for r in self.db.execute(q, (scope,) if scope else ())]

    def scopes(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT scope FROM revisions ORDER BY scope")]

    def revision_lessons(self, rev: Revision | None) -> list[Lesson]:
        if rev is None:
            return []
        found = {x.id: x for x in self._lessons_by_id(list(rev.lesson_ids))}
        return [found[lid] for lid in rev.lesson_ids if lid in found]

    def _lessons_by_id(self, ids: list[str]) -> list[Lesson]:
        rows = []
        for i in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            chunk = ids[i:i + 500]
            rows += self.db.execute(f"SELECT * FROM lessons WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return [_lesson(r) for r in rows]

    def live_lessons(self) -> list[Lesson]:
        """Every lesson in the head revision of some scope: what a query may be given."""
        heads = self.db.execute("SELECT lesson_ids FROM revisions r WHERE id = "
                                "(SELECT MAX(id) FROM revisions WHERE scope = r.scope)").fetchall()
        return sorted(self._lessons_by_id([lid for (ids,) in heads for lid in json.loads(ids)]), key=lambda x: x.scope)

    # ------------------------------------------------------------ retrieval indexes
    def index_prompts(self, scope: str, tasks: list[tuple[str, str]]) -> None:
        """Remember the (task id, prompt) pairs a scope learned on, once each: queries are routed by them."""
        with self.transaction() as db:
            have = {r[0] for r in db.execute("SELECT task_id FROM prompt_index WHERE scope=?", (scope,))}
            new = [(scope, tid, prompt) for tid, prompt in tasks if tid not in have]
            db.executemany("INSERT INTO prompt_index VALUES (?,?,?)", new)
            count_terms(db, [prompt for _, _, prompt in new])

    def prompts(self, scope: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.db.execute("SELECT task_id, prompt FROM prompt_index WHERE scope=?", (scope,))]

    def rare_words(self, query: str, k: int = 6, max_docs: int = RARE_MAX_DOCS) -> list[str]:
        """Up to k words of `query` found in the fewest indexed prompts, rarest first: the rarest always, the others
        while the prompts they are found in stay within `max_docs` ([] if no word is indexed).

        A query's rarest indexed words pick out the prompts of its own task set; a common word would make the
        search rank most of the index, so routing would slow as the store grows."""
        words = sorted(index_words(query))[:900]  # SQLite's oldest cap on bound parameters is 999
        if not words:
            return []
        sql = f"SELECT doc, term FROM prompt_terms WHERE term IN ({','.join('?' * len(words))})"
        found = sorted(tuple(r) for r in self.db.execute(sql, words))
        kept, docs = [], 0
        for doc, w in found[:k]:
            if kept and docs + doc > max_docs:
                break
            kept.append(w)
            docs += doc
        return kept

    def match_prompts(self, query: str, k: int = 10, *, rare: bool = False) -> list[tuple[str, str, float]]:
        """(scope, prompt, bm25 rank; lower is better) of the indexed prompts nearest to `query` (by all its
        words, or with `rare` by its rarest indexed words only)."""
        words = self.rare_words(query) if rare else query_words(query)
        if not words:
            return []
        sql = backend.ranked(self.postgres, "prompt_index", "scope, prompt")
        return [(r[0], r[1], r[2]) for r in self.db.execute(sql, (backend.any_word(self.postgres, words), k))]

    def match_lessons(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """(lesson id, bm25 rank; lower is better) of the lessons whose text or tags are nearest to `query`."""
        words = query_words(query)
        if not words:
            return []
        sql = backend.ranked(self.postgres, "lesson_index", "id")
        return [(r[0], r[1]) for r in self.db.execute(sql, (backend.any_word(self.postgres, words), k))]

    # ------------------------------------------------------------ gates and runs
    def add_gate(self, g: GateRecord) -> None:
        """Record a gate decision; one made again at the same place of a run (a resumed step) replaces it."""
        self.db.execute(
            backend.upsert(self.postgres, "gates", GATE_COLUMNS, "run_id, step, candidate"),
            (g.run_id, g.scope, g.current_revision, json.dumps([asdict(e) for e in g.proposed]), g.reflection_id, g.n,
             g.current_score, g.proposed_score, g.wins, g.losses, g.p_value, g.decision, g.reason, g.revision_id, now(),
             g.step, g.candidate))

    def gates(self, scope: str | None = None, run_id: int | None = None) -> list[GateRecord]:
        q, args = "SELECT * FROM gates WHERE 1=1", []
        if scope:
            q, args = q + " AND scope=?", args + [scope]
        if run_id is not None:
            q, args = q + " AND run_id=?", args + [run_id]
        return [_gate(r) for r in self.db.execute(q + " ORDER BY id", args)]

    def add_distillation(self, scope: str, revision: int | None, adapter: str, base: str, config: dict,
                         report: dict) -> int:
        """Record that `adapter` was distilled from `revision` of `scope` (the habit's provenance)."""
        return backend.insert_id(self.db, self.postgres, "INSERT INTO distillations (scope, revision, adapter, base, "
                                 "config, report, created_at) VALUES (?,?,?,?,?,?,?)",
                                 (scope, revision, adapter, base, json.dumps(config), json.dumps(report), now()))

    def distillations(self, scope: str | None = None) -> list[dict]:
        rows = self.db.execute("SELECT * FROM distillations" + (" WHERE scope=?" if scope is not None else "") +
                               " ORDER BY id", (scope,) if scope is not None else ())
        return [{**dict(r), "config": json.loads(r["config"]), "report": json.loads(r["report"])} for r in rows]

    def start_run(self, scope: str, config: dict) -> int:
        t = now()
        return backend.insert_id(self.db, self.postgres, "INSERT INTO runs (scope, config, status, created_at, "
                                 "updated_at) VALUES (?,?,?,?,?)", (scope, json.dumps(config, sort_keys=True),
                                                                    "running", t, t))

    def run(self, run_id: int) -> dict | None:
        r = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return {**dict(r), "config": json.loads(r["config"])} if r else None

    def last_run(self, scope: str) -> dict | None:
        r = self.db.execute("SELECT id FROM runs WHERE scope=? ORDER BY id DESC LIMIT 1", (scope,)).fetchone()
        return self.run(r[0]) if r else None

    def runs_since(self, since: str) -> list[dict]:
        """The runs updated at or after `since` (an ISO time), with their configs."""
        rows = self.db.execute("SELECT * FROM runs WHERE updated_at >= ? ORDER BY id", (since,))
        return [{**dict(r), "config": json.loads(r["config"])} for r in rows]

    def tokens_since(self, since: str) -> dict[int, tuple[int, int]]:
        """Run id -> prompt and completion tokens of its rollouts made at or after `since` (an ISO time)."""
        rows = self.db.execute("SELECT run_id, COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) "
                               "FROM rollouts WHERE created_at >= ? AND run_id IS NOT NULL GROUP BY run_id", (since,))
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def update_run(self, run_id: int, steps_done: int, rollouts_used: int, status: str | None = None) -> None:
        self.db.execute("UPDATE runs SET steps_done=?, rollouts_used=?, status=COALESCE(?, status), updated_at=? "
                        "WHERE id=?", (steps_done, rollouts_used, status, now(), run_id))


def count_terms(db: Any, prompts: Sequence[str]) -> None:
    """Add `prompts` to the vocabulary's document frequencies, their words split as `rare_words` splits a query's."""
    counts = Counter(w for prompt in prompts for w in index_words(prompt))
    db.executemany("INSERT INTO prompt_terms (term, doc) VALUES (?, ?) "
                   "ON CONFLICT (term) DO UPDATE SET doc = prompt_terms.doc + excluded.doc", sorted(counts.items()))


def fresh_store(path: str | Path) -> LessonStore:
    """A new, empty store at `path`: a store there before is deleted first, with its write-ahead log."""
    if str(path).startswith(("postgresql:", "postgres:")):  # deleting a database's tables is a person's decision
        raise StoreError(f"a fresh store is made in a file; give a path, not {postgres.masked(str(path))}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return LessonStore(path)


def open_store(path: str | Path | None = None) -> LessonStore:
    """The lesson store at `path`, else $SECONDNATURE_STORE, else $SECONDNATURE_HOME/store.db (~/.secondnature).
    A postgresql:// (or postgres://) URL is a store on a PostgreSQL server (the `postgres` extra), shared by every
    process and machine that opens it. Created with its migrations if new; a file or a database that is not a
    secondnature store is refused, never changed."""
    env = os.environ.get("SECONDNATURE_STORE")
    return LessonStore(path or env or None)
