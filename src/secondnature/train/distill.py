"""Second nature: bake a revision's lessons into the policy's weights (context distillation with LoRA).

The teacher is the policy with the revision's lessons in its system prompt, sampling several answers
to each training task on the embedded runtime (fast); only answers the reward accepts are kept, so
the student copies good behaviour and not the teacher's mistakes. The student is the same policy
with the bare instruction, trained with LoRA (torch) to give those answers. The adapter is written
as GGUF, so the habit runs on llama.cpp with no lessons in the prompt and no torch; the store
records which revision it came from.
"""
from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .. import inject, rollout
from ..evidence import final_label
from ..models import CachedModel, LlamaModel, Model, ModelError
from ..store import LessonStore
from ..tasks import slug, split
from ..types import TaskSet
from . import lora


@dataclass(frozen=True)
class DistillConfig:
    tasks: int = 64              # training tasks the teacher answers
    samples: int = 4             # teacher samples per task
    temperature: float = 0.8
    min_reward: float = 1.0      # keep only answers the reward accepts fully
    per_task: int = 2            # at most this many distinct kept answers per task: no task dominates
    balance: bool = True         # no final answer supplies more examples than the runner-up (see balance_labels)
    match: str = "logits"        # "logits": the teacher's next-token distributions along its kept replies;
                                 # "tokens": the replies alone (on letters that taught a constant answer)
    rank: int = 8
    alpha: int = 16
    epochs: int = 2
    lr: float = 2e-4
    batch: int = 4
    max_len: int = 512
    max_steps: int | None = None
    max_tokens: int = 384
    lesson_tokens: int | None = 400
    seed: int = 0
    split_seed: int = 0


@dataclass(frozen=True)
class DistillResult:
    adapter: Path
    scope: str
    revision: int | None
    lessons: tuple[str, ...]
    teacher_rollouts: int
    teacher_accuracy: float
    examples: int
    report: lora.TrainReport
    teacher_seconds: float
    distillation_id: int


def teacher_examples(policy: Model, taskset: TaskSet, lessons: list, store: LessonStore, config: DistillConfig,
                     progress: Callable[[int, str], None]) -> tuple[list[lora.Example], list]:
    """The teacher's accepted answers on training tasks, as (student messages, reply) examples."""
    train = list(split(taskset.tasks, config.split_seed)["train"])
    random.Random(config.seed).shuffle(train)
    train = train[:config.tasks]
    system, kept = inject.compose(taskset.instruction, lessons, config.lesson_tokens, policy.count_tokens)
    rs = rollout.run(policy, train, taskset.reward, system, kept, n=config.samples, temperature=config.temperature,
                     max_tokens=config.max_tokens, seed=config.seed * 7919 + 17, purpose="distill",
                     on_done=lambda r: progress(1, ""))
    store.add_rollouts(rs, scope=taskset.name)
    by_id = {t.id: t for t in train}
    examples, taken = [], {}
    for r in rs:
        text = r.completion.strip()
        if r.error or r.score.value < config.min_reward or not text:
            continue
        seen = taken.setdefault(r.task_id, set())
        if text in seen or len(seen) >= config.per_task:
            continue
        seen.add(text)
        student = tuple(rollout.messages_for(by_id[r.task_id], taskset.instruction))  # no lessons: the habit
        examples.append(lora.Example(student, text, tuple(r.messages)))
    return (balance_labels(examples) if config.balance else examples), rs


def balance_labels(examples: list[lora.Example]) -> list[lora.Example]:
    """Cap the examples of the most common final answer at the count of the runner-up.

    Keeping only rewarded answers over-represents the answer the teacher is most often right with:
    on letters, where "1" is right 60% of the time, a student trained on the raw filter learned to
    answer "1" to everything (a prior, not the skill). Capping the leading answer takes that shortcut
    away; examples are dropped from the end, so earlier tasks keep theirs."""
    labels = [final_label(ex.completion) for ex in examples]
    counts = Counter(labels).most_common()
    if len(counts) < 2:
        return examples
    top, cap = counts[0][0], counts[1][1]
    kept, seen = [], 0
    for ex, label in zip(examples, labels):
        if label == top:
            seen += 1
            if seen > cap:
                continue
        kept.append(ex)
    return kept


def distill(policy: Model, taskset: TaskSet, store: LessonStore, config: DistillConfig = DistillConfig(), *,
            revision: int | None = None, out: Path | None = None,
            progress: Callable[[int, str], None] = lambda _n, _m: None) -> DistillResult:
    base = policy.inner if isinstance(policy, CachedModel) else policy
    if not isinstance(base, LlamaModel) or base.lora:
        raise ModelError("distillation trains the embedded model's own weights: use a GGUF policy (the default, or "
                         "--policy FILE.gguf), not an endpoint or an already distilled adapter")
    if taskset.tools:
        raise ValueError(f"{taskset.name} runs multi-turn episodes with tools; distillation trains on single replies "
                         f"for now: distil the task set without its tool ({taskset.name.split('+')[0]})")
    scope = taskset.name
    rev = store.revision(revision) if revision is not None else store.head(scope)
    lessons = store.revision_lessons(rev)
    if not lessons:
        raise ValueError(f"{scope} has no lessons to distil (revision {revision if revision is not None else 'head'});"
                         f" run `secondnature learn {scope}` first")
    cached = policy if isinstance(policy, CachedModel) else CachedModel(policy, store)
    t0 = time.perf_counter()
    examples, rs = teacher_examples(cached, taskset, lessons, store, config, progress)
    teacher_s = time.perf_counter() - t0
    if not examples:
        raise ValueError(f"the teacher (policy with the lessons) answered none of {len(rs)} training attempts "
                         f"correctly, so there is nothing to distil; learn better lessons or raise --tasks")
    progress(0, f"teacher: {len(examples)} accepted answers from {len(rs)} attempts; training LoRA")
    model, tok = lora.load(base.path)
    peft_model, report = lora.train(model, tok, examples, rank=config.rank, alpha=config.alpha,
                                    epochs=config.epochs, lr=config.lr, batch=config.batch, max_len=config.max_len,
                                    seed=config.seed, max_steps=config.max_steps, match=config.match,
                                    progress=progress)
    tag = hashlib.sha256("|".join(x.text for x in lessons).encode()).hexdigest()[:8]
    out = out or store.files_dir / "distilled" / f"{slug(scope)}-r{rev.id if rev else 0}-{tag}.gguf"
    meta = {"base": str(base.path.resolve()), "base_digest": base.identity.rpartition("@")[2], "scope": scope,
            "revision": rev.id if rev else "", "lessons": ",".join(x.id for x in lessons)}
    lora.export(peft_model, out, alpha=config.alpha, meta=meta)
    peft_model.unload()  # the cached base model stays clean for the next adapter
    accuracy = sum(r.score.value for r in rs) / len(rs)
    summary = {"teacher_rollouts": len(rs), "teacher_accuracy": accuracy, "examples": len(examples),
               "steps": report.steps, "first_loss": report.losses[0], "last_loss": report.losses[-1],
               "train_seconds": report.seconds, "teacher_seconds": teacher_s, "peak_rss_mb": report.peak_rss_mb}
    did = store.add_distillation(scope, rev.id if rev else None, str(out), str(base.path), asdict(config), summary)
    return DistillResult(out, scope, rev.id if rev else None, tuple(x.id for x in lessons), len(rs), accuracy,
                         len(examples), report, teacher_s, did)
