"""A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` (which scripts/system-deps installs), initialised
in a temporary directory and listening on a unix socket there only, one database per test. PostgreSQL refuses to run
as root, so under root the server runs as the `postgres` user. Without the binaries a test is skipped on a
workstation and fails in CI, where they must be."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

PASSWORD = "right-password"  # of the role `secret`, the one role that must log in with a password


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin (newest first)."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb")).parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


@dataclass
class Cluster:
    root: Path
    bin: Path
    as_user: list[str]  # the command prefix that runs a server binary as its owner
    names = itertools.count(1)

    def url(self, database: str, user: str = "postgres", password: str = "") -> str:
        login = f"{user}:{password}" if password else user
        return f"postgresql://{login}@/{database}?host={self.root}&port=5432"

    def admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_db(self) -> str:
        """A new empty database, as its URL."""
        name = f"t{next(self.names)}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_db(self, url: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {urlsplit(url).path.lstrip('/')} WITH (FORCE)")

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Cluster:
    """Initialise and start a cluster (a few seconds); `Cluster.stop` removes it."""
    found = bin_dir()
    if found is None:
        msg = "no PostgreSQL server binaries (initdb, pg_ctl): run ./scripts/system-deps (`.ci/run` does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    root = Path(tempfile.mkdtemp(prefix="sn-pg-"))  # short: a unix socket's path is at most 107 bytes
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    run = [*as_user, str(found / "initdb"), "-D", str(data), "-U", "postgres", "--no-locale", "-E", "UTF8",
           "-A", "trust"]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    # the role `secret` logs in with its password (to test a wrong one); every other role is trusted on the socket
    hba = data / "pg_hba.conf"
    subprocess.run([*as_user, "sh", "-c", f"printf 'local all secret scram-sha-256\\nlocal all all trust\\n' > {hba}"],
                   check=True, timeout=30)
    options = f"-k {root} -p 5432 -c listen_addresses='' -c fsync=off -c synchronous_commit=off " \
              f"-c full_page_writes=off -c max_connections=200"
    subprocess.run([*as_user, str(found / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
                    "start"], check=True, capture_output=True, timeout=120)
    cluster = Cluster(root, found, as_user)
    cluster.admin(f"CREATE ROLE secret LOGIN PASSWORD '{PASSWORD}'")
    return cluster
