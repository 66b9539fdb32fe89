"""Rollouts as Ray tasks (cluster.py) against a real local Ray head that this module starts as a separate process, as
a cluster's head would run: the same rollouts in the same order as local threads, episodes whose Python runs in a
worker's sandbox, the completion cache shared with the workers, errors that surface as they do locally, and work
that cannot travel or an address that does not answer named with the fix. The scaling figures are measured in
benchmarks/ray_scaling.py, not here."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from fault_server import FaultServer
from ray import cloudpickle
from rich.console import Console
from test_learn import GOOD, config, policy_fn, reflector_of, taskset

from secondnature import cli, rollout, sandbox
from secondnature.cli import ui
from secondnature.cluster import ClusterError, RayExecutor, pack, place, without_password
from secondnature.executor import THREADS, current, executing
from secondnature.judge import judge_reward
from secondnature.learn import learn
from secondnature.models import CachedModel, LlamaModel, OpenAIModel, ScriptedModel
from secondnature.rewards import number
from secondnature.store import LessonStore, fresh_store
from secondnature.tools import OUTPUT_HEADER, tool_instruction
from secondnature.types import Completion, Score, Task

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests' modules
cloudpickle.register_pickle_by_value(sys.modules["test_learn"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head():
    """`ray start --head --block` in a process of its own (2 CPUs, no dashboard), stopped by its id at the end."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    log = open(Path(temp) / "head.log", "wb")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}",
                             # its one fixed port (52365), which another head on this machine (a second CI run) holds
                             f"--dashboard-agent-listen-port={free_port()}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if head.poll() is not None or time.monotonic() > deadline:
                head.kill()
                pytest.fail(f"the Ray head did not start: {(Path(temp) / 'head.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield address
    if ray.is_initialized():
        ray.shutdown()
    head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)  # the group this fixture started, nothing else
        head.wait()
    log.close()
    subprocess.run(["rm", "-rf", temp], check=False)


@pytest.fixture
def on_ray(ray_head):
    """This process connected to the session's head (once; each new connection would start new worker processes)."""
    if not ray.is_initialized():
        ray.init(address=ray_head, logging_level="WARNING")
    return ray_head


class Seeded:
    """A model of one's own: its reply depends on the prompt, the seed and the sample index, as a sampler's does;
    tasks whose prompt holds `fail_on` get a failed call, as from a server that refused."""

    name = "seeded"

    def __init__(self, identity: str = "seeded:1", fail_on: str = "\0"):
        self.identity, self.fail_on = identity, fail_on

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def chat(self, messages, *, n=1, temperature=0.0, max_tokens=512, seed=None, tools=None):
        out = []
        for i in range(n):
            if self.fail_on in messages[-1]["content"]:
                out.append(Completion("", latency_s=0.01, error="the server refused"))
                continue
            h = hashlib.sha256(f"{messages[-1]['content']}|{seed}|{i}".encode()).digest()[0] % 4 + 1
            out.append(Completion(f"Answer: {h}", prompt_tokens=3, completion_tokens=2, latency_s=0.01))
        return out


def facts(rs) -> list[tuple]:
    """What must not depend on where a rollout ran (its timings may)."""
    return [(r.id, r.task_id, r.sample, r.seed, r.completion, r.score, rollout.wire(r.messages), r.error,
             r.prompt_tokens, r.completion_tokens) for r in rs]


def run_both(model, tasks, reward, **kw):
    """The same rollouts locally and on the Ray head; on_done's calls recorded for each (id, process, thread)."""
    out = []
    for where in (THREADS, RayExecutor()):
        done: list[tuple] = []
        with executing(where):
            rs = rollout.run(model, tasks, reward, "Count.", [], on_done=lambda r: done.append(
                (r.id, os.getpid(), threading.get_ident())), **kw)
        out.append((rs, done))
    return out


def test_rollouts_on_ray_are_the_local_ones_in_the_same_order(on_ray):
    ts = taskset(12)
    (local, done_here), (remote, done_there) = run_both(Seeded(), ts.tasks, ts.reward, n=3, temperature=0.7, seed=5)
    assert facts(remote) == facts(local)
    assert len({r.completion for r in remote}) > 1 and len({r.score.value for r in remote}) == 2  # not all alike
    assert [r.task_id for r in remote] == [t.id for t in ts.tasks for _ in range(3)]
    # on_done ran in the learner, on this thread, in the tasks' order
    assert done_there == done_here == [(r.id, os.getpid(), threading.get_ident()) for r in local]
    assert current() is THREADS  # the executor was chosen for the `with` only


