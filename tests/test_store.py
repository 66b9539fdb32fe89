"""LessonStore: named migrations, refusing foreign files untouched, lesson ids, revisions, atomicity, evidence. A test
taking `store_at` runs on both backends (an SQLite file and a PostgreSQL database); one taking `path` is about
SQLite's file."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from secondnature.store import MIGRATIONS, HeadMoved, LessonStore, StoreError
from secondnature.store import schema as store_schema
from secondnature.store import sqlite as store_mod
from secondnature.types import Completion, Edit, GateRecord, Lesson, Reflection, Rollout, Score

SCOPE = "letters:medium,hard"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def add(store: LessonStore, text: str, scope: str = SCOPE) -> Lesson:
    return store.add_lesson(Lesson("", text, scope))


def rollout(rid: str, value: float = 1.0) -> Rollout:
    return Rollout(rid, "t1", ({"role": "system", "content": "sys"}, {"role": "user", "content": "How many r?"}),
                   "r-r-r: Answer: 3", Score(value, "expected 3, got 3"), ("L1", "L2"), "qwen-0.5b", 7, 2,
                   prompt_tokens=40, completion_tokens=12, latency_s=0.25, error="", purpose="val")


# ---------------------------------------------------------------- migrations

def test_migrations_are_recorded_once(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    assert s.migrations() == [name for name, _ in MIGRATIONS]
    applied = s.db.execute("SELECT name, applied_at FROM migrations").fetchall()
    add(s, "Spell the word letter by letter, then count.")
    s.close()

    s = LessonStore(store_at)  # reopening must not re-run (CREATE TABLE would fail) nor re-record
    assert s.db.execute("SELECT name, applied_at FROM migrations").fetchall() == applied
    assert [x.text for x in s.lessons()] == ["Spell the word letter by letter, then count."]


def test_only_new_migrations_run_on_reopen(store_at: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    LessonStore(store_at).close()
    extra = ("999_counter", "CREATE TABLE IF NOT EXISTS ran (x INTEGER); INSERT INTO ran VALUES (1)")
    monkeypatch.setattr(store_schema, "MIGRATIONS", [*MIGRATIONS, extra])
    for _ in range(3):
        s = LessonStore(store_at)
        assert s.migrations() == [name for name, _ in MIGRATIONS] + ["999_counter"]
        assert s.db.execute("SELECT COUNT(*) FROM ran").fetchone()[0] == 1
        s.close()


def test_file_from_newer_version_is_refused(store_at: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_schema, "MIGRATIONS", [*MIGRATIONS, ("999_future", "CREATE TABLE future (x INTEGER)")])
    LessonStore(store_at).close()
    monkeypatch.setattr(store_schema, "MIGRATIONS", MIGRATIONS)
    with pytest.raises(StoreError, match="upgrade"):
        LessonStore(store_at)


# ---------------------------------------------------------------- foreign files are refused and left alone

def test_random_bytes_file_is_refused_and_unchanged(path: Path) -> None:
    data = b"not a database\x00" + os.urandom(4096)
    path.write_bytes(data)
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        LessonStore(path)
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_foreign_sqlite_is_refused_and_unchanged(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE foo (x INTEGER)")
    db.execute("INSERT INTO foo VALUES (42)")
    db.commit()
    db.close()
    data = path.read_bytes()
    with pytest.raises(StoreError) as info:
        LessonStore(path)
    assert str(path) in str(info.value)
    assert "foo" in str(info.value)
    assert path.read_bytes() == data
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == [("foo",)]
    db.close()


def test_empty_file_is_adopted_as_new_store(path: Path) -> None:
    path.write_bytes(b"")
    s = LessonStore(path)
    assert s.migrations() == [name for name, _ in MIGRATIONS]
    assert s.db.execute("PRAGMA application_id").fetchone()[0] == store_mod.APP_ID


# ---------------------------------------------------------------- lessons and revisions

def test_lesson_ids_are_sequential_and_assigned_by_the_store(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    assert s.next_lesson_id() == "L1"
    a = s.add_lesson(Lesson("ignored-id", "Spell the word letter by letter, then count.", SCOPE))
    b = add(s, "Write the final answer on its own line as Answer: N.")
    assert (a.id, b.id) == ("L1", "L2")
    assert s.next_lesson_id() == "L3"
    assert s.lesson("L1") == a
    assert s.lesson("L2").text == "Write the final answer on its own line as Answer: N."
    assert s.lesson("L99") is None
    assert [x.id for x in s.lessons(SCOPE)] == ["L1", "L2"]
    assert s.lessons("other") == []


def test_commit_revision_heads_retires_and_restores(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    l1, l2, l3 = (add(s, f"Lesson number {i} says do the thing carefully.") for i in (1, 2, 3))
    other = add(s, "A lesson for another scope entirely here.", scope="game24")
    r1 = s.commit_revision(SCOPE, [l1.id, l2.id], "first")
    assert s.head(SCOPE) == r1 and r1.parent is None and r1.lesson_ids == ("L1", "L2")
    assert s.lesson(l3.id).status == "retired"  # added but not in the head

    r2 = s.commit_revision(SCOPE, [l2.id, l3.id], "second")
    assert s.head(SCOPE) == r2 and r2.parent == r1.id and r2.id > r1.id
    assert {x.id: x.status for x in s.lessons(SCOPE)} == {"L1": "retired", "L2": "active", "L3": "active"}
    assert s.lesson(other.id).status == "active"  # other scopes are not touched
    assert [x.id for x in s.revision_lessons(r2)] == ["L2", "L3"]

    r3 = s.commit_revision(SCOPE, list(s.revision(r1.id).lesson_ids), "restore 1")
    assert s.head(SCOPE) == r3 and r3.lesson_ids == r1.lesson_ids and r3.parent == r2.id
    assert {x.id: x.status for x in s.lessons(SCOPE)} == {"L1": "active", "L2": "active", "L3": "retired"}
    assert [r.id for r in s.revisions(SCOPE)] == [r1.id, r2.id, r3.id]
    assert s.revision(r1.id) == r1  # revisions are immutable
    assert s.scopes() == [SCOPE]


def test_a_proposal_is_in_no_revision_and_an_unrelated_commit_leaves_it_waiting(store_at: Path | str) -> None:
    """A proposed lesson (sent through `secondnature mcp`) waits for the gate: never live, never retired by a commit
    that does not name it; one the gate rejected keeps its status and reason."""
    s = LessonStore(store_at)
    kept = add(s, "Spell the word letter by letter, then count.")
    waiting = s.add_lesson(Lesson("", "Count each letter twice before you answer.", SCOPE, status="proposed",
                                  note="waits for the gate"))
    lost = s.add_lesson(Lesson("", "Answer before you count anything at all.", SCOPE, status="proposed"))
    s.set_status(lost.id, "rejected", "gate: 2 wins, 5 losses")
    s.commit_revision(SCOPE, [kept.id], "first")
    s.commit_revision(SCOPE, [], "second")
    assert s.lesson(waiting.id).status == "proposed" and s.lesson(waiting.id).note == "waits for the gate"
    assert (s.lesson(lost.id).status, s.lesson(lost.id).note) == ("rejected", "gate: 2 wins, 5 losses")
    assert s.lesson(kept.id).status == "retired"
    s.commit_revision(SCOPE, [kept.id], "third")
    assert [x.id for x in s.live_lessons()] == [kept.id]
    assert [x.id for x in s.lessons(SCOPE, "proposed")] == [waiting.id]
    s.commit_revision(SCOPE, [kept.id, waiting.id], "won its gate")  # in a head: active, the waiting note gone
    assert (s.lesson(waiting.id).status, s.lesson(waiting.id).note) == ("active", "")


def test_failed_transaction_leaves_nothing(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    with pytest.raises(RuntimeError, match="boom"):
        with s.transaction():
            lesson = add(s, "Spell the word letter by letter, then count.")
            s.commit_revision(SCOPE, [lesson.id], "accepted")
            raise RuntimeError("boom")
    assert s.lessons() == [] and s.revisions() == [] and s.head(SCOPE) is None
    assert s.next_lesson_id() == "L1"
    s.close()
    s = LessonStore(store_at)
    assert s.lessons() == [] and s.revisions() == [] and s.head(SCOPE) is None


def test_commit_revision_is_atomic_with_its_gate_record(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    l1, l2 = add(s, "First lesson says count each letter."), add(s, "Second lesson says answer briefly.")
    r1 = s.commit_revision(SCOPE, [l1.id], "first")
    broken = GateRecord(SCOPE, (object(),), 8, 0.2, 0.5, 3, 1, 0.3, "accepted", "won")  # an edit that is not one
    with pytest.raises(TypeError):  # a gate record that cannot be written fails after the revision row was written
        s.commit_revision(SCOPE, [l2.id], "second", gate=broken)
    assert s.head(SCOPE) == r1
    assert [r.id for r in s.revisions()] == [r1.id]
    assert s.lesson(l1.id).status == "active"
    assert s.gates() == []


def test_commit_revision_records_gate_and_run_progress(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    run = s.start_run(SCOPE, {"budget": 10})
    lesson = add(s, "Spell the word letter by letter, then count.")
    gate = GateRecord(SCOPE, (Edit("add", lesson.text),), 8, 0.25, 0.5, 3, 1, 0.3125, "rejected", "won", run_id=run,
                      step=1, candidate=0)
    rev = s.commit_revision(SCOPE, [lesson.id], "accepted", gate=gate, run_progress=(run, 2, 48))
    (g,) = s.gates(SCOPE)
    assert g.revision_id == rev.id and g.decision == "accepted" and g.proposed == (Edit("add", lesson.text),)
    assert (g.run_id, g.step, g.candidate, g.wins, g.losses) == (run, 1, 0, 3, 1) and g.id and g.created_at
    s.add_gate(replace(g, decision="rejected", reason="again"))  # the same place of a run: replaced, not repeated
    assert [(x.decision, x.reason) for x in s.gates(SCOPE)] == [("rejected", "again")]
    assert (s.run(run)["steps_done"], s.run(run)["rollouts_used"]) == (2, 48)


# ---------------------------------------------------------------- cache and evidence

def test_completion_cache_round_trip(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    assert s.get_completion("k") is None
    s.put_completion("k", Completion("Answer: 3", prompt_tokens=40, completion_tokens=5, latency_s=0.5))
    assert s.get_completion("k") == Completion("Answer: 3", 40, 5, 0.5, cached=True)
    s.put_completion("k", Completion("Answer: 4", 41, 6, 0.25))  # a second put replaces
    s.close()
    assert LessonStore(store_at).get_completion("k") == Completion("Answer: 4", 41, 6, 0.25, cached=True)


def test_rollouts_round_trip(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    rs = [rollout("r1"), rollout("r2", 0.0)]
    s.add_rollouts(rs, run_id=None, scope=SCOPE)
    s.close()
    s = LessonStore(store_at)
    assert [s.rollout("r1"), s.rollout("r2")] == rs
    assert s.rollout("missing") is None


def test_reflections_round_trip(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    run = s.start_run(SCOPE, {})
    edits = (Edit("add", "Spell the word letter by letter."),)
    s.add_reflection(Reflection("x1", "qwen-1.5b", "PROMPT", '{"edits": []}', ("r1", "r2"), edits), run_id=run,
                     scope=SCOPE)
    s.add_reflection(Reflection("x2", "qwen-1.5b", "P2", "Certainly!", notes="no edits found"), run_id=None,
                     scope=SCOPE)
    r = s.reflection("x1")
    assert (r["model"], r["prompt"], r["raw"], r["parse_error"]) == ("qwen-1.5b", "PROMPT", '{"edits": []}', "")
    assert json.loads(r["rollout_ids"]) == ["r1", "r2"] and json.loads(r["edits"]) == [asdict(e) for e in edits]
    assert s.reflection("nope") is None
    assert [x["id"] for x in s.reflections(run)] == ["x1"]
    assert sorted(x["id"] for x in s.reflections()) == ["x1", "x2"]


# ---------------------------------------------------------------- two writers on one scope

def test_a_revision_made_on_an_old_head_is_refused_with_the_heads_and_the_fix(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    r1 = s.commit_revision(SCOPE, [add(s, "First lesson says count each letter.").id], "first", parent=None)
    other = LessonStore(store_at)  # another writer commits after this one read r1
    r2 = other.commit_revision(SCOPE, [*r1.lesson_ids, add(other, "Their lesson says answer briefly.").id], "theirs",
                               parent=r1.id)
    mine = add(s, "My lesson says spell the word first.")
    with pytest.raises(HeadMoved) as info:
        s.commit_revision(SCOPE, [*r1.lesson_ids, mine.id], "mine", parent=r1.id)
    assert isinstance(info.value, StoreError)
    message = str(info.value)
    assert SCOPE in message and f"revision {r1.id}" in message and f"revision {r2.id}" in message
    assert "Nothing was saved" in message and "again" in message
    assert (info.value.read, info.value.now) == (r1.id, r2.id)
    assert s.head(SCOPE) == r2 and s.lesson("L2").status == "active"
    other.commit_revision("game24", [], "theirs", parent=None)
    with pytest.raises(HeadMoved, match="the scope was empty"):  # a first revision, when another came first
        s.commit_revision("game24", [], "mine", parent=None)


def test_rebase_applies_the_change_to_the_new_head(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    a, b, c = (add(s, f"Lesson {x} says do the thing carefully.") for x in "abc")
    r1 = s.commit_revision(SCOPE, [a.id, b.id], "first", parent=None)
    theirs = add(s, "Their lesson says answer briefly.")
    r2 = s.commit_revision(SCOPE, [a.id, b.id, theirs.id], "theirs", parent=r1.id)
    r3 = s.commit_revision(SCOPE, [a.id, c.id], "mine: b replaced by c", parent=r1.id, rebase=True)
    assert r3.lesson_ids == (a.id, theirs.id, c.id) and r3.parent == r2.id
    assert f"rebased onto revision {r2.id}" in r3.note and f"on revision {r1.id}" in r3.note
    assert s.lesson(b.id).status == "retired" and s.lesson(theirs.id).status == "active"
    assert store_mod.rebased([], ["x"], ["y"]) == ["y", "x"]  # a first revision made when another came first


WAIT = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(1.0)
db.execute("COMMIT")
"""


