"""The `gepa` arm of `bench`: the real `gepa` package (PyPI) optimising the system prompt through our Model clients.

GEPA evolves one text component, the system prompt, seeded with the task set's instruction. The
adapter runs the policy with `rollout.run` (greedy and cached, like every other arm), scores with the
task set's own reward, and gives GEPA's reflection prompt the same facts our reflector sees: the
question, the model's answer, the correct answer, the verdict and the checker's sentence.

Budget: GEPA counts every policy rollout it asks for as a metric call (minibatch rollouts of the
parent and of each proposal, and full validation passes of proposals that improve on their
minibatch), so `max_metric_calls` is set to the rollout budget; GEPA may overshoot by one iteration,
and the report shows the rollouts it really used, training and validation apart.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import rollout
from ..evidence import clip_reply, render_trajectory
from ..models import Model
from ..rollout import is_episode
from ..types import Rollout, Task, TaskSet

COMPONENT = "system_prompt"


@dataclass
class Spend:
    """What an arm used, tallied as it goes (mutable on purpose: GEPA calls back into us)."""

    train: int = 0
    val: int = 0
    reflector_calls: int = 0
    reflector_prompt_tokens: int = 0
    reflector_completion_tokens: int = 0
    curve: list[dict] = field(default_factory=list)


def feedback(task: Task, r: Rollout) -> str:
    verdict = "correct" if r.score.value >= 1.0 else ("partly correct" if r.score.value > 0 else "wrong")
    return f"Score {r.score.value:g} ({verdict}). Correct answer: {task.answer}. Checker: {r.score.feedback}"


class RolloutAdapter:
    """GEPA's adapter protocol over our rollouts. A class because GEPA calls its methods by name."""

    propose_new_texts = None  # GEPA's own reflective proposer writes the new prompts

    def __init__(self, policy: Model, taskset: TaskSet, val: Sequence[Task], spend: Spend, *, max_tokens: int,
                 seed: int, progress: Callable[[int, str], None]):
        self.policy, self.taskset, self.spend = policy, taskset, spend
        self.val_ids = {t.id for t in val}
        self.max_tokens, self.seed, self.progress = max_tokens, seed, progress

    def evaluate(self, batch: list[Task], candidate: dict[str, str], capture_traces: bool = False):
        from gepa.core.adapter import EvaluationBatch
        is_val = all(t.id in self.val_ids for t in batch)  # train and val are disjoint splits
        rs = rollout.run(self.policy, batch, self.taskset.reward, candidate[COMPONENT], [], n=1, temperature=0.0,
                         max_tokens=self.max_tokens, seed=self.seed, purpose="val" if is_val else "train",
                         on_done=lambda r: self.progress(1, ""), tools=self.taskset.tools)
        if is_val:
            self.spend.val += len(rs)
            self.progress(0, f"  gepa: a candidate prompt ({len(candidate[COMPONENT])} chars) scored "
                               f"{sum(r.score.value for r in rs):g}/{len(rs)} on validation")
        else:
            self.spend.train += len(rs)
        traces = [{"task": t, "rollout": r} for t, r in zip(batch, rs)] if capture_traces else None
        return EvaluationBatch(outputs=[r.completion for r in rs], scores=[r.score.value for r in rs],
                               trajectories=traces)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]) -> dict[str, list[dict]]:
        # an episode's output is its whole trajectory, rendered as our reflector sees it: GEPA reads the same evidence
        records = [{"Inputs": tr["task"].prompt,
                    "Generated Outputs": (render_trajectory(tr["rollout"].messages) if is_episode(tr["rollout"])
                                          else clip_reply(tr["rollout"].completion)),
                    "Feedback": feedback(tr["task"], tr["rollout"])} for tr in eval_batch.trajectories or []]
        return {c: records for c in components_to_update}


class TaskLoader:
    """GEPA's DataLoader keyed by task id. GEPA's default list loader numbers items 0..n-1 in train and in val
    alike, and its evaluation cache is keyed by (candidate, item id), so with two lists a candidate's train
    scores would be reused as its scores on the val items with the same numbers. Task ids are unique."""

    def __init__(self, tasks: Sequence[Task]):
        self.by_id = {t.id: t for t in tasks}

    def all_ids(self) -> list[str]:
        return list(self.by_id)

    def fetch(self, ids: Sequence[str]) -> list[Task]:
        return [self.by_id[i] for i in ids]

    def __len__(self) -> int:
        return len(self.by_id)


def reflection_lm(reflector: Model, spend: Spend, *, max_tokens: int, seed: int) -> Callable[[Any], str]:
    """GEPA's LanguageModel (prompt -> text) over our client; call i uses seed + i so reruns hit the cache."""
    calls = [0]

    def call(prompt: str | list[dict]) -> str:
        msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        c = reflector.chat(msgs, n=1, temperature=0.7, max_tokens=max_tokens, seed=seed * 1000 + calls[0])[0]
        calls[0] += 1
        spend.reflector_calls += 1
        spend.reflector_prompt_tokens += c.prompt_tokens
        spend.reflector_completion_tokens += c.completion_tokens
        return c.text  # an empty or failed reply makes GEPA skip the proposal, as it would with any LM
    return call


def optimize(policy: Model, reflector: Model, taskset: TaskSet, train: Sequence[Task], val: Sequence[Task], *,
             budget: int, seed: int, max_tokens: int = 384, reflect_max_tokens: int = 800,
             progress: Callable[[int, str], None] = lambda n, m: None) -> tuple[str, Spend, dict]:
    """Run `gepa.optimize`; return the best system prompt on val, what it spent, and GEPA's own summary."""
    try:
        import gepa
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError("the gepa arm needs the bench extra: pip install 'secondnature[bench]'") from e
    spend = Spend()
    adapter = RolloutAdapter(policy, taskset, val, spend, max_tokens=max_tokens, seed=0, progress=progress)
    t0 = time.perf_counter()
    result = gepa.optimize(
        seed_candidate={COMPONENT: taskset.instruction}, trainset=TaskLoader(train), valset=TaskLoader(val),
        adapter=adapter,
        reflection_lm=reflection_lm(reflector, spend, max_tokens=reflect_max_tokens, seed=seed),
        max_metric_calls=budget, seed=seed, cache_evaluation=True, logger=_Quiet(), raise_on_exception=False)
    # best validation score so far against rollouts spent. GEPA records the metric calls made before each
    # candidate was found; its validation pass comes after, so the point is placed once that pass is paid for.
    points = sorted(zip(result.discovery_eval_counts, result.val_aggregate_scores))
    best = -1.0
    for calls, score in points:
        if score > best:
            best = score
            spend.curve.append({"rollouts": min(calls + len(val), spend.train + spend.val), "val": score})
    spend.curve.append({"rollouts": spend.train + spend.val, "val": best})
    summary = {"candidates": result.num_candidates, "metric_calls": result.total_metric_calls,
               "best_val": result.val_aggregate_scores[result.best_idx], "wall_s": time.perf_counter() - t0}
    return result.best_candidate[COMPONENT], spend, summary


class _Quiet:
    """GEPA logs every iteration to stdout; the bench has its own progress bar."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass
