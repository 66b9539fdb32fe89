"""`secondnature bench`: prompt-learning methods side by side, in one process, at one rollout budget.

Every arm trains on the same policy, reflector, splits, seeds and budget, then answers the same
held-out test items greedily, so arms pair item by item. Arms:

- none          the task set's instruction alone (trains nothing);
- majority      always the train split's most common answer (no model: a floor that tells a learned
                skill from a shift towards one answer);
- secondnature  the lesson loop (`learn`), lessons injected under the lesson-token budget;
- skills        the loop with the skill proposer alone: what programs the reflector writes, tested and gated,
                bring without lessons in words;
- gepa          the `gepa` package evolving the system prompt (see gepa_arm.py);
- grpo          reinforcement learning on LoRA weights with the same reward and rollout budget (grpo.py);
                it is tested with its final adapter and the bare instruction.

With several seeds, intervals come from a bootstrap that resamples seeds and test items together,
so they cover seed-to-seed variance as well as item variance. Every model call goes through one
completion cache, so a rerun, or a second benchmark that shares the `none` arm, makes no new calls.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..evaluate import EvalResult, evaluate, split_tasks
from ..learn import LearnConfig, learn, learn_split
from ..models import CachedModel
from ..propose import skill
from ..store import fresh_store
from ..tasks import slug
from ..types import Lesson, TaskSet
from . import gepa_arm

ARMS = ("none", "secondnature", "skills", "gepa", "grpo")
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
    skill_samples: int = 8        # the loop's skill search (0: none)


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
                     max_tokens=config.max_tokens, skill_samples=config.skill_samples)
    train, val = learn_split(taskset, lc)
    before, t0 = _model_s(policy, reflector), time.perf_counter()
    if arm == "none":
        base = evaluate(policy, taskset, val, [], split_name="val", max_tokens=config.max_tokens)
        curve = ({"rollouts": 0, "val": base.accuracy}, {"rollouts": config.budget, "val": base.accuracy})
        run = ArmRun(arm, seed, taskset.instruction, (), curve, 0, 0, 0, 0, 0.0, 0.0)
    elif arm in ("secondnature", "skills"):
        workdir.mkdir(parents=True, exist_ok=True)
        db = workdir / f"{slug(taskset.name)}{'-skills' if arm == 'skills' else ''}-s{seed}.db"
        store = fresh_store(db)  # a fresh store per run: lessons learned before must not leak in
        try:
            result = learn(policy, reflector, taskset, store, lc, progress=progress,
                           **({"proposers": (skill,)} if arm == "skills" else {}))
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
    from ..models import LlamaModel
    from ..train import grpo
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
                from ..models import LlamaModel
                model = CachedModel(LlamaModel(policy.inner.path, lora=run.adapter), policy.cache)
            result = evaluate(model, taskset, test, list(run.lessons), lesson_tokens=config.lesson_tokens,
                              max_tokens=config.max_tokens, instruction=run.instruction)
            runs.append(replace(run, test=result))
    return runs