def test_a_second_writer_waits_for_the_write_lock_instead_of_failing(path: Path) -> None:
    s = LessonStore(path)
    assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] == store_mod.BUSY_TIMEOUT_S * 1000
    holder = subprocess.Popen([sys.executable, "-c", WAIT, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    start = time.monotonic()
    rev = s.commit_revision(SCOPE, [add(s, "Spell the word letter by letter, then count.").id], "waited", parent=None)
    assert time.monotonic() - start > 0.5 and s.head(SCOPE) == rev  # it waited for the lock, then committed
    assert holder.wait(timeout=30) == 0


# ---------------------------------------------------------------- a full disk, a read-only place, a damaged file

def test_a_full_disk_is_a_store_error_with_the_fix_and_leaves_nothing_half_written(path: Path) -> None:
    s = LessonStore(path)
    s.db.execute("PRAGMA max_page_count = 1")  # clamped to the current size: the file cannot grow, as on a full disk
    with pytest.raises(StoreError, match="disk is full") as info:
        s.add_rollouts([replace(rollout(f"r{i}"), completion="x" * 4000) for i in range(50)])
    assert "--store" in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert s.rollout("r0") is None  # the transaction was rolled back whole
    with pytest.raises(StoreError, match="disk is full"):  # outside an explicit transaction too
        s.put_completion("k", Completion("x" * 8000, 1, 1, 0.1))
    with pytest.raises(StoreError, match="disk is full"):
        with s.transaction():
            lesson = add(s, "x" * 8000)
            s.commit_revision(SCOPE, [lesson.id], "accepted")
    assert s.lessons() == [] and s.head(SCOPE) is None


def test_a_read_only_store_says_so_not_that_it_is_unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add(LessonStore(path), "Spell the word letter by letter, then count.")
    real = sqlite3.connect
    # what SQLite sees on a read-only file system: the file opens, every write is refused (works as root too)
    monkeypatch.setattr(store_mod.sqlite3, "connect", lambda p, **kw: real(f"file:{p}?mode=ro", uri=True, **kw))
    with pytest.raises(StoreError, match="read-only") as info:
        LessonStore(path)
    assert "not a readable SQLite database" not in str(info.value) and "writable --store" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_store_in_a_read_only_directory_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    add(LessonStore(folder / "s.db"), "Spell the word letter by letter, then count.")
    (folder / "s.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="read-only|not writable"):
            LessonStore(folder / "s.db")
        with pytest.raises(StoreError, match="not writable"):
            LessonStore(folder / "new.db")
    finally:
        folder.chmod(0o755)


def damage(path: Path) -> None:
    """Overwrite the middle third of a store file with noise, as a bad disk or an interrupted copy might."""
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = random.Random(0).randbytes(third)
    path.write_bytes(bytes(data))


def test_a_store_damaged_mid_file_says_how_to_recover(path: Path) -> None:
    s = LessonStore(path)
    for i in range(300):
        add(s, f"Lesson {i}: " + "count the letters one by one and check the count. " * 8)
    s.close()
    damage(path)
    with pytest.raises(StoreError, match="damaged") as info:
        LessonStore(path).lessons()  # the header is intact, so it opens; the damage shows when pages are read
    message = str(info.value)
    assert f"sqlite3 {path} .recover" in message and "backup" in message and "quick_check" in message
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


# ---------------------------------------------------------------- both backends: one list of migrations, one search

def test_every_postgresql_variant_is_of_a_migration_in_the_one_list() -> None:
    names = [name for name, _ in MIGRATIONS]
    assert set(store_schema.POSTGRES) <= set(names) and len(names) == len(set(names))


def test_the_page_search_finds_word_starts_and_pages_keep_their_order(store_at: Path | str) -> None:
    from secondnature.store import pages, traffic
    from secondnature.types import Call
    s = LessonStore(store_at)
    texts = ["Carry the digits column by column.", "Spell the word letter by letter.", "Carrying is for sums.",
             "Write the final answer as Answer: N."]
    ids = [add(s, t).id for t in texts]
    s.commit_revision(SCOPE, ids, "four")
    assert [x.text for x in pages.lessons(s, query="carr").rows] == [texts[2], texts[0]]  # newest first
    assert [x.text for x in pages.lessons(s, query="carry digit").rows] == [texts[0]]  # every word, as a start
    assert pages.lessons(s, query="answer", starts="Write").total == 1 and pages.lessons(s, query="zebra").total == 0
    s.add_rollouts([rollout(f"r{i}") for i in range(3)], scope=SCOPE)
    assert [r.id for r in pages.rollouts(s, scope=SCOPE).rows] == ["r2", "r1", "r0"]
    for i in range(3):
        traffic.open_call(s, Call(f"c{i}", "support", "m", ({"role": "user", "content": f"question {i}"},),
                                  created_at="2026-01-01T00:00:00+00:00"))
    assert [c.id for c in traffic.calls(s, "support")] == ["c0", "c1", "c2"]  # one second: in the order they came
    assert [c.id for c in traffic.calls(s, "support", limit=1, offset=1)] == ["c1"]
    assert [c.id for c in traffic.calls(s, "support", newest_first=True, offset=1)] == ["c1", "c0"]
    assert traffic.add_calls(s, [Call("c1", "support", "m", ()), Call("c9", "support", "m", ())]) == 1
    f = traffic.add_feedback(s, traffic.Feedback("c1", "", 1.0, "good", "", "person"))
    assert f.id and traffic.scored_ids(s, "support") == {"c1"}
    assert s.distillations() == [] and s.add_distillation(SCOPE, 1, "a.gguf", "b", {}, {}) == 1
    assert [d["adapter"] for d in s.distillations(SCOPE)] == ["a.gguf"] and s.distillations("other") == []
