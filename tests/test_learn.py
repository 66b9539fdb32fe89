"""Tier 1: the loop with scripted models. A good lesson is accepted and injected, a bad one rejected,
garbage from the reflector is recorded and skipped, and a killed run resumes without losing lessons."""
from __future__ import annotations

import json

import pytest

from secondnature import inject
from secondnature.learn import LearnConfig, learn
from secondnature.models import ModelError, ScriptedModel
from secondnature.propose import demonstration, reflector_edits, rule_rewrite
from secondnature.rewards import number
from secondnature.store import LessonStore
from secondnature.types import Lesson, Task, TaskSet

GOOD = "Spell the word out letter by letter, then count the matches one by one."
BAD = "Always answer with the number zero to save time and effort."


def taskset(n: int = 60) -> TaskSet:
    tasks = tuple(Task(f"t{i}", f"How many times does the letter 'a' appear in word number {i}?", str(i % 3 + 1))
                  for i in range(n))
    return TaskSet("toy", tasks, number, "Answer with a final line 'Answer: <number>'.")


def policy_fn(messages: list[dict]) -> str:
    """Right when the good lesson is in the system prompt, wrong (off by one) otherwise; zero with the bad one."""
    system, user = messages[0]["content"], messages[-1]["content"]
    i = int(user.split("word number ")[1].rstrip("?"))
    gold = i % 3 + 1
    if BAD in system:
        return "Answer: 0"
    if GOOD in system:
        return f"a-p-p-l-e ... Answer: {gold}"
    return f"Answer: {gold + 1 if i % 4 else gold}"  # right on every 4th task: groups are mixed


def reflector_of(*lessons: str):
    return ScriptedModel(lambda m: json.dumps({"edits": [{"op": "add", "text": t} for t in lessons]}), "reflector")


def config(**kw) -> LearnConfig:
    return LearnConfig(**{"budget": 80, "tasks_per_step": 2, "group_size": 2, "val_size": 10, "proposals": 1,
                          **kw})


def test_good_lesson_is_accepted_and_injected_bad_one_rejected(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    policy = ScriptedModel(policy_fn, "policy")
    result = learn(policy, reflector_of(BAD, GOOD), taskset(), store, config())
    lessons = store.revision_lessons(result.revision)
    assert [x.text for x in lessons] == [GOOD]
    assert result.accepted == 1 and result.rejected >= 1
    gates = store.gates("toy")
    bad = [g for g in gates if g.proposed[0].text == BAD]
    assert bad and all(g.decision == "rejected" for g in bad)
    good = [g for g in gates if g.decision == "accepted"]
    assert good[0].proposed_score > good[0].current_score and good[0].n == 10
    assert [g.decision for g in result.gates] == [g.decision for g in gates]  # the run hands back what it recorded
    # evidence: the lesson links to the reflection and the rollouts it was written from
    lesson = lessons[0]
    assert lesson.reflection_id and store.reflection(lesson.reflection_id)
    assert lesson.evidence and all(store.rollout(r) for r in lesson.evidence)
    assert lesson.gain > 0
    # injected from then on: later training rollouts carried the lesson in their system prompt
    assert any(GOOD in m[0]["content"] and "word number" in m[-1]["content"] for m in policy.calls)
    assert result.rollouts_used <= 80


def test_lesson_that_does_not_help_is_rejected(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(policy_fn), reflector_of(BAD), taskset(), store, config(budget=60))
    assert result.revision is None and result.accepted == 0
    assert all(g.decision == "rejected" for g in store.gates("toy"))


def test_a_gate_winner_that_does_not_hold_on_fresh_items_is_rejected(tmp_path):
    """A lesson that happens to help on the gate's validation items only (the winner's curse, made certain)."""
    from secondnature.learn import confirm_split, learn_split
    lucky = "Trust your first instinct and answer quickly without checking."
    gate_ids = {t.id for t in learn_split(taskset(120), config())[1]}
    confirm_ids = {t.id for t in confirm_split(taskset(120), config())}
    assert confirm_ids and not confirm_ids & gate_ids

    def policy(messages):  # right on even items without the lesson; with it, right exactly on the gate's items
        user = messages[-1]["content"]
        i = int(user.split("word number ")[1].rstrip("?"))
        right = f"t{i}" in gate_ids if lucky in messages[0]["content"] else i % 2 == 0
        return f"Answer: {i % 3 + 1 if right else i % 3 + 2}"

    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(policy), reflector_of(lucky), taskset(120), store, config(budget=60))
    assert result.accepted == 0
    reasons = [g.reason for g in store.gates("toy")]
    assert any("did not hold on" in r for r in reasons)
    # without the confirmation sample, the same run would have taken the lucky lesson
    result = learn(ScriptedModel(policy), reflector_of(lucky), taskset(120), LessonStore(tmp_path / "t.db"),
                   config(budget=60, confirm=False))
    assert result.accepted == 1


