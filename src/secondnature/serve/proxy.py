"""`POST /v1/chat/completions` through the proxy: the request's scope is chosen, that scope's lessons are added after
the application's own system prompt, the call is recorded as it starts, forwarded upstream untouched otherwise
(tools, tool calls, unknown fields), and recorded again when its reply ends, whole or as far as a broken stream got.

An application steers the proxy with headers or with one body field (the `openai` SDK's `extra_body`), removed
before the request goes upstream: `{"secondnature": {"scope": "support", "learn": false, "lessons": true,
"conversation": "c-42"}}`; headers `X-Secondnature-Scope`, `-Learn`, `-Conversation`. Without a scope the request is
routed to the scope whose learned-on prompts it resembles, else to the default scope."""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx2
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import inject, retrieve
from ..store import LessonStore
from ..store import traffic as db
from ..text import approx_tokens
from ..traffic import SCOPE_NAME, last_user_text
from ..types import Call

BODY_KEY = "secondnature"
ID_HEADER = "x-secondnature-call-id"
OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Upstream:
    url: str                      # base URL, e.g. http://127.0.0.1:8080/v1
    key: str = ""                 # the server's own key for the upstream; a client's key never goes upstream
    timeout_s: float = 600.0
    prices: tuple[float, float] | None = None  # per million prompt and completion tokens, for each call's cost


def cost_of(usage: dict, prices: tuple[float, float] | None) -> float | None:
    """A call's cost: as the upstream reported it (some gateways do), else its tokens at `prices`, else unknown."""
    if isinstance(usage.get("cost"), (int, float)):
        return float(usage["cost"])
    if prices is None:
        return None
    return ((usage.get("prompt_tokens") or 0) * prices[0] + (usage.get("completion_tokens") or 0) * prices[1]) / 1e6


@dataclass(frozen=True)
class Options:
    scope: str | None
    learn: bool
    lessons: bool
    conversation: str


def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
          headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error in the shape OpenAI's API gives, which the `openai` SDK turns into its own exception."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status,
                        headers=dict(headers or {}))


def options(body: dict, headers: Mapping[str, str]) -> Options:
    """How the application asked this call to be handled. ValueError names a bad value."""
    own = body.pop(BODY_KEY, None) or {}
    if not isinstance(own, dict):
        raise ValueError(f"'{BODY_KEY}' must be an object such as {{\"scope\": \"support\", \"learn\": false}}")
    scope = own.get("scope") or headers.get("x-secondnature-scope") or None
    if scope is not None and not (isinstance(scope, str) and SCOPE_NAME.match(scope)):
        raise ValueError(f"scope {scope!r}: use up to 80 letters, digits and _ . / : + -")
    conversation = str(own.get("conversation") or headers.get("x-secondnature-conversation") or "")[:200]
    return Options(scope, _flag(own.get("learn", headers.get("x-secondnature-learn", True))),
                   _flag(own.get("lessons", True)), conversation)


def _flag(value: object) -> bool:
    return not (value is False or (isinstance(value, str) and value.strip().lower() in OFF))


def scope_of(store: LessonStore, opts: Options, messages: list, default: str) -> str:
    if opts.scope:
        return opts.scope
    query = last_user_text(messages)
    return (retrieve.route(store, query) if query else None) or default


def lessons_for(store: LessonStore, scope: str, budget: int | None) -> tuple[int | None, tuple, str]:
    """(revision id, lessons, block) the scope's head puts in context: the same block for every call of one revision."""
    head = store.head(scope)
    if head is None:
        return None, (), ""
    kept = retrieve.stable_block(store, head.id, budget, approx_tokens)
    return head.id, kept, inject.lessons_block(kept)


async def chat(client: httpx2.AsyncClient, up: Upstream, store: LessonStore, body: dict, headers: Mapping[str, str],
               *, default_scope: str, lesson_tokens: int | None) -> Response:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return error(400, "'messages' must be a non-empty list of message objects")
    try:
        opts = options(body, headers)
    except ValueError as e:
        return error(400, str(e))
    scope = scope_of(store, opts, messages, default_scope)
    revision, kept, block = lessons_for(store, scope, lesson_tokens) if opts.lessons else (None, (), "")
    params = {k: v for k, v in body.items() if k != "messages"}
    call = Call(db.new_call_id(), scope, str(body.get("model", "")), tuple(messages), params, revision=revision,
                lesson_ids=tuple(x.id for x in kept), conversation=opts.conversation, learn=opts.learn)
    db.open_call(store, call)
    sent = {**body, "messages": inject.into_messages(messages, block)}
    marks = {ID_HEADER: call.id, "x-secondnature-scope": scope, "x-secondnature-revision": str(revision or "")}
    if body.get("stream"):
        return await _stream(client, up, store, call, sent, marks)
    return await _once(client, up, store, call, sent, marks)


def upstream_headers(up: Upstream) -> dict:
    return {"Authorization": f"Bearer {up.key}"} if up.key else {}


