"""The rubric judge and the majority reward with scripted models: the verdict shapes a small judge writes, retries
and their limit, a judge that never sees the reference answer, position-swapped comparisons, the majority vote's
tie-break and its one sampling per task, agreement figures on known vectors, and the CLI's --judge and --rubric."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import secondnature as sn
from secondnature import cli
from secondnature.cli import ui
from secondnature.judge import (
    JUDGE_PROMPT,
    RETRY_TEMPERATURE,
    agreement,
    answer_of,
    judge_reward,
    majority_reward,
    pairwise_reward,
    parse_score,
    parse_winner,
)
from secondnature.models import CachedModel, ScriptedModel
from secondnature.tasks import load_taskset
from secondnature.tasks.jsonl import TaskFileError, load_jsonl
from secondnature.types import Completion, Task

RUBRIC = "The reply greets the user politely and answers in one sentence."
REFERENCE = "REF-ANSWER-7391"
TASK = Task("t1", "Say hello to the user.", REFERENCE)


class Recorder:
    """A model that answers from a queue and keeps every call's messages and parameters."""

    def __init__(self, replies: list[str | Completion | Exception], name: str = "judge"):
        self.name, self.identity = name, f"recorder:{name}:{id(self):x}"
        self.replies, self.calls = list(replies), []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def chat(self, messages, *, n=1, temperature=0.0, max_tokens=512, seed=None, tools=None):
        self.calls.append({"messages": messages, "n": n, "temperature": temperature, "seed": seed})
        out = []
        for _ in range(n):
            r = self.replies.pop(0) if self.replies else ""
            if isinstance(r, Exception):
                raise r
            out.append(r if isinstance(r, Completion) else Completion(text=r))
        return out


def prompts_of(model) -> list[str]:
    calls = model.calls
    return [m["content"] for c in calls for m in (c["messages"] if isinstance(c, dict) else c)]


# ---------------------------------------------------------------- reading a verdict

@pytest.mark.parametrize("text, value", [
    ("The reply is polite.\nScore: 7/10", 0.7),
    ("Score: 7 / 10", 0.7),
    ("**Score:** 8/10", 0.8),
    ("**Score**: 9", 0.9),
    ("Polite and short.\n\nFinal score = 10 out of 10.", 1.0),
    ("Rating: 0.7", 0.7),
    ("Score: 1.0", 1.0),
    ("Score: 0", 0.0),
    ("Grade: 70%", 0.7),
    ("Score: 4/5", 0.8),
    ("It greets the user but rambles. 8 out of 10", 0.8),
    ("It greets the user but rambles. I would give it 6/10.", 0.6),
    ("Greets politely.\n7", 0.7),
    ("Score: N/10\nThe reply is fine.\nScore: 6/10", 0.6),
    ("Score: 6/10\nScore: see above", 0.6),  # a later line with no number gives way to the one that has it
])
def test_score_shapes(text: str, value: float) -> None:
    got = parse_score(text)
    assert got is not None and got[0] == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "The reply is polite.", "Score: N/10", "Score: 85", "Score: 11/10",
                                  "It counted 3/4 of the apples.", "Score: excellent", "I rate it highly."])
def test_no_score_in_these(text: str) -> None:
    assert parse_score(text) is None


def test_rationale_is_the_conclusion_without_its_label() -> None:
    assert parse_score("Rationale: **Polite** and brief.\nScore: 9/10")[1] == "Polite and brief."
    assert parse_score("It greets the user. It is polite. Therefore, the score is 9/10.")[1] == "It is polite."
    assert parse_score("Score: 3/10\nToo curt, no greeting.")[1] == "Too curt, no greeting."
    assert parse_score("Score: 3/10")[1] == "no rationale given"
    assert len(parse_score("x" * 500 + "\nScore: 3/10")[1]) <= 160


@pytest.mark.parametrize("text, winner", [("A is warmer.\nWinner: A", "A"), ("**Winner:** B", "B"),
                                          ("Winner: Reply B", "B"), ("Winner: tie", "tie"), ("Verdict: neither", "tie"),
                                          ("Both fine.\nBetter reply: A", "A"), ("Reply A is better.\n**B**", "B")])
def test_winner_shapes(text: str, winner: str) -> None:
    assert parse_winner(text)[0] == winner


