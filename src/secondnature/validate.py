"""Paid validation: a lesson set's greedy scores on the validation items, each item paid once per lesson set
and counted against the run's rollout budget. The learning loop's gates and curation's leave-one-out
and no-worse gates all score through one `Validation`, so neither pays twice for the same evidence.

Items pair across lesson sets: the same tasks, the same seed, greedy decoding. A second, disjoint
sample (`confirm`) is scored the same way for the two-stage gate's confirmation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from . import gate, inject, rollout
from .models import Model
from .store import LessonStore
from .types import Lesson, Task, TaskSet

Progress = Callable[[int, str], None]  # (rollouts just spent, message)


def no_progress(_: int, __: str) -> None:
    pass


def key(lessons: Sequence[Lesson]) -> tuple[str, ...]:
    """What identifies a lesson set for its scores: its texts in order (ids change when a lesson is re-proposed)."""
    return tuple(x.text for x in lessons)


class Validation:
    """Scores of lesson sets on fixed validation items, paid once each. Stateful (the scores and the spend)."""

    def __init__(self, policy: Model, taskset: TaskSet, items: Sequence[Task], store: LessonStore, *, budget: int,
                 spent: int = 0, confirm: Sequence[Task] = (), run_id: int | None = None, lesson_tokens: int | None = 400,
                 max_tokens: int = 384, seed: int = 0, progress: Progress = no_progress):
        self.policy, self.taskset, self.store, self.progress = policy, taskset, store, progress
        self.items, self.confirm_items = list(items), list(confirm)
        self.budget, self.spent, self.paid = budget, spent, 0  # spent: the run's rollouts; paid: validation's here
        self.run_id, self.lesson_tokens, self.max_tokens, self.seed = run_id, lesson_tokens, max_tokens, seed
        self._scores: dict[tuple[bool, tuple[str, ...]], dict[int, float]] = {}
        self._prompts: dict[tuple[str, ...], tuple[str, list[Lesson]]] = {}  # each lesson set's prompt, composed once

    def affords(self, rollouts: int) -> bool:
        return self.spent + rollouts <= self.budget

    def known(self, lessons: Sequence[Lesson], *, confirm: bool = False) -> int:
        """How many items of the sample `lessons` has been scored on already."""
        return len(self._scores.get((confirm, key(lessons)), {}))

    def score(self, lessons: Sequence[Lesson], i: int, *, confirm: bool = False, charge: bool = True) -> float:
        """Item i's score under `lessons`: recorded and paid the first time, remembered after. `charge=False` for
        evidence a killed run already paid for (a resumed run's head)."""
        got = self._scores.setdefault((confirm, key(lessons)), {})
        if i not in got:
            task = (self.confirm_items if confirm else self.items)[i]
            if key(lessons) not in self._prompts:
                self._prompts[key(lessons)] = inject.compose(self.taskset.instruction, lessons, self.lesson_tokens,
                                                             self.policy.count_tokens)
            system, kept = self._prompts[key(lessons)]
            r = rollout.run(self.policy, [task], self.taskset.reward, system, kept, temperature=0.0,
                            max_tokens=self.max_tokens, seed=self.seed, purpose="val", tools=self.taskset.tools)[0]
            self.store.add_rollouts([r], run_id=self.run_id, scope=self.taskset.name)
            if charge:
                self.spent, self.paid = self.spent + 1, self.paid + 1
                self.progress(1, "")
            got[i] = r.score.value
        return got[i]

    def scores(self, lessons: Sequence[Lesson], *, confirm: bool = False, charge: bool = True) -> list[float]:
        n = len(self.confirm_items if confirm else self.items)
        return [self.score(lessons, i, confirm=confirm, charge=charge) for i in range(n)]

    def mean(self, lessons: Sequence[Lesson]) -> float:
        s = self.scores(lessons)
        return sum(s) / len(s)

    # ---------------------------------------------------------------- the gates, scored here

    def to_confirm(self, current: Sequence[Lesson]) -> int:
        """Rollouts confirming a candidate against `current` may cost: its own items and those of the current
        revision not yet paid."""
        return 2 * len(self.confirm_items) - self.known(current, confirm=True)

    def to_accept(self, current: Sequence[Lesson]) -> int:
        """Rollouts a candidate may need to be accepted against `current`: its gate and its confirmation."""
        return len(self.items) + self.to_confirm(current)

    def gate(self, current: Sequence[Lesson], lessons: Sequence[Lesson], *, order_seed: int, alpha: float = 0.2,
             reject_margin: int = 3, screen: int = 6) -> gate.GateResult:
        """The sequential gate: items the current revision fails first, in an order of this candidate's own."""
        base = self.scores(current)
        order = gate.screen_order(base, seed=order_seed)
        return gate.sequential_gate([base[i] for i in order], lambda i: self.score(lessons, order[i]), alpha,
                                    reject_margin, gate.screenable(base, screen))

    def confirm(self, current: Sequence[Lesson], lessons: Sequence[Lesson], first: gate.GateResult,
                alpha: float = 0.2) -> gate.GateResult:
        """Does a gate's winner hold on the fresh confirmation items?"""
        base = self.scores(current, confirm=True)
        return gate.confirm_gate(base, lambda i: self.score(lessons, i, confirm=True), first, alpha)

    def no_worse(self, current: Sequence[Lesson], lessons: Sequence[Lesson]) -> gate.GateResult:
        """The gate of a revision that only makes the prompt smaller: it must lose no more items than it wins."""
        return gate.no_worse_gate(self.scores(current), lambda i: self.score(lessons, i))
