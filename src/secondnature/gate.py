"""The gate: paired comparison of two revisions on the same validation tasks and seeds, and its statistics.

Rule (also in the README): the proposed revision is accepted only if it wins more paired items than
it loses AND the one-sided sign test on the non-tied pairs gives p <= alpha (default 0.2). A pair is
a win when the proposed revision's score on that task beats the current one's. Evaluation stops
early once the proposal has lost `reject_margin` more items than it has won, can no longer win, or
has not won a single item in the first half: most bad or inert lessons are cheap to reject.

Screening: the caller may order the items so that those the current revision fails come first
(`screen_order`, in a different order for each candidate) and pass `screen=k`. A proposal can only
win where the current revision falls short, so one that wins none of the first k such items is
stopped there, after k rollouts instead of half the sample. Every accepted proposal is still scored on every item.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .stats import sign_test_p
from .types import Edit, GateRecord


@dataclass(frozen=True)
class GateResult:
    n: int
    current_score: float
    proposed_score: float
    wins: int
    losses: int
    p_value: float
    accepted: bool
    reason: str


def mean(xs: Sequence[float]) -> float:
    """The mean of the scores that are numbers (0 if none): an item whose model call failed (NaN) pairs with nothing."""
    ok = [x for x in xs if not math.isnan(x)]
    return sum(ok) / len(ok) if ok else 0.0


def _means(current: Sequence[float], proposed: Sequence[float]) -> tuple[float, float]:
    """Both sides' means over the pairs where both have a score."""
    pairs = [(c, p) for c, p in zip(current, proposed) if not (math.isnan(c) or math.isnan(p))]
    return mean([c for c, _ in pairs]), mean([p for _, p in pairs])


def decide(current: Sequence[float], proposed: Sequence[float], alpha: float = 0.2, planned: int | None = None,
           stopped_early: bool = False) -> GateResult:
    n = len(proposed)
    cur = list(current[:n])
    wins = sum(p > c for p, c in zip(proposed, cur))
    losses = sum(p < c for p, c in zip(proposed, cur))
    p = sign_test_p(wins, losses)
    cs, ps = _means(cur, proposed)
    accepted = wins > losses and p <= alpha and not stopped_early
    if accepted:
        reason = f"won {wins}, lost {losses} of {n} paired items (sign test p={p:.3f} <= {alpha})"
    elif stopped_early:
        reason = f"stopped after {n}/{planned} items: won {wins}, lost {losses}"
    elif wins <= losses:
        reason = f"no gain: won {wins}, lost {losses} of {n} paired items"
    else:
        reason = f"gain not significant: won {wins}, lost {losses} (p={p:.3f} > {alpha})"
    return GateResult(n, cs, ps, wins, losses, p, accepted, reason)


def screen_order(current: Sequence[float], seed: int | None = None) -> list[int]:
    """Item indices with those the current revision scores lowest first; with `seed`, shuffled (reproducibly)
    within each score, so that each candidate is screened on different failed items.

    A fixed screen puts the same few failed items in front of every candidate. When those happen to be
    items no prompt change flips for a small policy, every later candidate stops there, including ones that
    win elsewhere: the loop stalls (measured on object_counting, where a rewrite that won 2 of 24 items and
    lost none was stopped by a screen that held neither)."""
    keys = list(range(len(current)))
    if seed is not None:
        random.Random(seed).shuffle(keys)
    failed = [math.isnan(c) for c in current]  # failed calls (NaN) last
    return sorted(range(len(current)), key=lambda i: (failed[i], 0.0 if failed[i] else current[i], keys[i]))


def screenable(current: Sequence[float], screen: int) -> int:
    """How many leading items of `screen_order` can screen: those where the current revision's reward is below 1."""
    return min(screen, sum(c < 1.0 for c in current))


