"""`secondnature serve` with the real `openai` SDK against a real uvicorn server in front of a real upstream (the
minimal responder here; the embedded model in test_serve_real.py): plain and streaming replies, tools and unknown
fields passing through, lessons injected after the application's system prompt, a revision going live without a
restart, feedback, tenants and 401s, an upstream that fails, and a server killed mid-stream."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import openai
import pytest
from responder import Responder, serve_in_thread

from secondnature.cli import main
from secondnature.serve import ServeConfig, Upstream, load_tenants, make_app
from secondnature.serve.upstream import free_port
from secondnature.store import open_store
from secondnature.store import traffic as db
from secondnature.types import Lesson

TOOLS = [{"type": "function", "function": {"name": "add", "description": "add two numbers",
                                           "parameters": {"type": "object", "properties": {"x": {"type": "number"}}}}}]


@pytest.fixture(scope="module")
def upstream():
    r = Responder()
    url, server = serve_in_thread(r.app)
    r.url = url
    yield r
    server.should_exit = True


@pytest.fixture()
def proxy(upstream, store_at):
    store_path = store_at  # on both backends: an SQLite file and a PostgreSQL database
    app = make_app(ServeConfig(Upstream(upstream.url, "upstream-secret"), load_tenants(None, store=str(store_path))))
    url, server = serve_in_thread(app)
    client = openai.OpenAI(base_url=url, api_key="anything", max_retries=0)
    yield client, open_store(store_path)
    server.should_exit = True


def add_lesson(store, scope: str, text: str) -> int:
    x = store.add_lesson(Lesson("", text, scope))
    head = store.head(scope)
    return store.commit_revision(scope, [*(head.lesson_ids if head else ()), x.id], "test").id


def test_a_plain_reply_is_recorded_under_the_id_the_client_gets(proxy, upstream):
    client, store = proxy
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hello"}], temperature=0.3)
    reply = raw.parse()
    assert reply.id.startswith("chatcmpl-sn") and raw.headers["x-secondnature-call-id"] == reply.id
    assert reply.choices[0].message.content == "system=[] user=[hello]"
    call = db.get_call(store, reply.id)
    assert call.status == "done" and call.reply == reply.choices[0].message.content
    assert call.params["temperature"] == 0.3 and call.completion_tokens == 2 and call.latency_s > 0
    assert upstream.bodies[-1]["messages"] == [{"role": "user", "content": "hello"}]  # no lessons yet: untouched


def test_the_client_key_never_goes_upstream_and_unknown_fields_do(proxy, upstream):
    client, _ = proxy
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                   extra_body={"top_k": 7, "secondnature": {"scope": "s1", "learn": False}})
    body = upstream.bodies[-1]
    assert body["top_k"] == 7 and "secondnature" not in body


def test_streaming_is_relayed_and_recorded_whole(proxy):
    client, store = proxy
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "one two three"}],
                                                 stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    ids = {c.id for c in chunks}
    assert text == "system=[] user=[one two three]" and len(ids) == 1
    call = db.get_call(store, ids.pop())
    assert call.status == "done" and call.reply == text


def test_tool_calls_pass_through_plain_and_streaming(proxy, upstream):
    client, store = proxy
    msgs = [{"role": "user", "content": "please call the tool"}]
    r = client.chat.completions.create(model="m", messages=msgs, tools=TOOLS)
    assert upstream.bodies[-1]["tools"] == TOOLS
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "add" and json.loads(call.function.arguments) == {"x": 2}
    assert db.get_call(store, r.id).tool_calls[0]["function"]["name"] == "add"
    chunks = list(client.chat.completions.create(model="m", messages=msgs, tools=TOOLS, stream=True))
    recorded = list(db.get_call(store, chunks[0].id).tool_calls)
    assert recorded == [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"x": 2}'}}]


def test_lessons_go_after_the_application_system_prompt_and_change_live(proxy, upstream):
    client, store = proxy
    first = add_lesson(store, "support", "Greet the customer by name.")
    msgs = [{"role": "system", "content": "You are a help desk."}, {"role": "user", "content": "hi"}]
    raw = client.chat.completions.with_raw_response.create(model="m", messages=msgs,
                                                           extra_body={"secondnature": {"scope": "support"}})
    sent = upstream.bodies[-1]["messages"]
    assert sent[0]["content"].startswith("You are a help desk.\n\nLessons learned")
    assert "1. Greet the customer by name." in sent[0]["content"] and sent[1] == msgs[1]
    assert raw.headers["x-secondnature-revision"] == str(first)
    call = db.get_call(store, raw.parse().id)
    assert call.revision == first and call.messages == tuple(msgs)  # the application's own messages are recorded
    second = add_lesson(store, "support", "Offer a refund when the order is late.")  # another process could do this
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"X-Secondnature-Scope": "support"})
    sent = upstream.bodies[-1]["messages"]
    assert sent[0]["role"] == "system" and "2. Offer a refund" in sent[0]["content"]  # no system prompt: one added
    assert db.calls(store, "support")[-1].revision == second
    client.chat.completions.create(model="m", messages=msgs, extra_body={"secondnature": {"scope": "other"}})
    assert upstream.bodies[-1]["messages"] == msgs  # another scope's lessons never reach it
    client.chat.completions.create(model="m", messages=msgs,
                                   extra_body={"secondnature": {"scope": "support", "lessons": False}})
    assert upstream.bodies[-1]["messages"] == msgs


def test_a_request_is_routed_to_the_scope_it_resembles(proxy, upstream):
    client, store = proxy
    store.index_prompts("refunds", [("t1", "How do I get a refund for a late delivery of my order?")])
    add_lesson(store, "refunds", "Quote the refund policy.")
    r = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "Can I get a refund for my late order delivery?"}])
    assert r.headers["x-secondnature-scope"] == "refunds"
    assert "refund policy" in upstream.bodies[-1]["messages"][0]["content"]
    r = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "poem?"}])
    assert r.headers["x-secondnature-scope"] == "default"


def test_feedback_by_api_and_command_line(proxy, capsys):
    client, store = proxy
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}],
                                       extra_body={"secondnature": {"conversation": "conv-1"}})
    got = client.post("/feedback", body={"id": r.id, "thumbs": "down", "comment": "too short"}, cast_to=object)
    assert got["value"] == 0.0 and got["call_id"] == r.id
    seen = client.get(f"/calls/{r.id}", cast_to=object)
    assert seen["score"] == 0.0 and seen["feedback"][0]["comment"] == "too short"
    client.post("/feedback", body={"conversation": "conv-1", "score": 0.75}, cast_to=object)
    assert main(["--store", str(store.path), "feedback", r.id, "--score", "1", "--demonstration", "A fuller answer.",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["demonstration"] == "A fuller answer."
    assert [f.value for f in db.feedback(store, db.get_call(store, r.id))] == [0.0, 0.75, 1.0]
    for bad, status in (({"id": r.id, "score": 7}, 400), ({"id": r.id, "thumbs": "sideways"}, 400),
                        ({"id": "chatcmpl-nope", "score": 1}, 404), ({"score": 1}, 400),
                        ({"conversation": "never-seen", "score": 1}, 404), ({"id": r.id}, 400)):
        with pytest.raises(openai.APIStatusError) as e:
            client.post("/feedback", body=bad, cast_to=object)
        assert e.value.status_code == status, bad
    assert main(["--store", str(store.path), "feedback", "chatcmpl-nope", "--thumbs", "up"]) == 2
    assert "no call" in capsys.readouterr().err


def test_an_upstream_that_fails_gives_an_openai_error_and_the_server_keeps_serving(proxy, upstream, tmp_path):
    client, store = proxy
    upstream.fail = 1
    with pytest.raises(openai.InternalServerError, match="told to fail"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert db.calls(store)[-1].status == "error"
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "y"}]).choices
    upstream.break_after = 2
    with pytest.raises(openai.APIError, match="stream broke|incomplete|peer closed"):
        list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b c d e"}],
                                            stream=True))
    time.sleep(0.2)
    broken = db.calls(store)[-1]
    assert broken.status == "broken" and broken.reply == "system=[] user=[a "  # as far as the stream got
    nowhere = Upstream(f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    dead = make_app(ServeConfig(nowhere, load_tenants(None, store=str(tmp_path / "d.db"))))
    url, server = serve_in_thread(dead)
    c = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502 and "ConnectError" in str(e.value)
    assert c.get("/calls", cast_to=object)["data"][0]["status"] == "error"
    server.should_exit = True


def test_tenants_are_kept_apart_and_a_wrong_key_is_401(upstream, tmp_path):
    keys = tmp_path / "tenants.json"
    keys.write_text(json.dumps({"acme": "sk-acme-1", "beta": "sha256:" + hashlib.sha256(b"sk-beta-2").hexdigest()}))
    tenants = load_tenants(keys)
    app = make_app(ServeConfig(Upstream(upstream.url), tenants))
    url, server = serve_in_thread(app)
    acme = openai.OpenAI(base_url=url, api_key="sk-acme-1", max_retries=0)
    beta = openai.OpenAI(base_url=url, api_key="sk-beta-2", max_retries=0)
    for key in ("wrong", ""):
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key=key or "x", max_retries=0,
                          default_headers={"Authorization": key}).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="nope", max_retries=0).post("/feedback", body={"id": "x", "score": 1},
                                                                          cast_to=object)
    add_lesson(tenants.open_store("acme"), "shared-name", "ACME-ONLY LESSON")
    a = acme.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                     extra_body={"secondnature": {"scope": "shared-name"}})
    assert "ACME-ONLY LESSON" in upstream.bodies[-1]["messages"][0]["content"]
    b = beta.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                     extra_body={"secondnature": {"scope": "shared-name"}})
    assert "ACME-ONLY" not in json.dumps(upstream.bodies[-1]["messages"])  # same scope name, another tenant
    with pytest.raises(openai.NotFoundError):
        beta.post("/feedback", body={"id": a.id, "score": 0}, cast_to=object)  # acme's call: not beta's to judge
    with pytest.raises(openai.NotFoundError):
        beta.get(f"/calls/{a.id}", cast_to=object)
    assert [c["id"] for c in beta.get("/calls", cast_to=object)["data"]] == [b.id]
    acme_store = tenants.open_store("acme")
    assert db.get_call(acme_store, b.id) is None and db.feedback(acme_store, db.get_call(acme_store, a.id)) == []
    server.should_exit = True


def test_a_bad_tenants_file_is_refused_with_the_fix(tmp_path):
    for text, why in (("{", "should be JSON"), ("[]", "map tenant names"), ('{"a b": "k"}', "tenant name"),
                      ('{"a": "k", "b": "k"}', "share a key"), ('{"a": "sha256:zz"}', "64 hex")):
        (tmp_path / "t.json").write_text(text)
        with pytest.raises(ValueError, match=why):
            load_tenants(tmp_path / "t.json")


def test_kill_9_mid_stream_loses_no_recorded_call_or_feedback(tmp_path):
    slow = Responder(chunk_s=0.3)
    up, up_server = serve_in_thread(slow.app)
    store_path, port = tmp_path / "killed.db", free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "secondnature.cli", "--store", str(store_path), "serve",
                             "--upstream", up, "--port", str(port), "--no-learn"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=10)
    for _ in range(200):
        try:
            client.get("/calls", cast_to=object)
            break
        except openai.APIConnectionError:
            time.sleep(0.1)
    done = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "before"}])
    client.post("/feedback", body={"id": done.id, "score": 0.5, "comment": "kept"}, cast_to=object)
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "w " * 40}], stream=True)
    got = [next(stream) for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    with pytest.raises((openai.APIError, openai.APIConnectionError)):
        list(stream)
    store = open_store(store_path)
    assert db.get_call(store, done.id).reply == "system=[] user=[before]"
    assert [f.comment for f in db.feedback(store, db.get_call(store, done.id))] == ["kept"]
    cut = db.get_call(store, got[0].id)
    assert cut is not None and cut.status == "open" and cut.messages[0]["content"].startswith("w w")
    up_server.should_exit = True


def test_each_call_records_its_cost_at_the_given_prices(upstream, tmp_path):
    app = make_app(ServeConfig(Upstream(upstream.url, prices=(0.5, 2.0)), load_tenants(None, store=str(tmp_path / "c.db"))))
    url, server = serve_in_thread(app)
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "price"}])
    stream = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "p"}], stream=True))
    store = open_store(tmp_path / "c.db")
    assert db.get_call(store, r.id).cost == pytest.approx((11 * 0.5 + 2 * 2.0) / 1e6)  # the responder's usage
    assert db.get_call(store, stream[0].id).cost > 0  # a stream without usage: its reply's tokens, estimated
    server.should_exit = True


def test_serve_learns_only_with_a_judge_and_says_so(tmp_path, monkeypatch, capsys):
    from secondnature.cli import build_parser, ui
    from secondnature.cli.serve import _learner
    from secondnature.models import ScriptedModel
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: ScriptedModel(lambda m: "", spec))
    rubric = tmp_path / "r.txt"
    rubric.write_text("Names the order number.")
    tenants, up = load_tenants(None, store=str(tmp_path / "s.db")), Upstream("http://127.0.0.1:9/v1")
    args = build_parser().parse_args(["serve", "--upstream", up.url])
    assert _learner(args, tenants, up) is None and "learning is off" in capsys.readouterr().err
    args = build_parser().parse_args(["serve", "--upstream", up.url, "--judge", "j", "--rubric", str(rubric)])
    assert _learner(args, tenants, up).reward.__name__ == "judge"
    args = build_parser().parse_args(["serve", "--upstream", up.url, "--judge", "j", "--rubric", str(rubric),
                                      "--pairwise", "--spend", "50"])
    learner = _learner(args, tenants, up)
    assert learner.reward.__name__ == "pairwise_judge" and learner.config.spend_per_hour == 50
    assert main(["serve", "--upstream", up.url, "--spend-cost", "1"]) == 2
    assert "--spend-cost needs --prices" in capsys.readouterr().err
    assert main(["serve", "--upstream", up.url, "--prices", "x"]) == 2 and "two numbers" in capsys.readouterr().err
