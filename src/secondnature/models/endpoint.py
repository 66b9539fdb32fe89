"""Any OpenAI-compatible chat endpoint, through the openai SDK: the answer read within a deadline and checked."""
from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import threading
import time
from dataclasses import replace

from ..text import approx_tokens
from ..types import Completion, ToolCall
from .base import ModelError

# requests in flight to an endpoint. A hosted API or a server with parallel slots takes more (--concurrency); a
# server with one slot queues them, and each waits its turn within the request timeout: 4 replies of 384 tokens
# at 20 tokens a second stay inside 120 s, 8 would not
DEFAULT_CONCURRENCY = 4
MAX_RETRY_AFTER_S = 120.0  # a longer Retry-After fails the call with the fix rather than stall the run


def retry_after(headers) -> float | None:
    """Seconds a 429's headers ask to wait: `retry-after-ms`, then `Retry-After` in seconds or as an HTTP date."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def backoff(attempt: int) -> float:
    """0.5 s, 1 s, 2 s ... up to 8 s, each cut by up to a quarter at random so threads do not retry in step."""
    return min(8.0, 0.5 * 2 ** attempt) * (1 - 0.25 * random.random())


class OpenAIModel:
    """Any OpenAI-compatible chat endpoint. Servers that ignore `n` are asked again for the rest."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 3, concurrency: int = DEFAULT_CONCURRENCY,
                 check: bool = True):
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
        # retried here, not in the SDK: a 429's pause then holds for every request in flight, not only the refused one
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.timeout, self.retries = timeout, max_retries
        if concurrency < 1:
            raise ModelError(f"--concurrency must be at least 1 (got {concurrency})")
        self.concurrency = concurrency  # rollouts in flight at once (rollout.run reads it)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._paused_until = 0.0  # monotonic time before which no request is sent: the server asked us to wait
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
            self.client.with_options(max_retries=self.retries).chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
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
            except Exception as e:  # 429s, 5xx and timeouts have been retried already; a body cut off mid-read
                # surfaces as the HTTP library's own error: whatever it is, this call failed, the run goes on
                why = str(e) if isinstance(e, ModelError) else f"{type(e).__name__}: {e}"
                out.extend(Completion(text="", latency_s=time.perf_counter() - t0, error=why[:500]) for _ in range(want))
                break
            dt = time.perf_counter() - t0
            out.extend(replace(c, latency_s=dt / len(got)) for c in got)
        return out

    def _call(self, body: dict, want: int) -> list[Completion]:
        """One request, retried on a transient fault (429, 408, 409, 5xx, a dropped connection, a timeout) up to
        `retries` times: after a 429 no request goes out before its Retry-After has passed; otherwise after an
        exponential backoff with jitter."""
        o = self._openai
        for attempt in range(self.retries + 1):
            self._wait_for_pause()
            try:
                with self._slots:
                    return self._send(body, want)
            except o.APIStatusError as e:
                if e.status_code not in (408, 409, 429) and e.status_code < 500 or attempt == self.retries:
                    raise
                wait = retry_after(e.response.headers) if e.status_code == 429 else None
                if wait is not None and wait > MAX_RETRY_AFTER_S:
                    raise ModelError(f"{self.base_url} asked to wait {wait:.0f} s before the next request (429); "
                                     f"lower --concurrency or try later") from e
                self._pause(wait if wait is not None else backoff(attempt), everyone=e.status_code == 429)
            except (o.APIConnectionError, o.APITimeoutError):
                if attempt == self.retries:
                    raise
                self._pause(backoff(attempt), everyone=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_for_pause(self) -> None:
        while (left := self._paused_until - time.monotonic()) > 0:
            time.sleep(left)

    def _pause(self, seconds: float, *, everyone: bool) -> None:
        if everyone:  # a rate limit is the server's, so every thread holds off; max(): a later pause never shortens one
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        else:
            time.sleep(seconds)

    def _send(self, body: dict, want: int) -> list[Completion]:
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
