"""Pair two arms from two `secondnature bench` records of the same task, item by item (seed 0's test scores, and
every seed both records have: seed s of one run against seed s of the other, same split and validation sample).

    python benchmarks/pair_records.py benchmarks/results/A.json:secondnature benchmarks/results/B.json:gepa

For arms trained in separate runs (one ran out of time): the two records' `none` arms show whether they scored the
same test items with the same model and greedy decoding; items where they differ are counted in a warning.
Prints b - a with its interval.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from secondnature.stats import paired_bootstrap, paired_over_seeds


def load(spec: str) -> tuple[dict, dict]:
    path, _, arm = spec.rpartition(":")
    records = {r["arm"]: r for r in json.loads(Path(path).read_text())}
    for name in (arm, "none"):  # the none arm is what shows whether the two runs scored alike
        if name not in records:
            sys.exit(f"{path} has no arm {name!r} (it has {', '.join(records)}); give a record of `secondnature bench`")
    return records[arm], records["none"]


def main(a_spec: str, b_spec: str) -> None:
    (a, a_none), (b, b_none) = load(a_spec), load(b_spec)
    if a["task"] != b["task"] or len(a_none["test_scores"][0]) != len(b_none["test_scores"][0]):
        sys.exit("the two records did not score the same task's items")
    moved = sum(1 for p, q in zip(a_none["test_scores"][0], b_none["test_scores"][0]) if p != q)
    if moved:  # a rebuilt llama.cpp can flip a greedy answer or two: say so beside the figure
        print(f"warning: the none arms differ on {moved} item(s): the runs' models did not decode identically")
    x, y = a["test_scores"][0], b["test_scores"][0]
    d, (lo, hi) = paired_bootstrap(x, y)
    right = [(p > 0, q > 0) for p, q in zip(x, y)]
    both, only_a, only_b = right.count((True, True)), right.count((True, False)), right.count((False, True))
    na, nb = a["arm"], b["arm"]
    if na == nb:  # the same arm from two runs (two versions of the loop): name them by their records
        na, nb = (f"{n} ({Path(spec.rpartition(':')[0]).stem})" for n, spec in ((na, a_spec), (nb, b_spec)))
    print(f"{nb} {100 * sum(y) / len(y):.1f}% - {na} {100 * sum(x) / len(x):.1f}% on {len(x)} {a['task']} "
          f"items: {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]; right in both {both}, "
          f"only {na} {only_a}, only {nb} {only_b}")
    seeds = min(len(a["test_scores"]), len(b["test_scores"]))
    if seeds > 1:  # the interval resamples seeds and items together, so it covers seed variance too
        d, (lo, hi) = paired_over_seeds(a["test_scores"], b["test_scores"])
        print(f"over {seeds} seeds: {nb} - {na} {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