def test_an_episode_runs_its_python_in_a_workers_sandbox(on_ray):
    def policy(messages: list[dict]) -> str:
        if messages[-1]["content"].startswith(OUTPUT_HEADER):
            return f"Answer: {messages[-1]['content'].splitlines()[1].strip()}\n(pid {os.getpid()})"
        return "```python\nprint(6 * 7)\n```"
    task = Task("e1", "What is six times seven?", "42")
    with executing(RayExecutor()):
        [r] = rollout.run(ScriptedModel(policy), [task], number, tool_instruction("Compute."), [], tools=("python",))
    assert [m["role"] for m in r.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert r.messages[3]["content"].splitlines()[1] == "42"  # printed behind the worker's sandbox
    assert r.score.value == 1.0
    assert f"(pid {os.getpid()})" not in r.completion  # the policy ran in another process: a Ray worker


def test_failures_on_a_worker_end_as_they_end_locally(on_ray):
    ts = taskset(6)
    (local, _), (remote, _) = run_both(Seeded(fail_on="number 3?"), ts.tasks, ts.reward, n=2)
    assert facts(remote) == facts(local)  # a failed model call is a failed sample, not a crash
    failed = [r for r in remote if r.error]
    assert [r.task_id for r in failed] == ["t3", "t3"]
    assert failed[0].score == Score(0.0, "model call failed: the server refused")

    def picky(task, reply):
        if task.id == "t4":
            raise ValueError("this reward cannot read t4")
        return 1.0
    (local, _), (remote, _) = run_both(Seeded(), ts.tasks, picky)
    assert facts(remote) == facts(local) and "cannot read t4" in remote[4].score.feedback  # scored 0, with why

    def crashing(messages):
        if "number 4?" in messages[-1]["content"]:
            raise KeyError("the script ran out")
        return "Answer: 1"
    for where in (THREADS, RayExecutor()):  # a model that raises stops the run, here as there, with its own error
        with executing(where), pytest.raises(KeyError, match="ran out"):
            rollout.run(ScriptedModel(crashing), ts.tasks, ts.reward, "Count.", [])


def broken_sandbox(_):
    """On a worker: the sandbox as on a machine without bubblewrap, then as it was."""
    saved = sandbox._bwrap_path
    sandbox._bwrap_path = lambda: None
    sandbox.boundary.cache_clear()
    try:
        sandbox.check()
    finally:
        sandbox._bwrap_path = saved
        sandbox.boundary.cache_clear()


def test_a_worker_without_a_sandbox_stops_the_run_with_the_sandbox_error(on_ray, monkeypatch):
    with pytest.raises(sandbox.SandboxUnavailable, match="on the Ray worker .*no bubblewrap.*--insecure-sandbox"):
        list(RayExecutor().map(broken_sandbox, [1], 1))
    monkeypatch.setenv(sandbox.INSECURE_ENV, "1")  # the learner's --insecure-sandbox holds for its tasks on workers
    assert list(RayExecutor().map(lambda _: sandbox.insecure(), [1], 1)) == [True]
    monkeypatch.delenv(sandbox.INSECURE_ENV)
    assert list(RayExecutor().map(lambda _: sandbox.insecure(), [1], 1)) == [False]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_share_the_learners_completion_cache(on_ray, backend, tmp_path, request):
    where = tmp_path / "s.db" if backend == "sqlite" else request.getfixturevalue("postgres_cluster").create_db()
    ts = taskset(6)
    store = fresh_store(where) if backend == "sqlite" else LessonStore(where)
    model = CachedModel(Seeded(identity="seeded:shared"), store)
    with executing(RayExecutor()):
        first = rollout.run(model, ts.tasks, ts.reward, "Count.", [], n=2, temperature=0.7)
    assert model.model_s == pytest.approx(0.01 * 12)  # the workers' model seconds, counted in the learner
    # a model of the same identity that can only fail: every answer must come from what the workers cached
    again = rollout.run(CachedModel(Seeded(identity="seeded:shared", fail_on=""), store), ts.tasks, ts.reward,
                        "Count.", [], n=2, temperature=0.7)
    assert facts(again) == facts(first) and not any(r.error for r in again)


class Notes(dict):
    """A completion cache that is not a store: a worker cannot open it."""

    def get_completion(self, key):
        return self.get(key)

    def put_completion(self, key, c):
        self[key] = c


def test_a_cache_the_workers_cannot_open_is_said_once_and_they_run_uncached(on_ray, recwarn):
    ts = taskset(4)
    model = CachedModel(Seeded(), Notes())
    with executing(RayExecutor()):
        first = rollout.run(model, ts.tasks, ts.reward, "Count.", [])
        again = rollout.run(model, ts.tasks, ts.reward, "Count.", [])
    said = [str(w.message) for w in recwarn if "cannot open the completion cache" in str(w.message)]
    assert len(said) == 1 and "PostgreSQL" in said[0]
    assert facts(first) == facts(again) and not model.cache  # nothing was cached, and the answers are right


def test_an_endpoint_is_rebuilt_on_the_worker_without_the_learners_key(on_ray, monkeypatch):
    server = FaultServer(answer=lambda m: "Answer: " + m[-1]["content"].split()[-1].rstrip("?"))
    try:
        model = OpenAIModel("m", base_url=server.url, api_key="sk-learner-only-secret", concurrency=1, check=False)
        ts = taskset(4)
        blob, _ = pack(lambda task: model.chat([{"role": "user", "content": task.prompt}]))
        assert b"sk-learner-only-secret" not in blob and server.url.encode() in blob
        (local, _), (remote, _) = run_both(model, ts.tasks, ts.reward)
        assert facts(remote) == facts(local) and not any(r.error for r in remote)
    finally:
        server.close()


def test_a_store_password_never_travels():
    assert without_password("postgresql://bob:pw@db.example:5432/sn?sslmode=require&password=pw2") == \
        "postgresql://bob@db.example:5432/sn?sslmode=require"
    assert place(SimpleNamespace(postgres=True, path="postgresql://bob:hunter2@db/sn")) == \
        ("postgresql", "postgresql://bob@db/sn")
    assert place(SimpleNamespace()) is None  # a cache that is not a store: the workers run uncached


def test_a_reward_that_cannot_travel_is_named_with_the_fix(on_ray):
    class Holding:
        def __init__(self):
            self.lock = threading.Lock()

        def __call__(self, task, reply):
            return 1.0
    ts = taskset(2)
    with executing(RayExecutor()), pytest.raises(ClusterError) as e:
        rollout.run(Seeded(), ts.tasks, Holding(), "Count.", [])
    assert "`reward`" in str(e.value) and "lock" in str(e.value) and "--executor local" in str(e.value)


def test_a_judge_travels_with_its_model(on_ray):
    judge = ScriptedModel(lambda m: "It answers plainly.\nScore: 8/10", "judge")
    reward = judge_reward(judge, "Answers the question asked, plainly.")
    ts = taskset(3)
    (local, _), (remote, _) = run_both(Seeded(), ts.tasks, reward)
    assert facts(remote) == facts(local) and remote[0].score == Score(0.8, "judge: It answers plainly.")


def test_learn_keeps_the_same_lessons_on_ray(on_ray, tmp_path):
    ts = taskset()
    results = []
    for i, where in enumerate((THREADS, RayExecutor())):
        store, policy = fresh_store(tmp_path / f"s{i}.db"), ScriptedModel(policy_fn)
        with executing(where):
            r = learn(policy, reflector_of(GOOD), ts, store, config())
        results.append((r.accepted, r.val_score, [x.text for x in store.revision_lessons(r.revision)], r.rollouts_used))
        assert bool(policy.calls) == (where is THREADS)  # on Ray, the policy answered in the workers' copies only
    assert results[1] == results[0] and GOOD in results[0][2]


def test_the_cli_runs_eval_on_the_cluster(on_ray, toy_file, monkeypatch, capsys):
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: ScriptedModel(policy_fn))
    got = []
    for executor in ("local", f"ray:{on_ray}"):
        code = cli.main(["--store", str(toy_file.parent / f"{executor[:3]}.db"), "eval", str(toy_file), "--checker",
                         "number", "--no-lessons", "--json", "--executor", executor])
        assert code == 0
        got.append(capsys.readouterr().out)
    a, b = (json.loads(x) for x in got)
    assert (a["accuracy"], a["n"], a["errors"]) == (b["accuracy"], b["n"], b["errors"]) and a["n"] > 0


def test_an_address_without_a_head_is_named_with_the_option(toy_file, monkeypatch, capsys):
    if ray.is_initialized():
        ray.shutdown()  # a connected process uses the Ray it has; this asks for a new one
    monkeypatch.setattr(ui, "err", Console(stderr=True, width=10_000))
    port = free_port()
    code = cli.main(["eval", str(toy_file), "--checker", "number", "--executor", f"ray:127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and f"no Ray head answers at 127.0.0.1:{port}" in err and "--executor ray:HOST:PORT" in err
    assert "ray start --head" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", str(toy_file), "--executor", "spark"])
    assert e.value.code == 2 and "--executor takes `local` or `ray[:HOST:PORT]`" in capsys.readouterr().err


@pytest.mark.real
def test_the_embedded_model_gives_the_same_rollouts_through_ray(on_ray, policy_path):
    from secondnature.tasks import load_taskset
    gsm = load_taskset("gsm8k")
    model = LlamaModel(policy_path)
    (local, _), (remote, _) = run_both(model, gsm.tasks[:4], gsm.reward, max_tokens=16)
    assert facts(remote) == facts(local) and not any(r.error for r in remote)
