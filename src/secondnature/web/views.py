"""What each page shows, gathered from the store as plain data; the templates only lay it out. No HTTP here."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import hand
from ..curate import running_credit
from ..inject import EXAMPLE_PREFIX, is_instruction, listed, shown
from ..skills import code_of, is_skill
from ..store import LessonStore
from ..store import pages as db
from ..text import approx_tokens
from ..types import GateRecord, Lesson, Rollout

KINDS = ("rule", "example", "skill", "instruction")


def kind_of(x: Lesson) -> str:
    if is_skill(x.text):
        return "skill"
    if is_instruction(x):
        return "instruction"
    return "example" if x.text.startswith(EXAMPLE_PREFIX) else "rule"


def tokens(text: str) -> int:
    """Tokens a lesson costs in the prompt, estimated as serve and the MCP tools estimate them (the exact count depends
    on the policy's tokenizer, which the page does not load)."""
    return approx_tokens(text)


@dataclass(frozen=True)
class Row:
    """A lesson in the table, with its figures."""

    lesson: Lesson
    kind: str
    tokens: int
    running: float | None   # with it minus without, over recorded attempts (curate.running_credit)
    seen: int
    card: str               # what the table shows: the text, or a skill's card and its length


def rows(store: LessonStore, lessons: Sequence[Lesson]) -> list[Row]:
    out = []
    by_scope: dict[str, list[Lesson]] = {}
    for x in lessons:
        by_scope.setdefault(x.scope, []).append(x)
    credit = {}
    for scope, xs in by_scope.items():
        credit.update(running_credit(store.scored(scope), [x.id for x in xs]))
    for x in lessons:
        c = credit.get(x.id)
        out.append(Row(x, kind_of(x), tokens(shown(x)), c.effect if c else None, c.tasks if c else 0, listed(x)))
    return out


@dataclass(frozen=True)
class Item:
    """One validation item of a gate: the task, its score without the change and with it, and both rollouts."""

    task_id: str
    before: Rollout
    after: Rollout

    @property
    def outcome(self) -> str:
        d = self.after.score.value - self.before.score.value
        return "won" if d > 0 else "lost" if d < 0 else "tied"


def gate_items(store: LessonStore, g: GateRecord) -> list[Item]:
    """The gate's paired items, found among its run's validation rollouts: the current revision's attempts against
    the attempts whose prompt held the proposed text (or, for a removal, lacked the removed lesson). Empty when the
    gate left no such record (made by curate, or by an older version)."""
    if g.run_id is None:
        return []
    current = store.revision(g.current_revision) if g.current_revision is not None else None
    base_ids = tuple(current.lesson_ids) if current else ()
    found = db.val_rollouts(store, g.run_id)
    before = {(r.task_id, r.sample): r for r in found if r.lesson_ids == base_ids}
    after: dict[tuple[str, int], Rollout] = {}
    for r in found:
        if r.lesson_ids != base_ids and _made_by(r, g, base_ids):
            after.setdefault((r.task_id, r.sample), r)
    return [Item(k[0], before[k], after[k]) for k in after if k in before]


def _made_by(r: Rollout, g: GateRecord, base_ids: tuple[str, ...]) -> bool:
    system = str(r.messages[0].get("content", "")) if r.messages else ""
    for e in g.proposed:
        if e.text:  # what the policy read of the proposed lesson (a skill's card), its first line
            probe = shown(Lesson("", e.text, "")).strip().splitlines()[0][:80]
            if probe and probe in system:
                return True
        elif e.op == "delete" and e.id and e.id not in r.lesson_ids and set(r.lesson_ids) == set(base_ids) - {e.id}:
            return True
    return False


@dataclass(frozen=True)
class LessonPage:
    lesson: Lesson
    kind: str
    code: str
    row: Row
    reflection: dict | None
    evidence: list[Rollout]
    best: Rollout | None
    worst: Rollout | None
    gate: GateRecord | None
    items: list[Item]
    history: list[Lesson]        # the lessons it was edited from, oldest first
    revisions: list[int]         # the revisions that held it
    in_head: bool


def lesson_page(store: LessonStore, lesson_id: str) -> LessonPage:
    x = hand.lesson_of(store, lesson_id)
    evidence = [r for rid in x.evidence if (r := store.rollout(rid))]
    ranked = sorted(evidence, key=lambda r: (r.score.value, -len(r.completion)))
    history, seen, parent = [], {x.id}, x.parent
    while parent and parent not in seen and (p := store.lesson(parent)):
        history.insert(0, p)
        seen.add(parent)
        parent = p.parent
    held = db.holding(store, x.scope)  # the gate that brought it, or the lesson it was edited from, into the scope
    gate = next((g for y in [x, *reversed(history)] if y.id in held and (g := db.accepted_by(store, held[y.id][0]))),
                None)
    head = store.head(x.scope)
    refl = store.reflection(x.reflection_id) if x.reflection_id else None
    if refl:
        refl = {**refl, "edits": json.loads(refl.get("edits") or "[]")}
    return LessonPage(x, kind_of(x), code_of(x.text) if is_skill(x.text) else "", rows(store, [x])[0], refl, evidence,
                      ranked[-1] if ranked else None, ranked[0] if len(ranked) > 1 else None, gate,
                      gate_items(store, gate) if gate else [], history, held.get(x.id, []),
                      bool(head and x.id in head.lesson_ids))


# ------------------------------------------------------------------ curves and bench records

def results(dirs: Sequence[Path]) -> list[Path]:
    """PNGs and JSON records in the given directories, newest first."""
    found = [p for d in dirs if d.is_dir() for p in d.iterdir() if p.suffix in (".png", ".json") and p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def record_table(path: Path) -> tuple[list[str], list[list[str]]] | None:
    """A bench record (a list of arms) or a run record (a flat object) as a table; None for other JSON."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, list) and data and all(isinstance(a, dict) and "arm" in a for a in data):
        head = ["task", "arm", "n", "accuracy", "95% CI", "vs none", "95% CI", "rollouts"]
        return head, [[str(a.get("task", "")), str(a["arm"]), str(a.get("n", "")), _pct(a.get("accuracy")),
                       _ci(a.get("ci95")), _pct(a.get("diff_vs_none"), sign=True), _ci(a.get("diff_ci95"), sign=True),
                       str(a.get("rollouts", ""))] for a in data]
    if isinstance(data, dict):
        flat = [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in data.items()
                if isinstance(v, str | int | float | bool) or (isinstance(v, list) and len(json.dumps(v)) < 80)]
        return (["field", "value"], flat) if flat else None
    return None


def _pct(v: object, sign: bool = False) -> str:
    return f"{100 * v:{'+' if sign else ''}.1f}" if isinstance(v, int | float) else ""


def _ci(v: object, sign: bool = False) -> str:
    if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
        return f"[{_pct(v[0], sign)}, {_pct(v[1], sign)}]"
    return ""
