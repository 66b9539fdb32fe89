"""Tier 2: real text recorded from the embedded models (tests/data/replay.json, re-recorded with
tests/data/record_replay.py). The parser and the rewards must cope with what real models write."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from secondnature import reflect
from secondnature.models import ReplayModel
from secondnature.rewards import number
from secondnature.tasks import load_taskset

DATA = Path(__file__).parent / "data" / "replay.json"
RECORDED = json.loads(DATA.read_text())


def test_real_reflections_parse_into_clean_lessons():
    model = ReplayModel(DATA)
    found = 0
    for p in RECORDED["prompts"]:
        raw = model.chat(p["messages"], n=p["sample"] + 1, seed=p["seed"])[p["sample"]].text
        edits, notes = reflect.parse(raw, known_ids={"L1"})
        assert edits or notes, "a reply that gives no lesson is explained"
        said = words(raw)
        for e in edits:  # the parser extracts what the reflector wrote; it never invents or reorders words
            assert e.op == "delete" or is_subsequence(words(e.text), said), (e.text, raw[:300])
        found += sum(e.op == "add" for e in edits)
    assert found >= 3, "the recorded 1.5B replies contain usable lessons; the parser must find them"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(w in it for w in part)


def test_replay_refuses_an_unseen_prompt():
    model = ReplayModel(DATA)
    with pytest.raises(KeyError, match="no recording"):
        model.chat([{"role": "user", "content": "a prompt nobody recorded"}], seed=0)


def test_real_policy_completions_score_with_feedback():
    tasks = {t.id: t for t in load_taskset("letters:medium,hard").tasks}
    for r in RECORDED["policy_rollouts"]:
        s = number(tasks[r["task_id"]], r["completion"])
        assert s.value == r["score"] and s.feedback == r["feedback"]
        assert s.feedback and (s.value == 1.0) == s.feedback.startswith("correct")
