"""How fast the web page answers as a store grows: each page over real HTTP (uvicorn, one process) against stores of
10,000 and 100,000 lessons and as many rollouts, the median time of a request with its 95% interval.

    python benchmarks/ui_speed.py            # writes benchmarks/results/ui_speed.json (a few minutes)

The goal it checks: a page of a store with 10,000 lessons or rollouts renders in under 300 ms."""
from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import records  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "ui_speed.json"
SIZES = (10_000, 100_000)
REPEATS = 30
GOAL_MS = 300
WORDS = "carry digit column units count letters answer check tool python spell word number sum total".split()


def build(path: Path, n: int) -> str:
    """A store of n lessons in one scope, n rollouts over 200 tasks (each under one of 50 lesson sets), 500 gates."""
    from secondnature.store import open_store
    from secondnature.types import Edit, GateRecord, Lesson, Rollout, Score
    rng = random.Random(n)
    store = open_store(path)
    with store.transaction():
        ids = [store.add_lesson(Lesson("", " ".join(rng.choices(WORDS, k=14)).capitalize() + ".", "big",
                                       gain=rng.random() / 4)).id for _ in range(n)]
        store.commit_revision("big", ids[-40:], "head")
        sets = [tuple(rng.sample(ids[-40:], 5)) for _ in range(50)]
        rollouts = [Rollout(f"r{i}", f"t{i % 200}", ({"role": "system", "content": "S"},
                                                     {"role": "user", "content": f"question {i}"},
                                                     {"role": "assistant", "content": "Answer: 3"}),
                            "Answer: 3", Score(float(rng.random() < 0.5), "checked"), sets[i % 50], "m", 0, 0,
                            purpose=rng.choice(["train", "val"])) for i in range(n)]
        for i in range(0, n, 5000):
            store.add_rollouts(rollouts[i:i + 5000], run_id=1, scope="big")
        for i in range(500):
            store.add_gate(GateRecord("big", (Edit("add", "Check the units."),), 24, 0.5, 0.6, 5, 2, 0.22,
                                      "rejected", "did not win enough", run_id=1, step=i, candidate=0))
    store.close()
    return ids[n // 2]


def timed(client, url: str) -> list[float]:
    for _ in range(3):  # warm: templates compiled, pages cached by SQLite
        client.get(url).raise_for_status()
    out = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        client.get(url).raise_for_status()
        out.append(1000 * (time.perf_counter() - t))
    return out


def median_ci(xs: list[float]) -> tuple[float, float]:
    """A 95% interval for the median: the order statistics a binomial(n, 1/2) puts 95% between."""
    s, n = sorted(xs), len(xs)
    lo = max(0, int(n / 2 - 1.96 * n ** 0.5 / 2))
    return s[lo], s[min(n - 1, n - 1 - lo)]


def measure(n: int) -> list[dict]:
    import httpx2
    sys.path.insert(0, str(ROOT / "tests"))
    from responder import serve_in_thread

    from secondnature.store import open_store
    from secondnature.web import make_ui
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store.db"
        t = time.perf_counter()
        middle = build(path, n)
        print(f"{n} lessons and rollouts written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        opened: dict = {}
        url, server = serve_in_thread(make_ui(lambda _r: opened.setdefault("s", open_store(path))))
        base = url.removesuffix("/v1")
        pages = {"lessons, first page": "/lessons", "lessons, last page": f"/lessons?page={n // 50}",
                 "lessons, full-text search": "/lessons?q=carry+column", "lessons, one kind": "/lessons?kind=rule",
                 "rollouts, first page": "/rollouts", "rollouts, last page": f"/rollouts?page={n // 50}",
                 "gates": "/gates", "one lesson": f"/lessons/{middle}"}
        out = []
        with httpx2.Client(base_url=base, timeout=60) as client:
            for name, page in pages.items():
                ms = timed(client, page)
                lo, hi = median_ci(ms)
                out.append({"rows": n, "page": name, "path": page, "median_ms": statistics.median(ms), "ci95": [lo, hi],
                            "max_ms": max(ms), "repeats": REPEATS, "under_goal": statistics.median(ms) < GOAL_MS})
                print(f"{n:>7} {name:<28} {statistics.median(ms):7.1f} ms [{lo:.1f}, {hi:.1f}]", file=sys.stderr)
        server.should_exit = True
    return out


def main() -> None:
    head = records.header("python benchmarks/ui_speed.py")  # the code that runs: taken before it runs
    rows = [r for n in SIZES for r in measure(n)]
    record = {**head, "goal_ms": GOAL_MS, "results": rows}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


def section() -> list[str]:
    """The record for BENCHMARKS.md (benchmarks/report.py), if there is one."""
    if not OUT.exists():
        return []
    r = json.loads(OUT.read_text())
    lines = ["### The web page as the store grows", "",
             f"{records.preamble(r, 'ui_speed.json')}. Each page over "
             f"real HTTP (uvicorn, one process), {r['results'][0]['repeats']} requests after 3 warm ones; the median "
             f"with its 95% interval, in milliseconds. Goal: under {r['goal_ms']} ms at 10,000 rows.", "",
             "| rows | page | median ms [95% CI] | slowest |", "|---|---|---|---|"]
    for x in r["results"]:
        lines.append(f"| {x['rows']:,} | {x['page']} | {x['median_ms']:.1f} [{x['ci95'][0]:.1f}, {x['ci95'][1]:.1f}] "
                     f"| {x['max_ms']:.1f} |")
    return lines + [""]


if __name__ == "__main__":
    main()
