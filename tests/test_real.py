"""Tier 3: the same code paths a user runs, on the embedded 0.5B model, at small sizes.

The reflector here is the 0.5B model too (the 1.5B default is slower and the behaviour under test
is the plumbing: rollouts, reflection records, the gate, the store, resume, the endpoint client).
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secondnature.cli import main
from secondnature.models import ModelError, OpenAIModel
from secondnature.store import LessonStore
from secondnature.types import Lesson

pytestmark = pytest.mark.real
TASKSET = "letters:medium,hard"


def test_eval_on_the_embedded_model(capsys, policy_path):
    assert main(["eval", TASKSET, "--split", "test", "--limit", "6", "--no-lessons", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 6 and r["split"] == "test" and 0 <= r["accuracy"] <= 1
    assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    assert r["policy"].startswith("llama.cpp:qwen2.5-coder-0.5b")


def test_learn_records_everything_and_eval_uses_the_revision(tmp_path, capsys, policy_path):
    store_path = tmp_path / "s.db"
    rc = main(["--store", str(store_path), "learn", TASKSET, "--budget", "40", "--val-size", "6",
               "--tasks-per-step", "2", "--group-size", "3", "--reflector", "default", "--max-tokens", "200",
               "--skill-samples", "0", "--json", "--plot", str(tmp_path / "curve.png")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["plot"] == str(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    store = LessonStore(store_path)
    n_rollouts = store.db.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0]
    assert result["rollouts_used"] <= 40 and result["train_rollouts"] >= 6
    assert n_rollouts >= result["train_rollouts"]
    assert store.reflections(), "every reflector call is recorded, parsed or not"
    assert store.last_run(TASKSET)["status"] == "done"
    for gate in store.gates(TASKSET):
        assert gate.decision in ("accepted", "rejected") and gate.n >= 1 and gate.reason
    assert main(["--store", str(store_path), "eval", TASKSET, "--limit", "4", "--json", "--max-tokens", "200"]) == 0
    r = json.loads(capsys.readouterr().out)
    head = store.head(TASKSET)
    assert r["lessons"] == (list(head.lesson_ids) if head else [])


def test_curate_and_retrieval_on_the_embedded_model(tmp_path, capsys, policy_path):
    from secondnature.tasks import load_taskset, split
    from secondnature.types import Lesson
    store_path = tmp_path / "s.db"
    s = LessonStore(store_path)
    ts = load_taskset(TASKSET)
    s.index_prompts(TASKSET, [(t.id, t.prompt) for t in split(ts.tasks, 0)["train"]])
    texts = ["Spell the word one letter at a time, then count the matching letters.",
             "Spell the word one letter at a time, then count the matching letters carefully."]
    s.commit_revision(TASKSET, [s.add_lesson(Lesson("", t, TASKSET)).id for t in texts], "by hand")
    s.close()
    assert main(["--store", str(store_path), "curate", TASKSET, "--val-size", "4", "--budget", "16",
                 "--reflector", "default", "--max-tokens", "120", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["before"] == ["L1", "L2"] and set(r["after"]) <= {"L1", "L2"} | {f"L{i}" for i in range(3, 9)}
    assert 0 < r["rollouts"] <= 16 and set(r["loo"]) == {"L1", "L2"}
    s = LessonStore(store_path)
    assert all(s.lesson(lid).loo_n == 4 for lid in r["loo"])
    assert all(x.note for x in s.lessons(TASKSET, "retired"))  # every retirement says why
    assert main(["--store", str(store_path), "eval", TASKSET, "--retrieve", "--limit", "3", "--max-tokens", "120",
                 "--json"]) == 0
    routed = json.loads(capsys.readouterr().out)
    assert routed["routed"] == {TASKSET: 3} and routed["lessons"] == list(s.head(TASKSET).lesson_ids)

HAND = "Spell the word out letter by letter, then count the matches one by one."


def test_killed_learn_resumes(tmp_path, policy_path):
    """SIGKILL a real `learn` process mid-run; `--resume` finishes the same run and keeps what was accepted."""
    store_path = tmp_path / "s.db"
    store = LessonStore(store_path)  # a head revision from before the run, which the kill must not lose
    kept = store.commit_revision(TASKSET, [store.add_lesson(Lesson("", HAND, TASKSET)).id], "by hand")
    store.close()
    args = [sys.executable, "-m", "secondnature.cli", "--store", str(store_path), "learn", TASKSET, "--budget", "60",
            "--val-size", "6", "--tasks-per-step", "2", "--group-size", "3", "--reflector", "default",
            "--max-tokens", "160", "--skill-samples", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until the first training rollouts are stored, then kill mid-step
        time.sleep(1)
        try:
            if LessonStore(store_path).db.execute("SELECT COUNT(*) FROM rollouts WHERE purpose='train'").fetchone()[0]:
                break
        except Exception:
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = LessonStore(store_path)
    before = store.last_run(TASKSET)
    assert before is not None and before["status"] == "running"
    head = store.head(TASKSET)
    at_kill = [x.text for x in store.revision_lessons(head)]
    assert HAND in at_kill
    store.close()
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped:" in done.stderr + done.stdout  # the run says why it ended
    store = LessonStore(store_path)
    after = store.last_run(TASKSET)
    assert after["id"] == before["id"] and after["status"] == "done"
    assert after["steps_done"] >= before["steps_done"]
    assert [x.text for x in store.revision_lessons(store.revision(head.id))] == at_kill  # revisions never change
    final = [x.text for x in store.revision_lessons(store.head(TASKSET))]
    removed = [t for t in at_kill if t not in final]  # only an accepted gate may take a lesson out of the head
    accepted = [g for g in store.gates(TASKSET) if g.decision == "accepted" and g.revision_id > kept.id]
    assert not removed or accepted, (at_kill, final)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(policy_path):
    """A real OpenAI-compatible server (llama-cpp-python's) serving the packaged model."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(policy_path), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_openai_client_against_a_real_server(server):
    m = OpenAIModel("qwen", base_url=server, max_retries=1)
    msgs = [{"role": "user", "content": "Say the word 'hello' and nothing else."}]
    out = m.chat(msgs, n=3, temperature=0.8, max_tokens=8, seed=1)
    # the server returns one choice per request whatever n is: the client must ask again for the rest
    assert len(out) == 3 and all(c.text and not c.error for c in out)
    assert all(c.prompt_tokens > 0 and c.completion_tokens > 0 and c.latency_s > 0 for c in out)


def test_cli_eval_through_an_endpoint(server, capsys):
    assert main(["eval", TASKSET, "--base-url", server, "--policy", "qwen", "--limit", "3", "--no-lessons",
                 "--json", "--max-tokens", "64"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 3 and r["policy"] == "openai:qwen" and r["errors"] == 0


def test_unreachable_endpoint_is_a_clear_error(capsys):
    port = _free_port()
    with pytest.raises(ModelError, match="cannot reach"):
        OpenAIModel("x", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=3)
    assert main(["eval", TASKSET, "--base-url", f"http://127.0.0.1:{port}/v1", "--policy", "x", "--limit", "1"]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_missing_key_for_openai_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("SECONDNATURE_API_KEY", raising=False)
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini", base_url="https://api.openai.com/v1")


def test_bench_runs_the_real_gepa_arm(tmp_path, capsys, policy_path):
    """All three arms on the embedded model at a tiny budget; the gepa package runs through our adapter."""
    # 32 = the gate's 4 validation items + one step of 4x4 rollouts + room to gate and confirm one candidate
    rc = main(["bench", TASKSET, "--budget", "32", "--seeds", "1", "--val-size", "4", "--test-limit", "4",
               "--reflector", "default", "--max-tokens", "120", "--skill-samples", "0", "--out", str(tmp_path), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    recs = {r["arm"]: r for r in out["records"]}
    assert set(recs) == {"majority", "none", "secondnature", "gepa"}
    # the loop never exceeds its budget; GEPA checks it before each iteration, so it may overshoot by one
    # iteration's spend: two 3-item minibatches and one validation pass
    assert 0 < recs["secondnature"]["rollouts"] <= 32 and 0 < recs["gepa"]["rollouts"] <= 32 + 2 * 3 + 4
    for arm in ("secondnature", "gepa"):
        r = recs[arm]
        assert r["val_rollouts"] >= 4 and r["train_rollouts"] > 0
        assert r["prompt_tokens"] > 0
        assert r["n"] == 4 and r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    assert recs["gepa"]["reflector_calls"] >= 1, "GEPA asked the reflector for at least one new prompt"
    assert (tmp_path / f"{out['results'].split('/')[-1]}").exists()
    assert Path(out["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tool_calls_and_tool_results_render_in_the_real_chat_template(policy_path):
    """The packaged model's own chat template takes the tool, an earlier call and its result (as the OpenAI format
    stores them) without error, and they reach the prompt."""
    from secondnature.models import LlamaModel
    from secondnature.tools import TOOLS
    m = LlamaModel(policy_path)
    call = {"id": "call_0_0", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(6*4)"}'}}
    msgs = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "What is 6 times 4?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0_0", "content": "24"}]
    [plain] = m.chat(msgs[:2], max_tokens=4)
    [c] = m.chat(msgs, max_tokens=4, tools=[TOOLS["python"].spec()])
    assert not c.error and c.prompt_tokens > plain.prompt_tokens + 60  # the tool schema, the call and its result


def test_eval_of_a_tool_task_set_runs_episodes(capsys):
    assert main(["eval", "game24+python", "--limit", "2", "--no-lessons", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["task"] == "game24+python" and r["n"] == 2 and r["errors"] == 0
    # a tool task set reports per-episode figures (a single-turn one has none); whether this model calls the
    # tool is its own business, and the scripted tests check that calls run
    assert r["steps"] >= 1 and "tool_calls" in r and r["seconds_per_item"] > 0


def test_an_endpoint_takes_the_tool_and_the_tool_messages(server):
    from secondnature.tools import TOOLS, tool_instruction
    m = OpenAIModel("qwen", base_url=server, max_retries=1)
    call = {"id": "call_0_0", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(6*4)"}'}}
    start = [{"role": "system", "content": tool_instruction("Solve it.\nAnswer: <number>")},
             {"role": "user", "content": "What is 6 times 4?"},
             {"role": "assistant", "content": "", "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "call_0_0", "content": "24"}]
    [c] = m.chat(start, n=1, temperature=0.0, max_tokens=48, seed=0, tools=[TOOLS["python"].spec()])
    assert not c.error and (c.text.strip() or c.tool_calls)  # the server read the call and its result and went on


EXAMPLES = Path(__file__).parent.parent / "examples"


def test_the_own_task_example_runs(tmp_path, policy_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "own_task.py"), "--budget", "48", "--reflector", "default",
                           "--skill-samples", "0", "--store", str(tmp_path / "dates.db")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "validation:" in done.stdout and "stopped:" in done.stdout and "system prompt" in done.stdout
    assert LessonStore(tmp_path / "dates.db").last_run("dates")["status"] == "done"


def test_the_endpoint_example_runs_against_a_real_server(tmp_path, server):
    done = subprocess.run([sys.executable, str(EXAMPLES / "endpoint.py"), "--base-url", server, "--model", "qwen",
                           "--budget", "30", "--store", str(tmp_path / "e.db")], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "openai:qwen: validation" in done.stdout and "echo (a custom model" in done.stdout

