"""Secrets never enter rollouts: the values of secret-looking environment variables, and strings shaped like
API keys, are replaced by a marker wherever model or tool text is recorded or shown to the reflector.

The sandbox already keeps the environment from model-written code; this is the second line, for what the
sandbox cannot see: a key a task prompt or an endpoint's answer carries, or a tool run with the weaker guard.
"""
from __future__ import annotations

import functools
import os
import re

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)
KEY_SHAPES = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{16,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bxox[abpr]-[A-Za-z0-9-]{10,}|"
                        r"\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{30,}|\bhf_[A-Za-z0-9]{20,}|"
                        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|"
                        r"(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{16,}=*")
MIN_SECRET = 8  # shorter values ("1", "true", "none") would redact ordinary words


@functools.lru_cache(maxsize=4)
def _secret_values(env_items: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    found = [(v, k) for k, v in env_items if SECRET_NAME.search(k) and len(v) >= MIN_SECRET and v.lower() != "none"]
    return tuple(sorted(found, key=lambda p: -len(p[0])))  # longest first: a value inside another goes second


def redact(text: str, *, edges: bool = False) -> str:
    """`text` with every secret-looking environment value and key-shaped string replaced by [redacted ...].
    With `edges`, for a fragment of a longer text (the head or tail a cut output keeps), a piece of a secret the
    cut left at either end goes too."""
    if not text:
        return text
    for value, name in _secret_values(tuple(sorted(os.environ.items()))):
        if value in text:
            text = text.replace(value, f"[redacted ${name}]")
        if edges:
            text = _edges(text, value, f"[redacted ${name}]")
    return KEY_SHAPES.sub("[redacted key]", text)


def _edges(text: str, value: str, marker: str) -> str:
    for k in range(min(len(value), len(text)) - 1, 3, -1):
        if text.endswith(value[:k]):
            return text[:-k] + marker
        if text.startswith(value[-k:]):
            return marker + text[k:]
    return text


def redact_messages(messages: list[dict]) -> list[dict]:
    """The messages with their text contents redacted (other fields, such as tool calls, as they are)."""
    return [{**m, "content": redact(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]
