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