@pytest.mark.parametrize("text", ["", "Both replies are fine.", "Winner: C", "Winner: the first one"])
def test_no_winner_in_these(text: str) -> None:
    assert parse_winner(text) is None


# ---------------------------------------------------------------- pointwise

def test_pointwise_score_and_feedback() -> None:
    judge = Recorder(["It greets politely, in one sentence.\nScore: 8/10"])
    s = judge_reward(judge, RUBRIC)(TASK, "Hello there, nice to meet you!")
    assert s == sn.Score(0.8, "judge: It greets politely, in one sentence.")
    (call,) = judge.calls
    assert call["temperature"] == 0.0 and call["seed"] == 0  # greedy and seeded: the cache can replay it
    user = call["messages"][-1]["content"]
    assert RUBRIC in user and TASK.prompt in user and "Hello there, nice to meet you!" in user


def test_an_unreadable_verdict_is_asked_again_with_the_reply_shown_back() -> None:
    judge = Recorder(["I think it is quite good overall", "Very good", "Fine.\nScore: 7/10"])
    s = judge_reward(judge, RUBRIC, seed=5)(TASK, "Hi!")
    assert s.value == 0.7 and len(judge.calls) == 3
    assert [c["seed"] for c in judge.calls] == [5, 6, 7]  # another seed each time; the last retry samples
    assert [c["temperature"] for c in judge.calls] == [0.0, 0.0, RETRY_TEMPERATURE]
    retry = judge.calls[2]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "Very good"} and "Score: N/10" in retry[-1]["content"]
    assert retry[:2] == judge.calls[0]["messages"]
    # a judge that reasoned but forgot its score line: the bare score it gives when asked keeps that reasoning
    forgot = Recorder(["The reply says False, but the expression is True.", "Score: 2/10"])
    assert judge_reward(forgot, RUBRIC)(TASK, "Hi!") == sn.Score(0.2, "judge: The reply says False, but the expression "
                                                                     "is True.")


def test_no_verdict_after_two_retries_scores_zero_with_the_reason() -> None:
    judge = Recorder(["garbage", "more garbage", "still garbage", "Score: 10/10"])
    s = judge_reward(judge, RUBRIC)(TASK, "Hi!")
    assert s.value == 0.0 and s.feedback.startswith("judge gave no verdict:") and "still garbage" in s.feedback
    assert len(judge.calls) == 3  # at most 2 retries: the fourth answer is never asked for


def test_a_failing_judge_never_raises() -> None:
    failing = Recorder([Completion("", error="HTTP 500")] * 3)
    s = judge_reward(failing, RUBRIC)(TASK, "Hi!")
    assert s.value == 0.0 and "judge gave no verdict" in s.feedback and "HTTP 500" in s.feedback
    assert len(failing.calls) == 3
    raising = Recorder([RuntimeError("boom"), Completion("", error="down"), "Score: 6/10"])
    assert judge_reward(raising, RUBRIC)(TASK, "Hi!").value == 0.6  # a raise is a failed call, retried
    assert judge_reward(Recorder([RuntimeError("boom")] * 3), RUBRIC)(TASK, "Hi!").value == 0.0
    with pytest.raises(ValueError, match="rubric is empty"):
        judge_reward(failing, "  \n")


def test_the_judge_never_sees_the_reference_answer() -> None:
    judge = ScriptedModel(lambda m: "Winner: A" if "<reply_A>" in m[-1]["content"] else "Score: 5/10")
    chat = Task("c1", "unused prompt", REFERENCE, {"messages": [
        {"role": "system", "content": "You are a support bot."},
        {"role": "user", "content": [{"type": "text", "text": "Where is my parcel?"}]}], "anchor": "It is on its way."})
    for task in (TASK, chat):
        judge_reward(judge, RUBRIC)(task, "Hello! Your parcel ships today.")
        pairwise_reward(judge, RUBRIC)(task, "Hello! Your parcel ships today.")
    texts = prompts_of(judge)
    assert len(judge.calls) == 5 and all(REFERENCE not in t for t in texts)  # the plain task's pairwise: pointwise
    chat_prompt = judge.calls[2][-1]["content"]
    assert "system: You are a support bot." in chat_prompt and "user: Where is my parcel?" in chat_prompt
    assert "unused prompt" not in chat_prompt  # the messages are the request


