"""`secondnature` command line: noun-verb commands over the lesson store. Printing happens only here."""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import inject
from .evaluate import EvalResult, evaluate, paired, split_tasks
from .learn import LearnConfig, learn
from .models import ModelError, load_model
from .reflect import problem_with
from .store import LessonStore, StoreError, open_store
from .tasks import load_taskset
from .types import Lesson
from .weights import WeightsError, home

out = Console()
err = Console(stderr=True)


class UsageError(Exception):
    pass


def _progress(total: int, label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"),
                    console=err, transient=False, disable=not err.is_terminal and os.environ.get("CI") == "true")


def _models(args: argparse.Namespace, reflector: bool = True):
    policy = load_model(args.policy, base_url=args.base_url)
    if not reflector:
        return policy, None
    if args.reflector == args.policy:
        return policy, policy
    return policy, load_model(args.reflector, base_url=args.base_url, n_ctx=8192)


def _store(args: argparse.Namespace) -> LessonStore:
    return open_store(args.store)


def _head_lessons(store: LessonStore, scope: str, revision: int | None = None) -> list[Lesson]:
    rev = store.revision(revision) if revision is not None else store.head(scope)
    if revision is not None and rev is None:
        raise UsageError(f"no revision {revision}; see `secondnature revisions list`")
    return store.revision_lessons(rev)


def _fmt_ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.1%}, {ci[1]:.1%}]"


# ------------------------------------------------------------------ learn / eval / demo

def cmd_learn(args: argparse.Namespace) -> int:
    taskset = load_taskset(args.taskset, args.checker)
    store = _store(args)
    policy, reflector = _models(args)
    config = LearnConfig(budget=args.budget, seed=args.seed, lesson_tokens=args.lesson_tokens,
                         val_size=args.val_size, group_size=args.group_size, tasks_per_step=args.tasks_per_step,
                         max_tokens=args.max_tokens)
    with _progress(args.budget, f"learn {taskset.name}") as bar:
        job = bar.add_task("", total=args.budget)

        def progress(spent: int, message: str) -> None:
            bar.update(job, advance=spent)
            if message:
                bar.console.print(message)
        result = learn(policy, reflector, taskset, store, config, resume=args.resume, progress=progress)
    lessons = store.revision_lessons(result.revision)
    if args.json:
        print(json.dumps({**{k: v for k, v in asdict(result).items() if k != "revision"},
                          "revision": result.revision.id if result.revision else None,
                          "lessons": [asdict(x) for x in lessons]}, indent=1))
        return 0
    _lesson_table(lessons, f"lessons of {taskset.name} (revision {result.revision.id if result.revision else '-'})")
    t = Table(title="learning run")
    for col in ("steps", "rollouts", "train", "val", "reflections", "accepted", "rejected", "val score"):
        t.add_column(col, justify="right")
    t.add_row(str(result.steps), f"{result.rollouts_used}/{args.budget}", str(result.train_rollouts),
              str(result.val_rollouts), str(result.reflections), str(result.accepted), str(result.rejected),
              f"{result.val_score:.1%}")
    out.print(t)
    return 0


def _run_eval(policy, taskset, tasks, lessons, args, label: str) -> EvalResult:
    with _progress(len(tasks), label) as bar:
        job = bar.add_task("", total=len(tasks))
        return evaluate(policy, taskset, tasks, lessons, split_name=args.split, lesson_tokens=args.lesson_tokens,
                        max_tokens=args.max_tokens, seed=args.seed, on_done=lambda r: bar.update(job, advance=1))


def cmd_eval(args: argparse.Namespace) -> int:
    taskset = load_taskset(args.taskset, args.checker)
    store = _store(args)
    lessons = [] if args.no_lessons else _head_lessons(store, taskset.name, args.revision)
    tasks = split_tasks(taskset, args.split, limit=args.limit)
    policy, _ = _models(args, reflector=False)
    r = _run_eval(policy, taskset, tasks, lessons, args, f"eval {taskset.name}/{args.split}")
    record = {"task": taskset.name, "split": r.split, "n": r.n, "accuracy": r.accuracy, "ci95": list(r.ci95),
              "lessons": list(r.lesson_ids), "lesson_tokens": r.lesson_tokens, "errors": r.errors,
              "policy": policy.name, "wall_s": round(r.wall_s, 1)}
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        out.print(f"{taskset.name} {r.split}: {r.accuracy:.1%} ({sum(r.scores):g}/{r.n}), 95% CI {_fmt_ci(r.ci95)}, "
                  f"{len(r.lesson_ids)} lessons ({r.lesson_tokens} tokens), {r.wall_s:.0f}s")
    return 0