def sequential_gate(current: Sequence[float], score_proposed: Callable[[int], float], alpha: float = 0.2,
                    reject_margin: int = 3, screen: int = 0) -> GateResult:
    """Score the proposal item by item (`score_proposed(i)`), stopping early when it cannot pass.

    With `screen=k`, the first k items must be ones the current revision fails (see `screen_order`),
    and a proposal that wins none of them is stopped after them."""
    n = len(current)

    def stop(wins: int, losses: int, remaining: int) -> bool:
        seen = n - remaining
        # not one win in half the items, or in the screening items: the edit does not help here
        futile = wins == 0 and (seen >= n // 2 or (screen and seen == screen))
        return remaining > 0 and (losses - wins >= reject_margin or wins + remaining <= losses or futile)

    proposed, _, _ = _score_until(current, score_proposed, stop)
    return decide(current, proposed, alpha, planned=n, stopped_early=len(proposed) < n)


def _tally(proposed: Sequence[float], current: Sequence[float]) -> tuple[int, int]:
    return sum(p > c for p, c in zip(proposed, current)), sum(p < c for p, c in zip(proposed, current))


def _score_until(current: Sequence[float], score_proposed: Callable[[int], float],
                 stop: Callable[[int, int, int], bool]) -> tuple[list[float], int, int]:
    """Score items in order until `stop(wins, losses, items remaining)`; the scores, wins and losses."""
    proposed: list[float] = []
    for i in range(len(current)):
        proposed.append(score_proposed(i))
        if stop(*_tally(proposed, current), len(current) - i - 1):
            break
    return (proposed, *_tally(proposed, current))


def confirm_gate(current: Sequence[float], score_proposed: Callable[[int], float], first: GateResult,
                 alpha: float = 0.2) -> GateResult:
    """Does a gate's winner hold on fresh items? The second stage of a two-stage test.

    Picking the best of many candidates on one validation sample favours the one that was luckiest
    there (the winner's curse). A second, disjoint sample that played no part in the choice must not
    go against the candidate (it loses no more fresh items than it wins), and the sign test over both
    samples together (the gate's `first` result and the fresh pairs) must still give p <= alpha.
    Scoring stops once the fresh sample has turned against it."""
    n = len(current)
    proposed, wins, losses = _score_until(current, score_proposed, lambda w, lo, rest: lo - w > rest)
    m = len(proposed)
    cs, ps = _means(current[:m], proposed)
    p = sign_test_p(first.wins + wins, first.losses + losses)
    accepted = m == n and losses <= wins and p <= alpha
    verdict = "held" if accepted else "did not hold"
    reason = (f"{verdict} on {n} fresh items: won {wins}, lost {losses}" + ("" if m == n else f" (stopped after {m})")
              + f"; both samples: won {first.wins + wins}, lost {first.losses + losses}, p={p:.3f}")
    return GateResult(m, cs, ps, wins, losses, p, accepted, reason)


def no_worse_gate(current: Sequence[float], score_proposed: Callable[[int], float]) -> GateResult:
    """The gate for a revision that only makes the prompt smaller (retire, dedupe, merge, compress).

    Fewer tokens are a gain in themselves, so such a revision needs no win: it is accepted when it loses
    no more paired items than it wins. Scoring stops once the losses can no longer be won back. The
    p-value is the sign test's for "the smaller revision is worse"."""
    n = len(current)
    proposed, wins, losses = _score_until(current, score_proposed, lambda w, lo, rest: lo - w > rest)
    m = len(proposed)
    p = sign_test_p(losses, wins)
    cs, ps = _means(current[:m], proposed)
    accepted = m == n and losses <= wins
    if accepted:
        reason = f"no worse: won {wins}, lost {losses} of {n} paired items, with fewer lesson tokens"
    elif m < n:
        reason = f"worse: stopped after {m}/{n} items, won {wins}, lost {losses}"
    else:
        reason = f"worse: won {wins}, lost {losses} of {n} paired items (p={p:.3f} that it is worse)"
    return GateResult(m, cs, ps, wins, losses, p, accepted, reason)


def record(result: GateResult, scope: str, proposed: Sequence[Edit], *, accepted: bool | None = None, reason: str = "",
           **where: Any) -> GateRecord:
    """The store's record of a gate: `result`'s paired figures, the decision (the result's own unless given) and
    where it happened (`run_id`, `step`, `candidate`, `current_revision`, `reflection_id`)."""
    ok = result.accepted if accepted is None else accepted
    return GateRecord(scope, tuple(proposed), result.n, result.current_score, result.proposed_score, result.wins,
                      result.losses, result.p_value, "accepted" if ok else "rejected", reason or result.reason, **where)