def test_the_cache_replays_the_judge() -> None:
    class Cache(dict):
        def get_completion(self, key):
            return self.get(key)

        def put_completion(self, key, c):
            self[key] = c
    inner = ScriptedModel(lambda m: "Good.\nScore: 9/10")
    reward = judge_reward(CachedModel(inner, Cache()), RUBRIC)
    assert reward(TASK, "Hello!") == reward(TASK, "Hello!") and len(inner.calls) == 1


# ---------------------------------------------------------------- pairwise

def reply_in(messages: list[dict], slot: str) -> str:
    return re.search(rf"<reply_{slot}>\n(.*?)\n</reply_{slot}>", messages[-1]["content"], re.S).group(1)


ANCHORED = Task("t2", "Say hello to the user.", REFERENCE, {"anchor": "hey"})


def test_a_judge_that_always_prefers_position_a_gives_one_half() -> None:
    judge = ScriptedModel(lambda m: "A reads better.\nWinner: A")
    s = pairwise_reward(judge, RUBRIC)(ANCHORED, "Hello, good to see you!")
    assert s.value == 0.5 and "won as A" in s.feedback and "lost as B" in s.feedback
    assert [reply_in(c, "A") for c in judge.calls] == ["Hello, good to see you!", "hey"]  # swapped
    assert pairwise_reward(ScriptedModel(lambda m: "Winner: B"), RUBRIC)(ANCHORED, "Hello!").value == 0.5


def test_pairwise_wins_losses_and_ties() -> None:
    def prefers(text: str):  # a judge that prefers the reply holding `text`, wherever it stands
        return ScriptedModel(lambda m: "Winner: A" if text in reply_in(m, "A") else "Winner: B")
    assert pairwise_reward(prefers("Hello"), RUBRIC)(ANCHORED, "Hello, good to see you!").value == 1.0
    assert pairwise_reward(prefers("hey"), RUBRIC)(ANCHORED, "Hello, good to see you!").value == 0.0
    assert pairwise_reward(ScriptedModel(lambda m: "Winner: tie"), RUBRIC)(ANCHORED, "Hello!").value == 0.5
    mixed = Recorder(["Winner: A", "Winner: tie"])  # won as A, tied as B
    assert pairwise_reward(mixed, RUBRIC)(ANCHORED, "Hello!").value == 0.75
    same = Recorder([])
    assert pairwise_reward(same, RUBRIC)(ANCHORED, " hey ").value == 0.5 and not same.calls


def test_pairwise_without_an_anchor_is_pointwise_and_without_a_verdict_zero() -> None:
    judge = Recorder(["Good.\nScore: 9/10"])
    s = pairwise_reward(judge, RUBRIC)(TASK, "Hello!")
    assert s == sn.Score(0.9, "judge: Good.") and "<reply>" in judge.calls[0]["messages"][-1]["content"]
    silent = Recorder(["Winner: A", "no idea", "no idea", "no idea"])
    s = pairwise_reward(silent, RUBRIC)(ANCHORED, "Hello!")
    assert s.value == 0.0 and "no verdict with the reply as B" in s.feedback and len(silent.calls) == 4


# ---------------------------------------------------------------- majority

def test_answers_are_read_alike() -> None:
    assert answer_of("so 16 - 3 - 4 = 9\nAnswer: $9.00") == answer_of("Answer: 16 - 3 - 4 = 9") == "9"
    assert answer_of("Answer: 1,000 dollars") == answer_of("I make it 1000") == "1000"
    assert answer_of("Answer: 2.5") == answer_of("Answer: 5/2")
    assert answer_of("Answer: (B)") == answer_of("**Answer:** B.") == "b"
    assert answer_of("The result is\nTrue") == "true" and answer_of("") == ""


def test_majority_label_tie_break_and_one_sampling_per_task() -> None:
    policy = Recorder(["Answer: 3", "Answer: 4", "Answer: 3.0", "Answer: 4", "Answer: 5"], "policy")
    reward = majority_reward(policy, n=5, system="Be brief.", seed=2)
    task = Task("m1", "How many?", "")
    right = reward(task, "Counting... Answer: 3")
    assert right == sn.Score(1.0, "majority of 5: '3' (2 of 5 agree)")  # 3 and 4 tie: the first sampled wins
    wrong = reward(task, "Answer: 4")
    assert wrong.value == 0.0 and "this reply gave '4'" in wrong.feedback
    assert len(policy.calls) == 1 and policy.calls[0]["n"] == 5 and policy.calls[0]["seed"] == 2
    assert policy.calls[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "How many?"}]
    policy.replies = ["Answer: 7"] * 5
    assert reward(Task("m2", "And now?", ""), "Answer: 7").value == 1.0 and len(policy.calls) == 2


