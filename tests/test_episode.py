"""Episodes with the Python tool, with a scripted policy: the code runs in the sandbox, its output comes back as
the next message, the final reply is scored, and the trajectory is kept whole."""
from __future__ import annotations

from secondnature import episode
from secondnature.models import ScriptedModel
from secondnature.rewards import expression24
from secondnature.sandbox import Limits
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


def policy(messages: list[dict]) -> str:
    """Writes a brute-force search, then answers with the expression it printed."""
    last = messages[-1]["content"]
    if last.startswith("Output of your code:"):
        return f"The search found it.\nAnswer: {last.splitlines()[1].strip()}"
    return SOLVER


def test_an_episode_runs_code_and_answers_with_its_output():
    model = ScriptedModel(policy)
    [r] = episode.run(model, [TASK], expression24, "Solve the puzzle. End with 'Answer: <expression>'.", [])
    assert r.score.value == 1.0, r.score.feedback
    roles = [m["role"] for m in r.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert episode.TOOL_NOTE.splitlines()[0] in r.messages[0]["content"]
    assert r.messages[3]["content"].startswith("Output of your code:") and "24" not in r.messages[3]["content"][:20]
    assert r.completion.startswith("The search found it.")


def test_a_step_limit_ends_an_episode_that_keeps_running_code():
    model = ScriptedModel(lambda m: "```python\nprint('still thinking')\n```")
    [r] = episode.run(model, [TASK], expression24, "Solve it.", [], config=episode.EpisodeConfig(max_steps=3))
    assert r.score.value == 0.0 and "3-step limit" in r.score.feedback
    assert [m["role"] for m in r.messages].count("assistant") == 3
    assert sum(m["content"].startswith("Output of your code:") for m in r.messages) == 2


def test_a_crashing_tool_call_is_a_tool_error_the_model_reads_not_a_failed_run():
    replies = iter(["```python\nwhile True:\n    pass\n```", "Answer: (8-4)*(7-1)"])
    model = ScriptedModel(lambda m: next(replies))
    cfg = episode.EpisodeConfig(limits=Limits(wall_s=1.0, cpu_s=1))
    [r] = episode.run(model, [TASK], expression24, "Solve it.", [], config=cfg)
    assert "[tool error]" in r.messages[3]["content"] or "CPU time limit" in r.messages[3]["content"]
    assert r.score.value == 0.0 and "uses" in r.score.feedback  # scored on its answer: wrong numbers


def test_a_final_answer_with_code_in_it_is_not_a_tool_call():
    assert episode.tool_call("```python\nprint(1)\n```\nAnswer: 3") == ""
    assert episode.tool_call("Let me check.\n```python\nprint(2+2)\n```") == "print(2+2)"
    assert episode.tool_call("No code here.") == ""