DEMO_TASKSET = "letters:medium,hard"


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: baseline on held-out tasks, a short learning run, the lessons, the score after."""
    taskset = load_taskset(DEMO_TASKSET)
    path = Path(args.store) if args.store else home() / "demo.db"
    for suffix in ("", "-wal", "-shm"):  # every demo starts from no lessons; the user's own store is untouched
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = open_store(path)
    out.print(f"[bold]secondnature demo[/]: {taskset.name}, store {store.path}")
    out.print("loading the embedded models (assembled from their packages on first use)...")
    policy, reflector = _models(args)
    tasks = split_tasks(taskset, "test", limit=args.test_items)
    args.split = "test"
    before = _run_eval(policy, taskset, tasks, [], args, "baseline (no lessons)")
    out.print(f"baseline: {before.accuracy:.1%} ({sum(before.scores):g}/{before.n}) on held-out test items")
    config = LearnConfig(budget=args.budget, seed=args.seed, val_size=args.val_size, tasks_per_step=4, group_size=4,
                         lesson_tokens=args.lesson_tokens, max_tokens=args.max_tokens, max_candidates=3)
    with _progress(args.budget, "learning") as bar:
        job = bar.add_task("", total=args.budget)

        def progress(spent: int, message: str) -> None:
            bar.update(job, advance=spent)
            if message:
                bar.console.print(message)
        result = learn(policy, reflector, taskset, store, config, progress=progress)
    lessons = store.revision_lessons(result.revision)
    _lesson_table(lessons, "lessons learned")
    after = _run_eval(policy, taskset, tasks, lessons, args, "after (with lessons)")
    diff, ci = paired(before, after)
    out.print(f"baseline {before.accuracy:.1%} -> after {after.accuracy:.1%} on {after.n} held-out test items; "
              f"paired difference {diff:+.1%}, 95% CI [{ci[0]:+.1%}, {ci[1]:+.1%}]; "
              f"{result.rollouts_used} learning rollouts, {after.lesson_tokens} lesson tokens")
    if args.json:
        print(json.dumps({"before": before.accuracy, "after": after.accuracy, "diff": diff, "diff_ci95": list(ci),
                          "n": after.n, "lessons": [x.text for x in lessons]}, indent=1))
    out.print(f"inspect: secondnature --store {store.path} lessons list | lessons show ID | revisions list")
    return 0


# ------------------------------------------------------------------ lessons and revisions

def _lesson_table(lessons: Sequence[Lesson], title: str) -> None:
    t = Table(title=title, show_lines=True)
    for col in ("id", "lesson", "gain", "uses", "evidence", "status"):
        t.add_column(col)
    for x in lessons:
        t.add_row(x.id, escape(x.text), f"{x.gain:+.2f}", str(x.uses), f"{len(x.evidence)} rollouts", x.status)
    if not lessons:
        t.add_row("-", "(no lessons yet)", "", "", "", "")
    out.print(t)


def _scope_of(store: LessonStore, lesson_id: str) -> Lesson:
    lesson = store.lesson(lesson_id)
    if lesson is None:
        raise UsageError(f"no lesson {lesson_id!r}; see `secondnature lessons list --all`")
    return lesson


def cmd_lessons(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "list":
        lessons = store.lessons(args.scope, None if args.all else "active")
        if args.json:
            print(json.dumps([asdict(x) for x in lessons], indent=1))
        else:
            _lesson_table(lessons, "lessons" + (f" of {args.scope}" if args.scope else ""))
        return 0
    if args.action == "show":
        x = _scope_of(store, args.id)
        refl = store.reflection(x.reflection_id) if x.reflection_id else None
        evidence = [r for rid in x.evidence if (r := store.rollout(rid))]
        if args.json:
            print(json.dumps({**asdict(x), "rollouts": [{"id": r.id, "task_id": r.task_id, "score": r.score.value,
                                                          "feedback": r.score.feedback, "completion": r.completion}
                                                         for r in evidence], "reflection": refl}, indent=1))
            return 0
        out.print(f"[bold]{x.id}[/] ({escape(x.scope)}, {x.status}, gain {x.gain:+.2f}, used {x.uses} times)\n"
                  f"{escape(x.text)}")
        if x.parent:
            out.print(f"edited from {x.parent}")
        out.print(f"\n[bold]evidence[/]: {len(evidence)} rollouts" + (f" from reflection {refl['id']}" if refl else ""))
        for r in evidence:
            out.print(escape(f"- {r.task_id} score {r.score.value:g} ({r.score.feedback}): {r.completion[:160]!r}"))
        return 0
    if args.action == "edit":
        x = _scope_of(store, args.id)
        text = args.text if args.text is not None else _edit_in_editor(x.text)
        text = " ".join(text.split())
        if not text or text == x.text:
            out.print("unchanged")
            return 0
        why = problem_with(text)
        if why and not args.force:
            raise UsageError(f"that text does not look like a lesson ({why}); pass --force to keep it anyway")
        return _replace(store, x, text)
    if args.action == "rm":
        x = _scope_of(store, args.id)
        return _replace(store, x, None)
    if args.action == "export":
        scopes = [args.scope] if args.scope else store.scopes()
        data = {"format": "secondnature-lessons/1", "scopes": {s: [asdict(x) for x in _head_lessons(store, s)]
                                                               for s in scopes}}
        text = json.dumps(data, indent=1)
        if args.file:
            Path(args.file).write_text(text)
            out.print(f"exported {sum(len(v) for v in data['scopes'].values())} lessons to {args.file}")
        else:
            print(text)
        return 0
    if args.action == "import":
        return _import(store, Path(args.file))
    raise UsageError(f"unknown action {args.action}")


def _edit_in_editor(text: str) -> str:
    import subprocess
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise UsageError("no --text given and no $EDITOR set; pass --text 'new wording'")
    with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False) as f:
        f.write(text + "\n")
    subprocess.run([editor, f.name], check=True)
    return Path(f.name).read_text()


def _replace(store: LessonStore, x: Lesson, text: str | None) -> int:
    """A hand edit or removal makes a new revision of the lesson's scope (people are trusted; no gate)."""
    head = store.head(x.scope)
    ids = list(head.lesson_ids) if head else []
    if x.id not in ids:
        raise UsageError(f"{x.id} is not in the current revision of {x.scope}; restore a revision that has it first")
    with store.transaction():
        ids.remove(x.id)
        if text is not None:
            new = store.add_lesson(Lesson("", text, x.scope, x.evidence, x.reflection_id, parent=x.id, gain=x.gain))
            ids.append(new.id)
        rev = store.commit_revision(x.scope, ids, f"{'edited' if text else 'removed'} {x.id} by hand")
    out.print(f"revision {rev.id} of {x.scope}: {'replaced' if text else 'removed'} {x.id}"
              + (f" with {ids[-1]}" if text else ""))
    return 0


