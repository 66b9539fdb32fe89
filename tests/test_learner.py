"""Learning from traffic: a scope's recorded calls become a task set whose replays are gated offline; the
application's feedback reaches the reflector; an accepted revision is live in the proxy without a restart; scopes
never mix; the spend cap holds."""
from __future__ import annotations

import json

import openai
import pytest
from responder import Responder, serve_in_thread

from secondnature.models import OpenAIModel, ScriptedModel
from secondnature.serve import ServeConfig, Upstream, load_tenants, make_app
from secondnature.serve.learner import Learner, LearnerConfig, learn_scope, spent_last_hour
from secondnature.store import LessonStore
from secondnature.store import traffic as db
from secondnature.types import Call, Feedback, Score

LESSON = "State the order number and the delivery date in the first sentence of every reply."
SYSTEM = "You are the help desk of a shop."


def good(reply: str) -> bool:
    return "order number" in reply


def judge(task, reply: str) -> Score:  # a rubric judge's verdict, scripted: it never sees a reference
    return Score(1.0 if good(reply) else 0.0, "judge: names the order" if good(reply) else "judge: too vague")


def policy_reply(messages: list[dict]) -> str:
    return "Your order number 7 arrives Monday." if LESSON in messages[0]["content"] else "It will come soon."


def reflector():
    return ScriptedModel(lambda m: json.dumps({"edits": [{"op": "add", "text": LESSON}]}), "reflector")


def record_traffic(store: LessonStore, scope: str, n: int, *, comment: str = "") -> list[Call]:
    out = []
    for i in range(n):
        c = Call(db.new_call_id(), scope, "m", ({"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": f"Where is my parcel number {i}?"}),
                 reply="It will come soon.", status="done")
        db.add_calls(store, [c])
        if comment or i % 3 == 0:  # with a comment every call has it: whichever tasks a step draws, it is shown
            db.add_feedback(store, Feedback(c.id, value=0.0, comment=comment or "too vague, no order number"))
        out.append(c)
    return out


CONFIG = LearnerConfig(min_calls=24, min_new=4, spend_per_hour=400, budget=120, val_size=10)


def test_a_lesson_learned_from_traffic_is_gated_and_feedback_reaches_the_reflector(store_at):
    store = LessonStore(store_at)
    record_traffic(store, "support", 40, comment="a person said: give the ORDER-NUMBER-PLEASE")
    record_traffic(store, "billing", 40)
    policy, refl = ScriptedModel(policy_reply, "policy"), reflector()
    result = learn_scope(store, "support", policy, refl, judge, CONFIG)
    assert result is not None and result.accepted >= 1
    assert [x.text for x in store.revision_lessons(store.head("support"))] == [LESSON]
    assert store.head("billing") is None  # nothing from one scope reaches another
    replayed = [m for m in policy.calls]
    assert replayed and all(m[0]["content"].startswith(SYSTEM) for m in replayed)  # the application's own prompt
    assert all("parcel number" in m[-1]["content"] for m in replayed)
    assert any("ORDER-NUMBER-PLEASE" in m[-1]["content"] for m in refl.calls)  # the person's words, reflected on
    gate = next(g for g in store.gates("support") if g.decision == "accepted")
    assert gate.proposed_score > gate.current_score and gate.n >= 8  # held-out recorded requests, paired
    assert learn_scope(store, "support", policy, refl, judge, CONFIG) is None  # nothing new since: not due
    assert 0 < spent_last_hour(store) == result.rollouts_used


def test_not_enough_traffic_or_budget_learns_nothing(store_at):
    store = LessonStore(store_at)
    record_traffic(store, "support", 10)
    assert learn_scope(store, "support", ScriptedModel(policy_reply), reflector(), judge, CONFIG) is None
    record_traffic(store, "support", 30)
    assert learn_scope(store, "support", ScriptedModel(policy_reply), reflector(), judge, CONFIG, budget=20) is None
    assert store.last_run("support") is None


def test_a_revision_learned_in_the_background_is_live_in_the_proxy(store_at):
    upstream = Responder(reply=lambda body: policy_reply(body["messages"]))
    up_url, up_server = serve_in_thread(upstream.app)
    tenants = load_tenants(None, store=str(store_at))
    learner = Learner(tenants, lambda model: OpenAIModel(model, base_url=up_url, api_key="k"), reflector(), judge,
                      CONFIG)
    url, server = serve_in_thread(make_app(ServeConfig(Upstream(up_url), tenants)))
    client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    for i in range(30):
        r = client.chat.completions.create(model="m", messages=[{"role": "system", "content": SYSTEM},
                                                                {"role": "user", "content": f"Where is parcel {i}?"}],
                                           extra_body={"secondnature": {"scope": "support"}})
        assert r.choices[0].message.content == "It will come soon."
        client.post("/feedback", body={"id": r.id, "thumbs": "down", "comment": "no order number"}, cast_to=object)
    learner.once()  # what the background thread does every --learn-every seconds
    assert learner.runs and learner.runs[0][2].accepted >= 1
    r = client.chat.completions.create(model="m", messages=[{"role": "system", "content": SYSTEM},
                                                            {"role": "user", "content": "Where is parcel 99?"}],
                                       extra_body={"secondnature": {"scope": "support"}})
    assert r.choices[0].message.content.startswith("Your order number")  # the same server, no restart
    server.should_exit = up_server.should_exit = True


def test_learn_on_recorded_traffic_from_the_command_line(store_at, tmp_path, monkeypatch, capsys):
    """`learn traffic:SCOPE`: what serve recorded (or `import traces` brought in), learned from offline."""
    from secondnature.cli import main, ui
    store = LessonStore(store_at)
    record_traffic(store, "support", 40)
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("A good reply names the order number.")
    judge_model = ScriptedModel(lambda m: "Names it.\nScore: 10/10" if "order number" in m[-1]["content"].split(
        "<reply>")[-1] else "Vague.\nScore: 0/10", "judge")
    models = {"p": ScriptedModel(policy_reply, "policy"), "r": reflector(), "j": judge_model}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: models[spec])
    base = ["--store", str(store_at), "learn", "traffic:support", "--policy", "p", "--reflector", "r"]
    assert main(base) == 2 and "needs a reward for its replays" in capsys.readouterr().err
    assert main([*base[:3], "traffic:nothing-here", *base[4:], "--judge", "j", "--rubric", str(rubric)]) == 2
    assert "0 usable recorded calls" in capsys.readouterr().err
    assert main([*base, "--judge", "j", "--rubric", str(rubric), "--budget", "100", "--val-size", "8",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [x["text"] for x in result["lessons"]] == [LESSON] and result["accepted"] == 1


def test_the_cost_cap_counts_the_replays_of_the_last_hour(store_at):
    from secondnature.serve.learner import cost_last_hour
    store = LessonStore(store_at)
    record_traffic(store, "support", 40)
    result = learn_scope(store, "support", ScriptedModel(policy_reply, "policy"), reflector(), judge, CONFIG)
    tokens = store.db.execute("SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM rollouts").fetchone()
    assert result.rollouts_used and cost_last_hour(store, (1.0, 4.0)) == pytest.approx((tokens[0] + 4 * tokens[1]) / 1e6)
