"""`secondnature bench`: prompt-learning methods side by side, in one process, at one rollout budget.

Every arm trains on the same policy, reflector, splits, seeds and budget, then answers the same
held-out test items greedily, so arms pair item by item. Arms:

- none          the task set's instruction alone (trains nothing);
- majority      always the train split's most common answer (no model: a floor that tells a learned
                skill from a shift towards one answer);
- secondnature  the lesson loop (`learn`), lessons injected under the lesson-token budget;
- gepa          the `gepa` package evolving the system prompt (see gepa_arm.py);
- grpo          reinforcement learning on LoRA weights with the same reward and rollout budget (grpo.py);
                it is tested with its final adapter and the bare instruction.

With several seeds, intervals come from a bootstrap that resamples seeds and test items together,
so they cover seed-to-seed variance as well as item variance. Every model call goes through one
completion cache, so a rerun, or a second benchmark that shares the `none` arm, makes no new calls.
"""
from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import gepa_arm
from .evaluate import EvalResult, balanced_over_seeds, evaluate, majority_reference, split_tasks
from .learn import LearnConfig, learn, learn_split
from .models import CachedModel
from .rewards import extract_answer
from .store import LessonStore
from .tasks import slug
from .types import Lesson, TaskSet

ARMS = ("none", "secondnature", "gepa", "grpo")
DEFAULT_ARMS = ("none", "secondnature", "gepa")  # grpo trains weights: asked for by name
Progress = Callable[[int, str], None]  # (rollouts just spent, message)


@dataclass(frozen=True)
class BenchConfig:
    arms: tuple[str, ...] = DEFAULT_ARMS
    budget: int = 400             # policy rollouts per arm and seed, training and validation together
    seeds: tuple[int, ...] = (0, 1, 2)
    val_size: int = 24
    test_limit: int | None = None
    lesson_tokens: int | None = 400
    max_tokens: int = 384
    gepa_reflect_max_tokens: int = 800
    instructions: bool = False    # the lesson loop's instruction candidates (LearnConfig.instructions)


@dataclass(frozen=True)
class ArmRun:
    """One arm trained with one seed: the prompt it ends with, what it spent and its validation curve."""

    arm: str
    seed: int
    instruction: str
    lessons: tuple[Lesson, ...]
    curve: tuple[dict, ...]       # {"rollouts": spent so far, "val": accuracy on the seed's val sample}
    train_rollouts: int
    val_rollouts: int
    reflector_calls: int
    reflector_tokens: int
    wall_s: float
    model_s: float                # summed model latency: the compute cost, the same on a cached rerun
    test: EvalResult | None = None
    adapter: Path | None = None   # grpo: the trained weights the test runs with
    store: Path | None = None     # secondnature: the learned store, kept for `lessons` and `distill`
    peak_rss_mb: float = 0.0      # grpo: the process's peak memory while training
    replayed_s: float = 0.0       # the part of model_s replayed from the cache, timed when first made (maybe elsewhere)


def _model_s(*models: CachedModel) -> tuple[float, float]:
    """(model seconds, of them replayed from the cache); the policy may also be the reflector: each object once."""
    ms = {id(m): m for m in models}.values()
    return sum(m.model_s for m in ms), sum(m.replayed_s for m in ms)


