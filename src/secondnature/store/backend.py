"""The few statements whose SQL differs between SQLite and PostgreSQL, one function each; every other query of the
store is one text for both (`?` placeholders, which the PostgreSQL connection rewrites).

Full-text search: SQLite's FTS5 MATCH with BM25 `rank`; PostgreSQL's tsvector `doc` column ('simple' configuration)
with `-ts_rank`, so on both a lower rank is a closer match. The two rank the same matches by different formulas, so
the order of near ties can differ between backends; which rows match is the same.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def upsert(postgres: bool, table: str, columns: Sequence[str], key: str, *, keep: bool = False) -> str:
    """An INSERT of `columns` that replaces a row whose `key` is already there (or, with `keep`, leaves it)."""
    cols, marks = ", ".join(columns), ",".join("?" * len(columns))
    if not postgres:
        return f"INSERT OR {'IGNORE' if keep else 'REPLACE'} INTO {table} ({cols}) VALUES ({marks})"
    on = "NOTHING" if keep else "UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO {on}"


def insert_id(db: Any, postgres: bool, sql: str, args: Sequence) -> int:
    """Run an INSERT and return the new row's id (PostgreSQL has no lastrowid: it says it with RETURNING)."""
    if postgres:
        return int(db.execute(sql + " RETURNING id", args).fetchone()[0])
    return int(db.execute(sql, args).lastrowid)


def any_word(postgres: bool, words: Sequence[str]) -> str:
    """A full-text query matching a document with any of `words` (quoted: no word is read as syntax)."""
    return " | ".join(f"'{w}'" for w in words) if postgres else " OR ".join(f'"{w}"' for w in words)


def all_starts(postgres: bool, words: Sequence[str]) -> str:
    """A full-text query matching a document with a word starting with each of `words`."""
    return " & ".join(f"'{w}':*" for w in words) if postgres else " AND ".join(f'"{w}"*' for w in words)


def matches(postgres: bool, table: str) -> str:
    """The condition that a row of the full-text `table` matches the query bound to its one `?`."""
    return "doc @@ to_tsquery('simple', ?)" if postgres else f"{table} MATCH ?"


def ranked(postgres: bool, table: str, columns: str) -> str:
    """`columns` and the rank (lower is closer) of the rows of `table` matching a query (the first `?`), closest
    first, at most the second `?`."""
    if postgres:
        return (f"SELECT {columns}, -ts_rank(doc, q) AS rank FROM {table}, to_tsquery('simple', ?) AS q "
                f"WHERE doc @@ q ORDER BY rank LIMIT ?")
    return f"SELECT {columns}, rank FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?"
