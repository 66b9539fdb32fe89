"""Bench records: one per task and arm (seeds pooled), the constant-answer reference beside them, and the
statistics over seeds and items their intervals come from."""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence

from ..evaluate import balanced_over_seeds, majority_reference, split_tasks
from ..rewards import answer_label
from ..stats import paired_over_seeds, seed_item_bootstrap
from ..types import Task, TaskSet
from .run import ArmRun


def _answers(tasks: Sequence[Task], completions: Sequence[Sequence[str]]) -> dict:
    """The six answers given most often over seeds, as the checker reads them: option letters, numbers."""
    return dict(Counter(answer_label(t, c) for seed in completions for t, c in zip(tasks, seed)).most_common(6))


def records(runs: Sequence[ArmRun], taskset: TaskSet, common: dict, test_limit: int | None = None) -> list[dict]:
    """One record per arm (seeds pooled), plus the constant-answer reference; the format of the lesson loop's."""
    by_arm: dict[str, list[ArmRun]] = {}
    for r in runs:
        by_arm.setdefault(r.arm, []).append(r)
    seeds = sorted({r.seed for r in runs})
    scores = {arm: [list(r.test.scores) for r in rs] for arm, rs in by_arm.items()}
    test = split_tasks(taskset, "test", limit=test_limit)
    answer, const = majority_reference(taskset, test)
    scores_with_majority = {**scores, "majority": [list(const)] * len(seeds)}
    out = []
    for arm, rs in [("majority", []), *by_arm.items()]:
        mine = scores_with_majority[arm]
        acc, ci = seed_item_bootstrap(mine)
        vs = {}
        for other, theirs in scores_with_majority.items():
            if other != arm:
                diff, dci = paired_over_seeds(theirs, mine)
                vs[other] = {"diff": diff, "ci95": list(dci)}
        per_seed = [sum(s) / len(s) for s in mine]
        rec = {**common, "task": taskset.name, "arm": arm, "seeds": seeds, "n": len(test), "accuracy": acc,
               "ci95": list(ci), "accuracy_by_seed": per_seed,
               "accuracy_sd": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
               "diff_vs_none": vs.get("none", {"diff": 0.0})["diff"],
               "diff_ci95": vs.get("none", {"ci95": [0.0, 0.0]})["ci95"], "diff_vs": vs,
               "balanced_accuracy": balanced_over_seeds(test, mine)}  # None unless the answers are labels
        if arm == "majority":
            rec.update(answer=answer, rollouts=0, prompt_tokens=0, lesson_tokens=0, wall_s=0.0)
        else:
            def mean(f: Callable[[ArmRun], float], rs: list[ArmRun] = rs) -> float:  # over seeds
                return sum(f(r) for r in rs) / len(rs)
            rec.update(
                rollouts=mean(lambda r: r.train_rollouts + r.val_rollouts), train_rollouts=mean(lambda r: r.train_rollouts),
                val_rollouts=mean(lambda r: r.val_rollouts), reflector_calls=mean(lambda r: r.reflector_calls),
                reflector_samples=mean(lambda r: r.reflector_calls),  # each reflector reply, a skill search's drafts too
                reflector_tokens=mean(lambda r: r.reflector_tokens), prompt_tokens=mean(lambda r: r.test.prompt_tokens),
                lesson_tokens=mean(lambda r: r.test.lesson_tokens),
                wall_s=round(mean(lambda r: r.wall_s + r.test.wall_s), 1),
                train_model_s=round(mean(lambda r: r.model_s), 1),
                train_replayed_s=round(mean(lambda r: r.replayed_s), 1),  # of train_model_s; > 0: not all timed here
                eval_completion_tokens=mean(lambda r: r.test.completion_tokens),
                steps=round(mean(lambda r: r.test.steps), 2), tool_calls=round(mean(lambda r: r.test.tool_calls), 2),
                episode_s=round(mean(lambda r: r.test.model_s / max(1, r.test.n)), 2),  # cost per item, cached or not
                answers=_answers(test, [r.test.completions for r in rs]),
                prompts=[{"seed": r.seed, "system": r.instruction if not r.lessons else None,
                          "lessons": [x.text for x in r.lessons]} for r in rs],
                val_curves=[{"seed": r.seed, "points": list(r.curve)} for r in rs],
                test_scores=[list(r.test.scores) for r in rs])  # per seed, in test order: for paired re-analysis
            if any(r.store for r in rs):
                rec["stores"] = [str(r.store) for r in rs if r.store]
            if any(r.peak_rss_mb for r in rs):
                rec["peak_rss_mb"] = round(max(r.peak_rss_mb for r in rs))
        out.append(rec)
    return out
