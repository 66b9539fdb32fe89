"""Faults survived and nothing gained from them: every kind of bad answer from a real HTTP endpoint (through the
real `openai` SDK) becomes a failed call with a reason, never an exception in the loop or a hang; a failed
validation call leaves the paired comparison instead of scoring a 0 a candidate can win against; an outage
stops the gate with a reason."""
from __future__ import annotations

import math
import time

import pytest
from fault_server import FAULTS, FaultServer

import secondnature as sn
from secondnature.models import ModelError, OpenAIModel, parse_response
from secondnature.store import fresh_store
from secondnature.types import Completion, Lesson
from secondnature.validate import RETRIES, Validation


@pytest.fixture
def server():
    s = FaultServer(stall_s=6.0)
    yield s
    s.close()


@pytest.mark.parametrize("raw", [b"<html>oops</html>", b"not json", b'{"choices": []}', b'{"choices": [{}]}',
                                 b'{"choices": [{"message": {"content": 7}}]}', b"[1, 2]", b"[" * 100_000])
def test_a_malformed_body_is_a_model_error_with_a_reason(raw):
    with pytest.raises(ModelError, match="endpoint|choice|content"):
        parse_response(raw, 1)


@pytest.mark.parametrize("fault", FAULTS)
def test_every_endpoint_fault_is_a_failed_call_not_a_crash_or_a_hang(server, fault):
    model = OpenAIModel("m", base_url=server.url, timeout=3.0, max_retries=0, check=False)
    server.queue = [fault]
    t0 = time.monotonic()
    out = model.chat([{"role": "user", "content": "hi"}])
    assert time.monotonic() - t0 < 12, "a fault must not hang the call"
    assert len(out) == 1 and out[0].error and out[0].text == "", out
    assert model.chat([{"role": "user", "content": "hi"}])[0].text == "Answer: 0"  # the next call is fine


def test_the_sdk_retries_transient_faults(server):
    model = OpenAIModel("m", base_url=server.url, timeout=3.0, max_retries=2, check=False)
    server.queue = ["500", "429"]
    out = model.chat([{"role": "user", "content": "hi"}])
    assert out[0].text == "Answer: 0" and not out[0].error and server.served[:3] == ["500", "429", "ok"]


class Flaky:
    """A policy that always answers 0, whose calls `after` + 1 to `after` + `fail` fail."""

    def __init__(self, fail: int, after: int = 0):
        self.name, self.identity, self.fail, self.after, self.calls = "flaky", f"flaky-{fail}-{id(self)}", fail, after, 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def chat(self, messages, *, n=1, temperature=0.0, max_tokens=512, seed=None, tools=None):
        out = []
        for _ in range(n):
            self.calls += 1
            out.append(Completion(text="", error="APIConnectionError: injected")
                       if self.after < self.calls <= self.after + self.fail
                       else Completion(text="Answer: 0"))
        return out


def _validation(tmp_path, fail: int) -> Validation:
    ts = sn.task_set("zeros", [{"prompt": f"What is {i} times 0?", "answer": "0"} for i in range(48)], "number")
    store = fresh_store(tmp_path / "s.db")
    return Validation(sn.models.cached(Flaky(fail), store), ts, ts.tasks[:24], store, budget=10_000,
                      confirm=ts.tasks[24:], seed=0)


INERT = [Lesson("L1", "Read the question carefully.", "zeros")]


@pytest.mark.parametrize("fail", [3, 3 * (1 + RETRIES), 10 * (1 + RETRIES), 40 * (1 + RETRIES)])
def test_an_outage_never_gets_an_inert_lesson_accepted(tmp_path, fail):
    v = _validation(tmp_path, fail)
    g = v.gate([], INERT, order_seed=1)
    assert not g.accepted and g.wins == 0, g
    # the current revision's 24 items go out together and are retried together, so an outage shorter than every
    # try of all of them is ridden out; a longer one stops the gate and says why
    if fail >= 24 * (1 + RETRIES):
        assert "the model failed on" in g.reason and "injected" in g.reason
    else:
        assert "failed" not in g.reason and v.errors == 0, g


def test_a_failed_item_pairs_with_nothing_and_is_asked_again(tmp_path):
    v = _validation(tmp_path, 1 + RETRIES)  # item 0's three tries fail
    assert math.isnan(v.score([], 0)) and v.errors == 1
    assert v.score([], 0) == 1.0  # not remembered: the next gate asks again, and the outage is over
    assert v.score([], 1) == 1.0


def _half_zeros():
    return sn.task_set("half", [{"prompt": f"What is {i} mod 2?", "answer": str(i % 2)} for i in range(48)], "number")


def test_a_step_whose_every_call_failed_is_asked_again_not_ended(tmp_path):
    policy = Flaky(fail=4, after=6)  # validation's 6 calls pass; the first step's whole batch (2 x 2) fails once
    config = sn.LearnConfig(budget=40, val_size=6, tasks_per_step=2, group_size=2, confirm=False)
    result = sn.learn(policy, sn.models.ScriptedModel(lambda m: ""), _half_zeros(), fresh_store(tmp_path / "s.db"),
                      config)
    assert result.steps >= 1 and result.train_rollouts >= 4 and policy.calls >= 6 + 4 + 4


def test_an_endpoint_down_for_a_whole_step_stops_with_the_fix(tmp_path):
    config = sn.LearnConfig(budget=40, val_size=6, tasks_per_step=2, group_size=2, confirm=False)
    with pytest.raises(ModelError, match="--resume"):
        sn.learn(Flaky(fail=10_000, after=6), sn.models.ScriptedModel(lambda m: ""), _half_zeros(),
                 fresh_store(tmp_path / "s.db"), config)
