"""What the three log formats share: chat messages and tool calls checked and redacted, a score as a value in
[0, 1], stable call ids, timestamps. A problem is raised as `Bad(field, why and the fix)`; the reader adds the file
and line."""
from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from ..inject import content_text
from ..redact import redact
from ..traffic import DEFAULT_SCOPE
from ..types import Feedback

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
KEEP = ("name", "tool_calls", "tool_call_id")  # besides role and content: what an upstream accepts on replay


class Bad(Exception):
    """One field of one record that cannot be imported."""

    def __init__(self, field: str, why: str):
        super().__init__(f'field "{field}" {why}')


def brief(value: Any) -> str:
    """A value as a message shows it: JSON, at most 60 characters."""
    if isinstance(value, (dict, list)):
        return "a JSON object" if isinstance(value, dict) else "a JSON array"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def loads(text: str) -> tuple[Any, str]:
    """(value, '') or (None, what is wrong with the JSON)."""
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, "nested too deeply to read"
    except ValueError as e:
        return None, f"not valid JSON ({e})"


def clean(value: Any, where: str) -> Any:
    """`value` with every string redacted. A string that is not valid Unicode (a lone surrogate) is refused here,
    since SQLite and every printer would refuse it later."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Bad(where, "is not valid Unicode (a lone surrogate such as \\ud800) — write the character "
                             "itself") from None
        return redact(value)
    if isinstance(value, dict):
        return {str(k): clean(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, where) for v in value]
    return value


def text(content: Any, where: str) -> str:
    """A message's content as text: a string, or the text of its parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return clean(content, where)
    if isinstance(content, list):
        return clean(content_text(content, "\n"), where)
    raise Bad(where, f"must be a string or a list of content parts, got {brief(content)}")


def messages(value: Any, where: str) -> list[dict]:
    """OpenAI chat messages, checked and redacted, with only the fields an upstream accepts."""
    if value is None:
        raise Bad(where, 'is missing — it holds the chat messages sent, e.g. [{"role": "user", "content": "..."}]')
    if not isinstance(value, list) or not value:
        raise Bad(where, f'must be a non-empty list of chat messages such as {{"role": "user", "content": "..."}}, '
                         f"got {brief(value)}")
    out = []
    for i, m in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise Bad(here, f'must be a message object {{"role": ..., "content": ...}}, got {brief(m)}')
        if m.get("role") not in ROLES:
            raise Bad(f"{here}.role", f"must be one of {', '.join(ROLES)}, got {brief(m.get('role'))}")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise Bad(f"{here}.content", f"must be a string or a list of content parts, got {brief(content)}")
        if content is None and not m.get("tool_calls") and m["role"] != "assistant":
            raise Bad(f"{here}.content", "is missing — every message but an assistant's tool call needs content")
        msg = {"role": m["role"], "content": content, **{k: m[k] for k in KEEP if m.get(k) is not None}}
        if "tool_calls" in msg:
            msg["tool_calls"] = tool_calls(msg["tool_calls"], f"{here}.tool_calls")
        out.append(clean(msg, here))
    return out


def tool_calls(value: Any, where: str) -> list[dict]:
    """Tool calls in the chat format, arguments as JSON text."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, dict) and isinstance(c.get("function"), dict) for c in value):
        raise Bad(where, 'must be a list of {"id": ..., "type": "function", "function": {"name": ..., "arguments": ...}}')
    return [tool_call(c.get("id"), c["function"].get("name"), c["function"].get("arguments"), where) for c in value]


def tool_call(call_id: Any, name: Any, arguments: Any, where: str) -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {})
    return clean({"id": str(call_id or "").strip(), "type": "function",
                  "function": {"name": str(name or ""), "arguments": args}}, where)


def to_value(score: Any, where: str, score_range: tuple[float, float] | None) -> float | None:
    """A feedback value in [0, 1]: true/false, or a number (rescaled from `score_range` when one is given)."""
    if score is None:
        return None
    if isinstance(score, str) and score.strip().lower() in ("true", "false"):
        return float(score.strip().lower() == "true")
    if isinstance(score, bool):
        return float(score)
    try:
        v = float(score) if isinstance(score, (int, float, str)) else math.nan
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise Bad(where, f"must be a number in [0, 1] or true/false, got {brief(score)}")
    if score_range is not None:
        lo, hi = score_range
        if not lo <= v <= hi:
            raise Bad(where, f"is {v:g}, outside --score-range {lo:g}:{hi:g} — widen the range or fix the score")
        return (v - lo) / (hi - lo)
    if not 0.0 <= v <= 1.0:
        raise Bad(where, f"is {v:g}, outside [0, 1] — pass --score-range LO:HI to rescale (e.g. --score-range 1:5 "
                         "for a 1-5 rating), or fix the score")
    return v


def verdict(call_id: str, value: float | None, comment: Any, demonstration: Any, where: str) -> list[Feedback]:
    """The record's verdict as imported feedback ([] when it gave none)."""
    comment, demo = text(comment, f"{where}comment"), text(demonstration, f"{where}demonstration")
    if value is None and not comment and not demo:
        return []
    return [Feedback(call_id, value=value, comment=comment, demonstration=demo, source="import")]


def stable_id(key: str) -> str:
    """A stable id in the form `serve` uses, from the log's own id: the same record always gets the same id, and a
    response logged in two formats (by its response id) is one call."""
    return "chatcmpl-sn" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:24]


def record_key(obj: Any) -> str:
    """For a record without an id of its own: its content."""
    return "record:" + hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8", "replace")).hexdigest()


def scope_name(*candidates: Any) -> str:
    """The first candidate that makes a scope name, other characters made "-" ("Chat support" -> "Chat-support");
    the default scope (serve's) when none does."""
    for c in candidates:
        if isinstance(c, str):
            name = re.sub(r"[^A-Za-z0-9_./:+-]+", "-", c.strip()).lstrip("_./:+-")[:80].rstrip("-")
            if name:
                return name
    return DEFAULT_SCOPE


def epoch(value: Any) -> float | None:
    """Seconds since 1970 from Unix seconds, milli-, micro- or nanoseconds, or ISO 8601; None if it is none of them."""
    try:
        if isinstance(value, str) and not value.strip().isdigit():
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            s = float(value)
            return s / 1e9 if s > 1e17 else s / 1e6 if s > 1e14 else s / 1e3 if s > 1e11 else s
    except (ValueError, OverflowError):
        pass
    return None


def when(value: Any) -> str:
    """A timestamp in the store's form (ISO 8601, UTC, seconds); '' if there is none (the store then uses now)."""
    s = epoch(value)
    try:
        return datetime.fromtimestamp(s, timezone.utc).isoformat(timespec="seconds") if s is not None else ""
    except (ValueError, OverflowError, OSError):
        return ""


def count(value: Any) -> int:
    """A token count from a log (a number, or digits in a string); 0 for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return int(value)
    return int(value) if isinstance(value, str) and value.isdigit() else 0
