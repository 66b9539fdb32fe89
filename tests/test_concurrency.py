"""Rollouts in flight at once against a real HTTP endpoint (through the real `openai` SDK): the same rollouts in the
same order as one at a time, never more in flight than asked, and a 429 holding every request back for its
Retry-After. The speed-up is measured in benchmarks/concurrency.py, not here."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from fault_server import FaultServer

import secondnature as sn
from secondnature import rollout
from secondnature.executor import in_flight, ordered
from secondnature.models import ModelError, OpenAIModel, cached
from secondnature.models.endpoint import retry_after
from secondnature.store import fresh_store


def echo(messages: list[dict]) -> str:
    """Answers with the number in the question, so each rollout's reply says which task it was."""
    return "Answer: " + messages[-1]["content"].split()[-1].rstrip("?")


@pytest.fixture
def server():
    s = FaultServer(answer=echo)
    yield s
    s.close()


def tasks(n: int):
    return sn.task_set("echo", [{"prompt": f"Say the number {i}?", "answer": str(i)} for i in range(n)], "number")


def test_rollouts_in_flight_come_back_in_order_and_the_same_as_one_at_a_time(server):
    ts = tasks(12)
    server.latency_s = 0.2
    one = rollout.run(OpenAIModel("m", base_url=server.url, concurrency=1, check=False), ts.tasks, ts.reward, "sys",
                      [], n=2, temperature=0.7)
    assert server.most_busy == 1
    server.most_busy = 0
    seen: list[str] = []
    many = rollout.run(OpenAIModel("m", base_url=server.url, concurrency=4, check=False), ts.tasks, ts.reward, "sys",
                       [], n=2, temperature=0.7, on_done=lambda r: seen.append(r.id))
    assert server.most_busy == 4  # four in flight, never more
    assert [(r.id, r.task_id, r.sample, r.completion, r.score.value) for r in many] == \
           [(r.id, r.task_id, r.sample, r.completion, r.score.value) for r in one]
    assert seen == [r.id for r in many] and all(r.score.value == 1 for r in many)


def test_the_completion_cache_is_shared_safely_by_rollouts_in_flight(server, tmp_path):
    store = fresh_store(tmp_path / "s.db")
    ts = tasks(16)
    model = cached(OpenAIModel("m", base_url=server.url, concurrency=8, check=False), store)
    first = rollout.run(model, ts.tasks, ts.reward, "sys", [], n=3, temperature=0.7, on_done=lambda r: store.add_rollouts([r]))
    served = len(server.served)
    again = rollout.run(model, ts.tasks, ts.reward, "sys", [], n=3, temperature=0.7)
    assert len(server.served) == served  # every completion was cached, none lost to a race
    assert [r.completion for r in again] == [r.completion for r in first] and store.db.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0] == 48


def test_a_429_holds_every_request_back_for_its_retry_after(server):
    server.latency_s, server.retry_after = 0.3, "1"
    server.queue = ["429"]
    ts = tasks(8)
    t0 = time.monotonic()
    out = rollout.run(OpenAIModel("m", base_url=server.url, concurrency=4, check=False), ts.tasks, ts.reward, "sys", [])
    refused = server.arrivals[0]
    later = server.arrivals[4:]  # the first four went out together; the rest were sent after the refusal
    assert server.served[0] == "429" and all(r.score.value == 1 and not r.error for r in out)
    assert later and min(later) >= refused + 1.0, [round(t - refused, 2) for t in later]
    assert time.monotonic() - t0 < 6


def test_a_retry_after_too_long_fails_the_call_with_the_fix(server):
    server.retry_after = "3600"
    server.queue = ["429"]
    out = OpenAIModel("m", base_url=server.url, check=False).chat([{"role": "user", "content": "hi 1"}])
    assert out[0].error and "3600 s" in out[0].error and "--concurrency" in out[0].error


@pytest.mark.parametrize("headers, wait", [({"retry-after": "2"}, 2.0), ({"retry-after-ms": "1500"}, 1.5),
                                           ({"retry-after": "soon"}, None), ({}, None), ({"retry-after": "-4"}, 0.0)])
def test_retry_after_reads_seconds_and_milliseconds(headers, wait):
    assert retry_after(headers) == wait


def test_retry_after_reads_an_http_date():
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 27 <= retry_after({"retry-after": when}) <= 30


def test_ordered_keeps_the_order_and_the_bound_and_raises_at_the_failing_item():
    busy, most, lock = [0], [0], threading.Lock()

    def work(i: int) -> int:
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.05 * (i % 3))
        with lock:
            busy[0] -= 1
        if i == 7:
            raise ValueError("seven")
        return i * i

    got = []
    with pytest.raises(ValueError, match="seven"):
        for x in ordered(work, list(range(20)), 3):
            got.append(x)
    assert got == [i * i for i in range(7)] and most[0] == 3


def test_in_flight_is_read_through_the_cache_and_checked(tmp_path):
    model = OpenAIModel("m", base_url="http://127.0.0.1:9/v1", concurrency=5, check=False)
    assert in_flight(cached(model, fresh_store(tmp_path / "s.db"))) == 5 and in_flight(object()) == 1
    with pytest.raises(ModelError, match="at least 1"):
        OpenAIModel("m", base_url="http://127.0.0.1:9/v1", concurrency=0, check=False)


def test_the_cli_sends_as_many_rollouts_at_once_as_concurrency_says(server, toy_file, capsys):
    from secondnature.cli import main
    server.latency_s = 0.05
    code = main(["--store", str(toy_file.parent / "s.db"), "learn", str(toy_file), "--checker", "number", "--base-url",
                 server.url, "--policy", "m", "--reflector", "m", "--budget", "40", "--concurrency", "3"])
    assert code == 0, capsys.readouterr().err
    assert server.most_busy == 3


def test_concurrency_must_be_a_whole_number_of_at_least_one(toy_file, capsys):
    from secondnature.cli import main
    with pytest.raises(SystemExit):
        main(["learn", str(toy_file), "--concurrency", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_validation_sends_a_lesson_sets_items_at_once_and_records_them_in_order(server, tmp_path):
    """The current revision's validation is paid item by item in order all the same; the sequential gate after it
    still asks one item at a time (it stops early)."""
    from secondnature.validate import Validation

    ts, ticks = tasks(8), []
    server.latency_s = 0.2
    v = Validation(OpenAIModel("m", base_url=server.url, concurrency=4, check=False), ts, ts.tasks,
                   fresh_store(tmp_path / "v.db"), budget=100, progress=lambda n, _: ticks.append(n))
    assert v.scores([]) == [1.0] * 8
    assert server.most_busy == 4 and v.spent == v.paid == 8 and ticks == [1] * 8
    assert [r[0] for r in v.store.db.execute("SELECT task_id FROM rollouts ORDER BY rowid")] == [t.id for t in ts.tasks]
    server.most_busy = 0
    assert v.score([], 3) == 1.0 and v.spent == 8 and server.most_busy == 0  # known: not asked again
