"""Terminal output shared by the CLI modules: the two consoles, the usage error and the lesson table.

Kept apart so tests can swap the consoles in one place (`ui.out`, `ui.err`)."""
from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .types import Lesson

out = Console()
err = Console(stderr=True)


class UsageError(Exception):
    """A mistake in how a command was called; the message says what to do instead."""


def lesson_table(lessons: Sequence[Lesson], title: str) -> None:
    t = Table(title=title, show_lines=True)
    for col in ("id", "lesson", "gain", "uses", "evidence", "status"):
        t.add_column(col)
    for x in lessons:
        t.add_row(x.id, escape(x.text), f"{x.gain:+.2f}", str(x.uses), f"{len(x.evidence)} rollouts", x.status)
    if not lessons:
        t.add_row("-", "(no lessons yet)", "", "", "", "")
    out.print(t)
