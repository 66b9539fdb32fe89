"""How far a small judge can be trusted: the packaged 1.5B model judges the 0.5B policy's replies against a rubric,
and its verdicts are compared with the task's checker on the same replies.

    nice -n 10 python benchmarks/judge_agreement.py                       # bbh/boolean_expressions, 60 test replies
    python benchmarks/judge_agreement.py --taskset gsm8k --n 40 --rubric my_rubric.txt

The policy answers the first `--n` test items greedily (as `eval` does); the judge (judge.judge_reward) reads the
rubric, the request and each reply, never the reference answer; the checker scores the same replies with the
reference. A judge score >= 0.5 counts as a pass. The record (benchmarks/results/judge_agreement.json) holds n,
accuracy (the share of replies where judge and checker agree) with a 95% Wilson interval, beside the accuracy of a
judge that passes everything or nothing, whichever is higher; Cohen's kappa; the judge's mean score on replies the
checker calls right and wrong; its unreadable verdicts; every item; the command and the commit. Every model call
goes through the bench completion cache, so a rerun replays it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import records  # benchmarks/, beside this script

from secondnature.evaluate import evaluate, split_tasks
from secondnature.judge import agreement, judge_reward
from secondnature.models import CachedModel, load_model
from secondnature.store import LessonStore
from secondnature.tasks import load_taskset
from secondnature.weights import home

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "benchmarks" / "results" / "judge_agreement.json"

# Written for each task without its reference answers: what a right reply does, so the judge has to work it out.
RUBRICS = {
    "bbh/boolean_expressions": (
        "The request is a Boolean expression made of True, False, not, and, or and parentheses. A good reply gives the "
        "correct value of the whole expression (parentheses first, then not, then and, then or) on a final line "
        "'Answer: True' or 'Answer: False'. Work the expression out yourself. Score 10 when the reply's final answer "
        "is the correct value, 0 when it is wrong or missing; style and length do not matter."),
    "gsm8k": (
        "The request is a grade-school math word problem. A good reply works out the correct number and ends with a "
        "line 'Answer: <number>'. Solve the problem yourself. Score 10 when the reply's final number is correct, 0 "
        "when it is wrong or missing; style and length do not matter."),
    "letters": (
        "The request asks how many times a letter appears in a word or text. A good reply gives the correct count "
        "on a final line 'Answer: <number>'. Count it yourself, letter by letter. Score 10 when the reply's final "
        "count is correct, 0 when it is wrong or missing; style and length do not matter."),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taskset", default="bbh/boolean_expressions")
    ap.add_argument("--n", type=int, default=60, help="first N test items, one greedy reply each")
    ap.add_argument("--policy", default="default")
    ap.add_argument("--judge", default="reflector")
    ap.add_argument("--rubric", default=None, help="a rubric file (default: the one written here for the task set)")
    ap.add_argument("--max-tokens", type=int, default=384, help="the policy's completion tokens")
    ap.add_argument("--judge-max-tokens", type=int, default=256)
    ap.add_argument("--out", default=str(RECORD))
    args = ap.parse_args()
    taskset = load_taskset(args.taskset)
    rubric = Path(args.rubric).read_text().strip() if args.rubric else RUBRICS[taskset.name.split(":")[0]]
    tasks = split_tasks(taskset, "test", limit=args.n)
    workdir = home() / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    cache = LessonStore(workdir / "cache.db")
    policy = CachedModel(load_model(args.policy), cache)
    judge = CachedModel(load_model(args.judge), cache)

    t0 = time.perf_counter()
    replies = evaluate(policy, taskset, tasks, [], max_tokens=args.max_tokens)
    policy_s = time.perf_counter() - t0
    print(f"policy: {replies.accuracy:.1%} right on {replies.n} items ({policy_s:.0f} s)", flush=True)
    reward = judge_reward(judge, rubric, max_tokens=args.judge_max_tokens)
    items, t1 = [], time.perf_counter()
    for task, reply, right in zip(tasks, replies.completions, replies.scores):
        before = judge.model_s
        s = reward(task, reply)
        items.append({"id": task.id, "checker": right, "judge": s.value, "feedback": s.feedback,
                      "reply": reply[-200:], "judge_s": round(judge.model_s - before, 2)})
        print(f"{task.id}: checker {right:g}, judge {s.value:g} ({s.feedback[:90]})", flush=True)
    judge_s = time.perf_counter() - t1
    got = agreement([x["judge"] for x in items], [x["checker"] for x in items])
    rate = got["checker_pass_rate"] or 0.0
    record = {"taskset": taskset.name, "split": "test", "policy": policy.name, "judge": judge.name, "rubric": rubric,
              **got, "constant_accuracy": max(rate, 1 - rate),  # a judge that always passes, or always fails
              "no_verdict": sum(x["feedback"].startswith("judge gave no verdict") for x in items),
              "policy_accuracy": replies.accuracy, "policy_s": round(policy_s, 1), "judge_s": round(judge_s, 1),
              "judge_model_s": round(judge.model_s, 1), "judge_replayed_s": round(judge.replayed_s, 1),
              "command": " ".join(["python", *sys.argv]), "commit": records.commit(), "date": records.today(),
              "machine": records.machine(), "items": items}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    summary = {k: v for k, v in record.items() if k not in ("items", "rubric")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