@pytest.mark.parametrize("reply", ["Certainly! Please provide the inputs.", "{not json", "", "```json\n[]\n```"])
def test_unparseable_reflection_is_recorded_and_skipped(tmp_path, reply):
    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(policy_fn), ScriptedModel(lambda m: reply), taskset(), store, config(budget=40))
    assert result.accepted == 0 and result.steps >= 1
    refl = store.reflections()
    assert refl and all(r["raw"] == reply and r["parse_error"] for r in refl)


def test_failing_policy_scores_zero_and_run_goes_on(tmp_path):
    calls = {"n": 0}

    class Flaky(ScriptedModel):
        def chat(self, messages, **kw):
            calls["n"] += 1
            out = super().chat(messages, **kw)
            if calls["n"] % 3 == 0:
                from secondnature.types import Completion
                return [Completion("", error="APITimeoutError: timed out")]
            return out
    store = LessonStore(tmp_path / "s.db")
    result = learn(Flaky(policy_fn), reflector_of(GOOD), taskset(), store, config(budget=60))
    errors = store.db.execute("SELECT feedback, score FROM rollouts WHERE error != ''").fetchall()
    assert errors and all("timed out" in r[0] and r[1] == 0 for r in errors)
    assert [x.text for x in result.lessons] == [GOOD]  # the run went on, and learned despite the failures


def test_policy_that_always_fails_stops_with_a_clear_error(tmp_path):
    from secondnature.types import Completion

    class Dead(ScriptedModel):
        def chat(self, messages, **kw):
            return [Completion("", error="APIConnectionError: refused")] * kw.get("n", 1)
    with pytest.raises(ModelError, match="failed on every rollout"):
        learn(Dead(policy_fn), reflector_of(GOOD), taskset(), LessonStore(tmp_path / "s.db"), config())


class Killed(Exception):
    pass


class Dying(ScriptedModel):
    """A policy right with GOOD except on every fifth item (so validation never reaches 100%), killed at the first
    training call made with GOOD in context: after the revision that took GOOD was committed."""

    def __init__(self, kill: bool):
        super().__init__(self.reply, "policy", identity="dying-policy")
        self.kill = kill

    def reply(self, messages):
        i = int(messages[-1]["content"].split("word number ")[1].rstrip("?"))
        return policy_fn(messages) if GOOD not in messages[0]["content"] or i % 5 else "Answer: 0"

    def chat(self, messages, **kw):
        if self.kill and kw.get("temperature", 0) > 0 and GOOD in messages[0]["content"]:
            raise Killed()
        return super().chat(messages, **kw)


def test_killed_run_resumes_without_losing_accepted_lessons(tmp_path):
    path = tmp_path / "s.db"
    second = "Write the count after each letter, then read off the last count."
    reflector = ScriptedModel(lambda m: json.dumps({"edits": [{"op": "add", "text": t} for t in (GOOD, second)]}),
                              identity="reflector")
    store = LessonStore(path)
    with pytest.raises(Killed):
        learn(Dying(kill=True), reflector, taskset(), store, config(budget=200))
    store.close()
    store = LessonStore(path)
    head = store.head("toy")
    assert head is not None and [x.text for x in store.revision_lessons(head)] == [GOOD]
    run = store.last_run("toy")
    assert run["status"] == "running" and run["steps_done"] == 1
    spent = run["rollouts_used"]
    # resumed with no budget left for a step: it stops at once, and its head's validation is not paid again
    bar: list[int] = []
    result = learn(Dying(kill=False), reflector, taskset(), store, config(budget=spent), resume=True,
                   progress=lambda n, m: bar.append(n))
    assert result.run_id == run["id"] and result.rollouts_used == spent and bar[0] == spent
    assert "rollouts spent" in result.stopped
    result = learn(Dying(kill=False), reflector, taskset(), store, config(budget=200), resume=True)
    assert result.steps > 1 and store.last_run("toy")["status"] == "done"
    assert GOOD in [x.text for x in store.revision_lessons(result.revision)]
    places = [(g.run_id, g.step, g.candidate) for g in store.gates("toy")]
    assert len(places) == len(set(places))  # a resumed step records its gates once


