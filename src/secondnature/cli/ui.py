"""What every command shares: the two consoles, the usage error, the progress bar, the model options and the
lesson table. Kept in one module so tests swap the consoles (`ui.out`, `ui.err`) and the model loader in one place."""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..executor import parse
from ..inject import listed
from ..judge import judge_reward
from ..models import CompletionCache, Model, cached, load_model
from ..types import Lesson, TaskSet

out = Console()
err = Console(stderr=True)


class UsageError(Exception):
    """A mistake in how a command was called; the message says what to do instead."""


def bar(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"),
                    console=err, transient=False, disable=not err.is_terminal and os.environ.get("CI") == "true")


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int, str], None]]:
    """A bar over rollouts that also prints the loop's messages above it: the `progress` callback of learn/bench."""
    with bar(label) as shown:
        job = shown.add_task("", total=total)

        def progress(spent: int, message: str) -> None:
            shown.update(job, advance=spent)
            if message:
                shown.console.print(message)
        yield progress
        done = shown.tasks[0].completed
        if done < total:  # a run that stopped early (nothing left to win) ends its bar where it stopped
            shown.update(job, total=done, description=f"stopped at {done:.0f} of {total}")


def models(args: argparse.Namespace, reflector: bool = True) -> tuple[Model, Model | None]:
    """The policy (and the reflector) the command's options name; one object when they name the same model."""
    given = {"concurrency": args.concurrency} if getattr(args, "concurrency", None) else {}  # else the model's default
    if reflector and args.reflector == args.policy:  # one model for both: with the reflector's window
        policy = load_model(args.policy, base_url=args.base_url, n_ctx=8192, **given)
        return policy, policy
    policy = load_model(args.policy, base_url=args.base_url, **given)
    if not reflector:
        return policy, None
    return policy, load_model(args.reflector, base_url=args.base_url, n_ctx=8192)


def fmt_ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.1%}, {ci[1]:.1%}]"


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def executor_spec(value: str) -> str:
    try:
        parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def token_budget(value: str) -> int | None:
    if value.lower() in ("none", "unbounded"):
        return None
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of tokens (or 'none')")
    return int(value)


def model_args(p: argparse.ArgumentParser, reflector: bool = True) -> None:
    p.add_argument("--policy", default="default",
                   help="GGUF path or packaged name (default: the 0.5B model); with --base-url, a model name")
    if reflector:
        p.add_argument("--reflector", default="reflector",
                       help="GGUF path or packaged name (default: the 1.5B model); with --base-url, a model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint; key from OPENAI_API_KEY")
    p.add_argument("--concurrency", type=positive, default=None, metavar="N",
                   help="rollouts in flight at once (default: 4 to an endpoint; 1 on the embedded model, whose samples "
                        "of one prompt decode together anyway)")
    p.add_argument("--executor", type=executor_spec, default="local", metavar="local|ray[:HOST:PORT]",
                   help="where rollouts run: local threads (default), or Ray tasks on the cluster at HOST:PORT (without "
                        "an address: $RAY_ADDRESS, else a Ray started for this run); the learner stays here "
                        "(docs/ray.md, extra `ray`)")
    p.add_argument("--max-tokens", type=int, default=384, help="completion tokens per rollout")
    p.add_argument("--lesson-tokens", type=token_budget, default=400,
                   help="token budget for injected lessons, counted with the policy's tokenizer ('none': no cap)")
    p.add_argument("--seed", type=int, default=0)


def judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", default=None, metavar="MODEL",
                   help="score replies with this model against --rubric instead of a checker (packaged name, GGUF path, "
                        "or with --base-url a model name); a .jsonl file's tasks may then leave out their answers")
    p.add_argument("--rubric", default=None, metavar="FILE",
                   help="text file saying what a good reply does, for --judge (the judge never sees reference answers)")


def rubric_of(args: argparse.Namespace) -> str | None:
    """The rubric's text when --judge and --rubric are both given, None when neither is; read before any model loads."""
    judge, path = getattr(args, "judge", None), getattr(args, "rubric", None)
    if judge is None and path is None:
        return None
    if judge is None:
        raise UsageError("--rubric needs a model to read it: add --judge MODEL (e.g. --judge reflector)")
    if path is None:
        raise UsageError("--judge needs a rubric: add --rubric FILE, a text file saying what a good reply does")
    if getattr(args, "checker", None):
        raise UsageError("--checker and --judge both score replies: give one of them")
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the rubric {path}: {e}; --rubric takes a UTF-8 text file") from e
    if not text:
        raise UsageError(f"the rubric {path} is empty: write what a good reply does, in a few plain sentences")
    return text


def judged(tasksets: list[TaskSet], args: argparse.Namespace, rubric: str | None,
           cache: CompletionCache | None = None) -> list[TaskSet]:
    """The task sets scored by the --judge model against `rubric` (as they are when `rubric` is None); the judge's
    calls go through `cache`, so a rerun replays its verdicts."""
    if rubric is None:
        return tasksets
    judge = load_model(args.judge, base_url=args.base_url)
    reward = judge_reward(cached(judge, cache) if cache is not None else judge, rubric)
    return [replace(ts, reward=reward) for ts in tasksets]


def lesson_table(lessons: Sequence[Lesson], title: str, running: Mapping[str, Any] | None = None) -> None:
    """The lessons with their credit, readable at 80 columns: the text wraps, the figures stay short. `running` maps
    lesson ids to curate.RunningCredit (the estimate from recorded rollouts)."""
    t = Table(title=title, box=box.SIMPLE_HEAD, show_lines=True, expand=False, title_justify="left")
    t.add_column("id", no_wrap=True)
    t.add_column("lesson", ratio=1, min_width=20, overflow="fold")
    for col in ("gate", "loo", "seen", "uses"):
        t.add_column(col, justify="right", no_wrap=True)
    retired = any(x.status != "active" for x in lessons)
    for x in lessons:
        r = (running or {}).get(x.id)
        text = escape(listed(x)) + (f"\n[dim]{x.status}: {escape(x.note)}[/]" if retired and x.status != "active" else "")
        t.add_row(x.id, text, f"{x.gain:+.2f}", f"{x.loo:+.2f}" if x.loo is not None else "-",
                  f"{r.effect:+.2f}" if r is not None and r.effect is not None else "-", str(x.uses))
    if not lessons:
        t.add_row("-", "(no lessons yet)", "", "", "", "")
    out.print(t)
    if lessons:
        out.print("[dim]gate: the gain it won on fresh items; loo: leave-one-out (curate); seen: with it minus without, "
                  "over recorded attempts; `lessons show ID` for its evidence[/]")
