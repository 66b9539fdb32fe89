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
from pathlib import Path
from typing import Callable

import records  # benchmarks/, beside this script

from secondnature import retrieve
from secondnature.store import LessonStore
from secondnature.store.rows import now
from secondnature.store.sqlite import count_terms

VOCAB = ("count letter word date month day week option answer check list order sort number step carry sum "
         "table object fruit vegetable animal truth false statement premise shuffle swap ball position left right "
         "walk turn north south move sports player team plausible sentence adjective noun verb").split()
PER_SCOPE = 20
CHUNK = 50_000  # lessons written per transaction


def synthetic(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def build(path: Path, n_lessons: int, layout: str, seed: int = 0) -> list[str]:
    """A store of `n_lessons` lessons in head revisions, with learned-on prompts; returns query prompts.

    The rows add_lesson, index_prompts and commit_revision would write, written in bulk (executemany, a transaction
    per CHUNK lessons) so that a store of a million lessons takes minutes, not hours."""
    rng = random.Random(seed)
    s = LessonStore(path)
    n_scopes = 1 if layout == "one-scope" else max(1, n_lessons // PER_SCOPE)
    per = n_lessons if layout == "one-scope" else PER_SCOPE
    queries, seq = [], 0
    for first in range(0, n_scopes, max(1, CHUNK // per)):
        lessons, index, revisions, prompt_rows = [], [], [], []
        with s.transaction() as db:
            for k in range(first, min(n_scopes, first + max(1, CHUNK // per))):
                scope = f"set{k}"
                # a task set's prompts share a template (its own wording) and differ in a few words, like BBH's
                template = f"zq{k}x {synthetic(rng, 10)}"
                prompts = [f"{template} {synthetic(rng, 4)}?" for _ in range(6)]
                prompt_rows += [(scope, f"{scope}-{i}", p) for i, p in enumerate(prompts[:5])]
                queries.append(prompts[5])
                ids = []
                for _ in range(per):
                    seq += 1
                    text = f"{synthetic(rng, rng.randint(8, 30))}."
                    lessons.append((f"L{seq}", seq, text, scope, "[]", "", "", 0, rng.random() / 5, "active", now(),
                                    "[]", ""))
                    index.append((f"L{seq}", scope, text, ""))
                    ids.append(f"L{seq}")
                revisions.append((scope, None, json.dumps(ids), "synthetic", now()))
            db.executemany("INSERT INTO lessons (id, seq, text, scope, evidence, reflection_id, parent, uses, gain, "
                           "status, created_at, tags, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", lessons)
            db.executemany("INSERT INTO lesson_index (id, scope, text, tags) VALUES (?,?,?,?)", index)
            db.executemany("INSERT INTO revisions (scope, parent, lesson_ids, note, created_at) VALUES (?,?,?,?,?)",
                           revisions)
            # as index_prompts writes them; not through it: it reads the scope's prompts first, a scan of the whole
            # index (scope is an UNINDEXED column of the FTS5 table), which makes a build of 50,000 scopes quadratic
            db.executemany("INSERT INTO prompt_index VALUES (?,?,?)", prompt_rows)
            count_terms(db, [prompt for _, _, prompt in prompt_rows])  # the vocabulary routing reads, as it does
    s.close()
    return queries


def tokenizer(name: str) -> tuple[Callable[[str], int], str]:
    """(count_tokens, its name): the packaged policy's tokenizer read from its GGUF with vocab_only (no weights
    loaded, so no model runs), counting as LlamaModel.count_tokens does; or whitespace words."""
    if name == "words":
        return (lambda t: len(t.split())), "words"
    from llama_cpp import Llama

    from secondnature.weights import resolve
    path = resolve("default" if name == "policy" else name)
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return (lambda t: len(llm.tokenize(t.encode("utf-8"), add_bos=False, special=True))), path.stem


def time_queries(s: LessonStore, queries: list[str], budget: int, count: Callable[[str], int], n: int,
                 seed: int = 1) -> dict:
    """`n` queries drawn from `queries`, each timed from its prompt to the rendered system prompt, `cold` (the
    scope's stable block selected afresh) and `warm` (selected once per head revision, as the library does):
    {"cold": ms, "warm": ms, "routed": share routed, "injected": mean lessons injected}."""
    rng = random.Random(seed)
    retrieve.stable_block.cache_clear()  # a closed store's entries could be taken for a new one at the same address
    for q in queries:  # tokenize every lesson once, as a long-running process will have
        retrieve.lessons_for(s, q, budget, count)
    out: dict = {}
    for mode in ("cold", "warm"):  # cold: the scope's stable block is selected afresh for each query
        times, routed, injected = [], 0, []
        if mode == "warm":  # the cold pass cleared the memo: every scope's block selected again once, as before
            for q in queries:
                retrieve.lessons_for(s, q, budget, count)
        for _ in range(n):
            q = rng.choice(queries)
            if mode == "cold":
                retrieve.stable_block.cache_clear()
            t0 = time.perf_counter()
            got = retrieve.lessons_for(s, q, budget, count)
            retrieve.system_prompt("Answer.", got)
            times.append((time.perf_counter() - t0) * 1000)
            routed += got.scope is not None
            injected.append(len(got.lessons))
        out[mode] = times
    return {**out, "routed": routed / n, "injected": statistics.mean(injected)}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--tokenizer", default="policy", choices=["policy", "words"])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "store_scale.json"))
    args = p.parse_args(argv)
    count, name = tokenizer(args.tokenizer)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in args.sizes:
            for layout in ("spread", "one-scope"):
                path = Path(d) / f"{layout}-{n}.db"
                queries = build(path, n, layout)
                s = LessonStore(path)
                got = time_queries(s, queries, args.budget, count, args.queries)
                s.close()
                timed = {mode: (statistics.median(got[mode]), sorted(got[mode])[int(0.95 * len(got[mode])) - 1])
                         for mode in ("cold", "warm")}
                rec = {"benchmark": "store_scale", "layout": layout, "lessons_in_store": n,
                       "select_render_ms": round(timed["warm"][0], 3), "p95_ms": round(timed["warm"][1], 3),
                       "cold_ms": round(timed["cold"][0], 3), "cold_p95_ms": round(timed["cold"][1], 3),
                       "queries": args.queries,
                       "routed": got["routed"], "lessons_injected": got["injected"],
                       "lesson_token_budget": args.budget, "tokenizer": name, "date": records.today(),
                       "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                                  f"python {platform.python_version()}"}
                rows.append(rec)
                print(f"{layout:9s} {n:>6} lessons: median {rec['select_render_ms']:.2f} ms, p95 {rec['p95_ms']:.2f} ms, "
                      f"cold {rec['cold_ms']:.2f} ms (p95 {rec['cold_p95_ms']:.2f}), "
                      f"routed {rec['routed']:.0%}, {rec['lessons_injected']:.1f} lessons injected", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"records: {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
