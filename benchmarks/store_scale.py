"""Latency of choosing and rendering one query's lessons as the store grows (a benchmark, not a test).

    python benchmarks/store_scale.py                  # 100, 1k, 10k lessons; the packaged policy's tokenizer
    python benchmarks/store_scale.py --sizes 100 1000 --tokenizer words

Two layouts per size: `spread` (20 lessons per task set, so 10k lessons is 500 task sets; each query
is routed by its prompt and gets one task set's lessons) and `one-scope` (every lesson in the head
revision of a single task set, the worst case for selection under the token budget). A query is
timed from its prompt to the rendered system prompt: routing, reading the head revision, selection
under a 300-token budget, render. Token counts are memoised per lesson text, as in a long-running
process (every query is run once untimed first). `warm`: a scope's stable block is selected once per
head revision and reused, as the library does; `cold`: that memo is cleared before every query, so
each one reads and selects its scope's whole revision. Records go to
benchmarks/results/store_scale.json with `lessons_in_store` and `select_render_ms` (warm median).
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from secondnature import retrieve
from secondnature.store import LessonStore
from secondnature.types import Lesson

VOCAB = ("count letter word date month day week option answer check list order sort number step carry sum "
         "table object fruit vegetable animal truth false statement premise shuffle swap ball position left right "
         "walk turn north south move sports player team plausible sentence adjective noun verb").split()
PER_SCOPE = 20


def synthetic(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def build(path: Path, n_lessons: int, layout: str, seed: int = 0) -> list[str]:
    """A store of `n_lessons` lessons in head revisions, with learned-on prompts; returns query prompts."""
    rng = random.Random(seed)
    s = LessonStore(path)
    n_scopes = 1 if layout == "one-scope" else max(1, n_lessons // PER_SCOPE)
    queries = []
    for k in range(n_scopes):
        scope = f"set{k}"
        # a task set's prompts share a template (its own wording) and differ in a few words, like BBH's
        template = f"zq{k}x {synthetic(rng, 10)}"
        prompts = [f"{template} {synthetic(rng, 4)}?" for _ in range(6)]
        s.index_prompts(scope, [(f"{scope}-{i}", p) for i, p in enumerate(prompts[:5])])
        queries.append(prompts[5])
        per = n_lessons if layout == "one-scope" else PER_SCOPE
        ids = []
        for _ in range(per):
            lesson = s.add_lesson(Lesson("", f"{synthetic(rng, rng.randint(8, 30))}.", scope, gain=rng.random() / 5))
            ids.append(lesson.id)
        s.commit_revision(scope, ids, "synthetic")
    s.close()
    return queries


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--tokenizer", default="policy", choices=["policy", "words"])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "store_scale.json"))
    args = p.parse_args(argv)
    if args.tokenizer == "policy":
        from secondnature.models import load_model
        policy = load_model("default")
        count, tokenizer = policy.count_tokens, policy.name
    else:
        count, tokenizer = (lambda t: len(t.split())), "words"
    records = []
    with tempfile.TemporaryDirectory() as d:
        for n in args.sizes:
            for layout in ("spread", "one-scope"):
                path = Path(d) / f"{layout}-{n}.db"
                queries = build(path, n, layout)
                s = LessonStore(path)
                rng = random.Random(1)
                for q in queries:  # tokenize every lesson once, as a long-running process will have
                    retrieve.lessons_for(s, q, args.budget, count)
                timed = {}
                for mode in ("cold", "warm"):  # cold: the scope's stable block is selected afresh for each query
                    times, routed, injected = [], 0, []
                    for _ in range(args.queries):
                        q = rng.choice(queries)
                        if mode == "cold":
                            retrieve.stable_block.cache_clear()
                        t0 = time.perf_counter()
                        got = retrieve.lessons_for(s, q, args.budget, count)
                        retrieve.system_prompt("Answer.", got)
                        times.append((time.perf_counter() - t0) * 1000)
                        routed += got.scope is not None
                        injected.append(len(got.lessons))
                    times.sort()
                    timed[mode] = (statistics.median(times), times[int(0.95 * len(times)) - 1])
                s.close()
                rec = {"benchmark": "store_scale", "layout": layout, "lessons_in_store": n,
                       "select_render_ms": round(timed["warm"][0], 3), "p95_ms": round(timed["warm"][1], 3),
                       "cold_ms": round(timed["cold"][0], 3), "cold_p95_ms": round(timed["cold"][1], 3),
                       "queries": args.queries,
                       "routed": routed / args.queries, "lessons_injected": statistics.mean(injected),
                       "lesson_token_budget": args.budget, "tokenizer": tokenizer, "date": str(date.today()),
                       "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                                  f"python {platform.python_version()}"}
                records.append(rec)
                print(f"{layout:9s} {n:>6} lessons: median {rec['select_render_ms']:.2f} ms, p95 {rec['p95_ms']:.2f} ms, "
                      f"cold {rec['cold_ms']:.2f} ms (p95 {rec['cold_p95_ms']:.2f}), "
                      f"routed {rec['routed']:.0%}, {rec['lessons_injected']:.1f} lessons injected", flush=True)
    Path(args.out).write_text(json.dumps(records, indent=1))
    print(f"records: {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
