"""Tier 1: the loop with scripted models. A good lesson is accepted and injected, a bad one rejected,
garbage from the reflector is recorded and skipped, and a killed run resumes without losing lessons."""
from __future__ import annotations

import json

import pytest

from secondnature import inject
from secondnature.learn import LearnConfig, learn
from secondnature.models import ModelError, ScriptedModel
from secondnature.rewards import number
from secondnature.store import LessonStore
from secondnature.types import Task, TaskSet

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
    bad = [g for g in gates if BAD in g["proposed"]]
    assert bad and all(g["decision"] == "rejected" for g in bad)
    good = [g for g in gates if g["decision"] == "accepted"]
    assert good[0]["proposed_score"] > good[0]["current_score"] and good[0]["n"] == 10
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
    assert all(g["decision"] == "rejected" for g in store.gates("toy"))


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
    reasons = [g["reason"] for g in store.gates("toy")]
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
    errors = store.db.execute("SELECT feedback FROM rollouts WHERE error != ''").fetchall()
    assert errors and all("timed out" in r[0] for r in errors)
    assert result.rollouts_used > 0


def test_policy_that_always_fails_stops_with_a_clear_error(tmp_path):
    from secondnature.types import Completion

    class Dead(ScriptedModel):
        def chat(self, messages, **kw):
            return [Completion("", error="APIConnectionError: refused")] * kw.get("n", 1)
    with pytest.raises(ModelError, match="failed on every rollout"):
        learn(Dead(policy_fn), reflector_of(GOOD), taskset(), LessonStore(tmp_path / "s.db"), config())


def test_killed_run_resumes_without_losing_accepted_lessons(tmp_path):
    """Kill the run during the second step (after a lesson was accepted); --resume finishes it."""
    path = tmp_path / "s.db"
    second = "Write the count after each letter, then read off the last count."
    proposals = iter([GOOD, second] + [second] * 50)
    reflector = ScriptedModel(lambda m: json.dumps({"edits": [{"op": "add", "text": next(proposals)}]}))

    class Killed(Exception):
        pass

    state = {"calls": 0, "kill_at": None}

    def dying(messages):
        state["calls"] += 1
        if state["kill_at"] and state["calls"] >= state["kill_at"]:
            raise Killed()
        return policy_fn(messages)

    store = LessonStore(path)
    # first find how many policy calls a full step takes, then kill inside step 2
    state["kill_at"] = 10 + 4 + 10 + 6  # base val + step-0 train + gate + part of step-1
    with pytest.raises(Killed):
        learn(ScriptedModel(dying), reflector, taskset(), store, config(budget=200))
    store.close()
    store = LessonStore(path)
    head = store.head("toy")
    assert head is not None and [x.text for x in store.revision_lessons(head)] == [GOOD]
    run = store.last_run("toy")
    assert run["status"] == "running" and run["steps_done"] >= 1
    steps_before = run["steps_done"]
    state["kill_at"] = None
    result = learn(ScriptedModel(dying), reflector, taskset(), store, config(budget=200), resume=True)
    assert result.run_id == run["id"]
    assert GOOD in [x.text for x in store.revision_lessons(result.revision)]
    assert store.last_run("toy")["status"] == "done"
    assert result.steps > steps_before


def test_lessons_never_exceed_token_budget(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    long = GOOD + " " + " ".join(["carefully"] * 40)
    result = learn(ScriptedModel(policy_fn), reflector_of(long), taskset(), store, config(lesson_tokens=20))
    # the long lesson cannot fit in 20 tokens, so it can never be tested or accepted
    assert result.accepted == 0
    assert inject.lesson_tokens(store.revision_lessons(result.revision), lambda s: len(s.split())) <= 20


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
    result = learn(policy, demo_reflector(True), taskset(), store, config(examples=False))
    lessons = store.revision_lessons(result.revision)
    assert len(lessons) == 1 and lessons[0].text.startswith("Worked example. Question: ") and GOOD in lessons[0].text
    assert lessons[0].reflection_id.endswith("-demo")

    store2 = LessonStore(tmp_path / "s2.db")
    result = learn(policy, demo_reflector(False), taskset(), store2, config(examples=False))
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
                   config(examples=False, demos=False, budget=120))
    texts = [x.text for x in store.revision_lessons(result.revision)]
    assert texts == [GOOD]
    rewrites = [r for r in store.reflections() if r["id"].endswith("-rewrite")]
    assert rewrites and "<guide>" in rewrites[0]["prompt"]
    assert any(g["decision"] == "accepted" and "rewrite" in g["proposed"] for g in store.gates("toy"))

    store2 = LessonStore(tmp_path / "s2.db")
    result = learn(ScriptedModel(policy), ScriptedModel(reply, "reflector"), taskset(), store2,
                   config(examples=False, demos=False, rewrites=False, budget=120))
    assert result.revision is None  # without the rewrite the loop has nothing that helps


LIMIT = "Never show any working."


def held_back(messages: list[dict]) -> str:
    """A policy held back by LIMIT: right whenever it is gone from the system prompt."""
    return policy_fn(messages) if LIMIT in messages[0]["content"] else policy_fn(
        [{"role": "system", "content": GOOD}, messages[-1]])


