"""Episodes with the Python tool, with a scripted policy: the code runs in the sandbox, its output comes back as
the next message, the final reply is scored, and the trajectory is kept whole."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from secondnature import rollout
from secondnature.evidence import render_trajectory
from secondnature.models import CachedModel, ScriptedModel, parse_tool_calls
from secondnature.rewards import expression24
from secondnature.sandbox import Limits
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset, slug
from secondnature.tools import OUTPUT_HEADER, TOOLS, tool_instruction
from secondnature.types import Task

SOLVER = """```python
from itertools import permutations, product
nums = [4, 7, 8, 8]
for a, b, c, d in permutations(nums):
    for o1, o2, o3 in product('+-*/', repeat=3):
        for e in (f'(({a}{o1}{b}){o2}{c}){o3}{d}', f'({a}{o1}{b}){o2}({c}{o3}{d})', f'({a}{o1}({b}{o2}{c})){o3}{d}'):
            try:
                if abs(eval(e) - 24) < 1e-9:
                    print(e); raise SystemExit
            except ZeroDivisionError:
                pass
```"""

TASK = Task("g1", "Use 4 7 8 8 to make 24.", "", {"numbers": [4, 7, 8, 8]})


def episode(model, tasks, reward, system, lessons, **kw):
    """Attempts with the Python tool offered."""
    return rollout.run(model, tasks, reward, system, lessons, tools=("python",), **kw)


def policy(messages: list[dict]) -> str:
    """Writes a brute-force search, then answers with the expression it printed."""
    last = messages[-1]["content"]
    if last.startswith(OUTPUT_HEADER):
        return f"The search found it.\nAnswer: {last.splitlines()[1].strip()}"
    return SOLVER


def test_an_episode_runs_code_and_answers_with_its_output():
    model = ScriptedModel(policy)
    system = tool_instruction("Solve the puzzle.\nAnswer: <expression>")
    [r] = episode(model, [TASK], expression24, system, [])
    assert r.score.value == 1.0, r.score.feedback
    roles = [m["role"] for m in r.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert TOOLS["python"].note.splitlines()[0] in r.messages[0]["content"]
    assert r.messages[0]["content"].endswith("Answer: <expression>")
    assert all(isinstance(m["seconds"], float) for m in r.messages[2:])  # step timings kept beside each step
    assert rollout.episode_stats(r) == {"steps": 2, "tool_calls": 1}
    assert r.messages[3]["content"].startswith(OUTPUT_HEADER) and "24" not in r.messages[3]["content"][:20]
    assert r.completion.startswith("The search found it.")


def test_a_step_limit_ends_an_episode_that_keeps_running_code():
    model = ScriptedModel(lambda m: "```python\nprint('still thinking')\n```")
    [r] = episode(model, [TASK], expression24, "Solve it.", [], max_steps=3)
    assert r.score.value == 0.0 and "3-step limit" in r.score.feedback
    assert [m["role"] for m in r.messages].count("assistant") == 3
    assert sum(m["content"].startswith(OUTPUT_HEADER) for m in r.messages) == 2


def test_a_crashing_tool_call_is_a_tool_error_the_model_reads_not_a_failed_run():
    replies = iter(["```python\nwhile True:\n    pass\n```", "Answer: (8-4)*(7-1)"])
    model = ScriptedModel(lambda m: next(replies))
    [r] = episode(model, [TASK], expression24, "Solve it.", [], limits=Limits(wall_s=1.0, cpu_s=1))
    assert "[tool error]" in r.messages[3]["content"] or "CPU time limit" in r.messages[3]["content"]
    assert r.score.value == 0.0 and "uses" in r.score.feedback  # scored on its answer: wrong numbers


def test_code_is_a_tool_call_even_with_a_guessed_answer_after_it():
    from secondnature.tools import TOOLS, fenced_call
    py = (TOOLS["python"],)
    assert fenced_call("```python\nprint(1)\n```\nAnswer: 3", py)[1] == "print(1)"
    assert fenced_call("Let me check.\n```python\nprint(2+2)\n```", py)[1] == "print(2+2)"
    assert fenced_call("No code here.\nAnswer: 3", py) is None


def native_policy(messages: list[dict]) -> str:
    """Calls the tool in the Hermes/Qwen text form llama.cpp hands back, then answers with the tool's output."""
    if messages[-1]["role"] == "tool":
        assert messages[-1]["tool_call_id"] == messages[-2]["tool_calls"][0]["id"]
        return f"Answer: {messages[-1]['content'].strip()}"
    code = SOLVER.split("```python\n")[1].rstrip("`\n")
    return '<tool_call>\n' + json.dumps({"name": "python", "arguments": {"code": code}}) + '\n</tool_call>'


