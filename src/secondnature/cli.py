"""`secondnature` command line: noun-verb commands over the lesson store. Printing happens only here."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import inject, retrieve, ui
from .cli_lessons import cmd_gates, cmd_lessons, cmd_revisions, head_lessons
from .evaluate import EvalResult, balanced_accuracy, evaluate, majority_reference, paired, split_tasks
from .learn import LearnConfig, learn
from .models import ModelError, load_model
from .store import StoreError, open_store
from .tasks import load_taskset
from .ui import UsageError
from .weights import WeightsError, home


def _progress(total: int, label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"),
                    console=ui.err, transient=False, disable=not ui.err.is_terminal and os.environ.get("CI") == "true")


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int, str], None]]:
    """A bar over rollouts that also prints the loop's messages above it: the `progress` callback of learn/bench."""
    with _progress(total, label) as bar:
        job = bar.add_task("", total=total)

        def progress(spent: int, message: str) -> None:
            bar.update(job, advance=spent)
            if message:
                bar.console.print(message)
        yield progress


def _models(args: argparse.Namespace, reflector: bool = True):
    policy = load_model(args.policy, base_url=args.base_url)
    if not reflector:
        return policy, None
    if args.reflector == args.policy:
        return policy, policy
    return policy, load_model(args.reflector, base_url=args.base_url, n_ctx=8192)


def _fmt_ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.1%}, {ci[1]:.1%}]"


# ------------------------------------------------------------------ learn / eval / demo

def cmd_learn(args: argparse.Namespace) -> int:
    taskset = load_taskset(args.taskset, args.checker)
    store = open_store(args.store)
    policy, reflector = _models(args)
    config = LearnConfig(budget=args.budget, seed=args.seed, lesson_tokens=args.lesson_tokens,
                         val_size=args.val_size, group_size=args.group_size, tasks_per_step=args.tasks_per_step,
                         max_tokens=args.max_tokens, instructions=args.instructions)
    with progress_bar(args.budget, f"learn {taskset.name}") as progress:
        result = learn(policy, reflector, taskset, store, config, resume=args.resume, progress=progress)
    lessons = store.revision_lessons(result.revision)
    plot = None
    if args.plot is not None:
        from .plots import learning_curve
        slug = taskset.name.replace("/", "_").replace(":", "_")
        target = args.plot or home() / "plots" / f"{slug}-run{result.run_id}.png"
        plot = learning_curve(result.history, target, f"secondnature learn {taskset.name}")
    if args.json:
        print(json.dumps({**{k: v for k, v in asdict(result).items() if k != "revision"},
                          "plot": str(plot) if plot else None,
                          "revision": result.revision.id if result.revision else None,
                          "lessons": [asdict(x) for x in lessons]}, indent=1))
        return 0
    ui.lesson_table(lessons, f"lessons of {taskset.name} (revision {result.revision.id if result.revision else '-'})")
    t = Table(title="learning run")
    for col in ("steps", "rollouts", "train", "val", "reflections", "accepted", "rejected", "val score"):
        t.add_column(col, justify="right")
    t.add_row(str(result.steps), f"{result.rollouts_used}/{args.budget}", str(result.train_rollouts),
              str(result.val_rollouts), str(result.reflections), str(result.accepted), str(result.rejected),
              f"{result.val_score:.1%}")
    ui.out.print(t)
    if plot:
        ui.out.print(f"learning curve: {plot}")
    return 0


def _run_eval(policy, taskset, tasks, lessons, args, label: str, route=None) -> EvalResult:
    with _progress(len(tasks), label) as bar:
        job = bar.add_task("", total=len(tasks))
        return evaluate(policy, taskset, tasks, lessons, split_name=args.split, lesson_tokens=args.lesson_tokens,
                        max_tokens=args.max_tokens, seed=args.seed, on_done=lambda r: bar.update(job, advance=1),
                        route=route)


