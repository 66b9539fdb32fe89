"""The public API as a user meets it: a task set from dicts and a reward function, a model of one's own, the cache
keyed on a model's identity (never its name alone), a result that carries what was learned, and a run that says
why it stopped."""
from __future__ import annotations

import json
import re

import pytest
from test_learn import GOOD, policy_fn, reflector_of

import secondnature as sn
from secondnature.models import CachedModel, ScriptedModel


def toy_tasks(n: int = 60) -> list[dict]:
    return [{"id": f"t{i}", "prompt": f"How many times does the letter 'a' appear in word number {i}?",
             "answer": str(i % 3 + 1)} for i in range(n)]


def test_a_task_set_from_dicts_and_a_reward_function():
    def reward(task: sn.Task, reply: str) -> bool:
        return reply.strip().endswith(task.answer)
    ts = sn.task_set("toy", toy_tasks(), reward)
    assert len(ts.tasks) == 60 and ts.tasks[0].id == "t0" and "Answer:" in ts.instruction
    assert ts.reward(ts.tasks[0], "Answer: 1") == sn.Score(1.0, "reward returned True")
    assert ts.reward(ts.tasks[0], None).value == 0.0  # a reward that raises scores 0, with the error as feedback
    assert sn.task_set("toy", toy_tasks(), "number").reward(ts.tasks[1], "Answer: 2").value == 1.0
    with pytest.raises(ValueError, match="task 1 of 'bad' needs a non-empty"):
        sn.task_set("bad", [{"prompt": "p", "answer": "a"}, {"prompt": ""}], "exact")
    with pytest.raises(ValueError, match="ids of 'dup' repeat"):
        sn.task_set("dup", [{"id": "x", "prompt": "p", "answer": "a"}] * 2, "exact")


def test_the_cache_keys_on_identity_never_on_the_name(tmp_path):
    store = sn.open_store(tmp_path / "s.db")
    msgs = [{"role": "user", "content": "hi"}]
    one = CachedModel(ScriptedModel(["one"], "same-name", identity="model-a"), store)
    two = CachedModel(ScriptedModel(["two"], "same-name", identity="model-b"), store)
    again = CachedModel(ScriptedModel(["never asked"], "other-name", identity="model-a"), store)
    assert one.chat(msgs)[0].text == "one" and two.chat(msgs)[0].text == "two"  # same name, other answers
    assert again.chat(msgs)[0].text == "one" and again.chat(msgs)[0].cached  # same identity: the same answers

    class NoIdentity:
        name = "mine"

        def chat(self, messages, **kw):
            return ["x"]
    with pytest.raises(sn.ModelError, match="has no `identity`"):
        CachedModel(NoIdentity(), store)


class Mine:
    """A user's own model: plain strings back, no tokenizer; the loop must take it as it is."""

    name, identity = "mine", "mine@1"

    def chat(self, messages, *, n=1, temperature=0.0, max_tokens=512, seed=None, tools=None):
        return [policy_fn(messages) for _ in range(n)]


def test_learn_with_a_model_of_ones_own_returns_what_it_learned(tmp_path):
    ts = sn.task_set("toy", toy_tasks(), "number", instruction="Answer with a final line 'Answer: <number>'.")
    config = sn.LearnConfig(budget=80, tasks_per_step=2, group_size=2, val_size=10, proposals=1)
    result = sn.learn(Mine(), reflector_of(GOOD), ts, sn.open_store(tmp_path / "s.db"), config)
    assert [x.text for x in result.lessons] == [GOOD] and result.revision is not None
    assert result.gates and all(isinstance(g, sn.GateRecord) for g in result.gates)
    assert "nothing is left to win" in result.stopped  # the policy is right on every item with GOOD
    prompt = sn.system_prompt(ts.instruction, result.lessons, budget_tokens=200)
    assert prompt.startswith(ts.instruction) and GOOD in prompt
    assert sn.system_prompt(ts.instruction, result.lessons, budget_tokens=5) == ts.instruction  # over budget: out


def test_a_run_the_budget_cannot_finish_says_why_it_stopped(tmp_path):
    ts = sn.task_set("toy", toy_tasks(), "number")
    never = ScriptedModel(lambda m: json.dumps({"edits": [{"op": "add", "text": "Read the question twice first."}]}))
    result = sn.learn(ScriptedModel(policy_fn), never, ts, sn.open_store(tmp_path / "s.db"),
                      sn.LearnConfig(budget=120, val_size=24))
    assert result.rollouts_used <= 120 and result.steps >= 1
    assert re.search(r"\d+ of 120 rollouts spent; the \d+ left cannot pay for another step: 8 attempts at least and "
                     r"up to \d+ to gate", result.stopped)
