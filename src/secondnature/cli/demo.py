"""`secondnature demo`: the README's main job, a baseline, a short learning run, the lessons and the score after."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evaluate import balanced_accuracy, majority_reference, paired, split_tasks
from ..learn import LearnConfig, learn
from ..store import open_store
from ..tasks import load_taskset
from ..weights import home
from . import ui
from .run import run_eval

DEMO_TASKSET = "letters:medium,hard"


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: baseline on held-out tasks, a short learning run, the lessons, the score after."""
    taskset = load_taskset(DEMO_TASKSET)
    path = Path(args.store) if args.store else home() / "demo.db"
    for suffix in ("", "-wal", "-shm"):  # every demo starts from no lessons; the user's own store is untouched
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = open_store(path)
    ui.out.print(f"[bold]secondnature demo[/]: {taskset.name}, store {store.path}")
    ui.out.print("loading the embedded models (assembled from their packages on first use)...")
    policy, reflector = ui.models(args)
    tasks = split_tasks(taskset, "test", limit=args.test_items)
    args.split = "test"
    before = run_eval(policy, taskset, tasks, [], args, "baseline (no lessons)")
    ui.out.print(f"baseline: {before.accuracy:.1%} ({sum(before.scores):g}/{before.n}) on held-out test items")
    config = LearnConfig(budget=args.budget, seed=args.seed, val_size=args.val_size, tasks_per_step=4, group_size=4,
                         lesson_tokens=args.lesson_tokens, max_tokens=args.max_tokens, max_candidates=3)
    with ui.progress_bar(args.budget, "learning") as progress:
        result = learn(policy, reflector, taskset, store, config, progress=progress)
    lessons = store.revision_lessons(result.revision)
    ui.lesson_table(lessons, "lessons learned")
    after = run_eval(policy, taskset, tasks, lessons, args, "after (with lessons)")
    diff, ci = paired(before, after)
    majority, const_scores = majority_reference(taskset, tasks)
    const = sum(const_scores) / len(const_scores)
    ui.out.print(f"reference without a model: always answering {majority!r} (the most common training answer) "
                 f"scores {const:.1%} on the same items")
    ui.out.print(f"baseline {before.accuracy:.1%} -> after {after.accuracy:.1%} on {after.n} held-out test items; "
              f"paired difference {diff:+.1%}, 95% CI [{ci[0]:+.1%}, {ci[1]:+.1%}]; "
              f"{result.rollouts_used} learning rollouts, {after.lesson_tokens} lesson tokens")
    balanced = [balanced_accuracy(tasks, r.scores) for r in (before, after)]
    if None not in balanced:  # a gain that is only a shift towards one answer shows here as none
        ui.out.print(f"balanced accuracy (the mean over correct answers of the accuracy on items with that answer, "
                     f"which a shift towards one answer cannot raise): {balanced[0]:.1%} -> {balanced[1]:.1%}")
    if args.json:
        print(json.dumps({"before": before.accuracy, "after": after.accuracy, "majority": const,
                          "diff": diff, "diff_ci95": list(ci), "balanced": balanced,
                          "n": after.n, "lessons": [x.text for x in lessons]}, indent=1))
    ui.out.print(f"inspect: secondnature --store {store.path} lessons list | lessons show ID | revisions list")
    return 0

