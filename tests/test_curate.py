"""Curation with scripted models: leave-one-out credit, retiring what does nothing, deduping, merging and
compressing, each step gated (no worse on the paired validation items) and committed as a revision."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_learn import GOOD, policy_fn, taskset

from secondnature.curate import CurateConfig, curate, parse_rewrite, similarity
from secondnature.gate import no_worse_gate
from secondnature.models import ScriptedModel
from secondnature.store import LessonStore
from secondnature.types import Lesson

INERT = "Read the question twice before you start answering it."
DUP = GOOD + " Then check the count."
WRITE = "Write the word out letter by letter before anything else."
MATCH = "Count the matches of that letter one by one in the written word."
MERGED = "Write the word out letter by letter, then count the matches one by one."


def store_with(where: Path | str, texts: list[str], scope: str = "toy") -> LessonStore:
    """A store (on each backend, where a test takes `store_at`) whose scope holds `texts`."""
    s = LessonStore(where)
    s.commit_revision(scope, [s.add_lesson(Lesson("", t, scope, gain=0.1)).id for t in texts], "learned")
    return s


def never(_messages: list[dict]) -> str:
    raise AssertionError("the reflector was not expected to be asked")


def test_leave_one_out_retires_what_does_nothing_and_keeps_what_works(store_at: Path | str) -> None:
    s = store_with(store_at, [GOOD, INERT, DUP])
    r = curate(ScriptedModel(policy_fn, "p"), ScriptedModel(never, "r"), taskset(), s, CurateConfig(val_size=10))
    # each lesson alone adds nothing while the others are there (DUP contains GOOD), so each has effect 0 ...
    assert {k: v[0] for k, v in r.loo.items()} == {"L1": 0.0, "L2": 0.0, "L3": 0.0}
    # ... but retiring is gated one step at a time against the head as it then is: the last useful one stays
    assert [x.text for x in r.after] == [DUP]
    assert [(st["op"], st["removed"], st["accepted"]) for st in r.steps] == [
        ("retire", ["L1"], True), ("retire", ["L2"], True), ("retire", ["L3"], False)]
    retired = {x.id: x for x in s.lessons("toy", "retired")}
    assert set(retired) == {"L1", "L2"} and "leave-one-out" in retired["L2"].note
    assert s.lesson("L3").loo == 0.0 and s.lesson("L3").loo_n == 10
    assert [g.decision for g in s.gates("toy")] == ["accepted", "accepted", "rejected"]


def write_and_match(messages: list[dict]) -> str:
    system, user = messages[0]["content"].lower(), messages[-1]["content"]
    gold = int(user.split("word number ")[1].rstrip("?")) % 3 + 1
    return f"Answer: {gold if 'write' in system and 'matches' in system else gold + 1}"


def test_two_overlapping_lessons_are_merged_through_the_gate(store_at: Path | str) -> None:
    assert 0.2 <= similarity(WRITE, MATCH) < 0.6
    s = store_with(store_at, [WRITE, MATCH])
    asked: list[str] = []

    def reflector(messages: list[dict]) -> str:
        asked.append(messages[-1]["content"])
        return f"Merged: {MERGED}\n"

    r = curate(ScriptedModel(write_and_match, "p"), ScriptedModel(reflector, "r"), taskset(), s,
               CurateConfig(val_size=10, overlap=0.2))
    assert r.loo["L1"][0] == r.loo["L2"][0] == 1.0  # each is needed: nothing to retire
    assert len(asked) == 1 and WRITE in asked[0] and MATCH in asked[0]
    assert [x.text for x in r.after] == [MERGED] and r.after[0].parent == "L1"
    assert {x.id for x in s.lessons("toy", "retired")} == {"L1", "L2"}
    assert s.revision_lessons(s.head("toy")) == list(r.after)


def test_a_rewrite_that_loses_items_is_rejected_and_nothing_changes(store_at: Path | str) -> None:
    s = store_with(store_at, [WRITE, MATCH])
    r = curate(ScriptedModel(write_and_match, "p"), ScriptedModel(lambda m: "Count the letters carefully, always.", "r"),
               taskset(), s, CurateConfig(val_size=10, overlap=0.2))
    assert [x.text for x in r.after] == [WRITE, MATCH]
    assert r.steps[-1]["op"] == "merge" and not r.steps[-1]["accepted"]
    assert s.lessons("toy", "retired") == [] and s.head("toy").id == 1


def test_a_long_lesson_is_compressed_when_the_shorter_one_does_as_well(store_at: Path | str) -> None:
    long = GOOD + " " + " ".join(["Take your time and be careful with every single step of the counting."] * 3)
    s = store_with(store_at, [long])
    r = curate(ScriptedModel(policy_fn, "p"), ScriptedModel(lambda m: GOOD, "r"), taskset(), s,
               CurateConfig(val_size=10, compress_over=20))
    assert [x.text for x in r.after] == [GOOD] and s.lesson("L1").status == "retired"
    assert "compress" in s.lesson("L1").note


def test_a_scope_without_lessons_is_refused() -> None:
    with pytest.raises(ValueError, match="learn"):
        curate(ScriptedModel(never), ScriptedModel(never), taskset(), LessonStore(":memory:"))


def test_no_worse_gate_accepts_ties_and_stops_once_lost() -> None:
    assert no_worse_gate([1.0, 0.0, 1.0], lambda i: [1.0, 0.0, 1.0][i]).accepted
    calls: list[int] = []
    r = no_worse_gate([1.0] * 6, lambda i: calls.append(i) or 0.0)
    assert not r.accepted and len(calls) == 4 and "stopped after 4/6" in r.reason


def test_parse_rewrite_takes_the_advice_line() -> None:
    assert parse_rewrite('Sure! Here it is:\n"Spell it out, then count."') == "Spell it out, then count."
    assert parse_rewrite("Advice: Count twice.") == "Count twice."
    assert parse_rewrite("  \n") == ""


def test_cli_curate_reports_credit_and_tokens(store_at: Path | str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture, toy_file: Path) -> None:
    import json

    from secondnature import cli
    from secondnature.cli import ui

    path = toy_file
    store_with(store_at, [GOOD, INERT], scope="toy").close()
    models = {"p": ScriptedModel(policy_fn, "p"), "r": ScriptedModel(never, "r")}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: models[spec])
    base = ["--store", str(store_at), "curate", str(path), "--checker", "number", "--policy", "p",
            "--reflector", "r", "--val-size", "10"]
    assert cli.main([*base, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["before"] == ["L1", "L2"] and out["after"] == ["L1"]
    assert out["loo"]["L1"]["effect"] > 0.5 and out["loo"]["L2"]["effect"] == 0.0
    assert out["lesson_tokens_after"] < out["lesson_tokens_before"]
    assert cli.main(["--store", str(store_at), "lessons", "list", "--all"]) == 0
    listing = capsys.readouterr().out
    assert f"{out['loo']['L1']['effect']:+.2f}" in listing and "retired: retire: leave-one-out +0.000" in listing
    assert cli.main([*base, "--lesson-tokens", "none"]) == 0  # no cap: accepted; nothing left to retire


def test_running_credit_compares_lesson_sets_that_differ_by_that_lesson_only() -> None:
    from secondnature.curate import running_credit
    rows = [("t1", 1.0, ("L1", "L2")), ("t1", 1.0, ("L1",)), ("t1", 0.0, ("L2",)),   # L1 wins t1, L2 does nothing
            ("t2", 1.0, ("L1", "L2")), ("t2", 1.0, ("L1",)), ("t2", 1.0, ("L2",)),   # t2: nobody's effect
            ("t3", 0.0, ("L3",))]                                                    # L3 never seen without
    got = running_credit(rows, ["L1", "L2", "L3", "L9"])
    assert got["L1"].effect == 0.5 and got["L1"].tasks == 2 and got["L1"].in_context == 4
    assert got["L2"].effect == 0.0 and got["L2"].tasks == 2
    assert got["L3"].effect is None and got["L3"].in_context == 1
    assert got["L9"].effect is None and got["L9"].in_context == 0


def test_lessons_list_shows_the_running_estimate_after_curation(store_at: Path | str, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture, toy_file: Path) -> None:
    import json

    from secondnature import cli
    from secondnature.cli import ui
    store_with(store_at, [GOOD, INERT], scope="toy").close()
    models = {"p": ScriptedModel(policy_fn, "p"), "r": ScriptedModel(never, "r")}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: models[spec])
    assert cli.main(["--store", str(store_at), "curate", str(toy_file), "--checker", "number", "--policy",
                     "p", "--reflector", "r", "--val-size", "10", "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["--store", str(store_at), "lessons", "list", "--all", "--json"]) == 0
    running = {x["id"]: x["running"] for x in json.loads(capsys.readouterr().out)}
    assert running["L1"]["effect"] > 0.5 and running["L1"]["tasks"] == 10  # the leave-one-out pairs, reused
    assert running["L2"]["effect"] == 0.0
    assert cli.main(["--store", str(store_at), "lessons", "list"]) == 0
    assert f"{running['L1']['effect']:+.2f}" in capsys.readouterr().out  # the "seen" column


def test_a_lesson_committed_by_another_writer_during_curation_is_kept(store_at: Path | str) -> None:
    """Another writer commits while curation measures: each retirement is applied to the head as it then is, so
    their lesson stays, and the note says the gate judged the first retirement on the older revision."""
    s = store_with(store_at, [GOOD, INERT, DUP])
    other = LessonStore(store_at)
    hand = "Say the word aloud before you count anything."

    def policy(messages: list[dict]) -> str:
        head = other.head("toy")
        if head.id == 1:
            other.commit_revision("toy", [*head.lesson_ids, other.add_lesson(Lesson("", hand, "toy")).id], "by hand",
                                  parent=head.id)
        return policy_fn(messages)
    r = curate(ScriptedModel(policy, "p"), ScriptedModel(never, "r"), taskset(), s, CurateConfig(val_size=10))
    assert [x.text for x in r.after] == [DUP, hand] == [x.text for x in s.revision_lessons(s.head("toy"))]
    first = s.revisions("toy")[2]
    assert "rebased onto revision 2" in first.note and "on revision 1" in first.note
    assert [g.current_revision for g in s.gates("toy")] == [1, 3, 4]  # each gate names the revision it compared