def _import(store: LessonStore, path: Path) -> int:
    try:
        data = json.loads(path.read_text())
        scopes = data["scopes"]
        assert isinstance(scopes, dict)
    except (OSError, ValueError, KeyError, AssertionError, TypeError) as e:  # ValueError: bad JSON or not UTF-8
        raise UsageError(f"{path} is not a lessons export ({type(e).__name__}: {e}); make one with "
                         f"`secondnature lessons export FILE`") from e
    with store.transaction():
        for scope, items in scopes.items():
            head = store.head(scope)
            ids = list(head.lesson_ids) if head else []
            have = {x.text for x in store.revision_lessons(head)}
            for item in items:
                if not isinstance(item, dict) or not str(item.get("text", "")).strip():
                    raise UsageError(f"{path}: scope {scope}: every lesson needs a non-empty \"text\"")
                if item["text"] in have:
                    continue
                new = store.add_lesson(Lesson("", item["text"], scope, tuple(item.get("evidence", ())),
                                              gain=float(item.get("gain", 0.0))))
                ids.append(new.id)
            rev = store.commit_revision(scope, ids, f"imported from {path.name}")
            out.print(f"{scope}: revision {rev.id} with {len(ids)} lessons")
    return 0


def cmd_revisions(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "list":
        revs = store.revisions(args.scope)
        if args.json:
            print(json.dumps([asdict(r) for r in revs], indent=1))
            return 0
        t = Table(title="revisions")
        for col in ("id", "scope", "parent", "lessons", "created", "note"):
            t.add_column(col)
        for r in revs:
            t.add_row(str(r.id), r.scope, str(r.parent or "-"), " ".join(r.lesson_ids) or "-", r.created_at, escape(r.note))
        out.print(t)
        return 0
    if args.action == "diff":
        a, b = store.revision(args.a), store.revision(args.b)
        if a is None or b is None:
            raise UsageError(f"no revision {args.a if a is None else args.b}; see `secondnature revisions list`")
        la = [f"{x.id}. {x.text}" for x in store.revision_lessons(a)]
        lb = [f"{x.id}. {x.text}" for x in store.revision_lessons(b)]
        for line in difflib.unified_diff(la, lb, f"revision {a.id}", f"revision {b.id}", lineterm=""):
            print(line)
        return 0
    if args.action == "restore":
        old = store.revision(args.a)
        if old is None:
            raise UsageError(f"no revision {args.a}; see `secondnature revisions list`")
        rev = store.commit_revision(old.scope, list(old.lesson_ids), f"restored revision {old.id}")
        out.print(f"revision {rev.id} of {old.scope} restores revision {old.id} ({len(old.lesson_ids)} lessons)")
        return 0
    raise UsageError(f"unknown action {args.action}")


def cmd_setup(args: argparse.Namespace) -> int:
    from .weights import PACKAGED, assemble
    for key in ("policy", "reflector"):
        out.print(f"{key}: {assemble(PACKAGED[key])}")
    return 0


# ------------------------------------------------------------------ parser

def _model_args(p: argparse.ArgumentParser, reflector: bool = True) -> None:
    p.add_argument("--policy", default="default",
                   help="GGUF path or packaged name (default: the 0.5B model); with --base-url, a model name")
    if reflector:
        p.add_argument("--reflector", default="reflector",
                       help="GGUF path or packaged name (default: the 1.5B model); with --base-url, a model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint; key from OPENAI_API_KEY")
    p.add_argument("--max-tokens", type=int, default=384, help="completion tokens per rollout")
    p.add_argument("--lesson-tokens", type=int, default=400, help="token budget for injected lessons")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="secondnature", description=__doc__)
    ap.add_argument("--store", default=None, help="store file (default $SECONDNATURE_HOME/store.db, "
                                                  "SECONDNATURE_HOME defaults to ~/.secondnature)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("learn", help="learn lessons on a task set")
    p.add_argument("taskset", help="letters[:tiers], game24, gsm8k, bbh/<task>, or a .jsonl file")
    p.add_argument("--budget", type=int, default=400, help="policy rollouts to spend (train + validation)")
    p.add_argument("--resume", action="store_true", help="continue the last run of this task set")
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
    p.add_argument("--limit", type=int, default=None, help="first N tasks of the split")
    p.add_argument("--checker", default=None)
    p.add_argument("--json", action="store_true")
    _model_args(p, reflector=False)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="baseline, a short learning run, the lessons, the score after")
    p.add_argument("--budget", type=int, default=120)
    p.add_argument("--test-items", type=int, default=40)
    p.add_argument("--val-size", type=int, default=20)
    p.add_argument("--json", action="store_true")
    _model_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("lessons", help="list, show, edit, rm, export, import lessons")
    p.add_argument("action", choices=["list", "show", "edit", "rm", "export", "import"])
    p.add_argument("id", nargs="?", help="lesson id (show, edit, rm) or file (export, import)")
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

    p = sub.add_parser("setup", help="assemble and verify the packaged model weights")
    p.set_defaults(func=cmd_setup)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "action", None) in ("show", "edit", "rm") and not args.id:
        err.print(f"error: `lessons {args.action}` needs a lesson id, e.g. L3")
        return 2
    if getattr(args, "action", None) in ("export", "import"):
        args.file = args.id
        if args.action == "import" and not args.file:
            err.print("error: `lessons import` needs a file made by `lessons export FILE`")
            return 2
    if getattr(args, "action", None) == "diff" and (args.a is None or args.b is None):
        err.print("error: `revisions diff A B` needs two revision ids")
        return 2
    if getattr(args, "action", None) == "restore" and args.a is None:
        err.print("error: `revisions restore N` needs a revision id")
        return 2
    try:
        return args.func(args)
    except (UsageError, ModelError, StoreError, WeightsError, ValueError) as e:
        err.print(f"[red]error:[/] {e}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted; accepted lessons are saved. Continue with `secondnature learn TASKSET --resume`.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