def train_arm(arm: str, seed: int, policy: CachedModel, reflector: CachedModel, taskset: TaskSet, config: BenchConfig,
              workdir: Path, progress: Progress) -> ArmRun:
    lc = LearnConfig(budget=config.budget, val_size=config.val_size, seed=seed, lesson_tokens=config.lesson_tokens,
                     max_tokens=config.max_tokens, instructions=config.instructions)
    train, val = learn_split(taskset, lc)
    before, t0 = _model_s(policy, reflector), time.perf_counter()
    if arm == "none":
        base = evaluate(policy, taskset, val, [], split_name="val", max_tokens=config.max_tokens)
        curve = ({"rollouts": 0, "val": base.accuracy}, {"rollouts": config.budget, "val": base.accuracy})
        run = ArmRun(arm, seed, taskset.instruction, (), curve, 0, 0, 0, 0, 0.0, 0.0)
    elif arm == "secondnature":
        workdir.mkdir(parents=True, exist_ok=True)
        db = workdir / f"{slug(taskset.name)}-s{seed}.db"
        for suffix in ("", "-wal", "-shm"):  # a fresh store per run: lessons learned before must not leak in
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        store = LessonStore(db)
        try:
            result = learn(policy, reflector, taskset, store, lc, progress=progress)
            lessons = tuple(store.revision_lessons(result.revision))
        finally:
            store.close()
        curve = tuple({"rollouts": h["rollouts"], "val": h["val"]} for h in result.history)
        run = ArmRun(arm, seed, taskset.instruction, lessons, curve, result.train_rollouts, result.val_rollouts,
                     result.reflections, result.reflector_tokens, 0.0, 0.0, store=db)
    elif arm == "gepa":
        prompt, spend, _ = gepa_arm.optimize(policy, reflector, taskset, train, val, budget=config.budget, seed=seed,
                                             max_tokens=config.max_tokens,
                                             reflect_max_tokens=config.gepa_reflect_max_tokens,
                                             progress=progress)
        run = ArmRun(arm, seed, prompt, (), tuple(spend.curve), spend.train, spend.val, spend.reflector_calls,
                     spend.reflector_prompt_tokens + spend.reflector_completion_tokens, 0.0, 0.0)
    elif arm == "grpo":
        result = _grpo(policy, taskset, train, val, config, seed, workdir, progress)
        run = ArmRun(arm, seed, taskset.instruction, (), result.curve, result.rollouts, 0, 0, 0, 0.0, 0.0,
                     adapter=result.adapter, peak_rss_mb=result.peak_rss_mb)
    else:
        raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    after = _model_s(policy, reflector)
    model_s, replayed_s = after[0] - before[0], after[1] - before[1]
    if arm == "none":  # its val pass is only for its curve
        model_s, replayed_s = 0.0, 0.0
    if arm == "grpo":  # its compute is sampling and torch updates together: the training's wall time
        model_s, replayed_s = result.seconds, 0.0
    return replace(run, wall_s=time.perf_counter() - t0, model_s=model_s, replayed_s=replayed_s)


