"""The gate's statistics and decision rule: exact sign test, accept only on a significant win, early stop."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secondnature.gate import decide, screen_order, screenable, sequential_gate
from secondnature.stats import paired_bootstrap, sign_test_p, wilson

scores = st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=30)


@pytest.mark.parametrize("wins, losses, p", [(3, 0, 0.125), (4, 1, 0.1875), (0, 0, 1.0), (0, 3, 1.0),
                                             (5, 0, 1 / 32), (1, 1, 0.75)])
def test_sign_test_exact_values(wins: int, losses: int, p: float) -> None:
    assert sign_test_p(wins, losses) == pytest.approx(p, abs=1e-12)


@given(st.integers(0, 40), st.integers(0, 40))
def test_sign_test_is_a_probability_that_falls_with_more_wins(wins: int, losses: int) -> None:
    p = sign_test_p(wins, losses)
    assert 0.0 <= p <= 1.0
    assert sign_test_p(wins + 1, losses) < p or wins + losses == 0


def test_decide_accepts_a_significant_win_and_records_means() -> None:
    r = decide([0, 0, 0, 1], [1, 1, 1, 1], alpha=0.2)
    assert r.accepted and (r.wins, r.losses, r.n) == (3, 0, 4)
    assert r.p_value == pytest.approx(0.125)
    assert (r.current_score, r.proposed_score) == (0.25, 1.0)
    assert "won 3" in r.reason


def test_decide_rejects_a_win_that_is_not_significant() -> None:
    r = decide([0, 0, 1, 1], [1, 1, 0, 1], alpha=0.2)  # 2 wins, 1 loss: p = 0.5
    assert not r.accepted and (r.wins, r.losses) == (2, 1)
    assert "not significant" in r.reason


def test_decide_rejects_ties_and_losses_whatever_alpha() -> None:
    assert not decide([1, 1], [1, 1], alpha=1.0).accepted
    assert not decide([1, 0], [0, 1], alpha=1.0).accepted
    assert not decide([1, 1, 1], [0, 0, 0], alpha=1.0).accepted


def test_decide_compares_only_the_items_proposed() -> None:
    r = decide([0, 0, 0, 1, 1, 1], [1, 1, 1])
    assert r.n == 3 and r.current_score == 0.0 and r.accepted


@settings(max_examples=200)
@given(pairs=st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([0.0, 0.5, 1.0])),
                      min_size=1, max_size=30),
       alpha=st.sampled_from([0.05, 0.2, 0.5]))
def test_decide_rule(pairs: list[tuple[float, float]], alpha: float) -> None:
    current, proposed = [c for c, _ in pairs], [p for _, p in pairs]
    r = decide(current, proposed, alpha)
    wins = sum(p > c for c, p in pairs)
    losses = sum(p < c for c, p in pairs)
    assert (r.wins, r.losses, r.n) == (wins, losses, len(pairs))
    assert r.accepted == (wins > losses and sign_test_p(wins, losses) <= alpha)
    assert r.current_score == pytest.approx(sum(current) / len(pairs))
    assert r.proposed_score == pytest.approx(sum(proposed) / len(pairs))


def test_sequential_gate_stops_once_the_margin_is_lost() -> None:
    current = [1.0] * 20
    calls: list[int] = []

    def score(i: int) -> float:
        calls.append(i)
        return 0.0

    r = sequential_gate(current, score, reject_margin=3)
    assert calls == [0, 1, 2]
    assert not r.accepted and r.n == 3 and r.losses == 3
    assert "stopped after 3/20" in r.reason


def test_sequential_gate_stops_an_edit_that_changes_nothing_at_half() -> None:
    calls: list[int] = []
    r = sequential_gate([0.0] * 24, lambda i: calls.append(i) or 0.0, alpha=0.2)
    assert len(calls) == 12 and not r.accepted and "stopped after 12/24" in r.reason


def test_screening_stops_a_proposal_that_wins_none_of_the_failed_items() -> None:
    base = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0] * 2 + [1.0] * 4
    order = screen_order(base)
    ordered = [base[i] for i in order]
    assert ordered[:12] == [0.0] * 12 and order[:3] == [1, 3, 4]  # failed items first, stably
    k = screenable(ordered, 6)
    calls: list[int] = []
    r = sequential_gate(ordered, lambda i: calls.append(i) or ordered[i], screen=k)
    assert (k, len(calls)) == (6, 6) and not r.accepted and "stopped after 6/24" in r.reason
    # one win among the screened items: the gate goes on to every item and decides as without screening
    proposed = [1.0] + ordered[1:]
    r = sequential_gate(ordered, lambda i: proposed[i], screen=k)
    assert r.n == 24 and r == decide(ordered, proposed)


def test_screenable_counts_only_items_that_can_be_beaten() -> None:
    assert screenable([1.0, 1.0, 0.5, 0.0], 6) == 2
    assert screenable([1.0] * 5, 6) == 0
    assert screenable([0.0] * 30, 6) == 6


def test_sequential_gate_scores_everything_for_a_winner() -> None:
    current = [0.0] * 6
    calls: list[int] = []
    r = sequential_gate(current, lambda i: calls.append(i) or 1.0, alpha=0.2)
    assert calls == list(range(6))
    assert r.accepted and r.wins == 6


@settings(max_examples=300)
@given(pairs=st.lists(st.tuples(st.sampled_from([0.0, 1.0]), st.sampled_from([0.0, 1.0])), min_size=1, max_size=25),
       margin=st.integers(1, 5), screen=st.integers(0, 6))
def test_sequential_gate_never_accepts_when_stopped_early(pairs: list[tuple[float, float]], margin: int,
                                                          screen: int) -> None:
    pairs = sorted(pairs, key=lambda cp: cp[0])  # as screen_order puts them
    current, proposed = [c for c, _ in pairs], [p for _, p in pairs]
    screen = screenable(current, screen)
    calls: list[int] = []

    def score(i: int) -> float:
        calls.append(i)
        return proposed[i]

    r = sequential_gate(current, score, reject_margin=margin, screen=screen)
    assert calls == list(range(len(calls)))  # in order, each item once
    assert r.n == len(calls)
    if len(calls) < len(current):
        assert not r.accepted
        seen = list(zip(current, proposed))[:len(calls)]
        wins, losses = sum(p > c for c, p in seen), sum(p < c for c, p in seen)
        remaining = len(current) - len(calls)
        futile = wins == 0 and (len(calls) >= len(current) // 2 or len(calls) == screen)
        assert losses - wins >= margin or wins + remaining <= losses or futile  # it had a reason to stop
    else:
        assert r == decide(current, proposed)


@settings(max_examples=300)
@given(n=st.integers(1, 2000), frac=st.floats(0, 1), whole=st.booleans())
def test_wilson_interval_is_in_unit_range_and_contains_p(n: int, frac: float, whole: bool) -> None:
    k = round(frac * n) if whole else frac * n
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_edges() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.0 < hi < 0.4
    assert wilson(10, 10)[1] == 1.0
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(1 - hi)  # symmetric around 1/2
    lo100, hi100 = wilson(50, 100)
    assert hi100 - lo100 < hi - lo  # more items, narrower interval


def test_paired_bootstrap_identical_lists() -> None:
    assert paired_bootstrap([0, 1, 1, 0, 0.5], [0, 1, 1, 0, 0.5]) == (0.0, (0.0, 0.0))
    assert paired_bootstrap([], []) == (0.0, (0.0, 0.0))


def test_paired_bootstrap_constant_difference() -> None:
    diff, (lo, hi) = paired_bootstrap([0.0] * 10, [1.0] * 10, resamples=500)
    assert diff == 1.0 and lo == pytest.approx(1.0) and hi == pytest.approx(1.0)


def test_paired_bootstrap_interval_brackets_the_mean_and_is_reproducible() -> None:
    a = [0, 0, 1, 0, 1, 0, 0, 1, 0, 0]
    b = [1, 0, 1, 1, 1, 0, 1, 1, 0, 0]
    diff, (lo, hi) = paired_bootstrap(a, b, seed=3)
    assert diff == pytest.approx(0.3)
    assert lo <= diff <= hi and lo < hi
    assert paired_bootstrap(a, b, seed=3) == (diff, (lo, hi))
    assert math.isclose(paired_bootstrap(b, a, seed=3)[0], -diff)


def test_confirm_gate_pools_both_samples_and_refuses_a_reversal() -> None:
    from secondnature.gate import confirm_gate
    first = decide([0.0] * 24, [1.0] * 8 + [0.0] * 16)  # the gate: won 8, lost 0
    tie = confirm_gate([1.0, 0.0, 1.0, 0.0], lambda i: [0.0, 1.0, 1.0, 0.0][i], first)
    assert tie.accepted and (tie.wins, tie.losses) == (1, 1) and "won 9, lost 1" in tie.reason
    calls: list[int] = []
    worse = confirm_gate([1.0] * 6, lambda i: calls.append(i) or 0.0, first)
    assert not worse.accepted and len(calls) == 4 and "did not hold" in worse.reason  # 4 losses: no way back
    weak = decide([0.0] * 24, [1.0] * 2 + [0.0] * 22)  # won 2, lost 0 (p=0.25): pooled with a tie, still weak
    assert not confirm_gate([1.0, 0.0], lambda i: [1.0, 0.0][i], weak).accepted


def test_each_candidate_gets_its_own_draw_of_the_failed_items_to_screen_on() -> None:
    base = [0.0] * 18 + [1.0] * 6
    orders = [screen_order(base, seed=s) for s in range(20)]
    assert all(sorted(o) == list(range(24)) and set(o[:18]) == set(range(18)) for o in orders)  # failed first
    assert orders[3] == screen_order(base, seed=3)  # reproducible
    assert len({tuple(o[:6]) for o in orders}) == 20  # different screens
    assert len({i for o in orders for i in o[:6]}) == 18  # between them, every failed item is screened on
