"""Task sets: built-in data scores 1.0 under its own checker, splits are stable, task files are validated."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secondnature.tasks import TaskFileError, list_tasksets, load_taskset, split, task_set
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
        json.dumps({"prompt": "A tenth of a millionth?", "answer": 1e-07}),
        "",
    ])
    taskset = load_taskset(str(path), checker="number")
    assert taskset.name == "tasks"
    first, second = taskset.tasks
    assert (first.id, first.answer, first.metadata["topic"]) == ("sum", "4", "math")
    assert (second.id, second.answer) == ("line2", "0.0000001")  # not '1e-07', which the number checker reads as 7
    assert taskset.reward(second, "Answer: 0.0000001").value == 1.0
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


def test_jsonl_module_checker_named_by_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shout_check.py").write_text(
        "def loud(task, completion):\n    return completion.isupper()\n"
        "def broken(task, completion):\n    raise RuntimeError('oops')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path, [json.dumps({"prompt": "shout", "answer": "-"}),
                             json.dumps({"prompt": "x", "answer": "-", "checker": "shout_check:loud"}),
                             json.dumps({"prompt": "y", "answer": "y", "checker": "exact"})])
    taskset = load_taskset(str(path), checker="shout_check:loud")  # a line may repeat the checker the caller named
    loud, again, plain = taskset.tasks
    assert taskset.reward(loud, "HELLO").value == 1.0 and taskset.reward(loud, "hello").value == 0.0
    assert taskset.reward(again, "HI").value == 1.0 and taskset.reward(plain, "Answer: y").value == 1.0
    broken = load_taskset(str(_write(tmp_path, [json.dumps({"prompt": "x", "answer": "-"})], "b.jsonl")),
                          checker="shout_check:broken")
    result = broken.reward(broken.tasks[0], "x")
    assert result.value == 0.0 and "RuntimeError: oops" in result.feedback


def test_jsonl_line_cannot_name_code_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # importing a module runs it: a task file that names one must not get it imported
    (tmp_path / "planted.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\ndef f(t, c):\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path, [json.dumps({"prompt": "a", "answer": "1", "checker": "os:system"}),
                             json.dumps({"prompt": "b", "answer": "1", "checker": "planted:f"})])
    with pytest.raises(TaskFileError) as err:
        load_taskset(str(path))
    message = str(err.value)
    assert 'line 1: field "checker"' in message and "--checker os:system" in message, message
    assert 'line 2: field "checker"' in message and "--checker planted:f" in message, message
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("line, words", [
    ('{"prompt": "a", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}", "line 1: nested too deeply"),
    ('{"prompt": "a", "answer": ' + "7" * 5000 + "}", 'line 1: field "answer" holds an integer of 5000 digits'),
    ('{"prompt": "a", "answer": "\\ud800"}', 'line 1: field "answer" is not valid Unicode (a lone surrogate'),
    ('{"prompt": "\\udfff x", "answer": "1"}', 'line 1: field "prompt" is not valid Unicode'),
    ('{"prompt": "a", "answer": "1", "\\ud800": 1}', 'line 1: field "\\ud800" is not valid Unicode'),
    ('{"prompt": "a", "answer": "1", "x": ' + "[" * 200 + "]" * 200 + "}", 'line 1: field "x" is nested too deeply'),
])
def test_jsonl_values_python_cannot_hold_get_their_line_and_field(tmp_path: Path, line: str, words: str) -> None:
    path = _write(tmp_path, [line])
    with pytest.raises(TaskFileError) as err:
        load_taskset(str(path))
    message = str(err.value)
    assert words in message and "tasks.jsonl" in message, message
    message.encode("utf-8")  # printable: the message never carries the surrogate itself


@pytest.mark.parametrize("checker, answer, extra, words", [
    ("number", "NaN", {}, 'field "answer" is nan'),
    ("number", "Infinity", {}, 'field "answer" is inf'),
    ("exact", "-Infinity", {}, 'field "answer" is -inf'),
    ("number", '"seven"', {}, "not a number the number checker can read — write it in digits"),
    ("choice", '"maybe"', {}, "not an option letter — write it as (A)"),
    ("regex", '"([unclosed"', {}, "invalid regular expression"),
    ("regex", '"((a{1000}){1000}){1000}"', {}, "too large to compile"),
    ("exact", '"**"', {}, "empty once markup is removed"),
    ("dyck", '" `` "', {}, "empty once markup is removed"),
    ("expression24", '"(1+2)*(3+5)"', {}, "needs the puzzle's integers"),
    ("expression24", '"(1+2)*(3+5)"', {"numbers": ["1", 2, 3, 5]}, "needs the puzzle's integers"),
])
def test_jsonl_answers_the_checker_cannot_use_are_refused(tmp_path: Path, checker: str, answer: str, extra: dict,
                                                          words: str) -> None:
    fields = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in extra.items())
    path = _write(tmp_path, ['{"prompt": "ok", "answer": "1"}',
                             f'{{"prompt": "q", "answer": {answer}, "checker": "{checker}"{fields}}}'])
    with pytest.raises(TaskFileError) as err:
        load_taskset(str(path), checker="number")
    message = str(err.value)
    field = "numbers" if checker == "expression24" else "answer"
    assert f'tasks.jsonl line 2: field "{field}"' in message and words in message, message


def test_jsonl_usable_answers_of_each_checker_load(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "answer": "7 apples", "checker": "number"}, {"prompt": "b", "answer": "B", "checker": "choice"},
            {"prompt": "c", "answer": r"^\d{4}-\d{2}-\d{2}$", "checker": "regex"},
            {"prompt": "d", "answer": "] )", "checker": "dyck"},
            {"prompt": "e", "answer": "4*6", "checker": "expression24", "numbers": [1, 1, 4, 6]}]
    taskset = load_taskset(str(_write(tmp_path, [json.dumps(r) for r in rows])))
    assert [t.answer for t in taskset.tasks] == [r["answer"] for r in rows]


def test_jsonl_file_level_problems_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(TaskFileError, match="is a directory — give the path of a .jsonl file"):
        load_taskset(str(folder))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "a", "answer": "1"}\n{"prompt": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(TaskFileError, match=r"latin.jsonl line 2: not UTF-8 text \(byte 0xe9 at column 16\)"):
        load_taskset(str(latin))
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\xef\xbb\xbf  \n\t\n")
    with pytest.raises(TaskFileError, match="blank.jsonl: the file is empty"):
        load_taskset(str(blank))


def test_task_set_refuses_a_reference_its_checker_cannot_read() -> None:
    with pytest.raises(ValueError, match="task 1 of 'sums': field \"answer\": 'seven' is not a number"):
        task_set("sums", [{"prompt": "1+1?", "answer": "2"}, {"prompt": "3+4?", "answer": "seven"}], "number")
