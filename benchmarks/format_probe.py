"""Does writing the working out help the policy, and which prompt makes it write any? A diagnostic (BENCHMARKS.md).

    python benchmarks/format_probe.py bbh/object_counting --policy default
    python benchmarks/format_probe.py bbh/object_counting --policy reflector

GEPA's best object_counting prompts drop the task's answer-line format, and the policy then writes its
count out item by item; the lesson loop keeps the task's instruction and only adds lessons. This scores
a few fixed system prompts greedily on the first N items of the validation split: the task's own,
with a process lesson, without the "keep it short" sentence, an instruction that is the process, and a
bare "Solve the problem." with no answer line. For each: items right, reply tokens, and the start of a
reply. Every call goes through the bench cache, so a rerun replays.
"""
from __future__ import annotations

import argparse

from secondnature.evaluate import evaluate, split_tasks
from secondnature.models import CachedModel, load_model
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset
from secondnature.types import Lesson
from secondnature.weights import home

PROCESS = "list every object with how many there are, one per line, then add the numbers up."


def prompts(instruction: str) -> list[tuple[str, str, list[Lesson]]]:
    """(name, instruction, lessons) for each arm of the probe; the answer-line format is the task instruction's own."""
    fmt = instruction[instruction.index("Then end with"):]
    lesson = [Lesson("L1", f"Before the answer line, {PROCESS}", "")]
    unhurried = f"Solve the problem. {fmt}"
    return [("task instruction", instruction, []),
            ("+ process lesson", instruction, lesson),
            ("without 'keep it short'", unhurried, []),
            ("without 'keep it short' + lesson", unhurried, lesson),
            ("process as instruction", f"{PROCESS.capitalize()} {fmt}", []),
            ("no answer line", "Solve the problem.", [])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("taskset")
    ap.add_argument("--policy", default="default", help="packaged name or GGUF path")
    ap.add_argument("-n", type=int, default=24, help="first N validation items")
    args = ap.parse_args()
    policy = CachedModel(load_model(args.policy), LessonStore(home() / "bench" / "cache.db"))
    ts = load_taskset(args.taskset)
    items = split_tasks(ts, "val")[:args.n]
    print(f"{ts.name}, {policy.name}, first {len(items)} validation items, greedy")
    for name, instruction, lessons in prompts(ts.instruction):
        r = evaluate(policy, ts, items, lessons, instruction=instruction)
        print(f"{name:34s} {sum(r.scores):3.0f}/{r.n}  {r.completion_tokens / r.n:5.0f} reply tokens  "
              f"{r.completions[0][:90]!r}")


if __name__ == "__main__":
    main()
