"""What every model client shares: the protocol, the error a user must fix, tool calls read from reply text,
and the wrappers around a model (the completion cache, scripted and replayed models for tests)."""
from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Callable, Iterable, Protocol

from ..text import approx_tokens
from ..types import Completion, ToolCall


class ModelError(RuntimeError):
    """A problem the user has to fix; the message says how."""


class Model(Protocol):
    """What the loop needs of a model: a name to show, an identity for the completion cache, chat, and a tokenizer.

    `identity` must change whenever the answers could: the cache replays any completion made for the same
    (identity, messages, parameters, seed, sample). It is the file's hash for a GGUF, the base URL and model
    name for an endpoint, and for your own model a string you choose (say "my-model@2026-11-30"); a name
    alone is never enough. `chat` returns one Completion per sample (sample i uses seed + i) and must not raise
    for a failed call: set `error` instead, and that sample scores 0."""

    name: str
    identity: str

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]: ...

    def count_tokens(self, text: str) -> int: ...


# Hermes/Qwen-style calls written into the reply text, the form chat templates of open models ask for
TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def parse_tool_calls(text: str) -> tuple[str, tuple[ToolCall, ...]]:
    """The reply without its <tool_call>{"name": ..., "arguments": {...}}</tool_call> blocks, and the calls.
    A block that is not a JSON object with a name stays in the text, where the plain-text protocol may read it."""
    calls: list[ToolCall] = []

    def take(m: re.Match) -> str:
        try:
            obj = json.loads(m.group(1))
            name, args = str(obj["name"]), obj.get("arguments", {})
        except (ValueError, KeyError, TypeError):
            return m.group(0)
        calls.append(ToolCall(f"call_{len(calls)}", name, args if isinstance(args, str) else json.dumps(args)))
        return ""

    rest = TOOL_CALL.sub(take, text)
    return (rest.strip() if calls else text), tuple(calls)