def test_native_tool_calls_go_out_as_tool_calls_and_come_back_as_tool_messages():
    model = ScriptedModel(native_policy)
    [r] = episode(model, [TASK], expression24, "Solve it.", [], native=True)
    assert r.score.value == 1.0, r.score.feedback
    assert [m["role"] for m in r.messages] == ["system", "user", "assistant", "tool", "assistant"]
    call = r.messages[2]["tool_calls"][0]
    assert call["function"]["name"] == "python" and "permutations" in json.loads(call["function"]["arguments"])["code"]
    assert all("seconds" not in m for m in model.calls[-1])  # bookkeeping never goes to the model
    text = render_trajectory(r.messages)
    assert "[calls python]" in text and "permutations" in text and "Step 2, the assistant" in text


def test_native_mode_still_runs_plain_text_code_and_reports_bad_calls():
    replies = iter(['<tool_call>{"name": "shell", "arguments": {"cmd": "ls"}}</tool_call>',
                    '<tool_call>{"name": "python", "arguments": {"source": "print(1)"}}</tool_call>',
                    "```python\nprint(6*4)\n```", "Answer: (8-4)*(7-1)"])
    model = ScriptedModel(lambda m: next(replies))
    [r] = episode(model, [TASK], expression24, "Solve it.", [], native=True)
    tools = [m["content"] for m in r.messages if m["role"] in ("tool", "user")][1:]
    assert "no tool named 'shell'" in tools[0] and "no code given" in tools[1] and "24" in tools[2]
    assert rollout.episode_stats(r) == {"steps": 4, "tool_calls": 3}


def test_parse_tool_calls_takes_valid_blocks_and_leaves_the_rest():
    text, calls = parse_tool_calls('Let me run it.\n<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}}'
                                   '\n</tool_call>')
    assert text == "Let me run it." and calls[0].name == "python" and json.loads(calls[0].arguments) == {"code": "print(1)"}
    assert parse_tool_calls("<tool_call>{not json}</tool_call>") == ("<tool_call>{not json}</tool_call>", ())


