"""Print the markdown tables for BENCHMARKS.md from `secondnature bench` records (benchmarks/results/bench_*.json).

    python benchmarks/summarize.py                      # every bench_*.json
    python benchmarks/summarize.py benchmarks/results/bench_letters.json
    python benchmarks/summarize.py benchmarks/results/letters_tools_1.5b.json   # task sets with and without a tool
    python benchmarks/summarize.py benchmarks/results/distill_object_counting*.json  # distillation, seeds pooled
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def ci(lo_hi: list[float], signed: bool = False) -> str:
    f = (lambda v: f"{100 * v:+.1f}") if signed else pct
    return f"[{f(lo_hi[0])}, {f(lo_hi[1])}]"


def rollouts_to_reach(points: list[dict], target: float) -> float | None:
    """Rollouts an arm had spent when its validation curve first reached `target` (None: never)."""
    return next((p["rollouts"] for p in points if p["val"] >= target - 1e-9), None)


def balanced(r: dict) -> float | None:
    """An arm's balanced accuracy (mean over seeds): from the record, or from its per-item scores (older records)."""
    if r.get("balanced_accuracy") is not None or "test_scores" not in r:
        return r.get("balanced_accuracy")
    from secondnature.evaluate import balanced_over_seeds, split_tasks
    from secondnature.tasks import load_taskset
    scores = r["test_scores"]
    return balanced_over_seeds(split_tasks(load_taskset(r["task"]), "test")[:len(scores[0])], scores)


def comparisons(records: list[dict]) -> list[str]:
    """The lift ratio secondnature/gepa (in accuracy, and in balanced accuracy where answers are labels), and
    rollouts-to-score between the lesson loop and GRPO, per task."""
    arm = {r["arm"]: r for r in records}
    out = []
    sn, gepa, grpo = arm.get("secondnature"), arm.get("gepa"), arm.get("grpo")
    if sn and gepa:
        ratio = sn["diff_vs_none"] / gepa["diff_vs_none"] if gepa["diff_vs_none"] > 0 else None
        out.append(f"{sn['task']}: lift ratio secondnature/gepa = "
                   f"{f'{ratio:.2f}' if ratio is not None else 'undefined (gepa lift <= 0)'}")
    bal = {a: balanced(r) for a, r in arm.items() if a != "majority"}
    if "none" in bal and None not in bal.values():
        lifts = ", ".join(f"{a} {pct(v)}%" + (f" ({100 * (v - bal['none']):+.1f})" if a != "none" else "")
                          for a, v in bal.items())
        out.append(f"{records[0]['task']}: balanced accuracy (a constant answer scores 1/k): {lifts}")
    if sn and grpo:
        for a, b in ((sn, grpo), (grpo, sn)):
            for ca, cb in zip(a["val_curves"], b["val_curves"]):
                final = cb["points"][-1]
                need = rollouts_to_reach(ca["points"], final["val"])
                out.append(f"{a['task']} seed {ca['seed']}: {a['arm']} reached {b['arm']}'s final validation score "
                           f"({final['val']:.3f}, after {final['rollouts']} rollouts) after "
                           f"{need if need is not None else 'never (not within its budget)'} rollouts")
    return out


def with_and_without_tools(records: list[dict]) -> list[str]:
    """For a task set benchmarked both as X and as X+tool: each arm with the tool against the same arm without it,
    paired item by item over the same test items (seed 0's scores)."""
    from secondnature.stats import paired_bootstrap
    by = {(r["task"], r["arm"]): r for r in records if r["arm"] != "majority"}
    out = []
    for (task, arm), r in by.items():
        base, plus, tool = task.rpartition("+")
        if not plus or (base, arm) not in by:
            continue
        single = by[(base, arm)]
        d, (lo, hi) = paired_bootstrap(single["test_scores"][0], r["test_scores"][0])
        out.append(f"{arm} with {tool} - {arm} without: {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] "
                   f"({pct(r['accuracy'])}% vs {pct(single['accuracy'])}%, {r['n']} items)")
    return out


def model_s(r: dict) -> str:
    """The training compute, and how much of it was replayed from the cache (timed when first made, maybe on
    another machine: such a figure compares with a fresh one only if both were timed on the same machine)."""
    replayed = r.get("train_replayed_s", 0)
    return f"{r.get('train_model_s', 0):.0f}" + (f" ({replayed:.0f} replayed)" if replayed >= 0.5 else "")


def episodes_table(records: list[dict]) -> list[str]:
    """Accuracy, lift and the cost of episodes per arm, for records of task sets with and without a tool."""
    rows = [("| task | arm | accuracy (95% CI) | diff vs none (95% CI) | steps / tool calls per episode | s per item "
             "| lesson tokens | rollouts (train+val) | train model s |"), "|---" * 9 + "|"]
    for r in records:
        if r["arm"] == "majority":
            continue
        diff = f"{100 * r['diff_vs_none']:+.1f} {ci(r['diff_ci95'], True)}" if r["arm"] != "none" else ""
        rows.append(f"| {r['task']} | {r['arm']} | {pct(r['accuracy'])}% {ci(r['ci95'])} | {diff} "
                    f"| {r.get('steps', 1):.2f} / {r.get('tool_calls', 0):.2f} | {r.get('episode_s', 0):.1f} "
                    f"| {r['lesson_tokens']:.0f} | {r['rollouts']:.0f} ({r['train_rollouts']:.0f}+{r['val_rollouts']:.0f}) "
                    f"| {model_s(r)} |")
    return rows


