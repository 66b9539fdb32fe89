"""The references printed beside learned results: the constant answer, and accuracy a constant cannot inflate."""
from __future__ import annotations

from secondnature.evaluate import balanced_accuracy, majority_reference, split_tasks
from secondnature.tasks import load_taskset


def test_majority_reference_on_letters_matches_the_reported_figure():
    taskset = load_taskset("letters:medium,hard")
    answer, scores = majority_reference(taskset, split_tasks(taskset, "test"))
    assert answer == "1" and len(scores) == 150 and sum(scores) == 91  # 60.7%, as in BENCHMARKS.md


def test_balanced_accuracy_gives_a_constant_answer_one_over_k():
    taskset = load_taskset("letters:medium,hard")
    tasks = split_tasks(taskset, "test")
    _, constant = majority_reference(taskset, tasks)
    assert sum(constant) / len(constant) > 0.6
    # answers 1, 2 and 0 have 5+ test items: always "1" is right on one of the three
    assert abs(balanced_accuracy(tasks, constant) - 1 / 3) < 1e-9
    assert balanced_accuracy(tasks, [1.0] * len(tasks)) == 1.0
    assert balanced_accuracy(tasks[:3], [1.0] * 3) is None  # fewer than two answers with enough items
