"""The statistics behind every figure: the sign test a gate decides with, Wilson intervals for accuracy, and
bootstrap intervals for paired differences (over items, or over seeds and items together)."""
from __future__ import annotations

import math
import random
from collections.abc import Sequence


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact binomial p-value of seeing >= wins out of wins+losses under a fair coin."""
    m = wins + losses
    if m == 0:
        return 1.0
    return sum(math.comb(m, k) for k in range(wins, m + 1)) / 2 ** m


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (k may be fractional for partial rewards)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the exact interval always contains p; clamp so rounding cannot push a bound past it (0/n must give lo == 0)
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 5000,
                     seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean of b - a over paired items, with a 95% percentile bootstrap interval."""
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    if n == 0:
        return 0.0, (0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return sum(d) / n, (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def seed_item_bootstrap(values: Sequence[Sequence[float]], *, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean over (seed, item) with a 95% interval that resamples seeds and items together.

    `values[s][i]` is seed s on test item i (every seed sees the same items). With one seed this is an
    ordinary item bootstrap; with more, an unlucky seed widens the interval as it should."""
    s_n, i_n = len(values), len(values[0]) if values else 0
    if not s_n or not i_n:
        return 0.0, (0.0, 0.0)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        seeds = [rng.randrange(s_n) for _ in range(s_n)]
        items = [rng.randrange(i_n) for _ in range(i_n)]
        means.append(sum(values[s][i] for s in seeds for i in items) / (s_n * i_n))
    means.sort()
    mean = sum(map(sum, values)) / (s_n * i_n)
    return mean, (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def paired_over_seeds(base: Sequence[Sequence[float]],
                      other: Sequence[Sequence[float]]) -> tuple[float, tuple[float, float]]:
    """other - base, item by item within each seed (seed s against seed s; the shorter list sets how many), with
    the interval of seed_item_bootstrap, so it covers seed variance too."""
    return seed_item_bootstrap([[b - a for a, b in zip(x, y)] for x, y in zip(base, other)])
