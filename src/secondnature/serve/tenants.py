"""Who is calling: API keys map to tenants, and each tenant has its own store file, so no query of one tenant can
reach another's rollouts, feedback or lessons (there is no shared table to filter wrongly).

The tenants file is JSON, `{"acme": "sk-acme-...", "beta": "sha256:<hex of the key>"}`: a plain key, or its SHA-256
so the file need not hold secrets. Without a tenants file there is one tenant, "default", using the given store,
and any key is accepted (the server binds to 127.0.0.1 unless told otherwise).

On PostgreSQL (a postgresql:// URL for the tenants' place), each tenant has a schema of its own, `tenant_<name>`, and
its connections have that schema alone on their search_path: the store's queries name no schema, so they reach only
that tenant's tables, as they reach only its file on SQLite."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..store import LessonStore, open_store, postgres

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCHEMA_PREFIX = "tenant_"
SCHEMA_MAX = 63  # PostgreSQL cuts a longer identifier short, so two long tenant names could share one schema


def schema_of(tenant: str) -> str:
    """The PostgreSQL schema a tenant's store lives in."""
    return SCHEMA_PREFIX + tenant


@dataclass(frozen=True)
class Tenants:
    keys: tuple[tuple[str, str], ...]  # (sha256 hex of a key, tenant)
    store_dir: Path | None             # tenants' stores: <dir>/<tenant>.db
    store: str | None = None           # the single tenant's store (no tenants file)
    database: str | None = None        # or a postgresql:// URL: each tenant in its schema there (schema_of)

    @property
    def open(self) -> bool:
        return not self.keys

    def tenant(self, authorization: str | None) -> str | None:
        """The tenant a request's `Authorization: Bearer KEY` belongs to, or None (a 401)."""
        if self.open:
            return "default"
        key = (authorization or "").removeprefix("Bearer ").strip()
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        found = None
        for known, name in self.keys:  # compared in constant time, every key, so timing says nothing
            if hmac.compare_digest(known, digest):
                found = name
        return found

    def store_path(self, tenant: str) -> str | None:
        if self.open:
            return self.store
        if self.database:
            return postgres.in_schema(self.database, schema_of(tenant))
        return str((self.store_dir or Path(".")) / f"{tenant}.db")

    def open_store(self, tenant: str) -> LessonStore:
        return open_store(self.store_path(tenant))

    def names(self) -> list[str]:
        return ["default"] if self.open else sorted({name for _, name in self.keys})


def load_tenants(path: str | Path | None, *, store: str | None = None, store_dir: str | Path | None = None) -> Tenants:
    """The tenants a file names (see the module's doc), or the one open tenant without a file. `store_dir` is where
    their stores go: a directory (made if missing), or a postgresql:// URL (each tenant's schema made if missing).
    ValueError (StoreError for the server) names the problem and the fix."""
    if path is None:
        return Tenants((), None, store)
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the tenants file {path}: {e}; it should be JSON such as "
                         '{"acme": "sk-acme-...", "beta": "sha256:<hex>"}') from e
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"the tenants file {path} should map tenant names to keys, e.g. {{\"acme\": \"sk-...\"}}")
    keys = []
    for name, key in raw.items():
        if not TENANT_NAME.match(str(name)):
            raise ValueError(f"tenant name {name!r} in {path}: use letters, digits, '_', '.', '-' (at most 64)")
        for k in key if isinstance(key, list) else [key]:
            if not isinstance(k, str) or not k.strip():
                raise ValueError(f"tenant {name!r} in {path}: a key must be a non-empty string")
            digest = k.removeprefix("sha256:").lower() if k.startswith("sha256:") else hashlib.sha256(k.encode()).hexdigest()
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"tenant {name!r} in {path}: 'sha256:' must be followed by 64 hex digits")
            keys.append((digest, name))
    if len({d for d, _ in keys}) < len(keys):
        raise ValueError(f"{path}: two tenants share a key; give each its own")
    if postgres.is_url(store_dir):
        return Tenants(tuple(keys), None, database=_schemas(str(store_dir), sorted({n for _, n in keys}), path))
    base = Path(store_dir) if store_dir else Path(path).resolve().parent / "tenants"
    base.mkdir(parents=True, exist_ok=True)
    return Tenants(tuple(keys), base)


def _schemas(url: str, names: list[str], path: str | Path) -> str:
    """`url`, once each tenant's schema is there (made now if missing)."""
    for name in names:
        if len(schema_of(name)) > SCHEMA_MAX:
            raise ValueError(f"tenant name {name!r} in {path}: in PostgreSQL its schema {schema_of(name)!r} would be "
                             f"longer than {SCHEMA_MAX} characters; shorten the name to at most "
                             f"{SCHEMA_MAX - len(SCHEMA_PREFIX)}")
    postgres.create_schemas(url, [schema_of(n) for n in names])
    return url
