"""Benchmark: test accuracy with no lessons vs with the revision learned by `secondnature learn`.

Both arms run in this one process on the same policy, the same held-out test items and the same
seed (greedy decoding, so the comparison is paired item by item). Usage:

    python benchmarks/lesson_loop.py letters:medium,hard --budget 400
    python benchmarks/lesson_loop.py bbh/object_counting --budget 400

Writes benchmarks/results/<name>.json (a list of records) and keeps the run's store in
benchmarks/runs/<name>.db (not committed) so the lessons' evidence can be inspected.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

from secondnature.evaluate import evaluate, majority_reference, paired, split_tasks
from secondnature.learn import LearnConfig, learn
from secondnature.models import CachedModel, load_model
from secondnature.rewards import extract_answer
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset

HERE = Path(__file__).parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("taskset")
    ap.add_argument("--name", default=None)
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--val-size", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default="default")
    ap.add_argument("--reflector", default="reflector")
    ap.add_argument("--lesson-tokens", type=int, default=400)
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--test-limit", type=int, default=None)
    args = ap.parse_args()
    name = args.name or args.taskset.replace("/", "_").replace(":", "_").replace(",", "_")
    (HERE / "runs").mkdir(exist_ok=True)
    (HERE / "results").mkdir(exist_ok=True)
    db = HERE / "runs" / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = LessonStore(db)
    taskset = load_taskset(args.taskset)
    policy = CachedModel(load_model(args.policy), store)
    reflector = CachedModel(load_model(args.reflector, n_ctx=8192), store)
    test = split_tasks(taskset, "test", limit=args.test_limit)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    common = {"task": taskset.name, "policy": policy.name, "reflector": reflector.name, "split": "test",
              "seed": args.seed, "command": command, "date": date.today().isoformat(),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, llama.cpp CPU"}

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    log(f"{taskset.name}: {len(test)} test items; arm none")
    t0 = time.perf_counter()
    none = evaluate(policy, taskset, test, [], lesson_tokens=args.lesson_tokens, max_tokens=args.max_tokens,
                    seed=args.seed)
    log(f"none: {none.accuracy:.3f} {none.ci95} in {none.wall_s:.0f}s")
    t1 = time.perf_counter()
    config = LearnConfig(budget=args.budget, val_size=args.val_size, seed=args.seed,
                         lesson_tokens=args.lesson_tokens, max_tokens=args.max_tokens)
    result = learn(policy, reflector, taskset, store, config, progress=lambda n, m: m and log(m))
    learn_s = time.perf_counter() - t1
    lessons = store.revision_lessons(result.revision)
    log(f"learned {len(lessons)} lessons with {result.rollouts_used} rollouts in {learn_s:.0f}s")
    sn = evaluate(policy, taskset, test, lessons, lesson_tokens=args.lesson_tokens, max_tokens=args.max_tokens,
                  seed=args.seed)
    diff, ci = paired(none, sn)
    log(f"secondnature: {sn.accuracy:.3f} {sn.ci95}; diff {diff:+.3f} {ci}")

    def answers(r) -> dict:  # what the arm answered, to tell a learned skill from a shift towards one answer
        return dict(Counter(str(extract_answer(c)) for c in r.completions).most_common(8))
    log(f"answers: none {answers(none)}; secondnature {answers(sn)}")
    from secondnature.gate import wilson
    majority, const = majority_reference(taskset, test)
    const_diff, const_ci = paired(none, replace(none, scores=const))
    records = [
        {**common, "arm": "majority", "answer": majority, "n": len(const), "accuracy": sum(const) / len(const),
         "ci95": list(wilson(sum(const), len(const))), "diff_vs_none": const_diff, "diff_ci95": list(const_ci),
         "rollouts": 0, "lesson_tokens": 0, "wall_s": 0.0},
        {**common, "arm": "none", "n": none.n, "accuracy": none.accuracy, "ci95": list(none.ci95),
         "diff_vs_none": 0.0, "diff_ci95": [0.0, 0.0], "rollouts": 0, "lesson_tokens": 0,
         "wall_s": round(none.wall_s, 1), "eval_completion_tokens": none.completion_tokens,
         "answers": answers(none)},
        {**common, "arm": "secondnature", "n": sn.n, "accuracy": sn.accuracy, "ci95": list(sn.ci95),
         "diff_vs_none": diff, "diff_ci95": list(ci), "rollouts": result.rollouts_used,
         "train_rollouts": result.train_rollouts, "val_rollouts": result.val_rollouts,
         "reflections": result.reflections, "accepted": result.accepted, "rejected": result.rejected,
         "lesson_tokens": sn.lesson_tokens, "wall_s": round(learn_s + sn.wall_s, 1), "learn_wall_s": round(learn_s, 1),
         "eval_completion_tokens": sn.completion_tokens, "answers": answers(sn),
         "revision": result.revision.id if result.revision else None,
         "lessons": [{"id": x.id, "text": x.text, "gain": x.gain} for x in lessons],
         "val_curve": list(result.history)},
    ]
    out = HERE / "results" / f"{name}.json"
    out.write_text(json.dumps(records, indent=1))
    from secondnature.plots import learning_curve
    png = learning_curve(result.history, HERE / "results" / f"{name}_curve.png", f"{taskset.name}: validation during learn")
    log(f"wrote {out} and {png} (total {time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