def cmd_curate(args: argparse.Namespace) -> int:
    from .curate import CurateConfig, curate
    taskset = load_taskset(args.taskset, args.checker)
    store = open_store(args.store)
    policy, reflector = _models(args)
    config = CurateConfig(budget=args.budget, val_size=args.val_size, seed=args.seed, max_tokens=args.max_tokens,
                          lesson_tokens=args.lesson_tokens)
    try:
        with progress_bar(args.budget, f"curate {taskset.name}") as progress:
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
    taskset = load_taskset(args.taskset, args.checker)
    store = open_store(args.store)
    if args.no_lessons or args.retrieve:  # with --retrieve each task gets its own lessons, below
        lessons = []
    elif args.all_lessons:
        lessons = store.live_lessons()
    else:
        lessons = head_lessons(store, taskset.name, args.revision)
    tasks = split_tasks(taskset, args.split, limit=args.limit)
    policy, _ = _models(args, reflector=False)
    routed: Counter[str] = Counter()
    route = None
    if args.retrieve:  # each task gets the lessons of the scope it resembles, whatever task set it came from
        live = store.live_lessons()

        def route(task):
            got = retrieve.lessons_for(store, task.prompt, args.lesson_tokens, policy.count_tokens, live=live,
                                       extra=args.extra)
            routed[got.scope or "(none)"] += 1
            return got.lessons
    r = _run_eval(policy, taskset, tasks, lessons, args, f"eval {taskset.name}/{args.split}", route)
    record = {"task": taskset.name, "split": r.split, "n": r.n, "accuracy": r.accuracy, "ci95": list(r.ci95),
              "lessons": list(r.lesson_ids), "lesson_tokens": r.lesson_tokens, "errors": r.errors,
              "policy": policy.name, "wall_s": round(r.wall_s, 1), "balanced_accuracy": balanced_accuracy(tasks, r.scores)}
    if args.retrieve:
        record["routed"] = dict(routed)
    if taskset.tools:
        record.update(steps=round(r.steps, 2), tool_calls=round(r.tool_calls, 2),
                      seconds_per_item=round(r.wall_s / max(1, r.n), 1))
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        per = " per task on average" if args.retrieve else ""
        ui.out.print(f"{taskset.name} {r.split}: {r.accuracy:.1%} ({sum(r.scores):g}/{r.n}), 95% CI {_fmt_ci(r.ci95)}, "
                     f"{len(r.lesson_ids)} lessons ({r.lesson_tokens} tokens{per}), {r.wall_s:.0f}s")
        if record["balanced_accuracy"] is not None:  # answers are labels: a shift towards one of them shows here as none
            ui.out.print(f"balanced accuracy (mean accuracy per correct answer): {record['balanced_accuracy']:.1%}")
        if taskset.tools:
            ui.out.print(f"per episode: {r.steps:.2f} steps, {r.tool_calls:.2f} tool calls, "
                         f"{r.wall_s / max(1, r.n):.1f}s")
        if args.retrieve:
            ui.out.print("routed to: " + ", ".join(f"{k} {v}" for k, v in routed.most_common()))
    return 0


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
    policy, reflector = _models(args)
    tasks = split_tasks(taskset, "test", limit=args.test_items)
    args.split = "test"
    before = _run_eval(policy, taskset, tasks, [], args, "baseline (no lessons)")
    ui.out.print(f"baseline: {before.accuracy:.1%} ({sum(before.scores):g}/{before.n}) on held-out test items")
    config = LearnConfig(budget=args.budget, seed=args.seed, val_size=args.val_size, tasks_per_step=4, group_size=4,
                         lesson_tokens=args.lesson_tokens, max_tokens=args.max_tokens, max_candidates=3)
    with progress_bar(args.budget, "learning") as progress:
        result = learn(policy, reflector, taskset, store, config, progress=progress)
    lessons = store.revision_lessons(result.revision)
    ui.lesson_table(lessons, "lessons learned")
    after = _run_eval(policy, taskset, tasks, lessons, args, "after (with lessons)")
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


def cmd_bench(args: argparse.Namespace) -> int:
    from .cli_bench import cmd_bench as run  # imported on use: gepa and matplotlib load only for a benchmark
    return run(args)


def cmd_setup(args: argparse.Namespace) -> int:
    from .weights import PACKAGED, assemble
    for key in ("policy", "reflector"):
        ui.out.print(f"{key}: {assemble(PACKAGED[key])}")
    return 0


# ------------------------------------------------------------------ parser

def _token_budget(value: str) -> int | None:
    if value.lower() in ("none", "unbounded"):
        return None
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of tokens (or 'none')")
    return int(value)


def _model_args(p: argparse.ArgumentParser, reflector: bool = True) -> None:
    p.add_argument("--policy", default="default",
                   help="GGUF path or packaged name (default: the 0.5B model); with --base-url, a model name")
    if reflector:
        p.add_argument("--reflector", default="reflector",
                       help="GGUF path or packaged name (default: the 1.5B model); with --base-url, a model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint; key from OPENAI_API_KEY")
    p.add_argument("--max-tokens", type=int, default=384, help="completion tokens per rollout")
    p.add_argument("--lesson-tokens", type=_token_budget, default=400,
                   help="token budget for injected lessons, counted with the policy's tokenizer ('none': no cap)")
    p.add_argument("--seed", type=int, default=0)


