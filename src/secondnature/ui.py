"""Terminal output shared by the CLI modules: the two consoles, the usage error and the lesson table.

Kept apart so tests can swap the consoles in one place (`ui.out`, `ui.err`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .types import Lesson

out = Console()
err = Console(stderr=True)


class UsageError(Exception):
    """A mistake in how a command was called; the message says what to do instead."""


def lesson_table(lessons: Sequence[Lesson], title: str, running: Mapping[str, Any] | None = None) -> None:
    """`running` maps lesson ids to curate.RunningCredit (the estimate from recorded rollouts)."""
    t = Table(title=title, show_lines=True, expand=True)
    t.add_column("id", no_wrap=True)
    t.add_column("lesson", ratio=3, min_width=24)  # the lesson gets the room; the figures wrap instead
    for col in ("gate gain", "leave-one-out", "from rollouts", "uses", "evidence", "status"):
        t.add_column(col, ratio=1, max_width=22)
    for x in lessons:
        loo = f"{x.loo:+.2f} (n={x.loo_n})" if x.loo is not None else "-"
        r = (running or {}).get(x.id)
        seen = f"{r.effect:+.2f} over {r.tasks} tasks" if r is not None and r.effect is not None else "-"
        status = x.status + (f": {escape(x.note)}" if x.note else "")
        t.add_row(x.id, escape(x.text), f"{x.gain:+.2f}", loo, seen, str(x.uses), f"{len(x.evidence)} rollouts",
                  status)
    if not lessons:
        t.add_row("-", "(no lessons yet)", "", "", "", "", "", "")
    out.print(t)