def _grpo(policy: CachedModel, taskset: TaskSet, train: list, val: list, config: BenchConfig, seed: int,
          workdir: Path, progress: Progress):
    from . import grpo
    from .models import LlamaModel
    base = policy.inner
    if not isinstance(base, LlamaModel):
        raise ValueError("the grpo arm trains the embedded model's weights: use a GGUF policy, not an endpoint")
    out = workdir / f"grpo-{slug(taskset.name)}-s{seed}"
    out.mkdir(parents=True, exist_ok=True)

    def wrap(m):  # the sampler behind the same completion cache, so a rerun replays its samples
        return CachedModel(m, policy.cache)

    def val_score(m) -> float:  # the learning curve's points; not counted in the budget, as for `none`
        return evaluate(m, taskset, val, [], split_name="val", max_tokens=config.max_tokens).accuracy

    cfg = grpo.GRPOConfig(budget=config.budget, max_tokens=config.max_tokens, seed=seed)
    cfg = replace(cfg, tasks_per_step=max(1, min(cfg.tasks_per_step, config.budget // cfg.group_size)))
    return grpo.train(base.path, taskset, train, cfg, out, wrap=wrap, evaluate=val_score, progress=progress)


def run_bench(policy: CachedModel, reflector: CachedModel, taskset: TaskSet, config: BenchConfig, workdir: Path,
              progress: Progress = lambda n, m: None) -> list[ArmRun]:
    """Train every arm with every seed, then score each on the test split (greedy, paired)."""
    test = split_tasks(taskset, "test", limit=config.test_limit)
    runs = []
    for seed in config.seeds:
        for arm in config.arms:
            progress(0, f"{taskset.name} seed {seed}: training arm {arm}")
            run = train_arm(arm, seed, policy, reflector, taskset, config, workdir, progress)
            progress(0, f"{taskset.name} seed {seed}: testing arm {arm} on {len(test)} items")
            model = policy
            if run.adapter is not None:  # trained weights: the base model with the adapter, behind the same cache
                from .models import LlamaModel
                model = CachedModel(LlamaModel(policy.inner.path, lora=run.adapter), policy.cache)
            result = evaluate(model, taskset, test, list(run.lessons), lesson_tokens=config.lesson_tokens,
                              max_tokens=config.max_tokens, instruction=run.instruction)
            runs.append(replace(run, test=result))
    return runs


# ---------------------------------------------------------------- statistics over seeds and items

def seed_item_bootstrap(values: Sequence[Sequence[float]], *, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean over (seed, item) with a 95% interval that resamples seeds and items together.

    `values[s][i]` is seed s on test item i (every seed sees the same items). With one seed this is an
    ordinary item bootstrap; with more, an unlucky seed widens the interval as it should."""
    s_n, i_n = len(values), len(values[0]) if values else 0
    if not s_n or not i_n:
        return 0.0, (0.0, 0.0)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        seeds = [rng.randrange(s_n) for _ in range(s_n)]
        items = [rng.randrange(i_n) for _ in range(i_n)]
        means.append(sum(values[s][i] for s in seeds for i in items) / (s_n * i_n))
    means.sort()
    mean = sum(map(sum, values)) / (s_n * i_n)
    return mean, (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def paired_over_seeds(base: Sequence[Sequence[float]],
                      other: Sequence[Sequence[float]]) -> tuple[float, tuple[float, float]]:
    """other - base, item by item within each seed (seed s against seed s; the shorter list sets how many), with
    the interval of seed_item_bootstrap, so it covers seed variance too."""
    return seed_item_bootstrap([[b - a for a, b in zip(x, y)] for x, y in zip(base, other)])

def _answers(completions: Sequence[str]) -> dict:
    return dict(Counter(str(extract_answer(c)) for c in completions).most_common(6))


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
                reflector_tokens=mean(lambda r: r.reflector_tokens), prompt_tokens=mean(lambda r: r.test.prompt_tokens),
                lesson_tokens=mean(lambda r: r.test.lesson_tokens),
                wall_s=round(mean(lambda r: r.wall_s + r.test.wall_s), 1),
                train_model_s=round(mean(lambda r: r.model_s), 1),
                train_replayed_s=round(mean(lambda r: r.replayed_s), 1),  # of train_model_s; > 0: not all timed here
                eval_completion_tokens=mean(lambda r: r.test.completion_tokens),
                steps=round(mean(lambda r: r.test.steps), 2), tool_calls=round(mean(lambda r: r.test.tool_calls), 2),
                episode_s=round(mean(lambda r: r.test.model_s / max(1, r.test.n)), 2),  # cost per item, cached or not
                answers=_answers([c for r in rs for c in r.test.completions]),
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


def plot_curves(by_task: dict[str, list[dict]], path: str | Path) -> Path:
    """Validation accuracy against rollouts spent, one colour per arm, one thin line per seed, one panel per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(by_task), figsize=(5.2 * len(by_task), 4), squeeze=False)
    colours = {"none": "tab:gray", "secondnature": "tab:blue", "gepa": "tab:orange", "grpo": "tab:green"}
    for ax, (task, recs) in zip(axes[0], by_task.items()):
        for rec in recs:
            for j, c in enumerate(rec.get("val_curves", [])):
                xs = [p["rollouts"] for p in c["points"]]
                ys = [p["val"] for p in c["points"]]
                ax.step(xs, ys, where="post", color=colours.get(rec["arm"]), alpha=0.85, lw=1.6,
                        marker="o" if rec["arm"] != "none" else None, ms=3,
                        label=f"{rec['arm']} (test {rec['accuracy']:.0%})" if j == 0 else None)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("policy rollouts spent (train + validation)")
        ax.set_ylabel("validation accuracy (current prompt or weights)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("secondnature bench: learning curves (one line per seed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