def test_lessons_never_exceed_token_budget(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    long = "Before you answer, " + " ".join(["carefully"] * 40) + " spell the word out and count the letters."
    result = learn(ScriptedModel(policy_fn), reflector_of(long, GOOD), taskset(), store, config(lesson_tokens=30))
    # the long lesson cannot fit in 30 tokens, so it is never tested; the short one fits and is accepted
    assert [x.text for x in result.lessons] == [GOOD]
    assert all(g.proposed[0].text != long for g in store.gates("toy"))
    assert 0 < inject.lesson_tokens(result.lessons, lambda s: len(s.split())) <= 30


def test_worked_example_from_the_policys_own_best_attempt(tmp_path):
    """A correct attempt that shows its working, in a group with failures, is gated as an example lesson."""
    worked = "Letters: b, a, n, a, n, a. The letter a is at positions 2, 4 and 6, so it appears three times. Answer: {g}"

    calls = {"n": 0}

    def policy(messages):
        system, user = messages[0]["content"], messages[-1]["content"]
        i = int(user.split("word number ")[1].rstrip("?"))
        gold = i % 3 + 1
        calls["n"] += 1
        if "Worked example." in system:
            return worked.format(g=gold)
        return worked.format(g=gold) if calls["n"] % 2 else f"Answer: {gold + 1}"  # mixed groups, poor greedy

    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(policy), ScriptedModel(lambda m: "no idea"), taskset(), store, config())
    lessons = store.revision_lessons(result.revision)
    assert len(lessons) == 1 and lessons[0].text.startswith("Worked example. Question:")
    assert "positions 2, 4 and 6" in lessons[0].text and lessons[0].evidence


def demo_reflector(correct: bool):
    """Proposes only a harmful rule; asked for a demonstration, solves the task (rightly or not) with the good method."""
    def reply(messages: list[dict]) -> str:
        text = messages[-1]["content"]
        if "correct answer is:" in text:
            gold = int(text.split("correct answer is: ")[1].split()[0])
            return f"{GOOD}\nAnswer: {gold if correct else gold + 5}"
        return json.dumps({"edits": [{"op": "add", "text": BAD}]})
    return ScriptedModel(reply, "reflector")


def test_reflector_demonstration_is_checked_then_gated(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    policy = ScriptedModel(policy_fn, "policy")
    result = learn(policy, demo_reflector(True), taskset(), store, config(), proposers=(reflector_edits, rule_rewrite, demonstration))
    lessons = store.revision_lessons(result.revision)
    assert len(lessons) == 1 and lessons[0].text.startswith("Worked example. Question: ") and GOOD in lessons[0].text
    assert lessons[0].reflection_id.endswith("-demo")

    store2 = LessonStore(tmp_path / "s2.db")
    result = learn(policy, demo_reflector(False), taskset(), store2, config(), proposers=(reflector_edits, rule_rewrite, demonstration))
    assert result.revision is None  # a demonstration with the wrong answer never reaches a gate
    notes = [r["parse_error"] for r in store2.reflections() if r["id"].endswith("-demo")]
    assert notes and all("checker rejects the demonstration" in n for n in notes)


def test_rewrite_replaces_the_rules_when_the_gate_says_it_helps(tmp_path):
    """A reflector whose single lessons are useless but whose whole rewrite carries the method: the rewrite wins,
    and the rules it replaces leave the revision (they stay in the store)."""
    filler = "Read the question carefully before you start to answer it."

    def reply(messages: list[dict]) -> str:
        if "<guide>" in messages[-1]["content"]:
            return f"Diagnosis first.\n<guide>{GOOD}</guide>"
        return json.dumps({"edits": [{"op": "add", "text": filler}]})

    def policy(messages: list[dict]) -> str:  # the filler lesson is inert, the good one fixes every answer
        return policy_fn(messages) if filler not in messages[0]["content"] or GOOD in messages[0]["content"] else \
            policy_fn([{"role": "system", "content": ""}, messages[-1]])

    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(policy), ScriptedModel(reply, "reflector"), taskset(), store,
                   config(budget=120), proposers=(reflector_edits, rule_rewrite))
    texts = [x.text for x in store.revision_lessons(result.revision)]
    assert texts == [GOOD]
    rewrites = [r for r in store.reflections() if r["id"].endswith("-rewrite")]
    assert rewrites and "<guide>" in rewrites[0]["prompt"]
    assert any(g.decision == "accepted" and g.proposed[0].op == "rewrite" for g in store.gates("toy"))

    store2 = LessonStore(tmp_path / "s2.db")
    result = learn(ScriptedModel(policy), ScriptedModel(reply, "reflector"), taskset(), store2,
                   config(budget=120), proposers=(reflector_edits,))
    assert result.revision is None  # without the rewrite the loop has nothing that helps