def distill_table(paths: list[str]) -> list[str]:
    """One row per distillation seed, then the seeds pooled."""
    out = [("| run | seed | examples | none | secondnature | distilled (0 lesson tokens) | distilled + lessons "
            "| distilled - secondnature | retained gain | collapse check | train s |"), "|---" * 11 + "|"]
    runs = []
    for p in paths:
        recs = json.loads(Path(p).read_text())
        arm = {r["arm"]: r for r in recs if r.get("benchmark") == "distill"}
        summ = next(r for r in recs if r.get("benchmark") == "distill_summary")
        runs.append((p, arm, summ))
        gap = (f"{100 * summ['distilled_vs_lessons']:+.1f} {ci(summ['distilled_vs_lessons_ci95'], True)}"
               if "distilled_vs_lessons" in summ else "")
        col = summ.get("collapse_check", {})
        gain_ci = summ["retained_gain_ci95"]
        ci_text = "[{:.2f}, {:.2f}]".format(*gain_ci) if None not in gain_ci else ""
        out.append(f"| {Path(p).stem} | {summ['config']['seed']} | {summ['examples']} | {pct(arm['none']['accuracy'])}% "
                   f"| {pct(arm['secondnature']['accuracy'])}% | {pct(arm['distilled']['accuracy'])}% "
                   f"({100 * arm['distilled']['diff_vs_none']:+.1f} {ci(arm['distilled']['diff_ci95'], True)}) "
                   f"| {pct(arm['distilled+lessons']['accuracy'])}% | {gap} | {summ['retained_gain']:.2f} "
                   f"{ci_text} "
                   f"| {col.get('task', '')} {100 * col.get('diff', 0):+.1f} {ci(col['diff_ci95'], True) if col else ''} "
                   f"| {summ['train_seconds']:.0f} |")
    scored = [(p, a) for p, a, _ in runs if "scores" in a["none"]]
    out += balanced_rows(scored)
    if len(scored) > 1:
        from distill import retained_gain  # benchmarks/distill.py: one definition of the ratio and its interval
        point, (lo, hi), _ = retained_gain(scored[0][1]["none"]["scores"], scored[0][1]["secondnature"]["scores"],
                                           [a["distilled"]["scores"] for _, a in scored])
        out.append(f"\n{len(scored)} seeds pooled: retained gain {point:.2f} [{lo:.2f}, {hi:.2f}] "
                   f"(seeds and items resampled together)")
    return out


def balanced_rows(scored: list[tuple[str, dict]]) -> list[str]:
    """Balanced accuracy per arm (mean per-answer accuracy, which a constant answer cannot raise), when the test
    answers are labels: it tells a student that learned to tell items apart from one that moved to the prior."""
    if not scored:
        return []
    from secondnature.evaluate import balanced_accuracy, split_tasks
    from secondnature.tasks import load_taskset
    tasks = split_tasks(load_taskset(scored[0][1]["none"]["task"]), "test")
    rows = []
    for p, arm in scored:
        bal = {k: balanced_accuracy(tasks[:arm[k]["n"]], arm[k]["scores"]) for k in
               ("none", "secondnature", "distilled", "distilled+lessons")}
        if None in bal.values():
            return []
        rows.append(f"| {Path(p).stem} | " + " | ".join(f"{pct(v)}%" for v in bal.values())
                    + f" | {arm['distilled'].get('answers', '')} |")
    return ["", "| run | balanced accuracy: none | secondnature | distilled | distilled + lessons | distilled's answers |",
            "|---|---|---|---|---|---|", *rows]


def main(paths: list[str]) -> None:
    if paths and all(r.get("benchmark", "").startswith("distill") for p in paths for r in json.loads(Path(p).read_text())):
        print("\n".join(distill_table(paths)))
        return
    if paths and any("+" in r["task"] for p in paths for r in json.loads(Path(p).read_text())):
        for p in paths:  # episodes with tools: their own table
            records = json.loads(Path(p).read_text())
            print("\n".join(episodes_table(records)))
            for line in with_and_without_tools(records):
                print(f"- {line}")
        return
    files = [Path(p) for p in paths] or sorted(p for p in (Path(__file__).parent / "results").glob("bench_*.json")
                                       if not p.stem.endswith("_curves"))
    print("| task | arm | accuracy (95% CI) | by seed | diff vs none (95% CI) | secondnature vs gepa | rollouts (train+val) "
          "| reflector calls / tokens | prompt tokens | train model s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in files:
        for r in json.loads(f.read_text()):
            if r["arm"] == "majority":
                print(f"| {r['task']} | majority ('{r['answer']}') | {pct(r['accuracy'])}% | | "
                      f"{100 * r['diff_vs_none']:+.1f} {ci(r['diff_ci95'], True)} | | 0 | - | 0 | 0 | 0 |")
                continue
            seeds = ", ".join(pct(a) for a in r["accuracy_by_seed"])
            vs = r["diff_vs"].get("gepa") if r["arm"] == "secondnature" else None
            r.setdefault("reflector_calls", 0), r.setdefault("reflector_tokens", 0)
            vs_text = f"{100 * vs['diff']:+.1f} {ci(vs['ci95'], True)}" if vs else ""
            diff = f"{100 * r['diff_vs_none']:+.1f} {ci(r['diff_ci95'], True)}" if r["arm"] != "none" else ""
            print(f"| {r['task']} | {r['arm']} | {pct(r['accuracy'])}% {ci(r['ci95'])} | {seeds} | {diff} | {vs_text} "
                  f"| {r['rollouts']:.0f} ({r['train_rollouts']:.0f}+{r['val_rollouts']:.0f}) "
                  f"| {r['reflector_calls']:.0f} / {r['reflector_tokens']:.0f} | {r['prompt_tokens']:.0f} "
                  f"| {model_s(r)} | {r['wall_s']:.0f} |")
    for f in files:
        for line in comparisons(json.loads(f.read_text())):
            print(f"- {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
