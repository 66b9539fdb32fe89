"""Opening a store on either backend (an SQLite file, or a PostgreSQL database given a postgresql:// URL), its
write transaction and its migrations: what the queries of LessonStore (sqlite.py) run on.

Several processes may write one store: every write transaction takes the store's write lock first, SQLite's (BEGIN
IMMEDIATE) or, on PostgreSQL, an advisory lock (postgres.py), so what a writer reads inside it is what it commits
on, whichever process or machine made the change. A second writer waits for the lock (up to BUSY_TIMEOUT_S).
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import postgres, schema
from .errors import StoreError, explain, guard, guarded
from .rows import now

APP_ID = 0x534E4154  # "SNAT" in PRAGMA application_id: tells our files from foreign SQLite files
BUSY_TIMEOUT_S = 30  # a writer waits this long for another's write lock; a learn step holds it for milliseconds


def default_path() -> Path:
    from ..weights import home
    return home() / "store.db"


@guard  # every public method says what a full disk, a read-only place or a damaged file means, and the fix
class StoreBase:
    """A connection to an SQLite file or, given a postgresql:// URL, a PostgreSQL database, migrated; its write
    transaction. LessonStore (sqlite.py) holds the queries."""

    def __init__(self, path: str | Path | None = None):
        self.postgres = postgres.is_url(path)
        self._cache_db: Any = None  # PostgreSQL: the completion cache's own connection (see get_completion)
        self._cache_lock = threading.Lock()
        if self.postgres:
            self.path: Path | str = str(path)
            self.db: Any = postgres.connect(self.path)
            try:
                self._setup()
            except BaseException:
                self.db.close()
                raise
            return
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a read-only file system, or a file where a directory should be
            raise StoreError(f"cannot create the directory of {self.path} ({e.strerror}); pass --store with a path "
                             f"in a writable directory. Nothing was changed.") from e
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            # other threads may read and write the completion cache (their callers serialise those calls)
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            known = explain(e, self.path) if getattr(e, "sqlite_errorname", "") != "SQLITE_NOTADB" else None
            raise known or StoreError(f"{self.path} is not a readable SQLite database ({e}); move it aside or pass "
                                      f"--store with another path. Nothing was changed.") from e
        if not fresh and app_id != APP_ID and tables:
            raise StoreError(f"{self.path} is an SQLite file that secondnature did not create (tables: "
                             f"{', '.join(sorted(tables)[:5])}); pass --store with another path. Nothing was changed.")
        self._setup()

    @guarded
    def _setup(self) -> None:
        if self.postgres and (found := postgres.foreign_tables(self.db)):
            raise StoreError(f"{self.where} holds tables that secondnature did not create ({', '.join(found[:5])}); "
                             f"give the store a database (or a schema) of its own. Nothing was changed.")
        if not self.postgres:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    @property
    def where(self) -> str:
        """Where the store is, for a person (a URL without its password)."""
        return postgres.masked(self.path) if self.postgres else str(self.path)

    @property
    def name(self) -> str:
        """The store's short name: its file's name, or its database's."""
        return urlsplit(self.where).path.lstrip("/") or self.where if self.postgres else self.path.name

    @property
    def files_dir(self) -> Path:
        """Where files made from this store go (distilled adapters): beside its file, or $SECONDNATURE_HOME."""
        return default_path().parent if self.postgres else self.path.parent

    def close(self) -> None:
        self.db.close()
        if self._cache_db is not None:
            self._cache_db.close()

    def _explain(self, e: BaseException) -> StoreError | None:
        """The StoreError an error of the backend means (see errors.guarded), or None."""
        if self.postgres:
            return postgres.explain(e, self.path, self.db)
        return explain(e, self.path, self.db) if isinstance(e, sqlite3.Error) else None

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction; it takes the store's write lock first (BEGIN IMMEDIATE; PostgreSQL: the advisory
        lock), so what is read inside it is what the commit will be made on, in every process."""
        if self.db.in_transaction:  # nested: the outer transaction owns the commit
            yield self.db
            return
        try:
            self._execute(*(("BEGIN", postgres.WRITE_LOCK) if self.postgres else ("BEGIN IMMEDIATE",)))
            yield self.db
        except BaseException:
            self._rollback()
            raise
        try:
            self._execute("COMMIT")
        except StoreError:
            self._rollback()
            raise

    @guarded
    def _execute(self, *statements: str) -> None:
        for sql in filter(None, statements):
            self.db.execute(sql)

    def _rollback(self) -> None:
        if self.db.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
            try:
                self.db.execute("ROLLBACK")
            except Exception:
                pass  # the error that led here (a lost connection too) says more than a failed rollback would

    def _migrate(self) -> None:
        with self.transaction() as db:
            if not self.postgres:
                db.execute(f"PRAGMA application_id={APP_ID}")
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {r[0] for r in db.execute("SELECT name FROM migrations")}
            known = {name for name, _ in schema.MIGRATIONS}
            if done - known:
                raise StoreError(f"{self.where} was written by a newer secondnature (migrations {sorted(done - known)});"
                                 f" upgrade secondnature to use it")
            for name, sql in schema.MIGRATIONS:
                if name in done:
                    continue
                if self.postgres:  # one execute, not split at ";": a function's body holds them
                    db.execute(schema.POSTGRES.get(name, sql))
                for statement in sql.split(";") if not self.postgres else ():
                    if statement.strip():
                        try:
                            db.execute(statement)
                        except sqlite3.OperationalError as e:
                            if "fts5" not in str(e):
                                raise
                            raise StoreError(f"this Python's SQLite ({sqlite3.sqlite_version}) was built without "
                                             "FTS5, which lesson retrieval needs; use a Python whose sqlite3 has "
                                             "it (python.org and Debian builds do). Nothing was changed.") from e
                db.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))

    def migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    def _cache(self) -> Any:
        """The connection of the completion cache, which worker threads call while this thread may be inside a
        transaction: on PostgreSQL a connection of its own (autocommit), so a put from another thread neither lands
        in that transaction nor waits for it; SQLite's callers serialise their calls on the one connection."""
        if not self.postgres:
            return self.db
        with self._cache_lock:
            if self._cache_db is None:
                self._cache_db = postgres.connect(self.path)
        return self._cache_db
