"""Who is calling: API keys map to tenants, and each tenant has its own store file, so no query of one tenant can
reach another's rollouts, feedback or lessons (there is no shared table to filter wrongly).

The tenants file is JSON, `{"acme": "sk-acme-...", "beta": "sha256:<hex of the key>"}`: a plain key, or its SHA-256
so the file need not hold secrets. Without a tenants file there is one tenant, "default", using the given store,
and any key is accepted (the server binds to 127.0.0.1 unless told otherwise)."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..store import LessonStore, open_store

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Tenants:
    keys: tuple[tuple[str, str], ...]  # (sha256 hex of a key, tenant)
    store_dir: Path | None             # tenants' stores: <dir>/<tenant>.db
    store: str | None = None           # the single tenant's store (no tenants file)

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
        return str((self.store_dir or Path(".")) / f"{tenant}.db")

    def open_store(self, tenant: str) -> LessonStore:
        return open_store(self.store_path(tenant))

    def names(self) -> list[str]:
        return ["default"] if self.open else sorted({name for _, name in self.keys})


def load_tenants(path: str | Path | None, *, store: str | None = None, store_dir: str | Path | None = None) -> Tenants:
    """The tenants a file names (see the module's doc), or the one open tenant without a file. ValueError names the
    problem and the fix."""
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
    base = Path(store_dir) if store_dir else Path(path).resolve().parent / "tenants"
    base.mkdir(parents=True, exist_ok=True)
    return Tenants(tuple(keys), base)
