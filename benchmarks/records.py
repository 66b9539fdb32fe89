"""What every benchmark record says about its run, and the line BENCHMARKS.md opens a record's section with.

Why one module: a figure means little without the code, the day and the machine it was measured on, and each script
used to take these its own way. The scripts beside this file import it by plain name (`import records`).
"""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    """The short commit of the code that runs."""
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def today() -> str:
    return date.today().isoformat()


def machine(python: bool = False) -> str:
    """The machine as the records name it: its architecture and cores (and, if asked, the Python version)."""
    return f"{platform.machine()}, {os.cpu_count()} cores" + (f", python {platform.python_version()}" if python else "")


def load() -> float:
    """The 1-minute load average: other work on a shared machine slows what is timed, so it is recorded, not hidden."""
    return round(os.getloadavg()[0], 2)


def header(command: str) -> dict:
    """The keys a record starts with: the command that wrote it, the date, the commit and the machine."""
    return {"command": command, "date": today(), "commit": commit(), "machine": machine()}


def preamble(record: dict, file: str, *more: str) -> str:
    """`file`; date; commit; machine; `more`...; `command`: the header's facts that the record has (a sweep's summary
    has no commit or machine), without a closing full stop (sections go on differently)."""
    facts = [f"`{file}`", record.get("date"), f"commit {record['commit']}" if "commit" in record else None,
             record.get("machine"), *more, f"`{record['command']}`" if "command" in record else None]
    return "; ".join(f for f in facts if f is not None)
