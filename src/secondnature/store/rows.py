"""Rows of the store as the package's nouns, and the small pure helpers every backend's queries share."""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timezone

from ..types import Edit, GateRecord, Lesson, Revision, Rollout, Score


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def query_words(text: str, limit: int = 64) -> list[str]:
    """The distinct lower-case words of `text`, in order, at most `limit` of them."""
    return list(dict.fromkeys(re.findall(r"\w+", text.lower())))[:limit]


def index_words(text: str) -> set[str]:
    """The distinct words of `text` as the full-text index splits them (FTS5's unicode61: letters and digits, lower
    case, accents removed), so the vocabulary's counts and the lookups of a query's words agree."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return set(re.findall(r"[^\W_]+", plain))


def rebased(base: Sequence[str], ours: Sequence[str], theirs: Sequence[str]) -> list[str]:
    """Our change (base -> ours) applied to their revision: theirs without the lessons we removed, then the ones we
    added. Their additions and edits stay; ours are appended, as a hand edit appends its new lesson."""
    removed, known = set(base) - set(ours), set(base) | set(theirs)
    return [x for x in theirs if x not in removed] + [x for x in ours if x not in known]


def _rollout(r) -> Rollout:
    return Rollout(r["id"], r["task_id"], tuple(json.loads(r["messages"])), r["completion"],
                   Score(r["score"], r["feedback"]), tuple(json.loads(r["lesson_ids"])), r["model"], r["seed"],
                   r["sample"], r["prompt_tokens"], r["completion_tokens"], r["latency_s"], r["error"] or "",
                   r["purpose"] or "")


def _lesson(r) -> Lesson:
    return Lesson(r["id"], r["text"], r["scope"], tuple(json.loads(r["evidence"])), r["reflection_id"] or "",
                  r["parent"] or "", r["uses"], r["gain"], r["status"], tuple(json.loads(r["tags"])),
                  r["loo"], r["loo_n"], r["note"])


def _gate(r) -> GateRecord:
    proposed = tuple(Edit(e.get("op", ""), e.get("text", ""), e.get("id") or "") for e in json.loads(r["proposed"]))
    return GateRecord(r["scope"], proposed, r["n"], r["current_score"], r["proposed_score"], r["wins"], r["losses"],
                      r["p_value"], r["decision"], r["reason"], r["run_id"], r["step"], r["candidate"],
                      r["current_revision"], r["reflection_id"] or "", r["revision_id"], r["id"], r["created_at"])


def _revision(r) -> Revision:
    return Revision(r["id"], r["scope"], tuple(json.loads(r["lesson_ids"])), r["parent"], r["note"], r["created_at"])