def test_a_rewrite_keeps_the_worked_example_and_an_instruction_lesson(tmp_path):
    """A rewrite replaces the rules only; an instruction lesson learned by an older version keeps its place."""
    from secondnature.propose import Step, apply
    from secondnature.types import Edit, Lesson
    current = (Lesson("L1", f"{inject.INSTRUCTION_PREFIX}\nWork it out.\nAnswer: <number>", "toy"),
               Lesson("L2", "Worked example. Question: q Good answer: a", "toy"), Lesson("L3", GOOD, "toy"))
    step = Step(1, 0, 0, taskset(), "Count.", current, (), (), {}, ScriptedModel([]), "L4")
    after, why = apply(step, Edit("rewrite", "One paragraph that replaces the rules, whatever they said."))
    assert not why and [x.id for x in after] == ["L1", "L2", "L4"] and after[-1].parent == "L3"
    assert apply(step, Edit("add", GOOD.replace("one by one", "one at a time")))[1] == "repeats L3 in nearly the same words"


def test_the_reflectors_prompts_of_a_step_share_their_opening_and_come_in_a_row(tmp_path):
    """The reflection and rule-rewrite prompts differ only in their closing request and are asked one after the other,
    the demonstration after them: a local reflector reads the long evidence once a step."""
    reflector = reflector_of(GOOD)
    learn(ScriptedModel(policy_fn, "policy"), reflector, taskset(), LessonStore(tmp_path / "s.db"), config())
    prompts = [m[-1]["content"] for m in reflector.calls]
    kinds = ["reflect" if "diagnose" in p else "rewrite" if "<guide>" in p else "demo" for p in prompts]
    assert kinds[:3] == ["reflect", "rewrite", "demo"]
    opening = prompts[0][:prompts[0].index("First, in two")]
    assert "Lessons it already follows" in opening and "word number" in opening
    assert prompts[1].startswith(opening) and not prompts[2].startswith(opening)


HAND = "Read the question twice before you start answering it."


def test_a_lesson_committed_by_another_writer_during_a_run_is_kept(tmp_path):
    """A hand edit (or another run) commits while this run reflects: the accepted lesson is applied to that revision,
    not committed over it, and the note says the gate judged it on the older one."""
    store, other = LessonStore(tmp_path / "s.db"), LessonStore(tmp_path / "s.db")

    def reflect(messages: list[dict]) -> str:
        if other.head("toy") is None:
            other.commit_revision("toy", [other.add_lesson(Lesson("", HAND, "toy")).id], "by hand", parent=None)
        return json.dumps({"edits": [{"op": "add", "text": GOOD}]})
    result = learn(ScriptedModel(policy_fn, "policy"), ScriptedModel(reflect, "reflector"), taskset(), store, config())
    head = store.head("toy")
    assert [x.text for x in store.revision_lessons(head)] == [HAND, GOOD] == [x.text for x in result.lessons]
    assert "rebased onto revision 1" in head.note and "on revision None" not in head.note
    (accepted,) = [g for g in store.gates("toy") if g.decision == "accepted"]
    assert accepted.current_revision is None and accepted.revision_id == head.id  # what the gate really compared