def for_template(messages: list[dict]) -> list[dict]:
    """Chat templates print a call's arguments with `tojson`: hand them the object, not the JSON text the
    OpenAI format stores, or they come out quoted twice."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                f = dict(c["function"])
                try:
                    f["arguments"] = json.loads(f["arguments"]) if isinstance(f["arguments"], str) else f["arguments"]
                except ValueError:
                    pass
                calls.append({**c, "function": f})
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out

# ---------------------------------------------------------------- caching, scripting, record/replay

def cache_key(model_id: str, messages: list[dict], temperature: float, max_tokens: int, seed: int | None,
              sample: int, tools: list[dict] | None = None) -> str:
    if temperature == 0:
        seed = 0  # greedy decoding ignores the seed: arms and seeds of a benchmark share their greedy calls
    parts: list = [model_id, messages, round(temperature, 4), max_tokens, seed, sample]
    blob = json.dumps(parts + [tools] if tools else parts, sort_keys=True)  # calls without tools keep their keys
    return hashlib.sha256(blob.encode()).hexdigest()


class CompletionCache(Protocol):
    def get_completion(self, key: str) -> Completion | None: ...

    def put_completion(self, key: str, c: Completion) -> None: ...


class CachedModel:
    """Reuses any completion already made for (model identity, prompt, params, seed, sample index).

    This is what makes a killed run cheap to resume and keeps a gate from paying twice for the
    current revision's validation rollouts. Failed calls are never cached.
    """

    def __init__(self, inner: Model, cache: CompletionCache):
        identity = getattr(inner, "identity", None)
        if not isinstance(identity, str) or not identity.strip():
            raise ModelError(f"model {getattr(inner, 'name', inner)!r} has no `identity`: give it a string that changes "
                             f"whenever its answers could (say 'my-model@v3'); the completion cache keys on it, and "
                             f"two models that share one would share their answers")
        self.inner, self.cache = inner, cache
        self.name = getattr(inner, "name", identity)
        self.identity = identity
        # summed latency of every completion handed out, cached or fresh: a cached one costs what it cost when
        # it was made, so this measures a benchmark arm's compute even when a rerun replays it
        self.model_s = 0.0
        self.replayed_s = 0.0  # the part of model_s served from the cache: measured when made, maybe on another machine
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        count = getattr(self.inner, "count_tokens", None)
        return count(text) if count else approx_tokens(text)

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]:
        keys = [cache_key(self.identity, messages, temperature, max_tokens, seed, i, tools) for i in range(n)]
        with self._lock:  # rollouts may run in several threads; the store's connection takes one call at a time
            out: list[Completion | None] = [self.cache.get_completion(k) for k in keys]
            self.replayed_s += sum(c.latency_s for c in out if c is not None)
        i = 0
        while i < n:  # each run of samples not cached is one call, so the model can decode them together
            if out[i] is not None:
                i += 1
                continue
            j = next((k for k in range(i, n) if out[k] is not None), n)
            got: list[Completion] = []
            while len(got) < j - i:  # a model that answers fewer than asked is asked again for the rest
                more = self.inner.chat(messages, n=j - i - len(got), temperature=temperature, max_tokens=max_tokens,
                                       seed=None if seed is None else seed + i + len(got),
                                       **({"tools": tools} if tools else {}))
                got += [as_completion(c) for c in more] or [Completion(text="", error="the model returned no sample")]
            with self._lock:
                for k, c in zip(keys[i:j], got):
                    if not c.error:
                        self.cache.put_completion(k, c)
            out[i:j] = got[:j - i]
            i = j
        with self._lock:
            self.model_s += sum(c.latency_s for c in out)
        return out


def as_completion(c: Completion | str) -> Completion:
    """A custom model may answer with plain strings."""
    return c if isinstance(c, Completion) else Completion(text=str(c))


def window_of(model: object) -> int | None:
    """The context window of an embedded model (behind a cache or not); None where it is not known."""
    return getattr(getattr(model, "inner", model), "n_ctx", None)


def cached(model: Model, cache: CompletionCache) -> CachedModel:
    """`model` behind the completion cache (as it is, if it already is behind one)."""
    return model if isinstance(model, CachedModel) else CachedModel(model, cache)


class ScriptedModel:
    """For unit tests: replies come from a function of the messages (or a queue of strings)."""

    def __init__(self, reply: Callable[[list[dict]], str] | Iterable[str], name: str = "scripted",
                 identity: str | None = None):
        self.name = name
        self.identity = identity or f"scripted:{name}:{id(self):x}"  # two scripts never share cached answers
        self.calls: list[list[dict]] = []
        if callable(reply):
            self._reply = reply
        else:
            queue = list(reply)
            self._reply = lambda messages: queue.pop(0) if queue else ""

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]:
        self.calls.append(messages)
        out = []
        for _ in range(n):  # with tools, <tool_call> blocks in a scripted reply come back as calls, as from llama.cpp
            text, calls = parse_tool_calls(self._reply(messages)) if tools else (self._reply(messages), ())
            out.append(Completion(text=text, prompt_tokens=sum(len((m.get("content") or "").split()) for m in messages),
                                  completion_tokens=1, tool_calls=calls))
        return out


class ReplayModel:
    """Tier-2 tests: answers recorded from a real model; an unseen prompt is an error, never a guess."""

    def __init__(self, path: str | Path, name: str | None = None):
        data = json.loads(Path(path).read_text())
        self.name = name or data["model"]
        self.identity = f"replay:{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]}"
        self.records: dict[str, str] = data["records"]

    @staticmethod
    def key(messages: list[dict], seed: int | None, sample: int) -> str:
        return hashlib.sha256(json.dumps([messages, seed, sample], sort_keys=True).encode()).hexdigest()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]:
        out = []
        for i in range(n):
            k = self.key(messages, seed, i)
            if k not in self.records:
                raise KeyError(f"replay has no recording for this prompt (key {k[:12]}); re-record it")
            out.append(Completion(text=self.records[k]))
        return out

