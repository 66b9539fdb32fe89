"""`secondnature distill`: a revision's lessons into a LoRA adapter that llama.cpp loads with `--policy`."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..store import open_store
from ..tasks import load_taskset
from ..train.distill import DistillConfig, distill
from . import ui
from .ui import UsageError


def cmd_distill(args: argparse.Namespace) -> int:
    taskset = load_taskset(args.taskset, args.checker)
    store = open_store(args.store)
    policy, _ = ui.models(args, reflector=False)
    config = DistillConfig(tasks=args.tasks, samples=args.samples, epochs=args.epochs, rank=args.rank,
                           lr=args.lr, max_steps=args.max_steps, max_tokens=args.max_tokens, match=args.match,
                           balance=not args.no_balance, min_reward=args.min_reward,
                           lesson_tokens=args.lesson_tokens, seed=args.seed)
    steps = args.max_steps or math.ceil(config.tasks * config.per_task / config.batch) * config.epochs
    try:
        with ui.progress_bar(config.tasks * config.samples + steps, f"distill {taskset.name}") as progress:
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="bake a revision's lessons into the policy's weights (LoRA, GGUF adapter)")
    p.add_argument("taskset")
    p.add_argument("--revision", type=int, default=None, help="revision to distil (default: the head)")
    p.add_argument("--tasks", type=int, default=64, help="training tasks the teacher answers")
    p.add_argument("--samples", type=int, default=4, help="teacher samples per task; correct ones are kept")
    p.add_argument("--min-reward", type=float, default=1.0,
                   help="keep teacher answers scoring at least this (0: every answer; with --match logits the "
                        "student then imitates the teacher everywhere, its mistakes included)")
    p.add_argument("--no-balance", action="store_true",
                   help="keep the most common final answer's surplus of examples (balanced by default)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps")
    p.add_argument("--match", choices=["tokens", "logits"], default="logits",
                   help="learn the teacher's replies (tokens) or its next-token distributions along them (logits)")
    p.add_argument("--out", default=None, help="adapter path (default: distilled/... beside the store file)")
    p.add_argument("--checker", default=None)
    p.add_argument("--json", action="store_true")
    ui.model_args(p, reflector=False)
    p.set_defaults(func=cmd_distill)