def test_majority_without_answers_scores_zero_and_an_outage_is_asked_again() -> None:
    policy = Recorder(["", "  "] * 2 + [""], "policy")
    s = majority_reward(policy, n=5)(Task("m", "?", ""), "Answer: 3")
    assert s.value == 0.0 and "no majority" in s.feedback
    down = Recorder([Completion("", error="down")] * 3 + ["Answer: 2"] * 3, "policy")
    reward = majority_reward(down, n=3)
    assert reward(Task("m", "?", ""), "Answer: 2").value == 0.0
    assert reward(Task("m", "?", ""), "Answer: 2").value == 1.0 and len(down.calls) == 2


# ---------------------------------------------------------------- agreement

def test_agreement_on_known_vectors() -> None:
    got = agreement([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])
    assert got["n"] == 6 and got["accuracy"] == pytest.approx(4 / 6)
    assert got["kappa"] == pytest.approx(1 / 3)  # both pass half: chance agreement 0.5
    assert got["judge_mean_when_right"] == pytest.approx(2 / 3) and got["judge_mean_when_wrong"] == pytest.approx(1 / 3)
    assert (got["both_pass"], got["judge_only"], got["checker_only"], got["both_fail"]) == (2, 1, 1, 2)
    lo, hi = got["accuracy_ci95"]
    assert lo < 4 / 6 < hi
    perfect = agreement([0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0])
    assert perfect["accuracy"] == 1.0 and perfect["kappa"] == pytest.approx(1.0)
    assert agreement([0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0], threshold=0.95)["kappa"] == pytest.approx(0.0)
    constant = agreement([1, 1], [1, 1])
    assert constant["kappa"] is None and constant["judge_mean_when_wrong"] is None
    assert agreement([0.0, 1.0], [1.0, 0.0])["kappa"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="paired"):
        agreement([1], [1, 0])


# ---------------------------------------------------------------- task files without answers

def test_a_file_without_answers_loads_only_for_a_judge(tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    path.write_text('{"prompt": "Greet me."}\n{"prompt": "Greet my cat.", "answer": "meow"}\n')
    with pytest.raises(TaskFileError, match=r'line 1: missing field "answer".*--judge MODEL --rubric FILE'):
        load_jsonl(path)
    ts = load_taskset(str(path), answers_required=False)
    assert [t.answer for t in ts.tasks] == ["", "meow"]
    path.write_text('{"prompt": "Greet me."}\n{"prompt": "Count.", "answer": "many", "checker": "number"}\n')
    with pytest.raises(TaskFileError, match="line 2"):  # an answer given is still checked
        load_jsonl(path, answers_required=False)
    assert sn.task_set("open", [{"prompt": "Greet me."}], judge_reward(Recorder([]), RUBRIC)).tasks[0].answer == ""


# ---------------------------------------------------------------- the command line

def greeting_policy(messages: list[dict]) -> str:
    i = int(re.search(r"number (\d+)", messages[-1]["content"]).group(1))
    return "Hello, kind person, how can I help?" if i % 2 == 0 else "What do you want."


def greeting_judge(messages: list[dict]) -> str:
    reply = re.search(r"<reply>\n(.*?)\n</reply>", messages[-1]["content"], re.S).group(1)
    return "Polite.\nScore: 9/10" if "Hello" in reply else "Curt, no greeting.\nScore: 1/10"


@pytest.fixture
def open_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict]:
    from rich.console import Console
    monkeypatch.setattr(ui, "out", Console(width=10_000))
    monkeypatch.setattr(ui, "err", Console(stderr=True, width=10_000))
    tasks = tmp_path / "greet.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"g{i}", "prompt": f"Greet visitor number {i}."}) + "\n"
                             for i in range(10)))
    rubric = tmp_path / "rubric.txt"
    rubric.write_text(RUBRIC + "\n")
    models = {"p": ScriptedModel(greeting_policy, "policy"), "j": ScriptedModel(greeting_judge, "judge")}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: models[spec])
    return tasks, rubric, models