def test_a_demonstration_is_bootstrapped_from_the_reflectors_own_checked_answer_first(tmp_path):
    """Asked the question as the policy is (the answer withheld), the stronger model solves it with its working;
    that reply, checked by the reward, is the worked example, and the answer-shown request is never made."""
    asked_with_answer = []

    def reply(messages: list[dict]) -> str:
        text = messages[-1]["content"]
        if "correct answer is:" in text:
            asked_with_answer.append(text)
        if messages[0]["role"] == "system" and "word number" in text:  # asked as the policy is
            i = int(text.split("word number ")[1].rstrip("?"))
            return f"{GOOD} The word has these letters, counted one by one.\nAnswer: {i % 3 + 1}"
        return json.dumps({"edits": [{"op": "add", "text": BAD}]})

    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(policy_fn, "policy"), ScriptedModel(reply, "reflector"), taskset(), store, config(),
                   proposers=(demonstration,))
    lessons = store.revision_lessons(result.revision)
    assert len(lessons) == 1 and lessons[0].text.startswith("Worked example. Question: ")
    assert "-boot" in lessons[0].reflection_id and not asked_with_answer


def test_a_demonstration_never_quotes_a_question_that_is_also_held_out():
    """A failed training question that appears, word for word, among the held-out items is not quoted: a worked
    example of it would show validation and test its answer."""
    from secondnature.propose import Step
    from secondnature.types import Rollout, Score
    ts = taskset(4)
    train, twin = ts.tasks[:3], Task("held", "  How many times does the letter 'a' appear in WORD number 0?", "1")
    tasks = {t.id: t for t in (*ts.tasks, twin)}
    failed = tuple(Rollout(f"r{i}", "t0", (), "Answer: 9", Score(0.0), (), "p", 0, i) for i in range(2))
    reflector = demo_reflector(True)
    step = Step(1, 0, 0, ts, ts.instruction, (), (failed,), failed, tasks, reflector, "L1", train=train)
    assert demonstration(step).candidates == () and reflector.calls == []
    alone = Step(1, 0, 0, ts, ts.instruction, (), (failed,), failed, {t.id: t for t in ts.tasks}, reflector, "L1",
                 train=train)
    assert demonstration(alone).candidates  # without its twin the same question is quoted


def test_a_small_budget_is_planned_so_it_learns_and_leaves_little_unspent(tmp_path):
    """With the default gate sample (24) a budget of 120 would pay for the first validation and no step; the plan
    shrinks the sample, says so, and the run learns; the last step shrinks to spend what is left."""
    said = []
    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(policy_fn, "policy"), reflector_of(GOOD), taskset(120), store,
                   LearnConfig(budget=120, proposals=1), progress=lambda n, m: m and said.append(m))
    assert any(m.startswith("plan: 12 validation items per gate instead of 24") for m in said)
    assert result.accepted == 1 and result.steps >= 1


def test_the_last_step_takes_fewer_tasks_rather_than_leave_the_budget_unspent(tmp_path):
    sampled, at_step = [0], []  # training attempts (temperature > 0) so far, when each step's line is printed

    class Policy(ScriptedModel):
        def chat(self, messages, *, temperature=0.0, n=1, **kw):
            sampled[0] += (temperature > 0) * n
            return super().chat(messages, temperature=temperature, n=n, **kw)

    never = ScriptedModel(lambda m: json.dumps({"edits": [{"op": "add", "text": BAD}]}), "reflector")
    result = learn(Policy(policy_fn, "policy"), never, taskset(), LessonStore(tmp_path / "s.db"),
                   config(budget=90, tasks_per_step=4, group_size=2),
                   progress=lambda n, m: m.startswith("step ") and at_step.append(sampled[0]))
    sizes = [b - a for a, b in zip([0, *at_step], at_step)]
    assert sizes[:-1] == [8] * (len(sizes) - 1) and 4 <= sizes[-1] < 8  # 4 tasks x 2, then a smaller last step
    assert 90 - result.rollouts_used < 4 * 2 + 10 + 20 and "cannot pay for another step" in result.stopped


