"""`secondnature bench`: run the arms, write the records and the learning curves, print the table."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from datetime import date
from pathlib import Path

from rich import box
from rich.console import Group
from rich.table import Table

from ..bench.plots import plot_curves
from ..bench.records import records
from ..bench.run import ARMS, BenchConfig, run_bench
from ..models import CachedModel
from ..store import LessonStore
from ..tasks import load_taskset, slug
from ..weights import home
from . import ui
from .ui import UsageError


def cmd_bench(args: argparse.Namespace) -> int:
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise UsageError(f"unknown arm(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ARMS)}")
    if "gepa" in arms:
        try:
            import gepa  # noqa: F401
        except ImportError:
            raise UsageError("the gepa arm needs the bench extra: pip install 'secondnature[bench]'") from None
    if "grpo" in arms:
        from ..models import ModelError
        from ..train.lora import _require
        try:
            _require()
        except ModelError as e:
            raise UsageError(f"the grpo arm {e}") from None
    if args.seeds < 1 or args.budget < 1:
        raise UsageError("--seeds and --budget must be at least 1")
    rubric = ui.rubric_of(args)
    # every file checked before any model call
    tasksets = [load_taskset(spec, args.checker, answers_required=rubric is None) for spec in args.taskset]
    config = BenchConfig(arms=arms, budget=args.budget, seeds=tuple(range(args.seed, args.seed + args.seeds)),
                         val_size=args.val_size, test_limit=args.test_limit, lesson_tokens=args.lesson_tokens,
                         max_tokens=args.max_tokens, skill_samples=args.skill_samples)
    workdir = home() / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    cache = LessonStore(workdir / "cache.db")  # one completion cache for every benchmark on this machine
    inner_policy, inner_reflector = ui.models(args)
    policy = CachedModel(inner_policy, cache)
    reflector = policy if inner_reflector is inner_policy else CachedModel(inner_reflector, cache)
    tasksets = ui.judged(tasksets, args, rubric, cache)
    name = args.name or "+".join(slug(t.name) for t in tasksets)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = {"policy": policy.name, "reflector": reflector.name, "split": "test", "budget": args.budget,
              "command": "secondnature " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "date": date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", **({"judge": args.judge} if rubric else {})}
    training = sum(1 for a in arms if a != "none") * args.budget * len(config.seeds) * len(tasksets)
    all_records: list[dict] = []
    by_task: dict[str, list[dict]] = {}
    with ui.progress_bar(training, f"bench {name}") as progress:
        for ts in tasksets:
            # each benchmark keeps its learned stores apart, so a run under another name (another policy, say)
            # never overwrites the lessons a finished one learned
            runs = run_bench(policy, reflector, ts, config, workdir / "runs" / name, progress)
            recs = records(runs, ts, common, test_limit=args.test_limit)
            by_task[ts.name] = recs
            all_records += recs
            (out / f"{name}.json").write_text(json.dumps(all_records, indent=1))  # written as each task set ends
    curves = {task: {r["arm"]: r.get("val_curves", []) for r in recs if r["arm"] != "majority"}
              for task, recs in by_task.items()}
    (out / f"{name}_curves.json").write_text(json.dumps(curves, indent=1))
    png = plot_curves(by_task, out / f"{name}_curves.png")
    if args.json:
        print(json.dumps({"records": all_records, "results": str(out / f"{name}.json"), "plot": str(png)}, indent=1))
        return 0
    for task, recs in by_task.items():
        ui.out.print(_table(task, recs, len(config.seeds)))
    if any(r.get("balanced_accuracy") is not None for r in all_records):
        ui.out.print("balanced: the mean over correct answers of the accuracy on items with that answer; always giving "
                     "one answer scores 1/k there, so a lift in it is not a shift towards the common answer")
    ui.out.print(f"results: {out / f'{name}.json'}")
    stores = [p for recs in by_task.values() for r in recs for p in r.get("stores", [])]
    if stores:
        ui.out.print("learned stores (secondnature --store PATH lessons list): " + ", ".join(stores))
    if args.plot:
        ui.out.print(f"learning curves: {png}")
    return 0


def _table(task: str, recs: list[dict], seeds: int) -> Group:
    """Two tables that read at 80 columns: what each arm scored, then what it cost."""
    head = f"{task}: {recs[0]['n']} test items, {seeds} seed(s); 95% intervals over seeds and items"
    scores = Table(title=head, box=box.SIMPLE_HEAD, title_justify="left")
    labels = all(r.get("balanced_accuracy") is not None for r in recs)  # answers are labels: a constant can't score here
    for col in ("arm", "accuracy", "vs none", *(("balanced",) if labels else ()), "vs others"):
        scores.add_column(col, justify="left" if col == "arm" else "right", no_wrap=col == "arm")
    costs = Table(box=box.SIMPLE_HEAD, title_justify="left")
    episodes = any(r.get("tool_calls") for r in recs) or "+" in task
    for col in ("arm", "rollouts\ntrain+val", "reflector\ncalls/tokens", "prompt\ntokens", "wall s",
                *(("per episode\nsteps/calls/s",) if episodes else ())):
        costs.add_column(col, justify="left" if col == "arm" else "right", no_wrap=col == "arm")
    for r in recs:
        label = f"{r['arm']} ({r['answer']!r})" if r["arm"] == "majority" else r["arm"]
        sd = f" ±{r['accuracy_sd']:.1%}" if seeds > 1 and r["arm"] != "majority" else ""
        others = "\n".join(f"{k} {v['diff']:+.1%}" for k, v in r["diff_vs"].items() if k not in ("none", "majority"))
        scores.add_row(label, f"{r['accuracy']:.1%}{sd}\n[{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]",
                       (f"{r['diff_vs_none']:+.1%}\n[{r['diff_ci95'][0]:+.1%}, {r['diff_ci95'][1]:+.1%}]"
                        if r["arm"] != "none" else ""),
                       *([f"{r['balanced_accuracy']:.1%}"] if labels else []), others)
        if r["arm"] == "majority":
            continue
        costs.add_row(label, f"{r['train_rollouts']:.0f}+{r['val_rollouts']:.0f}",
                      f"{r['reflector_calls']:.0f}/{r['reflector_tokens']:.0f}", f"{r['prompt_tokens']:.0f}",
                      f"{r['wall_s']:.0f}",
                      *([f"{r['steps']:.1f}/{r['tool_calls']:.1f}/{r['episode_s']:.1f}"] if episodes else []))
    return Group(scores, costs)
