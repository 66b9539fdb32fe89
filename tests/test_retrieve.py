"""Retrieval: queries are routed to the scope they resemble, get its lessons in a stable order within the
budget, and lessons of one task set do not reach another unless asked for."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from secondnature import retrieve
from secondnature.inject import lesson_tokens
from secondnature.learn import scope_tags
from secondnature.store import LessonStore
from secondnature.types import Lesson


def words(s: str) -> int:
    return len(s.split())


COUNTING = [f"How many times does the letter {c} appear in the word {w}?" for c, w in
            [("r", "strawberry"), ("e", "cheese"), ("s", "mississippi"), ("p", "pepper"), ("o", "balloon")]]
DATES = [f"Today is {d}. What is the date one week from today in MM/DD/YYYY?" for d in
         ["Sep 9, 1909", "Apr 10, 1985", "Jan 2, 1958", "the last day of 1899", "Christmas Eve of 1937"]]
MATH = "Henry made two stops during his 60-mile bike trip. How many miles did he travel between his stops?"


@pytest.fixture
def store(store_at: Path | str) -> LessonStore:
    """On both backends: FTS5 on SQLite, tsvector on PostgreSQL."""
    s = LessonStore(store_at)
    for scope, prompts, texts in [
        ("letters", COUNTING, ["Spell the word one letter at a time and count each match of the letter.",
                               "Answer with a single number after counting."]),
        ("bbh/date_understanding", DATES, ["Add days month by month using each month's length.",
                                            "Write the final date in MM/DD/YYYY before choosing an option."]),
    ]:
        s.index_prompts(scope, [(f"{scope}-{i}", p) for i, p in enumerate(prompts)])
        ids = [s.add_lesson(Lesson("", t, scope, gain=0.1 * (i + 1), tags=scope_tags(scope))).id
               for i, t in enumerate(texts)]
        s.commit_revision(scope, ids, "test")
    return s


def test_queries_are_routed_to_the_scope_they_resemble(store: LessonStore) -> None:
    assert retrieve.route(store, "How many times does the letter a appear in the word banana?") == "letters"
    assert retrieve.route(store, "Today is Mar 3, 2001. What is the date one week from today in MM/DD/YYYY?") \
        == "bbh/date_understanding"
    assert retrieve.route(store, MATH) is None  # shares "how many" with letters, not enough to be one of them
    assert retrieve.route(store, "") is None


def test_a_routed_query_gets_its_scope_lessons_by_id_and_nothing_else(store: LessonStore) -> None:
    got = retrieve.lessons_for(store, "How many times does the letter a appear in the word banana?", None, words)
    assert got.scope == "letters" and got.retrieved == ()
    assert [x.id for x in got.stable] == ["L1", "L2"]
    prompt = retrieve.system_prompt("Answer.", got)
    assert prompt.index("Spell the word") < prompt.index("single number")


def test_the_budget_keeps_the_most_gain_per_token(store: LessonStore) -> None:
    query = "How many times does the letter a appear in the word banana?"
    short = store.lesson("L2")
    budget = lesson_tokens([short], words)
    got = retrieve.lessons_for(store, query, budget, words)
    assert got.stable == (short,)  # L2: more gain, fewer tokens


def test_an_unrouted_query_gets_only_lessons_that_share_content_words(store: LessonStore) -> None:
    got = retrieve.lessons_for(store, "Count each letter of the word rhythm: how many are there?", None, words,
                               scope="nowhere")
    assert got.stable == () and got.scope is None
    assert [x.id for x in got.retrieved] == ["L1"]  # shares "count", "letter", "word": the spelling lesson
    assert retrieve.lessons_for(store, MATH, None, words).lessons == ()  # nothing relevant: nothing injected


def test_extra_lessons_of_other_scopes_go_after_the_stable_block(store: LessonStore) -> None:
    query = "Today is the 5th letter day. How many days until the date in MM/DD/YYYY? Count each letter."
    got = retrieve.lessons_for(store, query, None, words, scope="bbh/date_understanding", extra=1)
    assert [x.scope for x in got.stable] == ["bbh/date_understanding"] * 2
    assert [x.scope for x in got.retrieved] == ["letters"]
    assert retrieve.lessons_for(store, query, None, words, scope="bbh/date_understanding").retrieved == ()


def test_lessons_of_an_older_store_are_indexed_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    LessonStore(path).close()
    db = sqlite3.connect(path)  # make it look like a store from before the retrieval migration
    db.executescript("DROP TABLE distillations; ALTER TABLE completions DROP COLUMN tool_calls;"
                     "DROP TABLE prompt_terms; DROP TABLE lesson_index; DROP TABLE prompt_index;"
                     "ALTER TABLE lessons DROP COLUMN tags;"
                     "ALTER TABLE lessons DROP COLUMN loo; ALTER TABLE lessons DROP COLUMN loo_n;"
                     "ALTER TABLE lessons DROP COLUMN note; DROP INDEX gates_in_run; ALTER TABLE gates DROP COLUMN step;"
                     "ALTER TABLE gates DROP COLUMN candidate; DROP TABLE calls; DROP TABLE feedback;"
                     "DROP INDEX lessons_scope_status; DROP INDEX lessons_status;"
                     "DELETE FROM migrations WHERE name>='002';")
    db.execute("INSERT INTO lessons VALUES ('L1', 1, 'Spell the word letter by letter.', 'letters', '[]', '', '', "
               "0, 0.0, 'active', '2026-01-01')")  # the 11 columns of the first schema
    db.commit()
    db.close()
    s = LessonStore(path)
    assert s.lesson("L1").tags == ()
    assert [lid for lid, _ in s.match_lessons("spell each letter")] == ["L1"]


def test_cli_eval_routes_each_task_and_all_lessons_leak(store_at: Path | str, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture, toy_file: Path) -> None:
    from test_learn import BAD, GOOD, policy_fn, taskset

    from secondnature import cli
    from secondnature.cli import ui
    from secondnature.models import ScriptedModel
    from secondnature.tasks import split

    path = toy_file
    s = LessonStore(store_at)
    s.index_prompts("toy", [(t.id, t.prompt) for t in split(taskset().tasks, 0)["train"]])
    s.commit_revision("toy", [s.add_lesson(Lesson("", GOOD, "toy")).id], "learned")
    s.index_prompts("dates", [(f"d{i}", p) for i, p in enumerate(DATES)])
    s.commit_revision("dates", [s.add_lesson(Lesson("", BAD, "dates")).id], "learned")
    s.close()
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: ScriptedModel(policy_fn, "p"))
    base = ["--store", str(store_at), "eval", str(path), "--checker", "number", "--policy", "p", "--json"]
    assert cli.main([*base, "--retrieve"]) == 0
    routed = json.loads(capsys.readouterr().out)
    assert routed["accuracy"] == 1.0 and routed["routed"] == {"toy": routed["n"]} and routed["lessons"] == ["L1"]
    assert cli.main([*base, "--all-lessons"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert everything["accuracy"] == 0.0 and everything["lessons"] == ["L1", "L2"]  # the other task's lesson hurts


def test_real_task_sets_route_home_and_unseen_ones_get_nothing(store_at: Path | str) -> None:
    """Six built-in task sets learned into one store: their test prompts go to their own scope, and the
    prompts of task sets the store never learned are routed nowhere (no lesson leaks into them)."""
    from secondnature.tasks import load_taskset, split

    learned = ["letters:medium,hard", "bbh/object_counting", "bbh/date_understanding", "bbh/boolean_expressions",
               "bbh/sports_understanding", "bbh/navigate"]
    s = LessonStore(store_at)
    for name in learned:
        ts = load_taskset(name)
        s.index_prompts(ts.name, [(t.id, t.prompt) for t in split(ts.tasks, 0)["train"]])
    for name in learned:
        ts = load_taskset(name)
        test = split(ts.tasks, 0)["test"][:40]
        assert all(retrieve.route(s, t.prompt) == ts.name for t in test), name
    for name in ["gsm8k", "bbh/word_sorting", "bbh/logical_deduction_three_objects"]:
        test = split(load_taskset(name).tasks, 0)["test"][:40]
        assert all(retrieve.route(s, t.prompt) is None for t in test), name


def test_routing_queries_the_rarest_indexed_words_first(store: LessonStore) -> None:
    query = "How many times does the letter z appear in the word pepper?"
    rare = store.rare_words(query, k=2)
    assert rare == ["pepper", "z"] or rare[0] == "pepper"  # in one indexed prompt; "the" is in all ten
    assert store.rare_words("nothing indexed here at all xyzzy") == []
    assert retrieve.route(store, query) == "letters"


def test_routing_leaves_common_words_out_of_the_rare_search(store: LessonStore) -> None:
    """A word found in most prompts would make the rare search rank most of the index: it is searched only while
    the prompts of the words searched stay few; the rarest word always is."""
    query = "How many times does the letter z appear in the word pepper?"
    assert store.rare_words(query, k=6, max_docs=1) == ["pepper"]
    assert "the" in store.rare_words(query, k=64, max_docs=10 ** 6)  # in all ten prompts
    assert store.db.execute("SELECT doc FROM prompt_terms WHERE term = 'the'").fetchone()[0] == 10  # counted once
    assert "the" not in store.rare_words(query, k=64, max_docs=5)


def test_another_scopes_rewritten_instruction_is_never_borrowed(store: LessonStore) -> None:
    from secondnature.inject import INSTRUCTION_PREFIX
    own = store.add_lesson(Lesson("", f"{INSTRUCTION_PREFIX}\nCount each letter of the word one by one.\nAnswer: "
                                      "<number>", "letters", gain=0.9))
    store.commit_revision("letters", ["L1", "L2", own.id], "test")
    query = "Count each letter of the word rhythm: how many are there?"
    assert own.id not in [x.id for x in retrieve.lessons_for(store, query, None, words, scope="nowhere").retrieved]
    home = retrieve.lessons_for(store, "How many times does the letter a appear in the word banana?", None, words)
    assert retrieve.system_prompt("Answer.", home).startswith("Count each letter of the word one by one.")


def test_the_vocabulary_counts_words_as_the_full_text_index_does(tmp_path: Path) -> None:
    """Routing looks a query's words up in the store's own vocabulary table: its counts must be FTS5's."""
    s = LessonStore(tmp_path / "v.db")
    prompts = ["Café au lait: how many CAFÉS?", "snake_case and CamelCase words", "Count 3.5 apples, 3 pears", "café"]
    s.index_prompts("x", [(f"t{i}", p) for i, p in enumerate(prompts)])
    s.index_prompts("x", [("t0", prompts[0]), ("t9", "Naïve über-counting, 3 pears")])  # t0 is not counted twice
    s.db.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, prompt_index, 'row')")
    fts = {r[0]: r[1] for r in s.db.execute("SELECT term, doc FROM temp.v")}
    assert {r[0]: r[1] for r in s.db.execute("SELECT term, doc FROM prompt_terms")} == fts
    assert s.rare_words("how many pears are in the cafe?", k=2) == ["how", "many"]  # one prompt each; pears two
