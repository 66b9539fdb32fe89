"""Your own task and reward, learned by the embedded models.

The task: read a date written out in a sentence and give it in ISO form (2024-03-05). The instruction never says
which form, so the policy guesses; the reward says what was expected. The loop has to find the lesson that a
person would write ("give dates as YYYY-MM-DD"), and keep it only if it wins on validation items it never saw.

    python examples/own_task.py [--budget 120] [--store dates.db]

About 3 minutes on 2 cores once the models are installed (pip install 'secondnature[embedded]').
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import re

import secondnature as sn

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
EVENTS = ["the meeting", "the concert", "the wedding", "the launch", "the exam", "the match", "the audit"]


def tasks(n: int = 120, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        day = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(2000))
        event = rng.choice(EVENTS)
        said = rng.choice([f"{MONTHS[day.month - 1]} {day.day}, {day.year}", f"the {day.day} of {MONTHS[day.month - 1]} {day.year}"])
        out.append({"id": f"d{i}", "prompt": f"Our notes say {event} took place on {said}. On what date was {event}?",
                    "answer": day.isoformat()})
    return out


def reward(task: sn.Task, reply: str) -> sn.Score:
    """1 for the exact ISO date on the answer line; the feedback says what was expected, which is what the
    reflector learns from."""
    line = re.findall(r"Answer:\s*(.+)", reply)
    got = line[-1].strip().rstrip(".") if line else ""
    if got == task.answer:
        return sn.Score(1.0, "correct")
    return sn.Score(0.0, f"expected {task.answer!r} on the answer line, got {got or 'no answer line'!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=120)
    p.add_argument("--store", default="dates.db")
    p.add_argument("--reflector", default="reflector", help="packaged name or GGUF path (default: the 1.5B model)")
    p.add_argument("--skill-samples", type=int, default=8, help="programs a skill search drafts (0: no skills)")
    args = p.parse_args()
    taskset = sn.task_set("dates", tasks(), reward, instruction="Answer the question. End with a line 'Answer: <date>'.")
    policy, reflector = sn.load_model("default"), sn.load_model(args.reflector, n_ctx=8192)
    config = sn.LearnConfig(budget=args.budget, val_size=12, tasks_per_step=4, group_size=2,
                            skill_samples=args.skill_samples)
    result = sn.learn(policy, reflector, taskset, sn.open_store(args.store), config)
    print(f"validation: {result.history[0]['val']:.0%} -> {result.val_score:.0%} with {len(result.lessons)} lesson(s); "
          f"{result.rollouts_used} rollouts; stopped: {result.stopped}")
    for lesson in result.lessons:
        print(f"  {lesson.id} (gain {lesson.gain:+.2f}): {lesson.text}")
    for g in result.gates:
        print(f"  gate: {g.decision} {g.proposed[0].op} {g.proposed[0].text[:60]!r}: {g.reason}")
    print("system prompt for your own calls:\n" + sn.system_prompt(taskset.instruction, result.lessons, 300,
                                                                    policy.count_tokens))


if __name__ == "__main__":
    main()
