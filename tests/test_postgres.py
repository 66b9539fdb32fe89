"""The store on a PostgreSQL server: several processes writing one store lose nothing and a stale head is refused
(as on SQLite, whose file the same tests use), writers wait for the advisory lock, errors say what to do and change
nothing, the completion cache is safe from other threads, and the command line learns into a postgresql:// store."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pg import PASSWORD

from secondnature.store import HeadMoved, LessonStore, StoreError, postgres
from secondnature.types import Completion, Lesson

SCOPE = "letters:medium,hard"


def add(store: LessonStore, text: str, scope: str = SCOPE) -> Lesson:
    return store.add_lesson(Lesson("", text, scope))


@pytest.fixture
def url(postgres_cluster) -> str:
    made = postgres_cluster.create_db()
    yield made
    postgres_cluster.drop_db(made)


# ---------------------------------------------------------------- several processes on one store

WRITER = """
import os, sys, time
from secondnature import hand
from secondnature.store import HeadMoved, LessonStore
from secondnature.types import Edit, GateRecord, Lesson
where, k, n, scope, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
s = LessonStore(where)
while not os.path.exists(go):  # all writers start together
    time.sleep(0.01)
own, stale = f"Writer {k}'s own rule", 0
for i in range(n):
    text = f"Lesson {i} of writer {k}: check the count twice."
    if i % 5 == 4:  # a hand edit of this writer's own rule, made on the head as it is once the lock is held
        (x,) = [x for x in s.revision_lessons(s.head(scope)) if x.text.startswith(own)]
        hand.edit(s, x.id, f"{own}, version {i}.", force=True)
        continue
    read = s.head(scope)  # the head a learn step read before its gate
    time.sleep(0.005)
    gate = GateRecord(scope, (Edit("add", text),), 4, 0.25, 0.75, 2, 0, 0.25, "accepted", "won 2, lost 0")
    if i % 2:  # learn's commit: applied to whatever head another writer made meanwhile
        with s.transaction():
            x = s.add_lesson(Lesson("", text, scope))
            s.commit_revision(scope, [*read.lesson_ids, x.id], "learned", parent=read.id, rebase=True, gate=gate)
        continue
    while True:  # a strict writer: a change on a stale head is refused whole; read the head again and retry
        try:
            with s.transaction():
                x = s.add_lesson(Lesson("", text, scope))
                s.commit_revision(scope, [*read.lesson_ids, x.id], "strict", parent=read.id, gate=gate)
            break
        except HeadMoved:
            stale, read = stale + 1, s.head(scope)
