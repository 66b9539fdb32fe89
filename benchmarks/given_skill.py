"""What a skill does once it is found: the packaged policy with a correct Game of 24 solver in context, by hand.

    python benchmarks/given_skill.py                 # the 100 test puzzles (ids 900-999), the 0.5B policy

The loop's search did not find a solver with the 1.5B reflector (game24_skills.json); this measures the other
half of the path, so the two are not confused. Arms, paired on the same test puzzles, greedy: `none` (the bare
policy) and `given_skill` (the solver in tests/test_skills.py as a skill lesson: the policy sees its card, each
attempt opens with its call and output, the policy answers). Record: benchmarks/results/game24_given_skill.json
with accuracy, its interval and the paired difference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import records  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent


def section() -> list[str]:
    """The record for BENCHMARKS.md (benchmarks/report.py), if there is one."""
    path = ROOT / "benchmarks" / "results" / "game24_given_skill.json"
    if not path.exists():
        return []
    none, given = json.loads(path.read_text())

    def pct(r: dict) -> str:
        return f"{100 * r['accuracy']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"

    return ["### game24: a skill once found", "",
            f"`game24_given_skill.json`; {given['date']}; commit {given['commit']}; policy `{given['policy']}`; "
            f"`{given['command']}`. The policy with a correct solver as a skill lesson (its card, {given['lesson_tokens']}"
            f" lesson tokens, and each attempt opening with its call), paired with the bare policy on the {given['n']} "
            f"test puzzles: {pct(none)} → {pct(given)}, {100 * given['diff_vs_none']:+.1f} points "
            f"[{100 * given['diff_ci95'][0]:+.1f}, {100 * given['diff_ci95'][1]:+.1f}]. What the loop lacks on this "
            "task is the search that finds the solver, not its use.", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="policy")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "game24_given_skill.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from test_skills import SOLVER  # the solver the tests check (imported here: report.py reads this file's section)

    from secondnature import inject, skills
    from secondnature.evaluate import evaluate, paired, split_tasks
    from secondnature.models import load_model
    from secondnature.tasks import load_taskset
    from secondnature.types import Lesson
    ts = load_taskset("game24")
    test = split_tasks(ts, "test")
    policy = load_model(args.policy)
    skill, train = skills.parse(SOLVER)[0], ts.tasks[0]
    (ran,), _ = skills.run_tests(skill, [train], ts.reward)  # the worked call: a training puzzle and its output
    lesson = Lesson("L1", skills.lesson_text(skill, [train.id], 1, (train.prompt, ran.output)), "game24")
    base = evaluate(policy, ts, test, [])
    given = evaluate(policy, ts, test, [lesson])
    diff, ci = paired(base, given)
    common = {"task": "game24", "n": len(test), "policy": policy.name,
              **records.header("python benchmarks/given_skill.py")}
    recs = [{**common, "arm": "none", "accuracy": base.accuracy, "ci95": list(base.ci95)},
            {**common, "arm": "given_skill", "accuracy": given.accuracy, "ci95": list(given.ci95), "diff_vs_none": diff,
             "diff_ci95": list(ci), "lesson_tokens": given.lesson_tokens,
             "system_prompt": inject.render(ts.instruction, [lesson])}]
    args.out.write_text(json.dumps(recs, indent=1) + "\n")
    for r in recs:
        print(r["arm"], f"{r['accuracy']:.1%}", r["ci95"], r.get("diff_vs_none", ""), r.get("diff_ci95", ""))


if __name__ == "__main__":
    main()