def instructing(new_instruction: str) -> ScriptedModel:
    """A reflector that answers the instruction prompt with `new_instruction` and proposes an inert lesson else."""
    inert = json.dumps({"edits": [{"op": "add", "text": "Read the question carefully before you answer it."}]})
    return ScriptedModel(lambda m: new_instruction if "<new_instruction>" in m[-1]["content"] else inert, "reflector")


def test_a_rewritten_instruction_replaces_the_tasks_own_when_the_gate_says_it_helps(tmp_path):
    """A policy held back by a line of the task instruction itself: no added lesson can remove that line, a rewritten
    instruction can. It wins, keeps the answer line, renders in the instruction's place, and a later rule rewrite
    leaves it in force."""
    ts = TaskSet("toy", taskset().tasks, number, f"{LIMIT}\nAnswer: <number>")
    # a copy of the current instruction first, as small reflectors do
    reflector = instructing(f"<new_instruction>{ts.instruction}</new_instruction>\n<new_instruction>Work the problem "
                            "out step by step, showing each count you make.</new_instruction>")
    store = LessonStore(tmp_path / "s.db")
    result = learn(ScriptedModel(held_back), reflector, ts, store,
                   config(examples=False, demos=False, rewrites=False, instructions=True, budget=120))
    texts = [x.text for x in store.revision_lessons(result.revision)]
    assert texts == [f"{inject.INSTRUCTION_PREFIX}\nWork the problem out step by step, showing each count you make."
                     "\nAnswer: <number>"]
    assert result.val_score == 1.0
    system = inject.render(ts.instruction, store.revision_lessons(result.revision))
    assert system.startswith("Work the problem out") and LIMIT not in system
    assert any(g["decision"] == "accepted" and "instruct" in g["proposed"] for g in store.gates("toy"))

    from secondnature.learn import apply
    from secondnature.types import Edit, Lesson
    current = store.revision_lessons(result.revision) + [Lesson("L9", "Check the count twice.", "toy")]
    after = apply(current, Edit("rewrite", "One paragraph that replaces the rules."), "L10", "toy")
    assert [x.text for x in after][0] == texts[0] and len(after) == 2  # the instruction stays
    another = f"{inject.INSTRUCTION_PREFIX}\nAnother one.\nAnswer: <number>"
    after = apply(current, Edit("instruct", another), "L10", "toy")
    assert [x.id for x in after] == ["L9", "L10"] and after[-1].parent == current[0].id  # one instruction at a time

    store2 = LessonStore(tmp_path / "s2.db")
    result = learn(ScriptedModel(held_back), reflector, ts, store2,
                   config(examples=False, demos=False, rewrites=False, instructions=False, budget=120))
    assert result.revision is None  # lessons alone cannot lift the limit


def test_leaving_a_sentence_out_of_the_instruction_finds_the_limit_a_copying_reflector_never_drops(tmp_path):
    """The reflector only copies the instruction; leaving out each of its sentences in turn finds the one that holds
    the policy back."""
    ts = TaskSet("toy", taskset().tasks, number, f"Solve the problem. {LIMIT} Then end with a final line:\n"
                                                 "Answer: <number>")
    store = LessonStore(tmp_path / "s.db")
    copying = instructing(f"<new_instruction>{ts.instruction}</new_instruction>")
    result = learn(ScriptedModel(held_back), copying, ts, store,
                   config(examples=False, demos=False, rewrites=False, instructions=True, budget=200))
    texts = [x.text for x in store.revision_lessons(result.revision)]
    assert texts == [f"{inject.INSTRUCTION_PREFIX}\nSolve the problem. Then end with a final line:\nAnswer: <number>"]
    notes = [r["parse_error"] for r in store.reflections() if r["id"].endswith("-instruct")]
    assert notes and all("copy of the current one" in n for n in notes)
    cuts = [json.loads(g["proposed"])[0]["text"] for g in store.gates("toy") if '"instruct"' in g["proposed"]]
    assert len(cuts) == len(set(cuts)) == 3  # all three at the first step, which the one that helps wins


def test_the_reflectors_prompts_of_a_step_share_their_opening_and_come_in_a_row(tmp_path):
    """The reflection, rule-rewrite and instruction prompts differ only in their closing request and are asked one
    after another, the demonstration after them: a local reflector reads the long evidence once a step."""
    reflector = reflector_of(GOOD)
    learn(ScriptedModel(policy_fn, "policy"), reflector, taskset(), LessonStore(tmp_path / "s.db"),
          config(instructions=True))
    prompts = [m[-1]["content"] for m in reflector.calls]
    kinds = ["reflect" if "diagnose" in p else "rewrite" if "<guide>" in p else
             "instruct" if "<new_instruction>" in p else "demo" for p in prompts]
    assert kinds[:4] == ["reflect", "rewrite", "instruct", "demo"]
    opening = prompts[0][:prompts[0].index("First, in two")]
    assert "Lessons it already follows" in opening and "word number" in opening
    assert prompts[1].startswith(opening) and prompts[2].startswith(opening) and not prompts[3].startswith(opening)
