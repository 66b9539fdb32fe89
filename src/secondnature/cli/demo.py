"""`secondnature demo`: the README's main job. A baseline on held-out items, a learning run, the lessons it kept
with the gates they won, the score after with paired intervals, and the record of it all.

The task is StrawberryBench letter counting (medium and hard words) with the sandboxed Python tool, and the
packaged 1.5B model is both policy and reflector. Why: no prompt teaches these small models to count letters in
their heads (every method measured only shifted answers towards the most common one, "1"), and the 0.5B model
never calls the tool; the 1.5B calls it once a lesson shows how. What the loop has to find is a procedure, and
the gate keeps it only if it wins on validation items it never saw. Balanced accuracy (the mean over correct
answers of the accuracy on items with that answer) is reported beside plain accuracy, so a shift towards one
answer cannot pass for a skill, and the constant answer's score is printed beside both.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import date
from pathlib import Path

from rich.table import Table

from ..evaluate import EvalResult, balanced_accuracy, balanced_diff, majority_reference, paired, split_tasks
from ..learn import LearnConfig, learn
from ..store import fresh_store
from ..tasks import load_taskset
from ..types import TaskSet
from ..weights import home
from . import ui
from .run import run_eval

DEMO_TASKSET = "letters:medium,hard+python"


def cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    taskset = load_taskset(DEMO_TASKSET)
    path = Path(args.store) if args.store else home() / "demo.db"
    store = fresh_store(path)  # every demo starts from no lessons; the user's own store is untouched
    ui.out.print(f"[bold]secondnature demo[/]: {taskset.name}, letter counting with a Python tool\n"
                 "loading the embedded model (assembled from its packages on first use)...")
    policy, reflector = ui.models(args)
    tasks = split_tasks(taskset, "test", limit=args.test_items)
    args.split = "test"
    before = run_eval(policy, taskset, tasks, [], args, "baseline")
    ui.out.print(f"baseline, no lessons: {before.accuracy:.1%} ({sum(before.scores):g}/{before.n} held-out items)")
    config = LearnConfig(budget=args.budget, seed=args.seed, val_size=args.val_size, lesson_tokens=args.lesson_tokens,
                         max_tokens=args.max_tokens)
    with ui.progress_bar(args.budget, "learning") as progress:
        result = learn(policy, reflector, taskset, store, config, progress=progress)
    for g in (g for g in result.gates if g.decision == "accepted"):
        ui.out.print(f"[bold]kept[/] ({g.proposed[0].op}): {g.reason}")
    ui.lesson_table(result.lessons, "lessons learned")
    after = run_eval(policy, taskset, tasks, list(result.lessons), args, "after")
    record = _record(args, taskset, tasks, before, after, result, policy, reflector, store.path)
    ui.out.print(_table(record))
    ui.out.print(f"always answering {record['majority']['answer']!r} (the commonest training answer) scores "
                 f"{record['majority']['accuracy']:.1%}; balanced accuracy cannot be raised by such a shift")
    out = Path(args.record) if args.record else _record_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(record, indent=1) + "\n")
    ui.out.print(f"stored: lessons, gates and rollouts in {store.path}; this record in {out}\n"
                 f"look: secondnature --store {store.path} lessons list | lessons show ID | gates")
    if args.json:
        print(json.dumps(record, indent=1))
    return 0


def _record(args: argparse.Namespace, taskset: TaskSet, tasks: list, before: EvalResult, after: EvalResult, result,
            policy, reflector, store: Path) -> dict:
    diff, ci = paired(before, after)
    balanced = [balanced_accuracy(tasks, r.scores) for r in (before, after)]
    bdiff = balanced_diff(tasks, before.scores, after.scores)
    answer, const = majority_reference(taskset, tasks)
    return {"command": "secondnature demo", "date": date.today().isoformat(), "commit": _commit(),
            "machine": _machine(), "models": {"policy": policy.name, "reflector": reflector.name}, "task": taskset.name,
            "seed": args.seed, "n": after.n, "budget": args.budget, "rollouts": result.rollouts_used,
            "stopped": result.stopped,
            "accuracy": {"before": before.accuracy, "after": after.accuracy},
            "ci95": {"before": list(before.ci95), "after": list(after.ci95)},
            "diff_vs_none": diff, "diff_ci95": list(ci),
            "balanced_accuracy": {"before": balanced[0], "after": balanced[1]},
            "balanced_diff": bdiff[0] if bdiff else None, "balanced_diff_ci95": list(bdiff[1]) if bdiff else None,
            "majority": {"answer": answer, "accuracy": sum(const) / len(const)},
            "lessons": [{"id": x.id, "text": x.text, "gain": x.gain} for x in result.lessons],
            "gates": [{"decision": g.decision, "op": g.proposed[0].op, "reason": g.reason} for g in result.gates],
            "lesson_tokens": after.lesson_tokens, "store": str(store)}


def _table(r: dict) -> Table:
    t = Table(title=f"{r['task']}, {r['n']} held-out items (95% intervals)", title_justify="left")
    for col in ("", "before", "after", "after - before"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row("accuracy", f"{r['accuracy']['before']:.1%}", f"{r['accuracy']['after']:.1%}",
              f"{r['diff_vs_none']:+.1%} [{r['diff_ci95'][0]:+.1%}, {r['diff_ci95'][1]:+.1%}]")
    if r["balanced_diff"] is not None:
        lo, hi = r["balanced_diff_ci95"]
        t.add_row("balanced accuracy", f"{r['balanced_accuracy']['before']:.1%}", f"{r['balanced_accuracy']['after']:.1%}",
                  f"{r['balanced_diff']:+.1%} [{lo:+.1%}, {hi:+.1%}]")
    t.add_row("lesson tokens", "0", str(r["lesson_tokens"]), f"{r['rollouts']} rollouts")
    return t


def _record_path() -> Path:
    """benchmarks/results/demo.json in a clone of the project, else under $SECONDNATURE_HOME."""
    here = Path("benchmarks/results")
    return here / "demo.json" if here.is_dir() else home() / "demo.json"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"  # the code that ran
    except OSError:
        return "unknown"


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu}".rstrip(", ")
