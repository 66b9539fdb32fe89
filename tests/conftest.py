"""Shared fixtures. Tier-3 tests (marked `real`) run the embedded llama.cpp model; each test gets its own
SECONDNATURE_HOME so no test sees another's store, while the assembled weights stay in one cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

MODELS = Path(os.environ.get("SECONDNATURE_MODELS") or Path.home() / ".secondnature" / "models")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDNATURE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SECONDNATURE_MODELS", str(MODELS))
    for var in ("SECONDNATURE_BASE_URL", "SECONDNATURE_STORE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture(scope="session")
def policy_path() -> Path:
    from secondnature.weights import POLICY, assemble
    return assemble(POLICY, MODELS)


@pytest.fixture
def toy_file(tmp_path, monkeypatch) -> Path:
    """test_learn's toy task set as a JSONL file for CLI tests, with consoles wide enough that nothing wraps."""
    import json

    from rich.console import Console
    from test_learn import taskset

    from secondnature.cli import ui
    monkeypatch.setattr(ui, "out", Console(width=10_000))
    monkeypatch.setattr(ui, "err", Console(stderr=True, width=10_000))
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "prompt": t.prompt, "answer": t.answer}) + "\n"
                            for t in taskset().tasks))
    return path


@pytest.fixture(scope="module")
def driver():
    """A real headless Chromium (tests/browser.py), one per test module."""
    from browser import chromium
    d = chromium()
    yield d
    d.quit()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A private PostgreSQL server for the session (tests/pg.py), stopped and removed at the end."""
    from pg import start
    cluster = start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request, tmp_path):
    """Where a test's store lives, once on each backend: an SQLite file, or a new database on the session's
    PostgreSQL server. `LessonStore(store_at)` (or `--store`) opens it, again for another writer."""
    if request.param == "sqlite":
        yield tmp_path / "store.db"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_db()
    yield url
    cluster.drop_db(url)