@pytest.mark.parametrize("flags, says", [
    (["--judge", "j"], "--rubric FILE"),
    (["--rubric", "RUBRIC"], "--judge MODEL"),
    (["--judge", "j", "--rubric", "missing.txt"], "cannot read the rubric"),
    (["--judge", "j", "--rubric", "EMPTY"], "is empty"),
    (["--judge", "j", "--rubric", "RUBRIC", "--checker", "exact"], "give one of them"),
])
def test_judge_flags_misused(open_file, tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                             says: str) -> None:
    tasks, rubric, models = open_file
    (tmp_path / "empty.txt").write_text(" \n")
    flags = [{"RUBRIC": str(rubric), "EMPTY": str(tmp_path / "empty.txt")}.get(f, f) for f in flags]
    for command in (["eval", str(tasks), "--policy", "p"], ["learn", str(tasks), "--policy", "p"],
                    ["bench", str(tasks), "--policy", "p", "--arms", "none"]):
        code = cli.main(["--store", str(tmp_path / "s.db"), *command, *flags])
        assert code == 2 and says in capsys.readouterr().err
    assert not models["p"].calls and not models["j"].calls  # refused before any model call


def test_eval_of_a_file_without_answers_needs_the_judge(open_file, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    tasks, rubric, models = open_file
    base = ["--store", str(tmp_path / "s.db"), "eval", str(tasks), "--split", "all", "--policy", "p", "--json"]
    assert cli.main(base) == 2
    assert 'missing field "answer"' in capsys.readouterr().err and not models["p"].calls
    assert cli.main([*base, "--judge", "j", "--rubric", str(rubric)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["n"] == 10 and record["accuracy"] == pytest.approx((5 * 0.9 + 5 * 0.1) / 10)
    assert record["judge"] == "j" and len(models["j"].calls) == 10
    assert all(RUBRIC in c[-1]["content"] for c in models["j"].calls)
    assert cli.main([*base, "--judge", "j", "--rubric", str(rubric)]) == 0  # the store's cache replays the judge
    assert len(models["j"].calls) == 10


def test_learn_with_a_judge_on_tasks_without_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """The toy counting tasks of test_learn with their answers left out: a judge that can count scores them, a
    good lesson wins its gate, and no reflector prompt claims a correct answer it does not have."""
    from test_learn import GOOD, policy_fn, reflector_of
    from test_learn import taskset as toy

    path = tmp_path / "count.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "prompt": t.prompt}) + "\n" for t in toy().tasks))
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("The reply ends with the right count of the letter on an 'Answer:' line.")

    def counting_judge(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        i = int(re.search(r"word number (\d+)", user).group(1))
        reply = re.search(r"<reply>\n(.*?)\n</reply>", user, re.S).group(1)
        return "Right count.\nScore: 10/10" if f"Answer: {i % 3 + 1}" in reply else "Wrong count.\nScore: 0/10"

    models = {"p": ScriptedModel(policy_fn, "policy"), "r": reflector_of(GOOD), "j": ScriptedModel(counting_judge)}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: models[spec])
    code = cli.main(["--store", str(tmp_path / "s.db"), "learn", str(path), "--policy", "p", "--reflector", "r",
                     "--judge", "j", "--rubric", str(rubric), "--budget", "80", "--val-size", "10",
                     "--group-size", "2", "--tasks-per-step", "2", "--json"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert [x["text"] for x in result["lessons"]] == [GOOD] and result["accepted"] == 1
    assert models["r"].calls and all("Correct answer:" not in t for t in prompts_of(models["r"]))


def test_bench_with_a_judge(open_file, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tasks, rubric, models = open_file
    out = tmp_path / "results"
    code = cli.main(["bench", str(tasks), "--arms", "none", "--seeds", "1", "--budget", "4", "--val-size", "2",
                     "--policy", "p", "--reflector", "p", "--judge", "j", "--rubric", str(rubric), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (none,) = [r for r in json.loads((out / "greet.json").read_text()) if r["arm"] == "none"]
    assert none["judge"] == "j" and 0.0 < none["accuracy"] < 1.0 and models["j"].calls


def test_the_judge_prompt_has_no_place_for_an_answer() -> None:
    assert "{answer}" not in JUDGE_PROMPT and set(re.findall(r"{(\w+)}", JUDGE_PROMPT)) == {"rubric", "request", "reply"}
