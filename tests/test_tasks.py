"""Task sets: built-in data scores 1.0 under its own checker, splits are stable, task files are validated."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secondnature.tasks import TaskFileError, list_tasksets, load_taskset, split
from secondnature.tasks.builtin import bbh_checker
from secondnature.types import Task

ALL_SPECS = list_tasksets() + ["gsm8k:train", "letters:medium,hard"]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_gold_answers_score_one(spec: str) -> None:
    taskset = load_taskset(spec)
    assert taskset.tasks and "Answer:" in taskset.instruction and "short" in taskset.instruction
    assert len({t.id for t in taskset.tasks}) == len(taskset.tasks)
    failures = [(t.id, s.feedback) for t in taskset.tasks if (s := taskset.reward(t, f"Answer: {t.answer}")).value != 1.0]
    assert not failures, failures[:3]


def test_list_tasksets() -> None:
    specs = list_tasksets()
    assert specs[:3] == ["letters", "game24", "gsm8k"]
    assert len([s for s in specs if s.startswith("bbh/")]) == 15


def test_letters_tiers_and_prompts() -> None:
    medium_hard = load_taskset("letters:medium,hard")
    assert len(medium_hard.tasks) == 374
    assert {t.metadata["tier"] for t in medium_hard.tasks} == {"medium", "hard"}
    strawberry = next(t for t in medium_hard.tasks if t.metadata["word"] == "strawberry" and t.metadata["letter"] == "r")
    assert strawberry.prompt == "How many times does the letter 'r' appear in the word 'strawberry'?"
    assert strawberry.answer == "3" and strawberry.id.startswith("sb_")
    sentence = next(t for t in load_taskset("letters:sentence").tasks)
    assert "following text" in sentence.prompt and sentence.metadata["word"] in sentence.prompt
    assert len(load_taskset("letters").tasks) == 847
    with pytest.raises(ValueError, match="easy, medium, hard"):
        load_taskset("letters:medium,impossible")


def test_game24_metadata() -> None:
    tasks = {t.id: t for t in load_taskset("game24").tasks}
    first = tasks["g24_0"]
    assert first.metadata["numbers"] == [1, 1, 4, 6] and first.metadata["puzzle_id"] == 0
    assert first.prompt.startswith("Use the numbers 1 1 4 6 and + - * /")
    assert sum(t.metadata["standard_test"] for t in tasks.values()) == 100
    assert tasks["g24_900"].metadata["standard_test"] and not tasks["g24_899"].metadata["standard_test"]


def test_gsm8k_parts() -> None:
    test = load_taskset("gsm8k")
    assert len(test.tasks) == 1319 and test.tasks[0].id == "gsm8k_test_0" and test.tasks[0].answer == "18"
    assert all("," not in t.answer for t in test.tasks)
    assert len(load_taskset("gsm8k:train").tasks) == 7473


def test_bbh_checker_choice() -> None:
    assert bbh_checker("x", ["(A)", "(B)", "(C)"]) == "choice"
    assert bbh_checker("x", ["-35", "8", "0"]) == "number"
    assert bbh_checker("dyck_languages", ["] )", ">"]) == "dyck"
    assert bbh_checker("x", ["True", "False"]) == "exact"
    assert bbh_checker("x", ["(A)", "12"]) == "exact"


@pytest.mark.parametrize("spec, checker", [
    ("bbh/date_understanding", "choice"), ("bbh/object_counting", "number"),
    ("bbh/multistep_arithmetic_two", "number"), ("bbh/dyck_languages", "dyck"),
    ("bbh/boolean_expressions", "exact"), ("bbh/word_sorting", "exact"), ("bbh/movie_recommendation", "choice"),
])
def test_bbh_sets_pick_their_checker(spec: str, checker: str) -> None:
    taskset = load_taskset(spec)
    assert taskset.reward.__name__ == checker
    assert taskset.tasks[0].id == spec.removeprefix("bbh/") + "_0"


def test_unknown_specs_list_valid_ones() -> None:
    with pytest.raises(ValueError, match="date_understanding"):
        load_taskset("bbh/no_such_task")
    with pytest.raises(ValueError, match="game24"):
        load_taskset("chess")


def test_checker_argument_overrides_builtin() -> None:
    taskset = load_taskset("bbh/object_counting", checker="exact")
    assert taskset.reward.__name__ == "exact"


def _tasks(n: int) -> list[Task]:
    return [Task(f"t{i}", f"p{i}", str(i)) for i in range(n)]


def test_split_sizes_for_letters() -> None:
    parts = split(load_taskset("letters:medium,hard").tasks)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (149, 75, 150)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 200), seed=st.integers(0, 10**6), data=st.data())
def test_split_deterministic_disjoint_covering(n: int, seed: int, data: st.DataObject) -> None:
    tasks = _tasks(n)
    shuffled = data.draw(st.permutations(tasks))
    parts = split(tasks, seed=seed)
    assert parts == split(shuffled, seed=seed)  # input order does not matter
    ids = [t.id for part in parts.values() for t in part]
    assert sorted(ids) == sorted(t.id for t in tasks) and len(ids) == len(set(ids))
    assert len(parts["test"]) == round(0.4 * n) and len(parts["val"]) == round(0.2 * n)


def test_split_depends_on_seed() -> None:
    tasks = _tasks(100)
    assert split(tasks, seed=0)["test"] != split(tasks, seed=1)["test"]


def _write(tmp_path: Path, lines: list[str], name: str = "tasks.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_loads_tasks(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        json.dumps({"prompt": "2+2?", "answer": 4, "id": "sum", "topic": "math"}),
        json.dumps({"prompt": "Capital of France?", "answer": "Paris"}),
        "",
    ])
    taskset = load_taskset(str(path), checker="number")
    assert taskset.name == "tasks"
    first, second = taskset.tasks
    assert (first.id, first.answer, first.metadata["topic"]) == ("sum", "4", "math")
    assert second.id == "line2"
    assert taskset.reward(first, "Answer: 4").value == 1.0
    assert "<number>" in taskset.instruction


def test_jsonl_per_line_checker_dispatch(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        json.dumps({"prompt": "2+2?", "answer": 4, "checker": "number"}),
        json.dumps({"prompt": "Capital?", "answer": "^par", "checker": "regex"}),
        json.dumps({"prompt": "Say hi", "answer": "hi"}),
    ])
    taskset = load_taskset(str(path))
    num, rx, plain = taskset.tasks
    assert taskset.reward(num, "so 4.0").value == 1.0
    assert taskset.reward(rx, "Answer: Paris").value == 1.0
    assert taskset.reward(plain, "Answer: HI").value == 1.0
    assert taskset.reward(plain, "Answer: hello").value == 0.0


@pytest.mark.parametrize("lines, line_no, words", [
    (['{"prompt": "a", "answer": "1"}', '{"prompt": "b", "answer": '], 2, "not valid JSON"),
    (['{"prompt": "a", "answer": "1"}', '["prompt", "answer"]'], 2, "JSON object"),
    (['{"answer": "1"}'], 1, 'missing field "prompt"'),
    (['{"prompt": "a", "answer": "1"}', '{"prompt": "b"}'], 2, 'missing field "answer"'),
    (['{"prompt": "", "answer": "1"}'], 1, '"prompt" must be a non-empty string'),
    (['{"prompt": "a", "answer": [1]}'], 1, '"answer" must be'),
    (['{"prompt": "a", "answer": "1", "checker": "fuzzy"}'], 1, '"checker"'),
    (['{"prompt": "a", "answer": "1", "id": "x"}', '{"prompt": "b", "answer": "2", "id": "x"}'], 2, "duplicate id"),
])
def test_jsonl_errors_name_file_and_line(tmp_path: Path, lines: list[str], line_no: int, words: str) -> None:
    path = _write(tmp_path, lines)
    with pytest.raises(TaskFileError) as err:
        load_taskset(str(path))
    message = str(err.value)
    assert f"tasks.jsonl line {line_no}:" in message and words in message, message


def test_jsonl_reports_every_bad_line(tmp_path: Path) -> None:
    path = _write(tmp_path, ['{"prompt": "a"}', '{"answer": "1"}'])
    with pytest.raises(TaskFileError) as err:
        load_taskset(str(path))
    assert "line 1:" in str(err.value) and "line 2:" in str(err.value)


def test_jsonl_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match="empty"):
        load_taskset(str(empty))
    with pytest.raises(TaskFileError, match="nowhere.jsonl"):
        load_taskset(str(tmp_path / "nowhere.jsonl"))
    assert issubclass(TaskFileError, ValueError)


def test_jsonl_module_checker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shout_check.py").write_text(
        "def loud(task, completion):\n    return completion.isupper()\n"
        "def broken(task, completion):\n    raise RuntimeError('oops')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path, [json.dumps({"prompt": "shout", "answer": "-", "checker": "shout_check:loud"}),
                             json.dumps({"prompt": "x", "answer": "-", "checker": "shout_check:broken"})])
    taskset = load_taskset(str(path))
    loud, broken = taskset.tasks
    assert taskset.reward(loud, "HELLO").value == 1.0 and taskset.reward(loud, "hello").value == 0.0
    result = taskset.reward(broken, "x")
    assert result.value == 0.0 and "RuntimeError: oops" in result.feedback
