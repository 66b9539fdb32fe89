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
    monkeypatch.setattr(ui, "out", Console(width=80))  # what a user sees in an 80-column terminal
    scripted = {"p": ScriptedModel(letters_policy, "policy"), "r": ScriptedModel(reflector, "reflector")}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: scripted[spec])
    code = cli.main(["demo", "--budget", "120", "--test-items", "30", "--val-size", "8", "--policy", "p",
                     "--reflector", "r", "--record", str(tmp_path / "demo.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["task"] == "letters:medium,hard+python" and record["n"] == 30 and record["commit"]
    assert [x["text"] for x in record["lessons"]] == [GOOD]
    assert record["accuracy"]["after"] == 1.0 > record["accuracy"]["before"]
    assert record["diff_ci95"][0] > 0 and record["balanced_diff_ci95"][0] > 0
    assert record["balanced_accuracy"]["after"] == 1.0 and record["balanced_accuracy"]["before"] <= 0.5
    assert record["majority"]["answer"] == "1" and "nothing is left to win" in record["stopped"]
    assert "always answering '1'" in out and "balanced accuracy" in out and "kept" in out
    assert (tmp_path / "demo.db").exists() and str(tmp_path / "demo.db") in out.replace("\n", "")


def test_eval_reports_balanced_accuracy_where_answers_are_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SECONDNATURE_HOME", str(tmp_path))
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: ScriptedModel(letters_policy))
    assert cli.main(["eval", "letters:medium,hard", "--split", "test", "--limit", "30", "--no-lessons", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 0 < record["accuracy"] < 0.5 and record["balanced_accuracy"] == pytest.approx(0.5)  # two answers counted