async def _once(client: httpx2.AsyncClient, up: Upstream, store: LessonStore, call: Call, sent: dict,
                marks: dict) -> Response:
    t0 = time.perf_counter()
    try:
        r = await client.post(f"{up.url}/chat/completions", json=sent, headers=upstream_headers(up),
                              timeout=up.timeout_s)
    except httpx2.HTTPError as e:
        return _failed(store, call, t0, f"the upstream {up.url} failed: {type(e).__name__}: {e}", marks)
    if r.status_code >= 400:
        return _passed_error(store, call, t0, r.status_code, r.content, marks)
    try:
        data = r.json()
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return _failed(store, call, t0, f"the upstream {up.url} answered with something that is not a chat "
                                        f"completion: {r.text[:200]!r}", marks)
    usage = data.get("usage") or {}
    reply = message.get("content") or ""
    db.finish_call(store, call.id, reply=reply if isinstance(reply, str) else json.dumps(reply),
                   tool_calls=message.get("tool_calls") or (), prompt_tokens=usage.get("prompt_tokens") or 0,
                   completion_tokens=usage.get("completion_tokens") or 0, latency_s=time.perf_counter() - t0,
                   cost=cost_of(usage, up.prices))
    data["id"] = call.id
    return JSONResponse(data, headers=marks)


def _failed(store: LessonStore, call: Call, t0: float, why: str, marks: dict) -> Response:
    db.finish_call(store, call.id, reply="", status="error", error=why, latency_s=time.perf_counter() - t0)
    return error(502, why, "upstream_error", "upstream_unavailable", marks)


def _passed_error(store: LessonStore, call: Call, t0: float, status: int, content: bytes, marks: dict) -> Response:
    """The upstream's own error, passed on as it came (an OpenAI-compatible server words it for the client)."""
    text = content.decode("utf-8", "replace")
    db.finish_call(store, call.id, reply="", status="error", error=f"upstream {status}: {text[:300]}",
                   latency_s=time.perf_counter() - t0)
    try:
        json.loads(text)
        return Response(content, status, media_type="application/json", headers=marks)
    except ValueError:
        return error(status, f"the upstream answered {status}: {text[:300]}", "upstream_error", headers=marks)


async def _stream(client: httpx2.AsyncClient, up: Upstream, store: LessonStore, call: Call, sent: dict,
                  marks: dict) -> Response:
    t0 = time.perf_counter()
    try:
        request = client.build_request("POST", f"{up.url}/chat/completions", json=sent, headers=upstream_headers(up),
                                       timeout=up.timeout_s)
        r = await client.send(request, stream=True)
    except httpx2.HTTPError as e:
        return _failed(store, call, t0, f"the upstream {up.url} failed: {type(e).__name__}: {e}", marks)
    if r.status_code >= 400:
        content = await r.aread()
        await r.aclose()
        return _passed_error(store, call, t0, r.status_code, content, marks)
    return StreamingResponse(_relay(r, store, call, t0, up.prices), media_type="text/event-stream", headers=marks)


async def _relay(r: httpx2.Response, store: LessonStore, call: Call, t0: float,
                 prices: tuple[float, float] | None) -> AsyncIterator[str]:
    """The upstream's events with our id in each chunk; the reply gathered as it passes and recorded before the
    client sees the stream's end, or when it breaks or the client goes away (the `finally` runs on cancellation)."""
    text: list[str] = []
    calls: dict[int, dict] = {}
    usage: dict = {}
    recorded = False

    def record(status: str, why: str = "") -> None:
        nonlocal recorded
        if not recorded:
            recorded = True
            reply = "".join(text)
            usage.setdefault("completion_tokens", approx_tokens(reply))  # without stream_options: an estimate
            db.finish_call(store, call.id, reply=reply, tool_calls=[calls[i] for i in sorted(calls)], status=status,
                           error=why, prompt_tokens=usage.get("prompt_tokens") or 0,
                           completion_tokens=usage["completion_tokens"], latency_s=time.perf_counter() - t0,
                           cost=cost_of(usage, prices))
    try:
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                if line:
                    yield line + "\n"
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                record("done")
                yield "data: [DONE]\n\n"
                continue
            try:
                chunk = json.loads(payload)
                chunk["id"] = call.id
                _gather(chunk, text, calls, usage)
            except (ValueError, TypeError, AttributeError):
                yield f"data: {payload}\n\n"  # not ours to understand: passed on as it came
                continue
            yield f"data: {json.dumps(chunk)}\n\n"
    except httpx2.HTTPError as e:
        why = f"the upstream's stream broke: {type(e).__name__}: {e}"
        record("broken", why)
        yield f"data: {json.dumps({'error': {'message': why, 'type': 'upstream_error', 'code': None}})}\n\n"
    finally:
        await r.aclose()
        record("broken", "the stream ended before its end mark (the client left, or the upstream stopped)")


def _gather(chunk: dict, text: list[str], calls: dict[int, dict], usage: dict) -> None:
    """Add one chunk's deltas to the reply: content pieces, and tool calls assembled by index."""
    if chunk.get("usage"):
        usage.update(chunk["usage"])
    for choice in chunk.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str):
            text.append(delta["content"])
        for t in delta.get("tool_calls") or ():
            slot = calls.setdefault(t.get("index", 0), {"id": "", "type": "function",
                                                          "function": {"name": "", "arguments": ""}})
            slot["id"] = t.get("id") or slot["id"]
            f = t.get("function") or {}
            slot["function"]["name"] += f.get("name") or ""
            slot["function"]["arguments"] += f.get("arguments") or ""