INSTRUCTIONS_HELP = "also propose rewrites of the task's instruction itself (slower; see BENCHMARKS.md)"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="secondnature", description=__doc__)
    ap.add_argument("--store", default=None, help="store file (default $SECONDNATURE_HOME/store.db, "
                                                  "SECONDNATURE_HOME defaults to ~/.secondnature)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("learn", help="learn lessons on a task set")
    p.add_argument("taskset", help="letters[:tiers], game24, gsm8k, bbh/<task>, or a .jsonl file")
    p.add_argument("--budget", type=int, default=400, help="policy rollouts to spend (train + validation)")
    p.add_argument("--resume", action="store_true", help="continue the last run of this task set")
    p.add_argument("--instructions", action="store_true", help=INSTRUCTIONS_HELP)
    p.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                   help="save the learning curve (default path under $SECONDNATURE_HOME/plots) and print its path")
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--tasks-per-step", type=int, default=4)
    p.add_argument("--checker", default=None, help="checker for a .jsonl file: exact, number, choice, regex, "
                                                   "module:function")
    p.add_argument("--json", action="store_true")
    _model_args(p)
    p.set_defaults(func=cmd_learn)

    p = sub.add_parser("eval", help="score a revision (or no lessons) on a split")
    p.add_argument("taskset")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--revision", type=int, default=None)
    g.add_argument("--no-lessons", action="store_true")
    g.add_argument("--retrieve", action="store_true",
                   help="route each task to the scope it resembles in the whole store and inject that scope's lessons")
    g.add_argument("--all-lessons", action="store_true", help="inject every live lesson of every scope")
    p.add_argument("--extra", type=int, default=0,
                   help="with --retrieve: up to N relevant lessons of other scopes after the routed scope's")
    p.add_argument("--limit", type=int, default=None, help="first N tasks of the split")
    p.add_argument("--checker", default=None)
    p.add_argument("--json", action="store_true")
    _model_args(p, reflector=False)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("curate", help="measure each lesson (leave-one-out) and shrink the revision where it costs "
                                      "nothing: retire, dedupe, merge, compress, each gated")
    p.add_argument("taskset")
    p.add_argument("--budget", type=int, default=300, help="policy rollouts for curation's evaluations")
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--checker", default=None)
    p.add_argument("--json", action="store_true")
    _model_args(p)
    p.set_defaults(func=cmd_curate)

    from .cli_distill import add_parser as add_distill  # the parser only: torch loads only to distil
    add_distill(sub)

    p = sub.add_parser("demo", help="baseline, a short learning run, the lessons, the score after")
    p.add_argument("--budget", type=int, default=400)
    p.add_argument("--test-items", type=int, default=60)
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--json", action="store_true")
    _model_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="compare prompt-learning arms at one rollout budget (none, secondnature, gepa)")
    p.add_argument("taskset", nargs="+", help="one or more task sets or .jsonl files")
    p.add_argument("--arms", default="none,secondnature,gepa",
                   help="comma-separated: none, secondnature, gepa, grpo (grpo needs the distill extra)")
    p.add_argument("--budget", type=int, default=400, help="policy rollouts per arm and seed (train + validation)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm; intervals cover seed and item variance")
    p.add_argument("--instructions", action="store_true", help=INSTRUCTIONS_HELP)
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--test-limit", type=int, default=None, help="first N test items of each task set")
    p.add_argument("--checker", default=None)
    p.add_argument("--name", default=None, help="results name (default: from the task sets)")
    p.add_argument("--out", default="bench", help="directory for <name>.json, <name>_curves.json/.png")
    p.add_argument("--plot", action="store_true", help="print the learning-curve PNG's path")
    p.add_argument("--json", action="store_true")
    _model_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("lessons", help="list, show, edit, rm, restore, export, import lessons")
    p.add_argument("action", choices=["list", "show", "edit", "rm", "restore", "export", "import"])
    p.add_argument("id", nargs="?", help="lesson id (show, edit, rm, restore) or file (export, import)")
    p.add_argument("--scope", default=None)
    p.add_argument("--all", action="store_true", help="include retired lessons")
    p.add_argument("--text", default=None, help="new text for edit (else $EDITOR opens)")
    p.add_argument("--force", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lessons)

    p = sub.add_parser("revisions", help="list, diff, restore revisions")
    p.add_argument("action", choices=["list", "diff", "restore"])
    p.add_argument("a", nargs="?", type=int)
    p.add_argument("b", nargs="?", type=int)
    p.add_argument("--scope", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_revisions)

    p = sub.add_parser("gates", help="list gate decisions: what was proposed, the paired scores, the verdict")
    p.add_argument("--scope", default=None)
    p.add_argument("--run", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gates)

    p = sub.add_parser("setup", help="assemble and verify the packaged model weights")
    p.set_defaults(func=cmd_setup)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    lessons_cmd = args.func is cmd_lessons
    if lessons_cmd and args.action in ("show", "edit", "rm", "restore") and not args.id:
        ui.err.print(f"error: `lessons {args.action}` needs a lesson id, e.g. L3")
        return 2
    if getattr(args, "action", None) in ("export", "import"):
        args.file = args.id
        if args.action == "import" and not args.file:
            ui.err.print("error: `lessons import` needs a file made by `lessons export FILE`")
            return 2
    if getattr(args, "action", None) == "diff" and (args.a is None or args.b is None):
        ui.err.print("error: `revisions diff A B` needs two revision ids")
        return 2
    if not lessons_cmd and getattr(args, "action", None) == "restore" and args.a is None:
        ui.err.print("error: `revisions restore N` needs a revision id")
        return 2
    try:
        return args.func(args)
    except (UsageError, ModelError, StoreError, WeightsError, ValueError) as e:
        ui.err.print(f"[red]error:[/] {e}")
        return 2
    except KeyboardInterrupt:
        ui.err.print("interrupted; accepted lessons are saved. Continue with `secondnature learn TASKSET --resume`.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
