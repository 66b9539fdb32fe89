"""Which kinds of candidate move the policy? A diagnostic for the lesson loop (BENCHMARKS.md, object_counting).

    python benchmarks/candidate_probe.py bbh/object_counting --seed 0 --steps 3 --samples 3

For the first `steps` steps of a run with no lessons (the same training batches, samples and seeds as
`learn`), the reflector writes `samples` candidates of each kind from the same groups, and each is
scored greedily on all of the run's validation items against the bare prompt: items won, items
lost, reply length. Kinds: `rewrite` (the loop's rule rewrite, parsed as the loop parses it),
`rewrite+example` (a method plus a worked example of the reflector's own making, up to 150 words),
`instruction` (a new instruction replacing the task's, its answer-format line kept). Every model
call goes through the bench cache, so a rerun replays.
"""
from __future__ import annotations

import argparse
import re
from statistics import mean

from secondnature import inject, rollout
from secondnature.evidence import order_groups
from secondnature.learn import LearnConfig, learn_split, step_batch
from secondnature.models import CachedModel, load_model
from secondnature.reflect import parse_guide, rewrite_prompt
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset
from secondnature.types import Lesson
from secondnature.weights import home

ASK = {
    "rewrite+example": """Write the guidance that should replace those lessons, in two parts. First the method: at most \
60 words telling the assistant how to work out the answer to any task of this kind, step by step, and which mistake to \
avoid. Then one worked example of your own making: a new question of this kind (not one shown above), solved by \
following that method line by line, ending with the final answer line the instruction asks for. At most 150 words in \
all. Put both between <guide> and </guide>, and write nothing after it.""",
    "instruction": """Write a new instruction for the assistant that replaces the one above: at most 70 words telling it \
how to work out the answer to any task of this kind, step by step, and what to write before its answer line. Do not \
repeat the answer-line format, it is added for you. Never mention a task, a word, a number or an answer shown above. \
Put the instruction between <instruction> and </instruction>, and write nothing after it.""",
}


def system_for(kind: str, raw: str, instruction: str, shown: list) -> str | None:
    """The system prompt a candidate of `kind` gives the policy, or None if the reply holds no candidate."""
    if kind == "rewrite":
        text, _ = parse_guide(raw, shown)
        return inject.render(instruction, [Lesson("L1", text, "")]) if text else None
    tag = "guide" if kind == "rewrite+example" else "instruction"
    m = re.search(rf"<{tag}>(.*?)(?:</{tag}>|$)", raw, re.S | re.I)
    text = " ".join(m.group(1).split()) if m else ""
    if len(text.split()) < 5:
        return None
    if kind == "rewrite+example":
        return inject.render(instruction, [Lesson("L1", text, "")])
    fmt = instruction[instruction.find("Then end with"):] if "Then end with" in instruction else instruction
    return f"{text}\n{fmt}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("taskset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--kinds", default="rewrite,rewrite+example,instruction")
    args = ap.parse_args()
    ts = load_taskset(args.taskset)
    cache = LessonStore(home() / "bench" / "cache.db")
    policy = CachedModel(load_model("default"), cache)
    reflector = CachedModel(load_model("reflector"), cache)
    config = LearnConfig(seed=args.seed)
    train, val = learn_split(ts, config)
    by_id = {t.id: t for t in ts.tasks}

    def score(system: str) -> tuple[list[float], float]:
        rs = rollout.run(policy, val, ts.reward, system, [], n=1, temperature=0.0, max_tokens=config.max_tokens,
                         seed=config.seed, purpose="val")
        return [r.score.value for r in rs], mean(r.completion_tokens or 0 for r in rs)

    base, base_tokens = score(ts.instruction)
    print(f"{ts.name} seed {args.seed}: bare prompt {sum(base):.0f}/{len(base)}, {base_tokens:.0f} reply tokens")
    results: dict[str, list[tuple[int, int, float]]] = {k: [] for k in args.kinds.split(",")}
    for step in range(args.steps):
        batch, seed = step_batch(train, config, step)  # the batch and seed learn() uses at this step
        rs = rollout.run(policy, batch, ts.reward, ts.instruction, [], n=config.group_size,
                         temperature=config.temperature, max_tokens=config.max_tokens, seed=seed)
        groups = order_groups(rs)[:config.tasks_per_step]
        if not groups:
            continue
        shown = [by_id[g[0].task_id] for g in groups]
        msgs = rewrite_prompt(ts.instruction, [], groups, by_id, rs)
        for kind in results:
            ask = msgs if kind == "rewrite" else [
                msgs[0], {"role": "user", "content": msgs[1]["content"].split("Write the guidance")[0] + ASK[kind]}]
            for j in range(args.samples):
                raw = reflector.chat(ask, n=1, temperature=0.7, max_tokens=600, seed=seed + 1 + j)[0].text
                system = system_for(kind, raw, ts.instruction, shown)
                if system is None:
                    print(f"step {step} {kind} {j}: no candidate in the reply")
                    continue
                got, tokens = score(system)
                wins = sum(b > a for a, b in zip(base, got))
                losses = sum(b < a for a, b in zip(base, got))
                results[kind].append((wins, losses, tokens))
                print(f"step {step} {kind} {j}: {sum(got):.0f}/{len(got)}, won {wins}, lost {losses}, "
                      f"{tokens:.0f} reply tokens, {policy.count_tokens(system)} prompt tokens")
    for kind, rows in results.items():
        if rows:
            print(f"{kind}: {len(rows)} candidates, won {mean(w for w, _, _ in rows):.2f} and lost "
                  f"{mean(lo for _, lo, _ in rows):.2f} items on average (net {mean(w - lo for w, lo, _ in rows):+.2f}), "
                  f"{mean(t for *_, t in rows):.0f} reply tokens")


if __name__ == "__main__":
    main()
