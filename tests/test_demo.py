"""`secondnature demo` (the README's main job) end to end with scripted models: baseline, learning, lessons, the
score after, the constant-answer reference and balanced accuracy."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from test_learn import GOOD

from secondnature import cli
from secondnature.cli import ui
from secondnature.models import ScriptedModel


def letters_policy(messages: list[dict]) -> str:
    """Counts right with the good lesson in its system prompt; otherwise always says 2 (a prior, not a skill)."""
    m = re.search(r"letter '(.)' appear in the word '([^']+)'", messages[-1]["content"])
    if m and GOOD in messages[0]["content"]:
        return f"{' '.join(m.group(2))} ... Answer: {m.group(2).count(m.group(1))}"
    return "Answer: 2"


def reflector(messages: list[dict]) -> str:
    return json.dumps({"edits": [{"op": "add", "text": GOOD}]}) if '"edits"' in messages[-1]["content"] else "no."


def test_demo_learns_and_reports_the_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SECONDNATURE_HOME", str(tmp_path))
    monkeypatch.setattr(ui, "out", Console(width=10_000))
    scripted = {"p": ScriptedModel(letters_policy, "policy"), "r": ScriptedModel(reflector, "reflector")}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: scripted[spec])
    code = cli.main(["demo", "--budget", "120", "--test-items", "30", "--val-size", "8", "--policy", "p",
                     "--reflector", "r", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    report, _ = json.JSONDecoder().raw_decode(out[out.index('{\n "before"'):])
    assert report["lessons"] == [GOOD] and report["after"] == 1.0 > report["before"]
    assert "always answering '1'" in out and "balanced accuracy" in out
    before, after = report["balanced"]
    assert after == 1.0 and before <= 0.5  # always "2": right on one of the (at least two) answers counted
    assert (tmp_path / "demo.db").exists()


def test_eval_reports_balanced_accuracy_where_answers_are_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SECONDNATURE_HOME", str(tmp_path))
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: ScriptedModel(letters_policy))
    assert cli.main(["eval", "letters:medium,hard", "--split", "test", "--limit", "30", "--no-lessons", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 0 < record["accuracy"] < 0.5 and record["balanced_accuracy"] == pytest.approx(0.5)  # two answers counted