print(stale)
"""


def test_four_processes_writing_one_store_lose_nothing(store_at: Path | str, tmp_path: Path) -> None:
    s = LessonStore(store_at)
    own = [add(s, f"Writer {k}'s own rule, first version.").id for k in range(4)]
    s.commit_revision(SCOPE, own, "four writers' own rules", parent=None)
    s.close()
    go, n = tmp_path / "go", 20
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(store_at), str(k), str(n), SCOPE, str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    go.touch()
    stale = 0
    for w in writers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        stale += int(out)
    s = LessonStore(store_at)
    texts = [x.text for x in s.revision_lessons(s.head(SCOPE))]
    assert {f"Lesson {i} of writer {k}: check the count twice." for k in range(4) for i in range(n) if i % 5 != 4} \
        <= set(texts)
    assert {f"Writer {k}'s own rule, version {n - 1}." for k in range(4)} <= set(texts)
    assert len(texts) == len(set(texts)) == 4 + 4 * (n - n // 5)  # nothing lost, nothing doubled
    assert stale > 0  # the strict writers did meet heads another process had replaced, and retried
    accepted = [g for g in s.gates(SCOPE) if g.decision == "accepted"]
    assert len(accepted) == 4 * (n - n // 5) and all(s.revision(g.revision_id) for g in accepted)


OTHER = """
import sys
from secondnature.store import LessonStore
from secondnature.types import Lesson
s = LessonStore(sys.argv[1])
head = s.head(sys.argv[2])
x = s.add_lesson(Lesson("", "Their lesson says answer briefly.", sys.argv[2]))
print(s.commit_revision(sys.argv[2], [*head.lesson_ids, x.id], "theirs", parent=head.id).id)
"""


def test_a_commit_on_a_head_another_process_replaced_raises_head_moved(store_at: Path | str) -> None:
    s = LessonStore(store_at)
    r1 = s.commit_revision(SCOPE, [add(s, "First lesson says count each letter.").id], "first", parent=None)
    read = s.head(SCOPE)
    theirs = int(subprocess.run([sys.executable, "-c", OTHER, str(store_at), SCOPE], capture_output=True, text=True,
                                check=True, timeout=60).stdout)
    with pytest.raises(HeadMoved) as info:
        with s.transaction():
            mine = add(s, "My lesson says spell the word first.")
            s.commit_revision(SCOPE, [*read.lesson_ids, mine.id], "mine", parent=read.id)
    assert (info.value.read, info.value.now) == (r1.id, theirs)
    assert s.head(SCOPE).id == theirs and [x.text for x in s.lessons(SCOPE)] == [
        "First lesson says count each letter.", "Their lesson says answer briefly."]  # nothing of mine was saved


HOLDER = """
import sys, time
import psycopg
from secondnature.store.postgres import WRITE_LOCK
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("BEGIN")
conn.execute(WRITE_LOCK)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def hold_lock(url: str, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_waits_for_the_advisory_lock(url: str) -> None:
    s = LessonStore(url)
    holder = hold_lock(url, 1.0)
    start = time.monotonic()
    rev = s.commit_revision(SCOPE, [add(s, "Spell the word letter by letter, then count.").id], "waited", parent=None)
    assert time.monotonic() - start > 0.5 and s.head(SCOPE) == rev  # it waited for the lock, then committed
    assert holder.wait(timeout=30) == 0


def test_a_lock_held_too_long_is_a_store_error_and_saves_nothing(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_S", 1)
    s = LessonStore(url)
    holder = hold_lock(url, 4.0)
    with pytest.raises(StoreError, match="stayed locked by another writer") as info:
        with s.transaction():
            s.commit_revision(SCOPE, [add(s, "Spell the word letter by letter, then count.").id], "late")
    assert "run the command again" in str(info.value)
    assert holder.wait(timeout=30) == 0
    assert s.lessons() == [] and s.head(SCOPE) is None


# ---------------------------------------------------------------- errors say what to do and change nothing

def test_an_unreachable_server_says_so(tmp_path: Path) -> None:
    for where in (f"postgresql://postgres@/db?host={tmp_path}&port=5432", "postgres://u:hunter2@127.0.0.1:1/db"):
        with pytest.raises(StoreError, match="cannot reach the PostgreSQL server") as info:
            LessonStore(where)
        assert "hunter2" not in str(info.value) and "Nothing was changed" in str(info.value)


def test_a_refused_login_and_a_missing_database_say_what_to_fix(postgres_cluster, url: str) -> None:
    database = url.split("@/")[1].split("?")[0]
    for user, password in (("secret", "wrong-password"), ("nobody", "")):
        with pytest.raises(StoreError, match="refused the login") as info:
            LessonStore(postgres_cluster.url(database, user, password))
        assert "pgpass" in str(info.value) and "wrong-password" not in str(info.value)
    postgres_cluster.admin(f"ALTER DATABASE {database} OWNER TO secret")  # the owner may create the store's tables
    assert LessonStore(postgres_cluster.url(database, "secret", PASSWORD)).migrations()[0] == "001_initial"
    with pytest.raises(StoreError, match="does not exist") as info:
        LessonStore(postgres_cluster.url("no_such_store"))
    assert "createdb" in str(info.value)


def test_a_database_that_is_not_a_store_is_refused_and_unchanged(postgres_cluster, url: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE foo (x INTEGER)")
        conn.execute("INSERT INTO foo VALUES (42)")
    with pytest.raises(StoreError, match="did not create") as info:
        LessonStore(url)
    assert "foo" in str(info.value)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'").fetchall() == [("foo",)]
        conn.execute("DROP TABLE foo")  # another program's own migrations table is not ours either
        conn.execute("CREATE TABLE migrations (id INTEGER, migration TEXT, batch INTEGER)")
    with pytest.raises(StoreError, match="did not create"):
        LessonStore(url)


def test_a_role_without_rights_is_told_how_to_get_them(postgres_cluster, url: str) -> None:
    postgres_cluster.admin("DO $$ BEGIN CREATE ROLE plain LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    database = url.split("@/")[1].split("?")[0]
    with pytest.raises(StoreError, match="the role may not") as info:  # PostgreSQL 15: only the owner creates in public
        LessonStore(postgres_cluster.url(database, "plain"))
    assert "createdb -O" in str(info.value) and "GRANT" in str(info.value)
    assert LessonStore(url).migrations()[0] == "001_initial"  # nothing was half made: the owner starts afresh


def test_a_lost_connection_is_a_store_error(postgres_cluster, url: str) -> None:
    s = LessonStore(url)
    add(s, "Spell the word letter by letter, then count.")
    database = url.split("@/")[1].split("?")[0]
    postgres_cluster.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
    with pytest.raises(StoreError, match="lost the connection"):
        s.lessons()


def test_without_psycopg_a_postgresql_store_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError, match=r"pip install 'secondnature\[postgres\]'"):
        LessonStore("postgresql://localhost/store")


def test_the_command_line_reports_a_bad_server_without_a_traceback(tmp_path: Path, capsys) -> None:
    from secondnature.cli import main
    assert main(["--store", f"postgresql://postgres@/db?host={tmp_path}", "lessons", "list"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the PostgreSQL server" in err and "Traceback" not in err


def test_a_url_is_shown_without_its_password() -> None:
    assert postgres.masked("postgresql://me:s3cret@db.example:5432/store") == "postgresql://me:***@db.example:5432/store"
    assert postgres.masked("postgresql://me@db/store") == "postgresql://me@db/store"


def test_a_nul_character_which_postgresql_text_cannot_hold_is_replaced_not_an_error(url: str) -> None:
    s = LessonStore(url)
    assert add(s, "Count\x00 the letters.").text == "Count\x00 the letters."
    assert s.lesson("L1").text == "Count\ufffd the letters."


# ---------------------------------------------------------------- threads

def test_the_completion_cache_from_other_threads_stays_out_of_the_main_transaction(url: str) -> None:
    """Worker threads cache completions while the main thread is inside a write transaction: their puts neither wait
    for it nor land in it (it rolls back here; the cache keeps them)."""
    s = LessonStore(url)
    errors = []

    def worker(k: int) -> None:
        try:
            for i in range(25):
                s.put_completion(f"k{k}-{i}", Completion(f"Answer: {i}", 10, 2, 0.1))
                assert s.get_completion(f"k{k}-{i}").text == f"Answer: {i}"
        except Exception as e:  # reported by the main thread
            errors.append(e)
    with pytest.raises(RuntimeError, match="rolled back"):
        with s.transaction():
            add(s, "Spell the word letter by letter, then count.")
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in threads) and errors == []
            raise RuntimeError("rolled back")
    assert s.lessons() == [] and all(s.get_completion(f"k{k}-{i}") for k in range(4) for i in range(25))
    s.close()


# ---------------------------------------------------------------- the command line

def test_learn_from_the_command_line_into_a_postgresql_store(url: str, toy_file: Path, monkeypatch, capsys) -> None:
    from test_learn import GOOD, policy_fn, reflector_of

    from secondnature.cli import main, ui
    from secondnature.models import ScriptedModel
    models = {"p": ScriptedModel(policy_fn, "policy"), "r": reflector_of(GOOD)}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: models[spec])
    code = main(["--store", url, "learn", str(toy_file), "--checker", "number", "--policy", "p", "--reflector", "r",
                 "--budget", "80", "--val-size", "10", "--group-size", "2", "--tasks-per-step", "2", "--json"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert [x["text"] for x in result["lessons"]] == [GOOD] and result["accepted"] == 1
    monkeypatch.setenv("SECONDNATURE_STORE", url)  # the environment names the same store
    assert main(["lessons", "list", "--json"]) == 0
    assert [x["text"] for x in json.loads(capsys.readouterr().out)] == [GOOD]
    s = LessonStore(url)
    assert s.gates() and s.rollout(s.revision_lessons(s.head("toy"))[0].evidence[0]) is not None
