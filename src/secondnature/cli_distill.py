"""`secondnature distill`: a revision's lessons into a LoRA adapter that llama.cpp loads with `--policy`."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from . import ui
from .cli import _models, progress_bar
from .distill import DistillConfig, distill
from .store import open_store
from .tasks import load_taskset
from .ui import UsageError


def cmd_distill(args: argparse.Namespace) -> int:
    taskset = load_taskset(args.taskset, args.checker)
    store = open_store(args.store)
    policy, _ = _models(args, reflector=False)
    config = DistillConfig(tasks=args.tasks, samples=args.samples, epochs=args.epochs, rank=args.rank,
                           lr=args.lr, max_steps=args.max_steps, max_tokens=args.max_tokens, match=args.match,
                           lesson_tokens=args.lesson_tokens, seed=args.seed)
    steps = args.max_steps or math.ceil(config.tasks * config.per_task / config.batch) * config.epochs
    try:
        with progress_bar(config.tasks * config.samples + steps, f"distill {taskset.name}") as progress:
            r = distill(policy, taskset, store, config, revision=args.revision,
                        out=Path(args.out) if args.out else None, progress=progress)
    except ValueError as e:
        raise UsageError(str(e)) from e
    summary = {"adapter": str(r.adapter), "scope": r.scope, "revision": r.revision, "lessons": list(r.lessons),
               "teacher_rollouts": r.teacher_rollouts, "teacher_accuracy": r.teacher_accuracy,
               "examples": r.examples, "steps": r.report.steps, "first_loss": r.report.losses[0],
               "last_loss": r.report.losses[-1], "train_seconds": round(r.report.seconds, 1),
               "teacher_seconds": round(r.teacher_seconds, 1), "peak_rss_mb": round(r.report.peak_rss_mb),
               "distillation_id": r.distillation_id}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    ui.out.print(f"teacher (policy + {len(r.lessons)} lessons): {r.teacher_accuracy:.1%} of {r.teacher_rollouts} "
                 f"attempts correct; {r.examples} kept as training examples")
    ui.out.print(f"LoRA: {r.report.steps} steps, loss {r.report.losses[0]:.3f} -> {r.report.losses[-1]:.3f}, "
                 f"{r.report.seconds:.0f} s, peak memory {r.report.peak_rss_mb:.0f} MB")
    ui.out.print(f"adapter: {r.adapter}\nuse it: secondnature eval {args.taskset} --policy {r.adapter} --no-lessons")
    return 0

