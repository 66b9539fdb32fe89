"""Paid validation: a lesson set's greedy scores on the validation items, each item paid once per lesson set
and counted against the run's rollout budget. The learning loop's gates and curation's leave-one-out
and no-worse gates all score through one `Validation`, so neither pays twice for the same evidence.

Items pair across lesson sets: the same tasks, the same seed, greedy decoding. A second, disjoint
sample (`confirm`) is scored the same way for the two-stage gate's confirmation.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from . import gate, inject, rollout
from .models import Model
from .store import LessonStore
from .types import Lesson, Rollout, Task, TaskSet

Progress = Callable[[int, str], None]  # (rollouts just spent, message)


RETRIES = 2  # more tries for a validation rollout whose model call failed, before it leaves the comparison


MIN_CONFIRM = 12  # fresh items a confirmation needs at the least


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
        self.errors, self.last_error = 0, ""  # validation rollouts whose calls failed even after their retries
        self._scores: dict[tuple[bool, tuple[str, ...]], dict[int, float]] = {}
        self._prompts: dict[tuple[str, ...], tuple[str, list[Lesson]]] = {}  # each lesson set's prompt, composed once

    def affords(self, rollouts: int) -> bool:
        return self.spent + rollouts <= self.budget

    def known(self, lessons: Sequence[Lesson], *, confirm: bool = False) -> int:
        """How many items of the sample `lessons` has been scored on already."""
        return len(self._scores.get((confirm, key(lessons)), {}))

    def score(self, lessons: Sequence[Lesson], i: int, *, confirm: bool = False, charge: bool = True) -> float:
        """Item i's score under `lessons`: recorded and paid the first time, remembered after. `charge=False` for
        evidence a killed run already paid for (a resumed run's head). A model call that still fails after
        `RETRIES` more tries gives NaN, which pairs with nothing (never a 0 a candidate can win against), and is
        not remembered: the next gate asks again."""
        return self._score(lessons, [i], confirm, charge)[0]

    def scores(self, lessons: Sequence[Lesson], *, confirm: bool = False, charge: bool = True,
               n: int | None = None) -> list[float]:
        """The first n items' scores (all, by default), as `score` gives them; those not known yet are rolled out
        together, so an endpoint or a Ray cluster takes them as many at once as it is allowed."""
        n = len(self.confirm_items if confirm else self.items) if n is None else n
        return self._score(lessons, list(range(n)), confirm, charge)

    def _score(self, lessons: Sequence[Lesson], indices: list[int], confirm: bool, charge: bool) -> list[float]:
        got = self._scores.setdefault((confirm, key(lessons)), {})
        todo = [i for i in indices if i not in got]
        if todo:
            items = self.confirm_items if confirm else self.items
            if key(lessons) not in self._prompts:
                self._prompts[key(lessons)] = inject.compose(self.taskset.instruction, lessons, self.lesson_tokens,
                                                             self.policy.count_tokens)
            system, kept = self._prompts[key(lessons)]
            done: dict[int, Rollout] = {}
            tick = (lambda _: self.progress(1, "")) if charge else None  # each item once, as it is paid
            for attempt in range(1 + RETRIES):  # failed calls are not cached, so a retry asks the model again
                ask = [i for i in todo if i not in done or done[i].error]
                if not ask:
                    break
                done.update(zip(ask, rollout.run(
                    self.policy, [items[i] for i in ask], self.taskset.reward, system, kept, temperature=0.0,
                    max_tokens=self.max_tokens, seed=self.seed, purpose="val", tools=self.taskset.tools,
                    on_done=None if attempt else tick)))
            self.store.add_rollouts([done[i] for i in todo], run_id=self.run_id, scope=self.taskset.name)
            if charge:
                self.spent, self.paid = self.spent + len(todo), self.paid + len(todo)
            for i in todo:
                if done[i].error:
                    self.errors, self.last_error = self.errors + 1, done[i].error
                else:
                    got[i] = done[i].score.value
        return [got.get(i, math.nan) for i in indices]

    def mean(self, lessons: Sequence[Lesson]) -> float:
        """The mean over the items scored (those whose calls failed are left out)."""
        return gate.mean(self.scores(lessons))

    # ---------------------------------------------------------------- the gates, scored here

    def confirm_cost(self, current: Sequence[Lesson], n: int) -> int:
        """Rollouts a confirmation on the first n fresh items costs: the candidate's, and the current revision's not
        yet paid (its scores there are a prefix: items are scored in order)."""
        return n + max(0, n - self.known(current, confirm=True))

    def confirmable(self, current: Sequence[Lesson]) -> int:
        """How many fresh items the budget left pays to confirm on: all of them, or fewer at the end of the budget
        (a smaller sample is a weaker test, not a looser one: the same rule must hold on it), 0 below MIN_CONFIRM."""
        n = len(self.confirm_items)
        while n and not self.affords(self.confirm_cost(current, n)):
            n -= 1
        return n if n >= min(MIN_CONFIRM, len(self.confirm_items)) else 0

    def to_confirm(self, current: Sequence[Lesson]) -> int:
        """Rollouts the smallest confirmation of a candidate against `current` costs."""
        return self.confirm_cost(current, min(MIN_CONFIRM, len(self.confirm_items)))

    def to_accept(self, current: Sequence[Lesson]) -> int:
        """Rollouts a candidate may need to be accepted against `current`: its gate and its confirmation."""
        return len(self.items) + self.to_confirm(current)

    def gate(self, current: Sequence[Lesson], lessons: Sequence[Lesson], *, order_seed: int, alpha: float = 0.2,
             reject_margin: int = 3, screen: int = 6) -> gate.GateResult:
        """The sequential gate: items the current revision fails first, in an order of this candidate's own.
        Items whose current-revision call failed are left out; too many failed calls stop the gate."""
        base = self.scores(current)
        order = [i for i in gate.screen_order(base, seed=order_seed) if not math.isnan(base[i])]
        return self._guarded(base, lambda score: gate.sequential_gate(
            [base[i] for i in order], lambda i: score(lessons, order[i]), alpha, reject_margin,
            gate.screenable([base[i] for i in order], screen)))

    def confirm(self, current: Sequence[Lesson], lessons: Sequence[Lesson], first: gate.GateResult,
                alpha: float = 0.2, n: int | None = None) -> gate.GateResult:
        """Does a gate's winner hold on the fresh confirmation items (the first n of them)?"""
        n = len(self.confirm_items) if n is None else n
        base = self.scores(current, confirm=True, n=n)
        return self._guarded(base, lambda score: gate.confirm_gate(
            base, lambda i: score(lessons, i, confirm=True), first, alpha))

    def no_worse(self, current: Sequence[Lesson], lessons: Sequence[Lesson]) -> gate.GateResult:
        """The gate of a revision that only makes the prompt smaller: it must lose no more items than it wins."""
        base = self.scores(current)
        return self._guarded(base, lambda score: gate.no_worse_gate(
            base, lambda i: score(lessons, i)))

    def _guarded(self, base: Sequence[float], run: Callable[[Callable[..., float]], gate.GateResult]) -> gate.GateResult:
        """`run(score)`, stopped with a rejection and its reason once more than a quarter of the items' calls (the
        current revision's, NaN in `base`, and the candidate's together) have failed: an outage must not decide a gate."""
        n, failed = len(base), sum(map(math.isnan, base))
        bound = max(2, n // 4)

        def score(*args, **kw) -> float:
            nonlocal failed
            value = self.score(*args, **kw)
            failed += math.isnan(value)
            if failed > bound:
                raise _Outage
            return value

        try:
            if failed > bound:
                raise _Outage
            return run(score)
        except _Outage:
            return gate.GateResult(0, 0.0, 0.0, 0, 0, 1.0, False,
                                   f"stopped: the model failed on {failed} of {n} items after {RETRIES} retries each "
                                   f"(last: {self.last_error[:160]}); a gate needs answers to compare")


class _Outage(Exception):
    """Too many failed model calls for a gate to mean anything."""
