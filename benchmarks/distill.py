"""Second nature, measured: a learned revision distilled into a LoRA adapter, scored side by side with the
lessons it came from (a benchmark script; BENCHMARKS.md's distillation section comes from it).

    python benchmarks/distill.py letters:medium,hard --store ~/.secondnature/bench/letters_medium_hard-s0.db \
        --collapse bbh/object_counting --name distill_letters

Arms, all greedy on the same test items and the same policy file, so they pair item by item:
none (bare policy), secondnature (the revision's lessons in the prompt), distilled (the adapter, no
lessons: 0 lesson tokens), distilled+lessons. Retained gain = (distilled - none) / (secondnature - none),
with a 95% paired-bootstrap interval (items resampled, the ratio recomputed). The collapse check scores
the bare policy and the adapter on a task set the adapter never saw. The store is copied first, so the
learned store is left as it was; model calls go through the bench cache and a rerun replays them.
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import records  # benchmarks/, beside this script

from secondnature.evaluate import evaluate, majority_reference, paired, split_tasks
from secondnature.evidence import final_label
from secondnature.models import CachedModel, load_model
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset
from secondnature.train.distill import DistillConfig, distill
from secondnature.weights import home

RESULTS = Path(__file__).parent / "results"
RUNS = Path(__file__).parent / "runs"


def retained_gain(none: list[float], lessons: list[float], distilled: list[list[float]], resamples: int = 5000,
                  seed: int = 0) -> tuple[float | None, tuple[float | None, float | None], float]:
    """(distilled - none) / (lessons - none) over every (distillation seed, item), its 95% bootstrap interval, and
    the share of resamples where the lessons' own gain was <= 0 (the ratio is then undefined and left out).

    `distilled` holds one score list per distillation seed; `none` and `lessons` are greedy, the same for every
    seed. With several seeds a resample draws seeds and items together; with one it is an item bootstrap."""
    s_n, n = len(distilled), len(none)

    def ratio(seeds: list[int], items: list[int]) -> float | None:
        lift = sum(lessons[i] - none[i] for i in items) * len(seeds)
        return sum(distilled[s][i] - none[i] for s in seeds for i in items) / lift if lift > 0 else None

    point = ratio(list(range(s_n)), list(range(n)))
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        seeds = [rng.randrange(s_n) for _ in range(s_n)] if s_n > 1 else [0]
        draws.append(ratio(seeds, [rng.randrange(n) for _ in range(n)]))
    ok = sorted(d for d in draws if d is not None)
    if not ok:
        return point, (None, None), 1.0
    return point, (ok[int(0.025 * len(ok))], ok[int(0.975 * len(ok)) - 1]), 1 - len(ok) / resamples


def plot(records: list[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    main = [r for r in records if r.get("benchmark") == "distill" and r["ci95"][0] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(main))
    acc = [r["accuracy"] * 100 for r in main]
    err = [[(r["accuracy"] - r["ci95"][0]) * 100 for r in main], [(r["ci95"][1] - r["accuracy"]) * 100 for r in main]]
    ax.bar(xs, acc, yerr=err, capsize=4, color=["#999", "#4c72b0", "#dd8452", "#55a868"][:len(main)])
    ax.set_xticks(list(xs), [f"{r['arm']}\n({r['lesson_tokens']} lesson tok)" for r in main])
    ax.set_ylabel("test accuracy, % (95% CI)")
    for r in records:
        if str(r.get("arm", "")).startswith("majority"):
            ax.axhline(r["accuracy"] * 100, color="k", ls="--", lw=1, label=f"always {r['arm'][9:].strip('()')}")
            ax.legend(loc="upper left", fontsize=8)
    refs = [r["accuracy"] * 100 for r in records if str(r.get("arm", "")).startswith("majority")]
    ax.set_ylim(0, min(100, max([r["ci95"][1] * 100 for r in main] + refs) + 8))  # room for the reference line's label
    ax.set_title(f"{main[0]['task']}: lessons in the prompt vs distilled into weights")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("taskset")
    ap.add_argument("--store", required=True, help="the learned store (copied, not changed)")
    ap.add_argument("--collapse", default="bbh/object_counting", help="a task set the adapter is not trained on")
    ap.add_argument("--limit", type=int, default=None, help="first N test items")
    ap.add_argument("--collapse-limit", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--match", choices=["tokens", "logits"], default="logits")
    ap.add_argument("--no-balance", action="store_true", help="keep the leading answer's surplus of examples")
    ap.add_argument("--min-reward", type=float, default=1.0,
                    help="keep teacher answers scoring at least this (0: every answer, mistakes included)")
    ap.add_argument("--seed", type=int, default=0, help="teacher sampling and training order")
    ap.add_argument("--name", default="distill")
    args = ap.parse_args(argv)

    ts = load_taskset(args.taskset)
    RUNS.mkdir(exist_ok=True)
    work = RUNS / f"{args.name}.db"
    shutil.copy(Path(args.store).expanduser(), work)
    store = LessonStore(work)
    cache = LessonStore(home() / "bench" / "cache.db")
    base = load_model("default")
    policy = CachedModel(base, cache)
    lessons = store.revision_lessons(store.head(ts.name))
    config = DistillConfig(tasks=args.tasks, samples=args.samples, epochs=args.epochs, rank=args.rank, lr=args.lr,
                           max_tokens=args.max_tokens, balance=not args.no_balance, match=args.match,
                           min_reward=args.min_reward, seed=args.seed)

    def say(_n: int, message: str) -> None:
        if message:
            print(message, flush=True)

    d = distill(policy, ts, store, config, progress=say, out=RUNS / f"{args.name}.gguf")
    print(f"teacher {d.teacher_accuracy:.1%} of {d.teacher_rollouts}; {d.examples} examples; loss "
          f"{d.report.losses[0]:.3f} -> {d.report.losses[-1]:.3f} in {d.report.seconds:.0f} s", flush=True)
    student = CachedModel(load_model(str(d.adapter)), cache)
    tasks = split_tasks(ts, "test", limit=args.limit)

    def run(model, lessons_):
        return evaluate(model, ts, tasks, lessons_, max_tokens=args.max_tokens)

    arms = {"none": run(policy, []), "secondnature": run(policy, lessons), "distilled": run(student, []),
            "distilled+lessons": run(student, lessons)}
    common = {"task": ts.name, "policy": policy.name, "split": "test", "date": records.today(),
              "machine": records.machine(), "revision": d.revision,
              "command": "python benchmarks/distill.py " + " ".join(shlex.quote(a) for a in argv)}
    rows = []
    for arm, r in arms.items():
        diff, ci = paired(arms["none"], r)
        rows.append({**common, "benchmark": "distill", "arm": arm, "n": r.n, "accuracy": r.accuracy,
                     "ci95": list(r.ci95), "diff_vs_none": diff, "diff_ci95": list(ci),
                     "lesson_tokens": r.lesson_tokens, "prompt_tokens": r.prompt_tokens,
                     "answers": dict(Counter(final_label(c) for c in r.completions).most_common(6)),
                     "scores": list(r.scores)})  # in test order: to pair across runs and seeds
        print(f"{arm:18s} {r.accuracy:.1%} [{r.ci95[0]:.1%}, {r.ci95[1]:.1%}]  vs none {diff:+.3f} "
              f"[{ci[0]:+.3f}, {ci[1]:+.3f}]  lesson tokens {r.lesson_tokens}  answers {rows[-1]['answers']}",
              flush=True)
    answer, const = majority_reference(ts, tasks)
    rows.append({**common, "benchmark": "distill", "arm": f"majority ('{answer}')", "n": len(const),
                 "accuracy": sum(const) / len(const), "ci95": [None, None], "diff_vs_none": None,
                 "diff_ci95": [None, None], "lesson_tokens": 0, "prompt_tokens": 0})
    print(f"always '{answer}' scores {sum(const) / len(const):.1%}: a student that learned only the prior scores that")
    point, (lo, hi), undefined = retained_gain(list(arms["none"].scores), list(arms["secondnature"].scores),
                                               [list(arms["distilled"].scores)])
    summary = {**common, "benchmark": "distill_summary", "retained_gain": point, "retained_gain_ci95": [lo, hi],
               "retained_gain_undefined_share": undefined, "teacher_rollouts": d.teacher_rollouts,
               "teacher_accuracy": d.teacher_accuracy, "examples": d.examples, "steps": d.report.steps,
               "losses": list(d.report.losses), "train_seconds": d.report.seconds,
               "teacher_seconds": d.teacher_seconds, "peak_rss_mb": d.report.peak_rss_mb,
               "config": asdict(config), "lessons": [x.text for x in lessons]}
    gap, gap_ci = paired(arms["secondnature"], arms["distilled"])  # what the weights lost against the text
    summary.update(distilled_vs_lessons=gap, distilled_vs_lessons_ci95=list(gap_ci))
    print(f"retained gain {point} [{lo}, {hi}] (undefined in {undefined:.0%} of resamples); distilled - "
          f"secondnature {gap:+.3f} [{gap_ci[0]:+.3f}, {gap_ci[1]:+.3f}]", flush=True)
    if args.collapse:
        other = load_taskset(args.collapse)
        ctasks = split_tasks(other, "test", limit=args.collapse_limit)
        before = evaluate(policy, other, ctasks, [], max_tokens=args.max_tokens)
        after = evaluate(student, other, ctasks, [], max_tokens=args.max_tokens)
        diff, ci = paired(before, after)
        summary["collapse_check"] = {"task": other.name, "n": before.n, "none": before.accuracy,
                                     "distilled": after.accuracy, "diff": diff, "diff_ci95": list(ci)}
        print(f"collapse check on {other.name}: {before.accuracy:.1%} -> {after.accuracy:.1%}, "
              f"{diff:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]", flush=True)
    rows.append(summary)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {RESULTS / (args.name + '.json')} and {plot(rows, RESULTS / (args.name + '.png'))}")


if __name__ == "__main__":
    main(sys.argv[1:])
