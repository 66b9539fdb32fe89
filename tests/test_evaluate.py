"""The constant-answer reference printed beside every learned result."""
from __future__ import annotations

from secondnature.evaluate import majority_reference, split_tasks
from secondnature.tasks import load_taskset


def test_majority_reference_on_letters_matches_the_reported_figure():
    taskset = load_taskset("letters:medium,hard")
    answer, scores = majority_reference(taskset, split_tasks(taskset, "test"))
    assert answer == "1" and len(scores) == 150 and sum(scores) == 91  # 60.7%, as in BENCHMARKS.md
