"""The store on a PostgreSQL server (psycopg 3, the `postgres` extra): the connection, and what its errors mean.

`LessonStore` runs the same queries on both backends; this module makes a psycopg connection answer the part of
sqlite3's API they use (`?` placeholders, rows read by index or column name, `in_transaction`), and turns what the
server or the network reports into a StoreError that says what to do.

The write lock: every write transaction starts by taking one transaction-level advisory lock (`WRITE_LOCK`, keyed
on the store's schema), so write transactions run one at a time across processes and machines, as under SQLite's
BEGIN IMMEDIATE. At READ COMMITTED (PostgreSQL's default) each statement after the lock sees everything committed
before it, so a head read inside the transaction is the head the commit is made on.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .errors import StoreError

PREFIXES = ("postgresql://", "postgres://")
APP_KEY = 0x534E4154  # "SNAT", the first key of the advisory lock (and SQLite's application_id)
WRITE_LOCK = f"SELECT pg_advisory_xact_lock({APP_KEY}, hashtext(COALESCE(current_schema(), '')))"
LOCK_TIMEOUT_S = 30  # as SQLite's busy timeout: a writer waits this long for another's write lock


def is_url(where: object) -> bool:
    return isinstance(where, str) and where.startswith(PREFIXES)


def in_schema(url: str, schema: str) -> str:
    """`url` whose connections have `schema` as their whole search_path (libpq's `options`, after any the URL gives),
    so the store opened there is made in that schema and its queries, which name no schema, see no other."""
    ident = '"' + schema.replace('"', '""') + '"'
    option = "-csearch_path=" + re.sub(r"([\\\s])", r"\\\1", ident)  # libpq splits options at spaces; \ escapes
    parts = urlsplit(url)
    items = [i for i in parts.query.split("&") if i]
    given = [unquote(i.partition("=")[2]) for i in items if i.partition("=")[0] == "options"]
    kept = [i for i in items if i.partition("=")[0] != "options"]
    options = quote(" ".join([*given, option]), safe="")
    return urlunsplit(parts._replace(query="&".join([*kept, f"options={options}"])))


def create_schemas(url: str, schemas: Sequence[str]) -> list[str]:
    """Creates those of `schemas` that the database at `url` lacks, and returns them; a schema there already (made
    earlier, or by an administrator) is used as it is. StoreError names the fix when the role may not create one."""
    db = connect(url)
    import psycopg
    from psycopg import sql
    try:
        have = {r[0] for r in db.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(?)", [list(schemas)])}
        made = []
        for schema in (s for s in schemas if s not in have):
            try:
                db.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                made.append(schema)
            except (psycopg.errors.DuplicateSchema, psycopg.errors.UniqueViolation):
                pass  # another process made it meanwhile
            except psycopg.errors.InsufficientPrivilege as e:
                raise _no_create(db, url, schema, e) from e
        return made
    except psycopg.Error as e:
        raise explain(e, url, db) or StoreError(f"{masked(url)}: cannot create the tenants' schemas ({e})") from e
    finally:
        db.close()


def _no_create(db: Connection, url: str, schema: str, e: Exception) -> StoreError:
    from psycopg import sql
    user, database = db.execute("SELECT current_user, current_database()").fetchone()
    grant = sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(user))
    first = sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(schema), sql.Identifier(user))
    return StoreError(f"{masked(url)}: the role {user} may not create the schema {schema} "
                      f"({str(e).strip().splitlines()[0]}). Let it (`{grant.as_string(db.conn)}`, as the database's "
                      f"owner), or have each tenant's schema made for it (`{first.as_string(db.conn)}`). Nothing "
                      f"was changed.")


def masked(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class Row(tuple):
    """A row read by index, by column name, or as a dict, as sqlite3.Row is."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        return tuple.__getitem__(self, self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _rows(cursor: Any):
    names = {c.name: i for i, c in enumerate(cursor.description or ())}

    def make(values: Sequence) -> Row:
        row = Row(values)
        row.names = names
        return row
    return make


@lru_cache(maxsize=1024)
def placeholders(sql: str) -> str:
    """SQLite's `?` as psycopg's `%s` (a literal % doubled). No query of the store has a ? inside a string."""
    return sql.replace("%", "%%").replace("?", "%s")


def _values(args: Sequence) -> list:
    """PostgreSQL's text cannot hold a NUL character, which SQLite's can (a model's reply, an application's request):
    it becomes U+FFFD rather than an error that would lose the whole row."""
    return [a.replace("\x00", "\ufffd") if isinstance(a, str) and "\x00" in a else a for a in args]


class Connection:
    """A psycopg connection in autocommit mode (a statement outside `transaction()` is its own transaction), with the
    few sqlite3.Connection methods the store's queries call."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, args: Sequence = ()) -> Any:
        return self.conn.execute(placeholders(sql), _values(args)) if args else self.conn.execute(sql)

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> Any:
        cur = self.conn.cursor()
        cur.executemany(placeholders(sql), [_values(r) for r in rows])
        return cur

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.conn.close()


def connect(url: str) -> Connection:
    """A connection to the store at `url`; StoreError names what is wrong (no psycopg, no server, the login, no
    database) and the fix."""
    try:
        import psycopg
        from psycopg.adapt import Loader
    except ImportError as e:
        raise StoreError(f"a PostgreSQL store needs psycopg: pip install 'secondnature[postgres]' ({e}). "
                         f"Nothing was changed.") from e

    class Number(Loader):  # SUM and AVG of integers are NUMERIC: read as int or float, as SQLite gives them
        def load(self, data: Any) -> int | float:
            v = Decimal(bytes(data).decode())
            return int(v) if v == v.to_integral_value() else float(v)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="secondnature")
    except psycopg.Error as e:
        raise connect_error(e, url) from e
    conn.adapters.register_loader("numeric", Number)
    conn.row_factory = _rows
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
    return Connection(conn)


def connect_error(e: Exception, url: str) -> StoreError:
    where, said = masked(url), str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    text = str(e).lower()
    if "does not exist" in text and "database" in text:
        return StoreError(f"the database of {where} does not exist ({said}); create it (`createdb NAME`, or CREATE "
                          f"DATABASE in psql) or fix the name in the URL. Nothing was changed.")
    if any(s in text for s in ("password", "authentication", "role", "pg_hba", "permission denied")):
        return StoreError(f"the PostgreSQL server refused the login to {where} ({said}); check the user and password "
                          f"(in the URL, $PGPASSWORD or ~/.pgpass) and that pg_hba.conf lets this host in. Nothing "
                          f"was changed.")
    return StoreError(f"cannot reach the PostgreSQL server of {where} ({said}); start the server, or fix the host "
                      f"and port in --store / $SECONDNATURE_STORE. Nothing was changed.")


def foreign_tables(db: Connection) -> list[str]:
    """The tables of the store's schema when they are not a secondnature store's (else [])."""
    tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                       "ORDER BY tablename")]
    if not tables:
        return []
    if "migrations" in tables:
        try:  # our migrations table, which records 001_initial in the transaction that made it
            if db.execute("SELECT 1 FROM migrations WHERE name = '001_initial'").fetchone():
                return []
        except Exception:  # another program's migrations table, without our columns
            pass
    return tables


def explain(e: BaseException, url: str, db: Connection | None = None) -> StoreError | None:
    """The StoreError that says what a psycopg error `e` means for the store and what to do, or None when it is not
    about the server, the network or the rights (a bug, which should stay a traceback)."""
    try:
        import psycopg
    except ImportError:
        return None
    if not isinstance(e, psycopg.Error):
        return None
    where, state = masked(url), getattr(e, "sqlstate", None) or ""
    said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if state == "53100":
        return StoreError(f"{where}: the PostgreSQL server's disk is full ({said}); the change in progress was not "
                          f"saved. Free space on the server, then run the command again.")
    if state == "55P03":
        return StoreError(f"{where} stayed locked by another writer for longer than the store waits ({said}); the "
                          f"change in progress was not saved. Let that process finish (another learn, curate or "
                          f"serve on this store?) and run the command again.")
    if state == "25006":
        return StoreError(f"{where} is read-only ({said}): a standby, or default_transaction_read_only is on. Point "
                          f"--store at the primary server. Nothing could be written.")
    if state == "3F000":
        return StoreError(f"{where}: the schema the URL's search_path names does not exist ({said}); create it "
                          f"(CREATE SCHEMA name, as a role that may) or fix the search_path. Nothing was changed.")
    if state == "42501":
        return StoreError(f"{where}: the role may not do this ({said}). Make it the database's owner (`createdb -O "
                          f"USER NAME`), or GRANT it CREATE on the schema and rights on the store's tables.")
    broken = db is not None and db.conn.closed
    if isinstance(e, psycopg.OperationalError) and (broken or state.startswith(("08", "57P"))):
        return StoreError(f"lost the connection to the PostgreSQL server of {where} ({said}); the change in "
                          f"progress was not saved. Check that the server is up and run the command again.")
    return None
