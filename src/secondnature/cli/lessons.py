"""`secondnature lessons ...` and `secondnature revisions ...`: read, edit, export and restore the store by hand.

A hand edit is trusted (no gate) and, like every change, makes a new revision: nothing is lost.
Each change is applied to the head as it is once the store's write lock is held (`change_head`), so a
learn run or another edit committing meanwhile keeps its lessons.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from rich import box
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from .. import hand
from ..curate import running_credit
from ..lessonfile import read_lessons
from ..skills import code_of, is_skill
from ..store import LessonStore, open_store
from ..types import Lesson
from . import ui
from .ui import UsageError


def _store(args: argparse.Namespace) -> LessonStore:
    return open_store(args.store)


def head_lessons(store: LessonStore, scope: str, revision: int | None = None) -> list[Lesson]:
    rev = store.revision(revision) if revision is not None else store.head(scope)
    if revision is not None and rev is None:
        raise UsageError(f"no revision {revision}; see `secondnature revisions list`")
    return store.revision_lessons(rev)


def _scope_of(store: LessonStore, lesson_id: str) -> Lesson:
    return hand.lesson_of(store, lesson_id)


def cmd_lessons(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "list":
        lessons = store.lessons(args.scope, None if args.all else "active")
        running = {}
        for scope in sorted({x.scope for x in lessons}):
            running.update(running_credit(store.scored(scope), [x.id for x in lessons if x.scope == scope]))
        if args.json:
            print(json.dumps([{**asdict(x), "running": asdict(running[x.id])} for x in lessons], indent=1))
        else:
            ui.lesson_table(lessons, "lessons" + (f" of {args.scope}" if args.scope else ""), running)
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
        ui.out.print(f"[bold]{x.id}[/] ({escape(x.scope)}, {x.status}, gain {x.gain:+.2f}, used {x.uses} times)")
        if is_skill(x.text):  # code as code: highlighted, long lines wrapped under their indent
            head, code, tail = x.text.partition("```python\n")[0], code_of(x.text), x.text.rsplit("```", 1)[-1]
            ui.out.print(escape(head.strip()))
            ui.out.print(Syntax(code, "python", word_wrap=True, theme="ansi_dark"))
            ui.out.print(escape(tail.strip()))
        else:
            ui.out.print(escape(x.text))
        if x.parent:
            ui.out.print(f"edited from {x.parent}")
        ui.out.print(f"\n[bold]evidence[/]: {len(evidence)} rollouts" + (f" from reflection {refl['id']}" if refl else ""))
        for r in evidence:
            ui.out.print(escape(f"- {r.task_id} score {r.score.value:g} ({r.score.feedback}): {r.completion[:160]!r}"))
        return 0
    if args.action == "edit":
        text = args.text if args.text is not None else _edit_in_editor(_scope_of(store, args.id).text)
        done = hand.edit(store, args.id, text, force=args.force, allow_instruction=args.allow_instruction)
        ui.out.print(escape(done.message) if done else "unchanged")
        return 0
    if args.action in ("rm", "restore"):
        done = (hand.remove if args.action == "rm" else hand.restore_lesson)(store, args.id)
        ui.out.print(escape(done.message))
        return 0
    if args.action == "export":
        scopes = [args.scope] if args.scope else store.scopes()
        data = {"format": "secondnature-lessons/1", "scopes": {s: [asdict(x) for x in head_lessons(store, s)]
                                                               for s in scopes},
                # the prompts each scope learned on, so the importing store can route queries to it
                "prompts": {s: store.prompts(s) for s in scopes}}
        text = json.dumps(data, indent=1)
        if args.file:
            Path(args.file).write_text(text)
            ui.out.print(f"exported {sum(len(v) for v in data['scopes'].values())} lessons to {args.file}")
        else:
            print(text)
        return 0
    if args.action == "import":
        return _import(store, Path(args.file), args.allow_instruction, args.scope)
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


def _import(store: LessonStore, path: Path, allow_instruction: bool = False, scope: str | None = None) -> int:
    """Every scope of a lessons file (a JSON export, Agent Skills, a rules file), each lesson through the safety
    screen first (a file may come from anyone). A file that cannot be read changes nothing."""
    found = read_lessons(path, scope)  # a ValueError names the file, the problem and the fix
    for done in hand.import_lessons(store, found.scopes, path.name, prompts=found.prompts,
                                    allow_instruction=allow_instruction):
        for text, why in done.refused:
            ui.err.print(escape(f"{done.scope}: not imported, {why}: {text[:80]!r}"))
        ui.out.print(f"{escape(done.scope)}: revision {done.revision.id} with {len(done.revision.lesson_ids)} lessons")
    return 0


def cmd_revisions(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "list":
        revs = store.revisions(args.scope)
        if args.json:
            print(json.dumps([asdict(r) for r in revs], indent=1))
            return 0
        t = Table(title="revisions", box=box.SIMPLE_HEAD, show_lines=True, title_justify="left")
        for col in ("id", "from", "scope", "lessons"):
            t.add_column(col, overflow="fold")
        t.add_column("note", ratio=1, overflow="fold")
        for r in revs:
            t.add_row(str(r.id), str(r.parent or "-"), escape(r.scope), " ".join(r.lesson_ids) or "-",
                      f"{escape(r.note)}\n[dim]{r.created_at}[/]")
        ui.out.print(t)
        return 0
    if args.action == "diff":
        for line in hand.diff(store, args.a, args.b):
            print(line)
        return 0
    if args.action == "restore":
        done = hand.restore_revision(store, args.a)
    elif args.action == "promote":
        if args.a is None:
            raise UsageError("`secondnature revisions promote N` takes an id from `secondnature revisions list`")
        done = hand.promote(store, args.a)
    elif args.action == "rollback":
        done = hand.rollback(store, args.scope or _only_scope(store))
    else:
        raise UsageError(f"unknown action {args.action}")
    if args.json:
        print(json.dumps({"scope": done.revision.scope, "revision": done.revision.id,
                          "lessons": list(done.revision.lesson_ids), "note": done.revision.note}))
    else:
        ui.out.print(escape(done.message))
    return 0


def _only_scope(store) -> str:
    scopes = store.scopes()
    if len(scopes) != 1:
        raise UsageError(f"say which scope to roll back with --scope ({', '.join(scopes) or 'the store has none'})")
    return scopes[0]


def cmd_gates(args: argparse.Namespace) -> int:
    """Every gate decision, accepted or not, with its scores and reason: what the loop tried and why it kept it."""
    gates = _store(args).gates(args.scope, args.run)
    if args.json:
        print(json.dumps([asdict(g) for g in gates], indent=1))
        return 0
    t = Table(title="gate decisions", box=box.SIMPLE_HEAD, show_lines=True, title_justify="left")
    t.add_column("id", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    t.add_column("proposed, and why it was decided so", ratio=1, overflow="fold")
    for g in gates:
        edits = "; ".join(f"{e.op} {e.id} {e.text[:200]}".replace("  ", " ").strip() for e in g.proposed)
        verdict = (f"{g.decision}\nwon {g.wins}, lost {g.losses}\nof {g.n}, p {g.p_value:.3f}\n"
                   f"{g.current_score:.2f} → {g.proposed_score:.2f}")
        where = f"run {g.run_id}, step {g.step}" if g.run_id is not None else "by curate"
        t.add_row(str(g.id), verdict, f"{escape(edits)}\n[dim]{escape(g.reason)} ({where})[/]")
    ui.out.print(t)
    return 0