def test_cached_completions_keep_their_tool_calls(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    inner = ScriptedModel(native_policy)
    model = CachedModel(inner, store)
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    first = model.chat(msgs, tools=[TOOLS["python"].spec()])[0]
    again = model.chat(msgs, tools=[TOOLS["python"].spec()])[0]
    assert len(inner.calls) == 1 and again.cached and again.tool_calls == first.tool_calls and first.tool_calls
    model.chat(msgs)  # without tools it is another call
    assert len(inner.calls) == 2


class Slow(ScriptedModel):
    """Every reply reports 0.5 s of latency, as a real model's would."""

    def chat(self, messages, **kw):
        return [replace(c, latency_s=0.5) for c in super().chat(messages, **kw)]


def test_an_episode_costs_its_model_latency_and_tool_time_even_when_replayed(tmp_path):
    model = CachedModel(Slow(policy), LessonStore(tmp_path / "s.db"))
    [r] = episode(model, [TASK], expression24, "Solve it.", [])
    tool_s = r.messages[3]["seconds"]
    assert r.latency_s == pytest.approx(1.0 + tool_s, abs=0.01)  # two model turns and one tool run
    [again] = episode(model, [TASK], expression24, "Solve it.", [])  # replayed from the cache
    assert again.latency_s >= 1.0 and len(model.inner.calls) == 2


def test_a_task_set_with_the_python_tool_runs_episodes_through_rollout_run():
    ts = load_taskset("game24+python")
    assert ts.name == "game24+python" and ts.tools == ("python",) and slug(ts.name) == "game24_python"
    assert TOOLS["python"].note.splitlines()[0] in ts.instruction and ts.instruction.splitlines()[-1].startswith("Answer:")
    task = next(t for t in ts.tasks if t.metadata["numbers"] == [4, 7, 8, 8])
    [r] = rollout.run(ScriptedModel(policy), [task], ts.reward, ts.instruction, [], tools=ts.tools)
    assert r.score.value == 1.0 and len(r.messages) == 5
    with pytest.raises(ValueError, match="unknown tool"):
        load_taskset("game24+shell")


def test_a_failed_step_is_named_in_the_feedback():
    replies = iter(["```python\nprint(1/0)\n```", "Answer: (8-4)*(7-2)"])
    [r] = episode(ScriptedModel(lambda m: next(replies)), [TASK], expression24, "Solve it.", [])
    assert r.score.value == 0.0 and "step 1" in r.score.feedback and "ZeroDivisionError" in r.score.feedback


def test_the_calculator_is_exact_and_never_evaluates_anything_else():
    from secondnature.tools import calculate
    out = calculate("(48 - 12) / 3\n0.1 + 0.2\n7 / 3\n2 ** 10\n1,250 * 4\n__import__('os').system('ls')\n5 / 0\n3 ** 0.5")
    lines = out.splitlines()
    assert lines[:5] == ["(48 - 12) / 3 = 12", "0.1 + 0.2 = 0.3", "7 / 3 = 2.333333333", "2 ** 10 = 1024",
                         "1,250 * 4 = 5000"]
    assert "[tool error]" in lines[5] and "Call" in lines[5]
    assert "division by zero" in lines[6] and "whole exponent" in lines[7]
    assert calculate("") == "[tool error] no expression given"


def test_a_calculator_episode_on_gsm8k():
    ts = load_taskset("gsm8k+calculator")
    assert ts.tools == ("calculator",) and "```calc" in ts.instruction
    task = ts.tasks[0]
    replies = iter([f"```calc\n{task.answer} * 2 / 2\n```", f"So it is {task.answer}.\nAnswer: {task.answer}"])
    [r] = rollout.run(ScriptedModel(lambda m: next(replies)), [task], ts.reward, ts.instruction, [], tools=ts.tools)
    assert r.score.value == 1.0
    assert r.messages[3]["content"] == f"{OUTPUT_HEADER}\n{task.answer} * 2 / 2 = {task.answer}"
    # a python block is not a call when only the calculator is offered: the reply is the final answer
    [r] = rollout.run(ScriptedModel(["```python\nprint(1)\n```"]), [task], ts.reward, ts.instruction, [], tools=ts.tools)
    assert len(r.messages) == 3


def test_a_solved_episode_becomes_a_worked_example_with_its_code():
    from secondnature.propose import example_from
    ok = episode(ScriptedModel(policy), [TASK], expression24, "Solve it.", [])[0]
    bad = episode(ScriptedModel(["Answer: 4*7-8+8"]), [TASK], expression24, "Solve it.", [])[0]
    text = example_from([[ok, bad]], {TASK.id: TASK})
    assert text.startswith("Worked example. Question: Use 4 7 8 8 to make 24.")
    assert "for a, b, c, d in permutations(nums):\n" in text  # code lines kept, not folded into one
    assert "Step 2, the assistant" in text and "Answer:" in text


def test_the_reflection_prompt_tallies_tool_use_against_success():
    from secondnature.evidence import order_groups
    from secondnature.reflect import build_prompt
    ok = episode(ScriptedModel(policy), [TASK], expression24, "Solve it.", [], n=2)
    bare = episode(ScriptedModel(["Answer: 4*7-8+8"]), [TASK], expression24, "Solve it.", [], n=2)
    crash = episode(ScriptedModel(["```python\nprint(1/0)\n```", "Answer: 8*3"]), [TASK], expression24, "S.", [])
    batch = ok + bare + crash
    user = build_prompt("Solve it.", [], order_groups(batch), {TASK.id: TASK}, batch, ("python",))[1]["content"]
    assert "Tools over all 5 attempts of this round: 3 called a tool (2 of them correct; 1 calls ended in a tool " \
           "error), 2 answered without one (0 correct)" in user
    assert "Tools over" not in build_prompt("Solve it.", [], order_groups(batch), {TASK.id: TASK}, batch)[1]["content"]


def solver_for(numbers: list[int]) -> str:
    return SOLVER.replace("nums = [4, 7, 8, 8]", f"nums = {numbers}")


def test_a_program_the_reflector_writes_is_run_and_checked_before_it_becomes_a_lesson():
    from secondnature.reflect import tool_demo_lesson, tool_demo_prompt
    user = tool_demo_prompt("Solve it.", TASK)[1]["content"]
    assert "Use 4 7 8 8 to make 24." in user and "not shown" in user
    lesson, why = tool_demo_lesson(f"Here it is:\n{SOLVER}", TASK, expression24)
    assert why == "" and "```python\nfrom itertools import permutations" in lesson and "Step 2, the assistant" in lesson
    assert "rejects" in tool_demo_lesson("```python\nprint('4*7-8+8')\n```", TASK, expression24)[1]
    assert "ZeroDivisionError" in tool_demo_lesson("```python\nprint(1/0)\n```", TASK, expression24)[1]
    assert "no ```python block" in tool_demo_lesson("(8-4)*(7-1)", TASK, expression24)[1]


def test_learning_with_the_tool_accepts_a_checked_program_that_the_policy_then_reuses(tmp_path):
    """Scripted: the policy guesses unless its lessons hold a program, which it then runs with its own numbers; the
    reflector writes a solver when asked for a program. The loop must turn that into an accepted lesson."""
    from secondnature.learn import LearnConfig, learn
    from secondnature.propose import demonstration, reflector_edits, worked_example
    ts = load_taskset("game24+python")

    def policy_fn(messages: list[dict]) -> str:
        if messages[-1]["content"].startswith(OUTPUT_HEADER):
            return f"Answer: {messages[-1]['content'].splitlines()[1].strip()}"
        numbers = [int(x) for x in messages[1]["content"].split("numbers ")[1].split(" and")[0].split()]
        return solver_for(numbers) if "permutations" in messages[0]["content"] else "Answer: 1+2+3+4"

    def reflector_fn(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        if "Write the Python program" in user:
            numbers = [int(x) for x in user.split("numbers ")[1].split(" and")[0].split()]
            return solver_for(numbers)
        return '{"edits": [{"op": "add", "text": "Think harder about the numbers before you answer."}]}'

    store = LessonStore(tmp_path / "s.db")
    cfg = LearnConfig(budget=90, tasks_per_step=2, group_size=2, val_size=8, proposals=1)
    result = learn(ScriptedModel(policy_fn, "policy"), ScriptedModel(reflector_fn, "reflector"), ts, store, cfg,
                   proposers=(reflector_edits, worked_example, demonstration))
    lessons = store.revision_lessons(result.revision)
    assert result.accepted == 1 and len(lessons) == 1 and "```python" in lessons[0].text
    assert result.val_score == 1.0


def test_gepa_reads_an_episode_whole():
    from secondnature.bench.gepa_arm import RolloutAdapter
    [r] = episode(ScriptedModel(policy), [TASK], expression24, "Solve it.", [])
    batch = type("EB", (), {"trajectories": [{"task": TASK, "rollout": r}]})()
    records = RolloutAdapter.make_reflective_dataset(None, {}, batch, ["instruction"])["instruction"]
    assert "permutations" in records[0]["Generated Outputs"] and "Step 2, the assistant" in records[0]["Generated Outputs"]