def test_a_confirmation_at_the_end_of_the_budget_uses_the_fresh_items_it_can_pay_for(tmp_path):
    from secondnature.validate import MIN_CONFIRM, Validation
    ts = taskset(120)
    v = Validation(ScriptedModel(policy_fn), ts, ts.tasks[:24], LessonStore(tmp_path / "s.db"), budget=100,
                   confirm=ts.tasks[24:48])
    assert v.confirmable([]) == 24 and v.to_confirm([]) == 2 * MIN_CONFIRM
    v.spent = 70  # 30 left: 15 fresh items, the candidate's and the current revision's
    assert v.confirmable([]) == 15
    v.scores([], confirm=True)  # the current revision's fresh scores, paid: now only the candidate's cost
    v.spent = 70
    assert v.confirmable([]) == 24
    v.spent, v._scores = 80, {}  # 20 left, nothing paid: 10 fresh items would be too few to confirm on
    assert v.confirmable([]) == 0


# ---------------------------------------------------------------- proposals sent in from outside (secondnature mcp)

def proposal(store: LessonStore, text: str) -> Lesson:
    return store.add_lesson(Lesson("", text, "toy", status="proposed", note="waits for the gate"))


def test_a_proposal_waits_for_the_gate_and_joins_the_head_under_its_own_id_when_it_wins(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    good = proposal(store, GOOD)
    silent = ScriptedModel(lambda m: json.dumps({"edits": []}), "reflector")  # the loop writes nothing of its own
    result = learn(ScriptedModel(policy_fn, "policy"), silent, taskset(), store, config())
    assert [x.id for x in result.lessons] == [good.id] and store.head("toy").lesson_ids == (good.id,)
    won = store.lesson(good.id)
    assert (won.status, won.note) == ("active", "") and won.gain > 0
    gate = next(g for g in store.gates("toy") if g.decision == "accepted")
    assert gate.proposed[0].id == good.id and gate.revision_id == result.revision.id
    assert store.lessons("toy", "proposed") == []


def test_a_proposal_that_loses_its_gate_is_rejected_with_the_reason_and_not_gated_again(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    bad = proposal(store, BAD)
    result = learn(ScriptedModel(policy_fn), reflector_of(GOOD), taskset(), store, config())
    assert [x.text for x in result.lessons] == [GOOD]  # the loop's own lesson won; the proposal lost
    lost = store.lesson(bad.id)
    assert lost.status == "rejected" and lost.note.startswith("gate: ") and bad.id not in store.head("toy").lesson_ids
    gated = [g for g in store.gates("toy") if g.proposed[0].id == bad.id]
    assert len(gated) == 1 and gated[0].decision == "rejected" and lost.note == f"gate: {gated[0].reason}"
    learn(ScriptedModel(policy_fn), reflector_of(GOOD), taskset(), store, config(budget=60))
    assert len([g for g in store.gates("toy") if g.proposed[0].id == bad.id]) == 1
    assert store.lesson(bad.id).status == "rejected"


def test_a_proposal_that_passed_but_was_not_taken_keeps_waiting(tmp_path):
    from secondnature.learn import BETTER, UNCONFIRMED, settle
    from secondnature.propose import PROPOSAL
    from secondnature.types import Candidate, Edit, GateRecord
    store = LessonStore(tmp_path / "s.db")
    a, b, c = (proposal(store, f"Proposal number {i} says count each letter twice.") for i in (1, 2, 3))
    cands = [Candidate(Edit("add", x.text, x.id), (x,), PROPOSAL) for x in (a, b, c)]
    records = [GateRecord("toy", (cands[k].edit,), 10, 0.5, 0.6, 3, 1, 0.1, "rejected", why, candidate=k)
               for k, why in enumerate([BETTER, f"passed (3 wins) but {UNCONFIRMED}", "2 wins, 6 losses"])]
    settle(store, cands, records)
    assert [store.lesson(x.id).status for x in (a, b, c)] == ["proposed", "proposed", "rejected"]
    assert store.lesson(c.id).note == "gate: 2 wins, 6 losses"
