"""What asking a step's reflector prompts in a row buys: the same prompts, asked with the reflector's KV cache kept
between them (as `learn` asks them) or cleared before each one (every prompt read from its first token).

    python benchmarks/prefix_cache.py STORE.db TASKSET [--rounds 4] [--json OUT]

STORE.db is a learner store of a finished run (`secondnature bench` keeps them under ~/.secondnature/bench/runs/):
each step's rule-rewrite reflection lists the step's rollouts, from which the step's reflection and rule-rewrite
prompts are built again with the current code. Both arms run in this process on the same reflector,
prompts and seeds, in alternating order; the result is the paired difference of reflector seconds a step, with a
95% bootstrap interval over steps, and their ratio.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from secondnature import reflect
from secondnature.evidence import fit_groups, order_groups
from secondnature.learn import LearnConfig
from secondnature.models import load_model
from secondnature.stats import paired_bootstrap
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset


def recorded_steps(store: LessonStore, taskset, reflector, config: LearnConfig, limit: int) -> list[list[list[dict]]]:
    """The reflection and rule-rewrite messages of each recorded step (task instruction, no lessons)."""
    tasks = {t.id: t for t in taskset.tasks}
    out = []
    for r in [r for r in store.reflections() if r["id"].endswith("-rewrite")][:limit]:
        ids = json.loads(r["rollout_ids"]) if isinstance(r["rollout_ids"], str) else r["rollout_ids"]
        batch = [x for x in (store.rollout(i) for i in ids) if x is not None]
        shared = (taskset.instruction, [])
        rest = (tasks, batch, taskset.tools, config.max_tokens)
        msgs, kept = fit_groups(lambda gs: reflect.build_prompt(*shared, gs, *rest), order_groups(batch)[:config.tasks_per_step],
                                reflector.count_tokens, config.reflect_context - config.reflect_max_tokens)
        groups = order_groups(batch)[:config.tasks_per_step][:kept]
        out.append([msgs, reflect.rewrite_prompt(*shared, groups, *rest)])
    return out


def ask(reflector, prompts: list[list[dict]], config: LearnConfig, seed: int, warm: bool) -> tuple[float, int]:
    """Seconds and completion tokens for one step's prompts, the reflection sampled `proposals` times as in learn."""
    t0, tokens = time.perf_counter(), 0
    for k, msgs in enumerate(prompts):
        if k == 0 or not warm:
            reflector.llm.reset()  # the next call reads its prompt from the first token
        n = config.proposals if k == 0 else 1
        tokens += sum(c.completion_tokens for c in reflector.chat(msgs, n=n, temperature=0.7,
                                                                 max_tokens=config.reflect_max_tokens, seed=seed + k))
    return time.perf_counter() - t0, tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("taskset")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--json", default="")
    args = p.parse_args()
    config = LearnConfig()
    reflector = load_model("reflector", n_ctx=config.reflect_context)
    steps = recorded_steps(LessonStore(args.store), load_taskset(args.taskset), reflector, config, args.rounds)
    rows = []
    for i, prompts in enumerate(steps):
        got = {}
        for warm in ((True, False) if i % 2 == 0 else (False, True)):  # each arm goes first on half of the steps
            got[warm] = ask(reflector, prompts, config, seed=i, warm=warm)
        tokens = [sum(reflector.count_tokens(m["content"]) for m in msgs) for msgs in prompts]
        rows.append({"prompt_tokens": tokens, "cold_s": got[False][0], "warm_s": got[True][0],
                     "cold_completion_tokens": got[False][1], "warm_completion_tokens": got[True][1]})
        print(f"step {i}: prompts {tokens} tokens; cleared {got[False][0]:.1f} s, in a row {got[True][0]:.1f} s "
              f"({got[False][1]} and {got[True][1]} reply tokens)", flush=True)
        if args.json:  # a stopped run keeps the steps it measured
            Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))
    cold, warm = [r["cold_s"] for r in rows], [r["warm_s"] for r in rows]
    diff, (lo, hi) = paired_bootstrap(cold, warm)
    summary = {"steps": len(rows), "cold_s": sum(cold) / len(rows), "warm_s": sum(warm) / len(rows),
               "diff_s": diff, "diff_ci": [lo, hi], "ratio": sum(warm) / sum(cold), "rows": rows,
               "reflector": reflector.name, "store": args.store, "taskset": args.taskset}
    print(f"reflector seconds a step: cleared {summary['cold_s']:.1f}, in a row {summary['warm_s']:.1f}; "
          f"in a row - cleared {diff:+.1f} s [{lo:+.1f}, {hi:+.1f}]; ratio {summary['ratio']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
