"""What can go wrong with the store file, said with the fix (postgres.py says it for a PostgreSQL server).

SQLite reports a full disk, a read-only location, a damaged file or a lock held too long as
`sqlite3.OperationalError`/`DatabaseError` with a terse message, from whichever query met it first,
often deep in a long run. `explain` turns those into `StoreError`, which the CLI prints without a
traceback; errors that mean a bug (a constraint, a bad binding) are left as they are.
"""
from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class StoreError(RuntimeError):
    """The store file cannot be used as it is; the message says why and what to do."""


class HeadMoved(StoreError):
    """A revision was made on a head that another writer has replaced since: committing it would drop their change."""

    def __init__(self, scope: str, read: int | None, now: int | None):
        self.scope, self.read, self.now = scope, read, now
        made_on = f"revision {read}" if read is not None else "no revision (the scope was empty)"
        super().__init__(f"the lessons of {scope!r} changed while this change was being made: it was made on "
                         f"{made_on}, but revision {now} is the head now (another process committed to {scope!r} "
                         f"meanwhile). Nothing was saved; read the head again and apply the change to it (run the "
                         f"command again).")


def quick_check(db: sqlite3.Connection) -> str:
    """What `PRAGMA quick_check` finds (its first few problems), or why it could not run. It reads the whole file
    (about 0.1 s per 100 MB from the page cache, 2 s from disk), so it runs only once an error says damage."""
    try:
        found = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.Error as e:
        return f"quick_check could not run: {e}"
    if found == ["ok"]:
        return "quick_check finds no damage"
    return "quick_check: " + "; ".join(found).replace("\n", "; ")


def explain(e: sqlite3.Error, path: Path, db: sqlite3.Connection | None = None) -> StoreError | None:
    """The StoreError that says what `e` means for the store at `path` and what to do, or None when `e` is not about
    the file or its disk (a bug, which should stay a traceback)."""
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL"):
        return StoreError(f"{path}: the disk is full ({e}); the change in progress was not saved. Free some space "
                          f"on that disk, or pass --store with a path on another disk.")
    if name == "SQLITE_READONLY_DBMOVED":
        return StoreError(f"{path} was moved or deleted while in use ({e}); the change in progress was not saved. "
                          f"Put it back, or pass --store with its new path.")
    if name.startswith("SQLITE_READONLY"):
        return StoreError(f"{path} is read-only here ({e}): the file, its directory or the file system does not allow "
                          f"writing (SQLite also writes {path.name}-wal and -shm beside it). Choose a writable --store, "
                          f"or copy the file somewhere writable. Nothing could be written.")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        found = quick_check(db) if db is not None else ""
        return StoreError(f"{path} is damaged ({e}{'; ' + found if found else ''}). Recover what is readable with "
                          f"the sqlite3 tool, `sqlite3 {path} .recover | sqlite3 {path}.recovered`, and pass --store "
                          f"{path}.recovered (or move it in place), or restore a backup of {path}.")
    if name.startswith("SQLITE_CANTOPEN"):
        return StoreError(f"cannot open {path} ({e}): its directory is missing or not writable, or the path is a "
                          f"directory. Pass --store with a writable file path.")
    if name.startswith("SQLITE_IOERR"):
        return StoreError(f"{path}: the disk reported an input/output error ({e}); the change in progress was not "
                          f"saved. Check the disk (dmesg) and keep the store on a local disk, or pass --store elsewhere.")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(f"{path} stayed locked by another process for longer than the store waits ({e}); the change "
                          f"in progress was not saved. Let that process finish (another learn or curate on this "
                          f"store?) and run the command again.")
    return None


def guard(cls: type[T]) -> type[T]:
    """Every public method of `cls` (a store) raises the explained StoreError instead of a raw SQLite or PostgreSQL
    error about the file, its disk or the server: a run that meets a full disk, a damaged page or a lost connection
    mid-way stops with the fix, whichever query met it."""
    for name, method in list(vars(cls).items()):
        if inspect.isfunction(method) and not name.startswith("_") and name not in ("transaction", "close"):
            setattr(cls, name, guarded(method))
    return cls


def guarded(method: Callable) -> Callable:
    """`method` (of a store, whose `_explain` reads its backend's errors) raising the explained StoreError instead of
    a raw error of the backend."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            if isinstance(e, StoreError) or (err := self._explain(e)) is None:
                raise
            raise err from e
    return run
