"""A sweep over BIG-Bench Hard tasks the loop was never tuned or benchmarked on for learning.

    python benchmarks/bbh_sweep.py                      # every task in SWEEP, in order, resumable
    python benchmarks/bbh_sweep.py --tasks snarks       # one task

Each task is run once with the defaults and nothing tuned per task: `secondnature bench bbh/<task> --arms
none,secondnature,gepa --budget 400 --seeds 1`, the packaged 0.5B policy and 1.5B reflector. Each task's own
bench record goes to benchmarks/results/bbh_sweep/<task>.json as it finishes; the sweep's record,
benchmarks/results/bbh_sweep.json, is rebuilt from those after each task, so a sweep stopped part-way reports
the tasks it finished (and says which it did not). A task already recorded is not run again.

Goals (issue 24): a lift whose interval excludes 0 on at least half of the tasks, and a mean lift at least 1.5
times GEPA's. Per task and arm: task, arm, n, accuracy, balanced_accuracy, diff_vs_none, diff_ci95,
lesson_tokens, with the constant-answer reference and the lessons (or GEPA's prompt) quoted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import records  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
PARTS = OUT / "bbh_sweep"
SWEEP = ("causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages", "hyperbaton",
         "logical_deduction_three_objects", "movie_recommendation", "multistep_arithmetic_two", "snarks",
         "tracking_shuffled_objects_three_objects")
ARMS = ("none", "secondnature", "gepa")
BUDGET = 400


def run_task(task: str) -> None:
    PARTS.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("secondnature")), "bench", f"bbh/{task}", "--arms", ",".join(ARMS), "--budget",
           str(BUDGET), "--seeds", "1", "--name", task, "--out", str(PARTS)]
    print(" ".join(cmd[1:]), flush=True)
    t0 = time.time()
    commit = records.commit()
    subprocess.run(cmd, check=True)
    path = PARTS / f"{task}.json"
    recs = json.loads(path.read_text())
    path.write_text(json.dumps([{**r, "commit": commit} for r in recs], indent=1) + "\n")
    print(f"{task}: {time.time() - t0:.0f} s", flush=True)


def row(rec: dict, majority: dict) -> dict:
    keep = ("task", "arm", "n", "accuracy", "ci95", "balanced_accuracy", "diff_vs_none", "diff_ci95", "lesson_tokens",
            "rollouts", "reflector_calls", "wall_s", "commit", "date")
    out = {k: rec.get(k) for k in keep}
    out["lesson_tokens"] = out["lesson_tokens"] or 0
    out["constant_answer"] = {"answer": majority.get("answer"), "accuracy": majority.get("accuracy"),
                              "balanced_accuracy": majority.get("balanced_accuracy")}
    prompts = rec.get("prompts") or [{}]
    out["lessons"] = prompts[0].get("lessons") or []
    if rec["arm"] == "gepa":
        out["prompt"] = prompts[0].get("system")
    return out


def rebuild() -> list[dict]:
    """bbh_sweep.json from the per-task records there are, in the sweep's order, with its summary."""
    rows, done = [], []
    for task in SWEEP:
        path = PARTS / f"{task}.json"
        if not path.exists():
            continue
        recs = json.loads(path.read_text())
        majority = next(r for r in recs if r["arm"] == "majority")
        rows += [row(r, majority) for r in recs if r["arm"] in ARMS]
        done.append(task)
    lifts = {arm: [r["diff_vs_none"] for r in rows if r["arm"] == arm] for arm in ("secondnature", "gepa")}
    summary = {
        "tasks_done": done, "tasks_missing": [t for t in SWEEP if t not in done],
        "secondnature_significant": sum(r["diff_ci95"][0] > 0 for r in rows if r["arm"] == "secondnature"),
        "mean_lift": {arm: statistics.fmean(v) if v else None for arm, v in lifts.items()},
        "goal": "a lift whose interval excludes 0 on at least half of the tasks; mean lift >= 1.5 x GEPA's",
        "command": "python benchmarks/bbh_sweep.py", "date": records.today(),
    }
    (OUT / "bbh_sweep.json").write_text(json.dumps([{"summary": summary}, *rows], indent=1) + "\n")
    return rows


def _pts(x: float | None, ci: list | None = None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.1f}" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def section() -> list[str]:
    """The sweep for BENCHMARKS.md (benchmarks/report.py), from its record, as far as it got."""
    path = OUT / "bbh_sweep.json"
    if not path.exists():
        return []
    head, *rows = json.loads(path.read_text())
    s = head["summary"]
    out = ["## BIG-Bench Hard tasks nobody tuned on", "",
           f"{records.preamble(s, 'bbh_sweep.json')}: each task once, arms none, secondnature and gepa, budget "
           f"{BUDGET}, one seed, the defaults. Goal: {s['goal']}.", ""]
    if s["tasks_missing"]:
        minutes = sum(r.get("wall_s") or 0 for r in rows) / 60 / max(1, len(s["tasks_done"]))
        out += [f"Not run yet ({len(s['tasks_missing'])} of {len(SWEEP)}): {', '.join(s['tasks_missing'])}. A task "
                f"takes about {minutes:.0f} minutes here (three arms); the command resumes where the sweep stopped.", ""]
    out += ["| task | n | none | secondnature − none [95% CI] | GEPA − none [95% CI] | balanced, none → loop | "
            "constant answer | lesson tokens |", "|---|---|---|---|---|---|---|---|"]
    for task in s["tasks_done"]:
        arm = {r["arm"]: r for r in rows if r["task"] == f"bbh/{task}"}
        none, sn, gepa = arm.get("none", {}), arm.get("secondnature", {}), arm.get("gepa", {})
        const = none.get("constant_answer") or {}
        out.append(f"| {task} | {none.get('n', '-')} | {_pct(none.get('accuracy'))} | "
                   f"{_pts(sn.get('diff_vs_none'), sn.get('diff_ci95'))} | "
                   f"{_pts(gepa.get('diff_vs_none'), gepa.get('diff_ci95'))} | "
                   f"{_pct(none.get('balanced_accuracy'))} → {_pct(sn.get('balanced_accuracy'))} | "
                   f"'{const.get('answer')}' {_pct(const.get('accuracy'))} | {sn.get('lesson_tokens', 0):.0f} |")
    mean = s["mean_lift"]
    out += ["", f"Tasks with a lift whose interval excludes 0: {s['secondnature_significant']} of "
                f"{len(s['tasks_done'])}; mean lift {_pts(mean.get('secondnature'))} points, GEPA's "
                f"{_pts(mean.get('gepa'))}.", ""]
    for task in s["tasks_done"]:
        sn = next((r for r in rows if r["task"] == f"bbh/{task}" and r["arm"] == "secondnature"), {})
        quoted = "; ".join(f"\"{' '.join(x.split())[:160]}\"" for x in sn.get("lessons") or []) or "none kept"
        out.append(f"- {task}: {quoted}")
    return out + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(SWEEP), help="comma-separated, from: " + ", ".join(SWEEP))
    args = ap.parse_args()
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        if task not in SWEEP:
            raise SystemExit(f"{task} is not in the sweep; choose from {', '.join(SWEEP)}")
        if not (PARTS / f"{task}.json").exists():
            run_task(task)
        rebuild()
    print(json.dumps(json.loads((OUT / "bbh_sweep.json").read_text())[0], indent=1))


if __name__ == "__main__":
    main()
