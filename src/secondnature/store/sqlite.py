"""The lesson store: one SQLite file (WAL), named migrations (schema.py), and the only other SQL in the package.

Rollouts and reflections are kept because they are the evidence behind every lesson. Lessons are
immutable rows (an edit adds a row whose `parent` is the old one); a revision is an immutable list
of lesson ids for a scope, and the newest revision of a scope is its head. Accepting a revision
writes its lessons, the revision, its gate record and the run's progress in one transaction, so a
killed process leaves either all of it or none.

Several processes may write one store (a learn run while lessons are edited by hand): a writer
names the head it read when it commits (`parent`), and the check and the commit happen under
SQLite's write lock (BEGIN IMMEDIATE), so a change made on an old head is never committed as if
the newer one did not exist. A second writer waits for the lock (up to BUSY_TIMEOUT_S).
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from types import EllipsisType

from ..types import Completion, Edit, GateRecord, Lesson, Reflection, Revision, Rollout, Score, ToolCall
from . import schema
from .errors import HeadMoved, StoreError, explain, guard, guarded

APP_ID = 0x534E4154  # "SNAT" in PRAGMA application_id: tells our files from foreign SQLite files
BUSY_TIMEOUT_S = 30  # a writer waits this long for another's write lock; a learn step holds it for milliseconds


def query_words(text: str, limit: int = 64) -> list[str]:
    """The distinct lower-case words of `text`, in order, at most `limit` of them."""
    return list(dict.fromkeys(re.findall(r"\w+", text.lower())))[:limit]


def fts_query(words: list[str]) -> str:
    """An FTS5 MATCH expression that ORs `words` (quoted, so no word is read as syntax)."""
    return " OR ".join(f'"{w}"' for w in words)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_path() -> Path:
    from ..weights import home
    return home() / "store.db"


@guard  # every public method says what a full disk, a read-only place or a damaged file means, and the fix
class LessonStore:
    """SQLite-backed store. Stateful (a connection), so a class; every method is one short query."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a read-only file system, or a file where a directory should be
            raise StoreError(f"cannot create the directory of {self.path} ({e.strerror}); pass --store with a path "
                             f"in a writable directory. Nothing was changed.") from e
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            known = explain(e, self.path) if getattr(e, "sqlite_errorname", "") != "SQLITE_NOTADB" else None
            raise known or StoreError(f"{self.path} is not a readable SQLite database ({e}); move it aside or pass "
                                      f"--store with another path. Nothing was changed.") from e
        if not fresh and app_id != APP_ID and tables:
            raise StoreError(f"{self.path} is an SQLite file that secondnature did not create (tables: "
                             f"{', '.join(sorted(tables)[:5])}); pass --store with another path. Nothing was changed.")
        self._setup()

    @guarded
    def _setup(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock first, so what is read inside it is what the
        commit will be made on, in every process."""
        if self.db.in_transaction:  # nested: the outer transaction owns the commit
            yield self.db
            return
        self._execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self._rollback()
            raise
        try:
            self._execute("COMMIT")
        except StoreError:
            self._rollback()
            raise

    @guarded
    def _execute(self, sql: str) -> None:
        self.db.execute(sql)

    def _rollback(self) -> None:
        if self.db.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error that led here says more than a failed rollback would

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute(f"PRAGMA application_id={APP_ID}")
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {r[0] for r in db.execute("SELECT name FROM migrations")}
            known = {name for name, _ in schema.MIGRATIONS}
            if done - known:
                raise StoreError(f"{self.path} was written by a newer secondnature (migrations {sorted(done - known)});"
                                 f" upgrade secondnature to use it")
            for name, sql in schema.MIGRATIONS:
                if name not in done:
                    for statement in sql.split(";"):
                        if statement.strip():
                            try:
                                db.execute(statement)
                            except sqlite3.OperationalError as e:
                                if "fts5" not in str(e):
                                    raise
                                raise StoreError(f"this Python's SQLite ({sqlite3.sqlite_version}) was built without "
                                                 "FTS5, which lesson retrieval needs; use a Python whose sqlite3 has "
                                                 "it (python.org and Debian builds do). Nothing was changed.") from e
                    db.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))

    def migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    # ------------------------------------------------------------ completion cache
    def get_completion(self, key: str) -> Completion | None:
        r = self.db.execute("SELECT * FROM completions WHERE key=?", (key,)).fetchone()
        if r is None:
            return None
        calls = tuple(ToolCall(**t) for t in json.loads(r["tool_calls"]))
        return Completion(r["text"], r["prompt_tokens"], r["completion_tokens"], r["latency_s"], cached=True,
                          tool_calls=calls)

    def put_completion(self, key: str, c: Completion) -> None:
        self.db.execute("INSERT OR REPLACE INTO completions (key, text, prompt_tokens, completion_tokens, latency_s, "
                        "created_at, tool_calls) VALUES (?,?,?,?,?,?,?)",
                        (key, c.text, c.prompt_tokens, c.completion_tokens, c.latency_s, now(),
                         json.dumps([asdict(t) for t in c.tool_calls])))

    # ------------------------------------------------------------ rollouts and reflections
    def add_rollouts(self, rollouts: list[Rollout], *, run_id: int | None = None, scope: str = "") -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO rollouts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        self.db.execute("INSERT OR REPLACE INTO reflections VALUES (?,?,?,?,?,?,?,?,?,?)",
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
            db.execute("INSERT INTO lesson_index VALUES (?,?,?,?)",
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
            cur = db.execute("INSERT INTO revisions (scope, parent, lesson_ids, note, created_at) VALUES (?,?,?,?,?)",
                             (scope, head.id if head else None, json.dumps(list(lesson_ids)), note, now()))
            rev_id = cur.lastrowid
            keep = set(lesson_ids)
            # an active lesson left out is retired; a proposal (waiting for its gate, or rejected by it) was never in
            # a head, so another change's commit leaves it as it is
            for lesson in self.lessons(scope):
                status = "active" if lesson.id in keep else ("retired" if lesson.status == "active" else lesson.status)
                if status != lesson.status:  # a lesson back in the head loses the note that said why it left
                    db.execute("UPDATE lessons SET status=?, note=CASE WHEN ?='active' THEN '' ELSE note END "
                               "WHERE id=?", (status, status, lesson.id))
            if gate is not None:
                self.add_gate(replace(gate, revision_id=rev_id, decision="accepted"))
            if run_progress is not None:
                self.update_run(*run_progress)
        return self.revision(rev_id)

    def head(self, scope: str) -> Revision | None:
        r = self.db.execute("SELECT * FROM revisions WHERE scope=? ORDER BY id DESC LIMIT 1", (scope,)).fetchone()
        return _revision(r) if r else None

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
            db.executemany("INSERT INTO prompt_index VALUES (?,?,?)",
                           [(scope, tid, prompt) for tid, prompt in tasks if tid not in have])

    def prompts(self, scope: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.db.execute("SELECT task_id, prompt FROM prompt_index WHERE scope=?", (scope,))]

    def rare_words(self, query: str, k: int = 6) -> str:
        """The k words of `query` found in the fewest indexed prompts, as a MATCH expression ('' if none is indexed).

        A query's rarest indexed words pick out the prompts of its own task set and match far fewer rows
        than all its words would, which keeps routing fast in a store of many task sets."""
        words = query_words(query)
        if not words:
            return ""
        rows = self.db.execute(f"SELECT term, doc FROM prompt_vocab WHERE term IN ({','.join('?' * len(words))})",
                               words).fetchall()
        return fts_query([term for term, _ in sorted(rows, key=lambda r: (r[1], r[0]))[:k]])

    def match_prompts(self, query: str, k: int = 10, *, rare: bool = False) -> list[tuple[str, str, float]]:
        """(scope, prompt, bm25 rank; lower is better) of the indexed prompts nearest to `query` (by all its
        words, or with `rare` by its rarest indexed words only)."""
        q = self.rare_words(query) if rare else fts_query(query_words(query))
        if not q:
            return []
        return [(r[0], r[1], r[2]) for r in self.db.execute(
            "SELECT scope, prompt, rank FROM prompt_index WHERE prompt_index MATCH ? ORDER BY rank LIMIT ?", (q, k))]

    def match_lessons(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """(lesson id, bm25 rank; lower is better) of the lessons whose text or tags are nearest to `query`."""
        q = fts_query(query_words(query))
        if not q:
            return []
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT id, rank FROM lesson_index WHERE lesson_index MATCH ? ORDER BY rank LIMIT ?", (q, k))]

    # ------------------------------------------------------------ gates and runs
    def add_gate(self, g: GateRecord) -> None:
        """Record a gate decision; one made again at the same place of a run (a resumed step) replaces it."""
        self.db.execute(
            "INSERT OR REPLACE INTO gates (run_id, scope, current_revision, proposed, reflection_id, n, current_score, "
            "proposed_score, wins, losses, p_value, decision, reason, revision_id, created_at, step, candidate) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        cur = self.db.execute("INSERT INTO distillations (scope, revision, adapter, base, config, report, created_at) "
                              "VALUES (?,?,?,?,?,?,?)", (scope, revision, adapter, base, json.dumps(config),
                                                         json.dumps(report), now()))
        return int(cur.lastrowid)

    def distillations(self, scope: str | None = None) -> list[dict]:
        rows = self.db.execute("SELECT * FROM distillations WHERE ? IS NULL OR scope=? ORDER BY id", (scope, scope))
        return [{**dict(r), "config": json.loads(r["config"]), "report": json.loads(r["report"])} for r in rows]

    def start_run(self, scope: str, config: dict) -> int:
        t = now()
        return self.db.execute("INSERT INTO runs (scope, config, status, created_at, updated_at) VALUES (?,?,?,?,?)",
                               (scope, json.dumps(config, sort_keys=True), "running", t, t)).lastrowid

    def run(self, run_id: int) -> dict | None:
        r = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return {**dict(r), "config": json.loads(r["config"])} if r else None

    def last_run(self, scope: str) -> dict | None:
        r = self.db.execute("SELECT id FROM runs WHERE scope=? ORDER BY id DESC LIMIT 1", (scope,)).fetchone()
        return self.run(r[0]) if r else None

    def update_run(self, run_id: int, steps_done: int, rollouts_used: int, status: str | None = None) -> None:
        self.db.execute("UPDATE runs SET steps_done=?, rollouts_used=?, status=COALESCE(?, status), updated_at=? "
                        "WHERE id=?", (steps_done, rollouts_used, status, now(), run_id))


def rebased(base: Sequence[str], ours: Sequence[str], theirs: Sequence[str]) -> list[str]:
    """Our change (base -> ours) applied to their revision: theirs without the lessons we removed, then the ones we
    added. Their additions and edits stay; ours are appended, as a hand edit appends its new lesson."""
    removed, known = set(base) - set(ours), set(base) | set(theirs)
    return [x for x in theirs if x not in removed] + [x for x in ours if x not in known]


def _rollout(r: sqlite3.Row) -> Rollout:
    return Rollout(r["id"], r["task_id"], tuple(json.loads(r["messages"])), r["completion"],
                   Score(r["score"], r["feedback"]), tuple(json.loads(r["lesson_ids"])), r["model"], r["seed"],
                   r["sample"], r["prompt_tokens"], r["completion_tokens"], r["latency_s"], r["error"] or "",
                   r["purpose"] or "")


def _lesson(r: sqlite3.Row) -> Lesson:
    return Lesson(r["id"], r["text"], r["scope"], tuple(json.loads(r["evidence"])), r["reflection_id"] or "",
                  r["parent"] or "", r["uses"], r["gain"], r["status"], tuple(json.loads(r["tags"])),
                  r["loo"], r["loo_n"], r["note"])


def _gate(r: sqlite3.Row) -> GateRecord:
    proposed = tuple(Edit(e.get("op", ""), e.get("text", ""), e.get("id") or "") for e in json.loads(r["proposed"]))
    return GateRecord(r["scope"], proposed, r["n"], r["current_score"], r["proposed_score"], r["wins"], r["losses"],
                      r["p_value"], r["decision"], r["reason"], r["run_id"], r["step"], r["candidate"],
                      r["current_revision"], r["reflection_id"] or "", r["revision_id"], r["id"], r["created_at"])


def _revision(r: sqlite3.Row) -> Revision:
    return Revision(r["id"], r["scope"], tuple(json.loads(r["lesson_ids"])), r["parent"], r["note"], r["created_at"])


def fresh_store(path: str | Path) -> LessonStore:
    """A new, empty store at `path`: a store there before is deleted first, with its write-ahead log."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return LessonStore(path)


def open_store(path: str | Path | None = None) -> LessonStore:
    """The lesson store at `path`, else $SECONDNATURE_STORE, else $SECONDNATURE_HOME/store.db (~/.secondnature).
    Created with its migrations if new; a file that is not a secondnature store is refused, never changed."""
    env = os.environ.get("SECONDNATURE_STORE")
    return LessonStore(path or env or None)
