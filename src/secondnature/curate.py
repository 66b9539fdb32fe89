"""Curation: measure what each lesson of a revision is worth, and make the revision smaller where that
costs nothing. Applied by code, one small edit at a time, never a rewrite of the whole list.

1. Credit: each lesson's leave-one-out effect, the revision's validation score minus the score
   without that lesson, on the same paired items the learning gate used. Stored beside the lesson.
2. Proposals, cheapest first, each a candidate revision judged by the no-worse gate (it must lose
   no more paired items than it wins; fewer tokens are the gain):
   - retire a lesson whose removal does not hurt (its leave-one-out effect is <= 0);
   - dedupe: of two near-identical lessons (word overlap >= `duplicate`), retire the weaker;
   - merge: two overlapping lessons are rewritten as one by the reflector, shorter than both;
   - compress: a long lesson is reworded shorter by the reflector.
   Retired lessons stay in the store with the reason (`lessons list --all`, `lessons restore`).
Every accepted step is a revision with its gate record, committed before the next is tried, so a
killed run keeps what it accepted. A step is an edit (retire, replace two lessons by one, ...): if
another writer committed to the scope while curation measured, the edit is applied to their
revision (their lessons stay) and the revision's note says the gate judged it on the older one.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import inject
from .gate import record
from .inject import EXAMPLE_PREFIX
from .learn import LearnConfig, learn_split
from .models import Model, cached
from .screen import FILLER, problem_with
from .store import LessonStore
from .text import DUPLICATE, similarity
from .types import Edit, Lesson, TaskSet
from .validate import Validation


@dataclass(frozen=True)
class CurateConfig:
    budget: int = 300            # policy rollouts for every evaluation curation makes
    val_size: int = 24           # the learning gate's validation sample (same seeds: same items)
    seed: int = 0
    split_seed: int = 0
    max_tokens: int = 384
    lesson_tokens: int | None = 400
    duplicate: float = DUPLICATE # word-set overlap (Jaccard) from which two lessons say the same thing
    overlap: float = 0.3         # ... from which they are worth merging
    compress_over: int = 40      # lessons longer than this (policy tokens) are offered for compression
    reflect_max_tokens: int = 200


@dataclass(frozen=True)
class CurateResult:
    scope: str
    before: tuple[Lesson, ...]
    after: tuple[Lesson, ...]
    loo: dict[str, tuple[float, int, int]]   # lesson id -> (effect, wins without it, losses without it)
    steps: tuple[dict, ...] = field(default=())  # every proposal: op, ids, gate reason, accepted
    rollouts: int = 0
    reflections: int = 0


MERGE_PROMPT = """Two pieces of advice for an AI assistant overlap:
A: {a}
B: {b}
Write ONE piece of advice, shorter than A and B together, that keeps every instruction of both.
Reply with the advice only, on one line."""

COMPRESS_PROMPT = """Here is a piece of advice for an AI assistant:
{a}
Reword it in at most {words} words, keeping every instruction it gives. Reply with the advice only, on one line."""


def parse_rewrite(raw: str) -> str:
    """The one line of advice in a merge or compress reply ('' if there is none)."""
    for line in raw.strip().splitlines():
        line = re.sub(r"^\s*(advice|answer|merged|reworded|lesson)\s*:\s*", "", line.strip(), flags=re.IGNORECASE)
        line = line.strip().strip('"').strip()
        if line and not FILLER.search(line):
            return line
    return ""


@dataclass(frozen=True)
class RunningCredit:
    """A lesson's effect estimated from rollouts already recorded, at no extra cost: on each task attempted
    both with a lesson set that holds the lesson and with the same set minus it (a gate's pairs, a
    leave-one-out's, training before and after the lesson joined), the mean reward with it minus without;
    averaged over those tasks. It grows with every gate and run; curation ablates the lessons it suspects
    first, and the leave-one-out decides."""

    effect: float | None   # None: no task was attempted both ways
    tasks: int             # tasks behind the estimate
    in_context: int        # recorded attempts with the lesson in context


def running_credit(rows: Sequence[tuple], lesson_ids: Sequence[str]) -> dict[str, RunningCredit]:
    """Running estimates for `lesson_ids` from (task id, score, lessons in context) rows, or (task id, sum of scores,
    lessons in context, attempts) rows of attempts grouped alike (`LessonStore.scored`)."""
    by_task: dict[str, dict[frozenset[str], list[float]]] = {}  # task -> lesson set -> [sum of scores, attempts]
    for task_id, value, ids, *n in rows:
        got = by_task.setdefault(task_id, {}).setdefault(frozenset(ids), [0.0, 0])
        got[0], got[1] = got[0] + value, got[1] + (n[0] if n else 1)
    out = {}
    for lid in lesson_ids:
        diffs, seen = [], 0
        for sets in by_task.values():
            pairs = []
            for ids, (total, count) in sets.items():
                if lid in ids:
                    seen += count
                    if (base := sets.get(ids - {lid})) is not None:
                        pairs.append(total / count - base[0] / base[1])
            if pairs:
                diffs.append(sum(pairs) / len(pairs))
        out[lid] = RunningCredit(sum(diffs) / len(diffs) if diffs else None, len(diffs), seen)
    return out


def curate(policy: Model, reflector: Model, taskset: TaskSet, store: LessonStore, config: CurateConfig = CurateConfig(),
           *, progress: Callable[[int, str], None] = lambda _n, _m: None) -> CurateResult:
    scope = taskset.name
    policy, reflector = cached(policy, store), cached(reflector, store)
    head = store.head(scope)
    if head is None or not head.lesson_ids:
        raise ValueError(f"{scope} has no lessons to curate; run `secondnature learn {scope}` first")
    before = tuple(store.revision_lessons(head))
    current, on = list(before), head.id  # on: the revision `current` is, which each gate compares against
    _, val = learn_split(taskset, LearnConfig(val_size=config.val_size, seed=config.seed, split_seed=config.split_seed))
    v = Validation(policy, taskset, val, store, budget=config.budget, lesson_tokens=config.lesson_tokens,
                   max_tokens=config.max_tokens, seed=config.seed, progress=progress)
    count, reflections = policy.count_tokens, [0]

    # 1. credit: leave-one-out on the paired validation items
    loo: dict[str, tuple[float, int, int]] = {}
    base = v.scores(current) if v.affords(len(val)) else []
    running = running_credit(store.scored(scope), [x.id for x in current])
    # when the budget cannot ablate every lesson, the ones the recorded rollouts suspect go first
    for x in sorted(current, key=lambda y: running[y.id].effect if running[y.id].effect is not None else 0.0):
        if not v.affords(len(val)):
            progress(0, f"budget spent before {x.id}'s leave-one-out")
            break
        without = v.scores([y for y in current if y.id != x.id])
        wins = sum(b > w for b, w in zip(base, without))  # items the lesson wins (with it better than without)
        losses = sum(b < w for b, w in zip(base, without))
        pairs = [(b, w) for b, w in zip(base, without) if not (math.isnan(b) or math.isnan(w))]  # a failed call: NaN
        effect = sum(b - w for b, w in pairs) / max(len(pairs), 1)
        loo[x.id] = (effect, wins, losses)
        store.set_loo(x.id, effect, len(pairs))
        progress(0, f"{x.id}: leave-one-out {effect:+.3f} (wins {wins}, losses {losses} of {len(val)})")

    # 2. proposals, each gated against the head as it is when its turn comes
    steps: list[dict] = []

    def propose(op: str, lessons: list[Lesson], removed: list[Lesson], note: str) -> bool:
        nonlocal current, on
        if not v.affords(len(val)):
            return False
        result = v.no_worse(current, lessons)
        added = " | ".join(x.text for x in lessons if x not in current)
        g = record(result, scope, [Edit(op, added, ",".join(x.id for x in removed))], current_revision=on)
        steps.append({"op": op, "removed": [x.id for x in removed], "note": note, "accepted": result.accepted,
                      "reason": result.reason})
        progress(0, f"{op} {', '.join(x.id for x in removed)}: {'accepted' if result.accepted else 'rejected'} "
                    f"({result.reason})")
        if not result.accepted:
            store.add_gate(g)
            return False
        with store.transaction():
            final = [x if x.id else store.add_lesson(x) for x in lessons]
            for x in removed:
                store.set_status(x.id, "retired", f"{op}: {note}; {result.reason}")
            rev = store.commit_revision(scope, [x.id for x in final], f"curate {op}: {note}", gate=g, parent=on,
                                        rebase=True)
        current = final if list(rev.lesson_ids) == [x.id for x in final] else store.revision_lessons(rev)
        on = rev.id
        return True

    def rewrite(prompt: str) -> str:
        c = reflector.chat([{"role": "user", "content": prompt}], n=1, temperature=0.0,
                           max_tokens=config.reflect_max_tokens, seed=config.seed)[0]
        reflections[0] += 1
        return "" if c.error else parse_rewrite(c.text)

    for lid, (effect, _, _) in sorted(loo.items(), key=lambda kv: kv[1][0]):
        x = next((y for y in current if y.id == lid), None)
        if x is not None and effect <= 0:
            propose("retire", [y for y in current if y.id != lid], [x], f"leave-one-out {effect:+.3f}")
    rules = [x for x in current if not inject.is_instruction(x)]  # an instruction is not merged into a rule
    for a, b in [(a, b) for i, a in enumerate(rules) for b in rules[i + 1:]]:
        if a in current and b in current and similarity(a.text, b.text) >= config.duplicate:
            weaker = min((a, b), key=lambda y: (loo.get(y.id, (0.0,))[0], y.gain, -inject.lesson_order(y)))
            propose("dedupe", [y for y in current if y.id != weaker.id], [weaker],
                    f"{weaker.id} repeats {(b if weaker is a else a).id}")
    for a, b in [(a, b) for i, a in enumerate(rules) for b in rules[i + 1:]]:
        if a in current and b in current and config.overlap <= similarity(a.text, b.text) < config.duplicate:
            text = rewrite(MERGE_PROMPT.format(a=a.text, b=b.text))
            if text and count(text) < count(a.text) + count(b.text) and not problem_with(text):
                merged = Lesson("", text, scope, a.evidence + b.evidence, parent=a.id, gain=max(a.gain, b.gain),
                                tags=a.tags)
                propose("merge", [y for y in current if y.id not in (a.id, b.id)] + [merged], [a, b],
                        f"{a.id} and {b.id} merged")
    for x in [y for y in current if not inject.is_instruction(y)]:  # merges above made new lessons: these too
        if x in current and not x.text.startswith(EXAMPLE_PREFIX) and count(x.text) > config.compress_over:
            words = max(8, len(x.text.split()) // 2)
            text = rewrite(COMPRESS_PROMPT.format(a=x.text, words=words))
            if text and count(text) < count(x.text) and not problem_with(text):
                short = Lesson("", text, scope, x.evidence, parent=x.id, gain=x.gain, tags=x.tags)
                propose("compress", [y for y in current if y.id != x.id] + [short], [x], f"{x.id} reworded shorter")
    return CurateResult(scope, before, tuple(current), loo, tuple(steps), v.paid, reflections[0])
