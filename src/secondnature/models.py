"""Model clients behind one small protocol: the embedded llama.cpp runtime and any OpenAI-compatible endpoint.

HTTP and native inference live only here. A failed call never raises into the loop: it comes back
as a Completion with `error` set, so one bad rollout scores 0 and the run goes on. Only problems the
user must fix (no key, unreachable endpoint, missing weights) raise ModelError, before any work.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Protocol

from .text import approx_tokens
from .types import Completion, ToolCall


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


def _for_template(messages: list[dict]) -> list[dict]:
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


# ---------------------------------------------------------------- embedded llama.cpp

_LOADED: dict[tuple[str, int, str], object] = {}  # one Llama per (file, n_ctx, adapter) per process


@atexit.register
def _close_models() -> None:
    # Free native models while the interpreter is whole; left to __del__ at shutdown, llama-cpp-python
    # prints a spurious "NoneType object is not callable" traceback.
    for llm in _LOADED.values():
        llm.close()
    _LOADED.clear()


def release(model: object) -> None:
    """Free an adapter model's native memory now (GRPO loads a new adapter every step). A base model is
    left loaded: every LlamaModel of that file shares it, and closing it under them crashes the process."""
    if getattr(model, "lora", None) is None:
        return
    for key, llm in list(_LOADED.items()):
        if llm is getattr(model, "llm", None):
            llm.close()
            del _LOADED[key]


class LlamaModel:
    """A GGUF file run in-process by llama-cpp-python. Sample i of a call uses seed + i."""

    def __init__(self, path: str | Path, *, n_ctx: int = 4096, threads: int | None = None,
                 lora: str | Path | None = None):
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ModelError("the embedded runtime needs llama-cpp-python: pip install 'secondnature[embedded]' "
                             "(or use an endpoint with --base-url)") from e
        from .weights import file_digest
        self.path = Path(path)
        self.lora = Path(lora) if lora else None
        self.name = f"llama.cpp:{self.path.stem}" + (f"+{self.lora.stem}" if self.lora else "")
        digest = file_digest(self.path)
        if self.lora:  # an adapter is small: hash all of it, two adapters of one shape differ anywhere
            digest += "+" + hashlib.sha256(self.lora.read_bytes()).hexdigest()[:16]
        self.identity = f"{self.name}@{digest}"
        key = (str(self.path.resolve()), n_ctx, str(self.lora.resolve()) if self.lora else "")
        if key not in _LOADED:
            from llama_cpp._utils import suppress_stdout_stderr
            # llama.cpp reports every adapter tensor it cannot repack (a line per layer, harmless): keep it quiet
            with suppress_stdout_stderr(disable=not self.lora):
                _LOADED[key] = Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 2,
                                     verbose=False, seed=0, lora_path=str(self.lora) if self.lora else None)
        self.llm = _LOADED[key]
        self.n_ctx = n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]:
        out = []
        extra = {"tools": tools} if tools else {}  # the GGUF's chat template renders them; calls come back as text
        for i in range(n):
            t0 = time.perf_counter()
            try:
                r = self.llm.create_chat_completion(messages=_for_template(messages), temperature=temperature,
                                                    max_tokens=max_tokens, seed=(seed or 0) + i,
                                                    top_p=0.95 if temperature > 0 else 1.0, **extra)
                usage = r.get("usage") or {}
                text, calls = parse_tool_calls(r["choices"][0]["message"].get("content") or "")
                out.append(Completion(text=text, prompt_tokens=usage.get("prompt_tokens", 0),
                                      completion_tokens=usage.get("completion_tokens", 0),
                                      latency_s=time.perf_counter() - t0, tool_calls=calls if tools else ()))
            except Exception as e:  # a context overflow or runtime fault costs this sample, not the run
                out.append(Completion(text="", latency_s=time.perf_counter() - t0, error=f"{type(e).__name__}: {e}"))
        return out


# ---------------------------------------------------------------- OpenAI-compatible endpoints

class OpenAIModel:
    """Any OpenAI-compatible chat endpoint. Servers that ignore `n` are asked again for the rest."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3, check: bool = True):
        try:
            import openai
        except ImportError as e:  # pragma: no cover
            raise ModelError("pip install openai to use an endpoint") from e
        base_url = base_url or os.environ.get("SECONDNATURE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        api_key = api_key or os.environ.get("SECONDNATURE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if base_url is None or "api.openai.com" in base_url:
                raise ModelError("no API key: set OPENAI_API_KEY (or SECONDNATURE_API_KEY) in the environment")
            api_key = "none"  # local servers (llama.cpp, vLLM, Ollama) accept any key
        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self.timeout = timeout
        self.name = f"openai:{model}"
        self.model = model
        self.base_url = base_url or "https://api.openai.com/v1"
        self.identity = f"{self.name}@{hashlib.sha256(f'{self.base_url}|{model}'.encode()).hexdigest()[:16]}"
        if check:
            self.check()

    def check(self) -> None:
        """Fail early, with the fix, when the endpoint cannot be used at all."""
        o = self._openai
        try:
            self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=1)
        except o.AuthenticationError as e:
            raise ModelError(f"{self.base_url} rejected the API key ({e.status_code}); check OPENAI_API_KEY") from e
        except o.NotFoundError as e:
            raise ModelError(f"{self.base_url} has no model {self.model!r}; check --model") from e
        except (o.APIConnectionError, o.APITimeoutError) as e:
            raise ModelError(f"cannot reach {self.base_url}: {e}; is the server running and --base-url right?") from e

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)  # no tokenizer for a remote model: an over-count keeps budgets safe

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]:
        out: list[Completion] = []
        extra = {"tools": tools} if tools else {}
        attempts = 0
        while len(out) < n and attempts < n + 2:
            attempts += 1
            want = n - len(out)
            t0 = time.perf_counter()
            try:
                got = self._call(dict(model=self.model, messages=messages, n=want, temperature=temperature,
                                      max_tokens=max_tokens, seed=None if seed is None else seed + len(out), **extra), want)
            except Exception as e:  # the SDK has already retried 429s, 5xx and timeouts; a body cut off mid-read
                # surfaces as the HTTP library's own error: whatever it is, this call failed, the run goes on
                why = str(e) if isinstance(e, ModelError) else f"{type(e).__name__}: {e}"
                out.extend(Completion(text="", latency_s=time.perf_counter() - t0, error=why[:500]) for _ in range(want))
                break
            dt = time.perf_counter() - t0
            out.extend(replace(c, latency_s=dt / len(got)) for c in got)
        return out

    def _call(self, body: dict, want: int) -> list[Completion]:
        """One request, read within `self.timeout` in all (a server that drips a byte a second is cut off), and
        checked: anything but a chat completion with choices raises ModelError naming what came back."""
        deadline = time.monotonic() + self.timeout
        with self.client.chat.completions.with_streaming_response.create(**body) as r:
            chunks, size = [], 0
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise ModelError(f"{self.base_url} took longer than {self.timeout:.0f} s to send its answer")
                if size > MAX_RESPONSE_BYTES:
                    raise ModelError(f"{self.base_url} sent more than {MAX_RESPONSE_BYTES} bytes for one answer")
        return parse_response(b"".join(chunks), want)


MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def parse_response(raw: bytes, want: int) -> list[Completion]:
    """The completions in a chat-completions response body; ModelError naming the problem when it is not one."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ModelError(f"the endpoint answered with something that is not JSON: {raw[:80]!r}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise ModelError(f"the endpoint's answer has no choices: {raw[:120]!r}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    out = []
    for c in choices[:want]:
        message = c.get("message") if isinstance(c, dict) else None
        if not isinstance(message, dict):
            raise ModelError(f"a choice in the endpoint's answer has no message: {str(c)[:120]!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ModelError(f"a message's content is not text: {str(content)[:80]!r}")
        out.append(Completion(text=content or "", tool_calls=_calls(message.get("tool_calls")),
                              prompt_tokens=_int(usage.get("prompt_tokens")),
                              completion_tokens=_int(usage.get("completion_tokens")) // len(choices[:want])))
    return out


def _int(x: object) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else 0


def _calls(raw: object) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for t in raw:
        f = t.get("function") if isinstance(t, dict) else None
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            args = f.get("arguments")
            out.append(ToolCall(str(t.get("id") or ""), f["name"], args if isinstance(args, str) and args else "{}"))
    return tuple(out)


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

    def count_tokens(self, text: str) -> int:
        count = getattr(self.inner, "count_tokens", None)
        return count(text) if count else approx_tokens(text)

    def _tally(self, c: Completion) -> Completion:
        self.model_s += c.latency_s
        return c

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]:
        out = []
        extra = {"tools": tools} if tools else {}
        for i in range(n):
            key = cache_key(self.identity, messages, temperature, max_tokens, seed, i, tools)
            hit = self.cache.get_completion(key)
            if hit is None:
                s = None if seed is None else seed + i
                c = as_completion(self.inner.chat(messages, n=1, temperature=temperature, max_tokens=max_tokens, seed=s,
                                                **extra)[0])
                if not c.error:
                    self.cache.put_completion(key, c)
                out.append(self._tally(c))
            else:
                self.replayed_s += hit.latency_s
                out.append(self._tally(hit))
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


def load_model(spec: str, *, base_url: str | None = None, n_ctx: int = 4096) -> Model:
    """A model by name. Embedded (llama.cpp, in this process): a packaged name ("default" or "0.5b", "reflector" or
    "1.5b"; assembled from their packages on first use) or any GGUF path, a distilled LoRA adapter included. With
    `base_url` (or $SECONDNATURE_BASE_URL): a model name on any OpenAI-compatible endpoint, the key from
    $OPENAI_API_KEY or $SECONDNATURE_API_KEY. `n_ctx` is the embedded model's window (a reflector wants 8192)."""
    if (base_url or os.environ.get("SECONDNATURE_BASE_URL")) and not Path(spec).expanduser().is_file():
        if spec in ("default", "reflector"):
            spec = os.environ.get("SECONDNATURE_MODEL") or "gpt-4o-mini"
        return OpenAIModel(spec, base_url=base_url)
    from .weights import PACKAGED, WeightsError, adapter_meta, resolve
    try:
        path = resolve(spec)
    except WeightsError as e:
        raise ModelError(str(e)) from e
    meta = adapter_meta(path) if spec not in PACKAGED else None
    if meta is not None:  # a distilled adapter: its base model, with the adapter applied
        base = Path(meta.get("base", ""))
        if not base.is_file():
            raise ModelError(f"{spec} is a LoRA adapter for {base}, which is not there; distil again or put the "
                             f"base model back")
        return LlamaModel(base, n_ctx=n_ctx, lora=path)
    return LlamaModel(path, n_ctx=n_ctx)
