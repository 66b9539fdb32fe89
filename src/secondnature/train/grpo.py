"""GRPO, the reinforcement-learning baseline that the lesson loop is measured against.

Group-relative policy optimisation (Shao et al., 2024) as TRL's GRPOTrainer computes it with its
defaults: for each task, K samples from the current policy; each sample's advantage is its reward
minus the group's mean, divided by the group's standard deviation; the loss is the clipped
policy-gradient surrogate averaged over each completion's tokens, then over completions (TRL's
`loss_type="grpo"`), with no KL term (TRL's default beta = 0) and one update per batch (so the
importance ratio is 1 in value and carries the gradient). The update is to a LoRA adapter.

Generation in torch is far slower than llama.cpp on a CPU, so samples come from the embedded
runtime with the current adapter exported as GGUF after every update (the export is checked against
torch in tests/test_distill.py); the update runs in torch on the same tokens, re-tokenised.
Every sample counts against the same rollout budget as the lesson loop's rollouts.
"""
from __future__ import annotations

import math
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import rollout
from ..models import LlamaModel, release
from ..types import Task, TaskSet
from . import lora


@dataclass(frozen=True)
class GRPOConfig:
    budget: int = 400          # policy samples in all
    group_size: int = 4        # K samples per task
    tasks_per_step: int = 4
    temperature: float = 1.0   # TRL's default sampling temperature
    max_tokens: int = 384
    lr: float = 5e-5
    rank: int = 8
    alpha: int = 16
    epsilon: float = 0.2       # clip range of the importance ratio
    seed: int = 0
    eval_every: int = 5        # steps between validation points of the learning curve (not counted in budget)


@dataclass(frozen=True)
class GRPOResult:
    adapter: Path | None       # None when no update was made
    steps: int
    rollouts: int
    mean_rewards: tuple[float, ...]
    losses: tuple[float, ...]
    curve: tuple[dict, ...] = field(default=())
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def advantages(rewards: Sequence[float], group_size: int, eps: float = 1e-4) -> list[float]:
    """(r - mean of its group) / (std of its group + eps), groups of `group_size` consecutive rewards.
    The std is the unbiased one, as torch.std (and so TRL) computes it."""
    out = []
    for g in range(0, len(rewards), group_size):
        grp = list(rewards[g:g + group_size])
        mean = sum(grp) / len(grp)
        std = math.sqrt(sum((r - mean) ** 2 for r in grp) / (len(grp) - 1)) if len(grp) > 1 else 0.0
        out += [(r - mean) / (std + eps) for r in grp]
    return out


def grpo_loss(logps: Any, old_logps: Any, adv: Any, mask: Any, epsilon: float = 0.2) -> Any:
    """The clipped surrogate, per token, averaged over each completion's tokens, then over completions.
    logps, old_logps, mask: (batch, tokens); adv: (batch,)."""
    import torch
    ratio = torch.exp(logps - old_logps)
    a = adv.unsqueeze(1)
    per_token = -torch.min(ratio * a, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * a)
    return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()


def _token_logps(model: Any, prompt_ids: list[int], completion_ids: list[int]) -> Any:
    """Log-probabilities of the completion's tokens given the prompt, with gradients, shape (1, len)."""
    import torch
    ids = torch.tensor([prompt_ids + completion_ids])
    logits = model(input_ids=ids).logits[:, len(prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor([completion_ids]).unsqueeze(-1)).squeeze(-1)


def train(base_path: Path, taskset: TaskSet, train_tasks: Sequence[Task], config: GRPOConfig, workdir: Path, *,
          wrap: Callable[[Any], Any] = lambda m: m, evaluate: Callable[[LlamaModel], float] | None = None,
          progress: Callable[[int, str], None] = lambda _n, _m: None) -> GRPOResult:
    """GRPO on LoRA weights until the budget of samples is spent. `wrap` puts the sampler behind the caller's
    completion cache; `evaluate` (optional) scores a sampler on validation items for the learning curve."""
    if taskset.tools:
        raise ValueError(f"{taskset.name} runs multi-turn episodes with tools; the GRPO arm trains on single replies: "
                         f"run it on {taskset.name.split('+')[0]}")
    torch = lora._require()
    torch.manual_seed(config.seed)
    model, tok = lora.load(base_path)
    policy = lora.wrap(model, config.rank, config.alpha)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0)
    tasks = list(train_tasks)
    random.Random(config.seed).shuffle(tasks)
    per_step = config.tasks_per_step * config.group_size
    adapter: Path | None = None
    used, step, rewards_log, losses, curve = 0, 0, [], [], []
    t0 = time.perf_counter()

    def sampler() -> LlamaModel:
        return LlamaModel(base_path, lora=adapter)

    try:
        if evaluate is not None:
            s = sampler()
            curve.append({"rollouts": 0, "val": evaluate(wrap(s))})
            release(s)
        while used + per_step <= config.budget:
            start = (step * config.tasks_per_step) % len(tasks)
            batch = (tasks + tasks)[start:start + config.tasks_per_step]
            s = sampler()
            rs = rollout.run(wrap(s), batch, taskset.reward, taskset.instruction, [], n=config.group_size,
                             temperature=config.temperature, max_tokens=config.max_tokens,
                             seed=config.seed * 100_003 + step * 101, purpose="train", on_done=lambda r: progress(1, ""))
            release(s)
            used += len(rs)
            values = [r.score.value for r in rs]
            adv = advantages(values, config.group_size)
            policy.train()
            step_loss = 0.0
            for r, a in zip(rs, adv):
                if a == 0.0 or r.error:  # a group where every sample scored the same teaches nothing
                    continue
                prompt = lora.prompt_ids(tok, r.messages)
                ended = r.completion_tokens < config.max_tokens  # stopped by itself: the end-of-turn was sampled too
                completion = tok(r.completion + ("<|im_end|>" if ended else ""), add_special_tokens=False)["input_ids"]
                if not completion:
                    continue
                logps = _token_logps(policy, prompt, list(completion))
                loss = grpo_loss(logps, logps.detach(), torch.tensor([a]), torch.ones_like(logps), config.epsilon)
                (loss / len(rs)).backward()  # the mean over every completion of the batch, zero-advantage ones too
                step_loss += loss.item() / len(rs)
            opt.step()
            opt.zero_grad()
            policy.eval()
            step += 1
            previous = adapter
            adapter = lora.export(policy, workdir / f"grpo-step{step}.gguf", alpha=config.alpha,
                                  meta={"base": str(Path(base_path).resolve()), "method": "grpo", "step": step})
            if previous is not None and step % config.eval_every != 1:  # keep the curve points' adapters and the last
                previous.unlink(missing_ok=True)
            rewards_log.append(sum(values) / len(values))
            losses.append(step_loss)
            progress(0, f"grpo step {step}: mean reward {rewards_log[-1]:.2f}, loss {step_loss:+.4f}")
            if evaluate is not None and (step % config.eval_every == 0 or used + per_step > config.budget):
                s = sampler()
                curve.append({"rollouts": used, "val": evaluate(wrap(s))})
                release(s)
    finally:
        policy.unload()  # the cached base model stays clean
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return GRPOResult(adapter, step, used, tuple(rewards_log), tuple(losses), tuple(curve),
                      time.perf_counter() - t0, rss)
