"""Keeping the context small, measured: accuracy against the lesson-token budget, and one store that
holds many task sets (a benchmark script; every figure in BENCHMARKS.md's context section comes from it).

    # accuracy at several lesson-token budgets, from one learned store (the bench's secondnature arm store)
    python benchmarks/context.py budget letters:medium,hard --store ~/.secondnature/bench/letters_medium_hard-s0.db

    # where queries of learned and unseen task sets are routed (no model: the prompt index alone)
    python benchmarks/context.py route letters:medium,hard bbh/object_counting bbh/date_understanding \
        bbh/boolean_expressions bbh/sports_understanding bbh/navigate --unseen gsm8k bbh/word_sorting \
        bbh/logical_deduction_three_objects bbh/tracking_shuffled_objects_three_objects --store /tmp/route.db

    # learn several task sets into one store, then score each with none / its own lessons / retrieval / all
    python benchmarks/context.py mixed letters:medium,hard bbh/object_counting bbh/boolean_expressions \\
        bbh/sports_understanding bbh/navigate --learn-budget 200 --store benchmarks/runs/mixed.db

All arms of one figure run in this process on the same policy and test items, greedy, so they pair item by
item; differences carry 95% paired-bootstrap intervals. Model calls go through the bench cache
($SECONDNATURE_HOME/bench/cache.db), so a rerun replays them. Records go to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import records  # benchmarks/, beside this script

from secondnature import inject, retrieve
from secondnature.evaluate import evaluate, paired, split_tasks
from secondnature.learn import LearnConfig, learn
from secondnature.models import CachedModel, load_model
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset
from secondnature.weights import home

RESULTS = Path(__file__).parent / "results"


def _common(policy: CachedModel) -> dict:
    return {"policy": policy.name, "split": "test", "date": records.today(), "machine": records.machine(),
            "command": "python benchmarks/context.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}


def _record(base, r, **extra) -> dict:
    diff, ci = paired(base, r)
    return {**extra, "n": r.n, "accuracy": r.accuracy, "ci95": list(r.ci95), "diff_vs_none": diff,
            "diff_ci95": list(ci), "lesson_tokens": r.lesson_tokens, "prompt_tokens": r.prompt_tokens,
            "lessons": list(r.lesson_ids)}


def budget_sweep(policy: CachedModel, spec: str, store: LessonStore, budgets: list[int | None], limit: int | None,
                 max_tokens: int) -> list[dict]:
    ts = load_taskset(spec)
    lessons = store.revision_lessons(store.head(ts.name))
    tasks = split_tasks(ts, "test", limit=limit)
    def run(lessons, budget):
        return evaluate(policy, ts, tasks, lessons, lesson_tokens=budget, max_tokens=max_tokens)

    base = run([], None)
    common = {**_common(policy), "task": ts.name, "benchmark": "lesson_token_budget",
              "lessons_in_store": len(lessons)}
    out = [_record(base, base, **common, arm="none", lesson_token_budget=0)]
    full = run(lessons, None)
    unbounded_lift = full.accuracy - base.accuracy
    for b in budgets:
        r = full if b is None else run(lessons, b)
        rec = _record(base, r, **common, arm="secondnature", lesson_token_budget=b)
        rec["share_of_unbounded_lift"] = (r.accuracy - base.accuracy) / unbounded_lift if unbounded_lift else None
        out.append(rec)
        print(f"{ts.name} budget {b}: {r.accuracy:.1%} ({rec['lesson_tokens']} lesson tokens, "
              f"{len(r.lesson_ids)}/{len(lessons)} lessons), diff vs none {rec['diff_vs_none']:+.3f}", flush=True)
    return out


def mixed(policy: CachedModel, reflector: CachedModel, specs: list[str], store: LessonStore, learn_budget: int,
          limit: int | None, lesson_tokens: int | None, max_tokens: int) -> list[dict]:
    sets = [load_taskset(s) for s in specs]
    for ts in sets:  # learn each task set into the one store (skipped when it already has a finished run)
        done = store.last_run(ts.name)
        if not (done and done["status"] == "done"):
            print(f"learning {ts.name} ({learn_budget} rollouts)", flush=True)
            learn(policy, reflector, ts, store, LearnConfig(budget=learn_budget, lesson_tokens=lesson_tokens,
                                                            max_tokens=max_tokens), resume=bool(done))
    live = store.live_lessons()
    everything = inject.select(live, None, policy.count_tokens)
    out = []
    for ts in sets:
        tasks = split_tasks(ts, "test", limit=limit)
        leaks: list[int] = []

        def route(task):
            got = retrieve.lessons_for(store, task.prompt, lesson_tokens, policy.count_tokens, live=live)
            leaks.append(sum(x.scope != ts.name for x in got.lessons))
            return got.lessons

        def run(lessons, budget=lesson_tokens, route=None):
            return evaluate(policy, ts, tasks, lessons, lesson_tokens=budget, max_tokens=max_tokens, route=route)

        own = store.revision_lessons(store.head(ts.name))
        base = run([])
        common = {**_common(policy), "task": ts.name, "benchmark": "mixed_store", "lessons_in_store": len(live),
                  "scopes_in_store": len(sets), "lesson_token_budget": lesson_tokens}
        arms = [("none", base, None), ("own scope", run(own), None)]
        leaks.clear()
        arms.append(("retrieval", run([], route=route), sum(bool(n) for n in leaks) / len(tasks)))
        arms.append(("all lessons", run(everything, budget=None), None))
        for arm, r, leak in arms:
            rec = _record(base, r, **common, arm=arm)
            rec["queries_with_foreign_lessons"] = leak
            out.append(rec)
            print(f"{ts.name:28s} {arm:12s} {r.accuracy:6.1%}  diff {rec['diff_vs_none']:+.3f} "
                  f"[{rec['diff_ci95'][0]:+.3f}, {rec['diff_ci95'][1]:+.3f}]  {r.lesson_tokens} lesson tokens/query"
                  + (f", foreign lessons in {leak:.0%} of queries" if leak is not None else ""), flush=True)
    return out


def routing(specs: list[str], unseen: list[str], store: LessonStore, limit: int | None) -> list[dict]:
    """Index the train prompts of `specs`, then route the test prompts of `specs` and `unseen`."""
    import time
    from collections import Counter

    for spec in specs:
        ts = load_taskset(spec)
        store.index_prompts(ts.name, [(t.id, t.prompt) for t in split_tasks(ts, "train")])
    out = []
    for spec in specs + unseen:
        ts = load_taskset(spec)
        tasks = split_tasks(ts, "test", limit=limit)
        t0 = time.perf_counter()
        routed = Counter(retrieve.route(store, t.prompt) or "(none)" for t in tasks)
        ms = (time.perf_counter() - t0) * 1000 / len(tasks)
        home_scope = ts.name if spec in specs else "(none)"
        rec = {"benchmark": "routing", "task": ts.name, "learned": spec in specs, "n": len(tasks),
               "routed_home": routed[home_scope] / len(tasks), "routed": dict(routed), "route_ms": round(ms, 3),
               "scopes_in_store": len(specs), "date": records.today()}
        out.append(rec)
        where = "to its own scope" if rec["learned"] else "nowhere (no lessons injected)"
        print(f"{ts.name:45s} routed {where}: {rec['routed_home']:.0%} of {len(tasks)}, {ms:.2f} ms/query", flush=True)
    return out


def plot_budget(records: list[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for task in dict.fromkeys(r["task"] for r in records):
        rs = [r for r in records if r["task"] == task and r["arm"] == "secondnature"]
        top = max((r["lesson_tokens"] for r in rs), default=0)
        xs = [r["lesson_token_budget"] if r["lesson_token_budget"] is not None else max(top, 400) * 1.25 for r in rs]
        ax.plot(xs, [r["accuracy"] for r in rs], marker="o", label=f"{task} (rightmost: unbounded)")
        none = next(r for r in records if r["task"] == task and r["arm"] == "none")
        ax.axhline(none["accuracy"], linestyle=":", color=ax.lines[-1].get_color(), alpha=0.6)
    ax.set_xlabel("lesson-token budget (policy tokens)")
    ax.set_ylabel("test accuracy (dotted: no lessons)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["budget", "mixed", "route"])
    p.add_argument("--unseen", nargs="*", default=[], help="route: task sets the store did not learn")
    p.add_argument("tasksets", nargs="+")
    p.add_argument("--store", required=True)
    p.add_argument("--budgets", nargs="+", default=["0", "50", "100", "200", "300", "400", "none"])
    p.add_argument("--learn-budget", type=int, default=200)
    p.add_argument("--lesson-tokens", type=int, default=300)
    p.add_argument("--limit", type=int, default=100, help="test items per task set")
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    store = LessonStore(Path(args.store).expanduser())
    RESULTS.mkdir(exist_ok=True)
    if args.what == "route":
        rows = routing(args.tasksets, args.unseen, store, args.limit)
        (RESULTS / f"{args.name or 'context_routing'}.json").write_text(json.dumps(rows, indent=1))
        return
    cache = LessonStore(home() / "bench" / "cache.db")
    policy = CachedModel(load_model("default"), cache)
    if args.what == "budget":
        budgets = [None if b == "none" else int(b) for b in args.budgets]
        rows = [r for spec in args.tasksets
                for r in budget_sweep(policy, spec, store, budgets, args.limit, args.max_tokens)]
        name = args.name or "context_budget"
        print(f"plot: {plot_budget(rows, RESULTS / f'{name}.png')}")
    else:
        reflector = CachedModel(load_model("reflector"), cache)
        rows = mixed(policy, reflector, args.tasksets, store, args.learn_budget, args.limit, args.lesson_tokens,
                     args.max_tokens)
        name = args.name or "context_mixed"
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(f"records: {RESULTS / f'{name}.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
