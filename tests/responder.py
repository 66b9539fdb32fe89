"""A minimal OpenAI-compatible responder: answers at once (or after `delay_s`), streaming or not, with tool calls when
tools are offered and the user asks for one. The upstream of the proxy's tests and of its overhead benchmark, so that
what is measured or checked is the proxy, not a model.

The reply is `reply(body)`: by default it echoes the system prompt and the last user message, so a test can see what
the proxy injected. `fail` makes the next requests answer 500; `break_after` cuts a stream after that many chunks.
Run alone: `python tests/responder.py PORT`."""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


def echo(body: dict) -> str:
    msgs = body.get("messages") or []
    system = " | ".join(str(m.get("content")) for m in msgs if m.get("role") == "system")
    user = next((str(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
    return f"system=[{system}] user=[{user}]"


class Responder:
    def __init__(self, reply: Callable[[dict], str] = echo, delay_s: float = 0.0, chunk_s: float = 0.0):
        self.reply, self.delay_s, self.chunk_s = reply, delay_s, chunk_s
        self.bodies: list[dict] = []
        self.fail = 0            # answer this many next requests with a 500
        self.break_after = None  # cut the next stream after this many chunks
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"]),
                                     Route("/v1/models", self.models, methods=["GET"])])

    async def models(self, request: Request):
        return JSONResponse({"object": "list", "data": [{"id": "responder", "object": "model", "owned_by": "test"}]})

    async def completions(self, request: Request):
        body = await request.json()
        self.bodies.append(body)
        if self.fail:
            self.fail -= 1
            return JSONResponse({"error": {"message": "the responder was told to fail", "type": "server_error"}}, 500)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = self.reply(body)
        calls = self._tool_calls(body)
        if body.get("stream"):
            return StreamingResponse(self._events(body, text, calls), media_type="text/event-stream")
        message = {"role": "assistant", "content": None if calls else text}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse({"id": "chatcmpl-upstream", "object": "chat.completion", "created": int(time.time()),
                             "model": body.get("model", "responder"),
                             "choices": [{"index": 0, "message": message,
                                          "finish_reason": "tool_calls" if calls else "stop"}],
                             "usage": {"prompt_tokens": 11, "completion_tokens": len(text.split()),
                                       "total_tokens": 11 + len(text.split())}})

    @staticmethod
    def _tool_calls(body: dict) -> list[dict]:
        tools = body.get("tools") or []
        last = str((body.get("messages") or [{}])[-1].get("content"))
        if not tools or "call the tool" not in last:
            return []
        name = tools[0]["function"]["name"]
        return [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"x": 2}'}}]

    async def _events(self, body: dict, text: str, calls: list[dict]):
        def event(delta: dict, finish: str | None = None) -> str:
            chunk = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": 0,
                     "model": body.get("model", "responder"),
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(chunk)}\n\n"
        cut, self.break_after = self.break_after, None
        yield event({"role": "assistant", "content": ""})
        pieces = [{"tool_calls": [{"index": 0, "id": c["id"], "type": "function",
                                   "function": {"name": c["function"]["name"], "arguments": ""}}]} for c in calls]
        pieces += [{"tool_calls": [{"index": 0, "function": {"arguments": c["function"]["arguments"]}}]} for c in calls]
        pieces += [] if calls else [{"content": w} for w in _words(text)]
        for k, delta in enumerate(pieces):
            if cut is not None and k >= cut:
                raise RuntimeError("the responder cut the stream")  # the connection ends without [DONE]
            if self.chunk_s:
                await asyncio.sleep(self.chunk_s)
            yield event(delta)
        yield event({}, "tool_calls" if calls else "stop")
        yield "data: [DONE]\n\n"


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


def serve_in_thread(app, port: int | None = None):
    """A real uvicorn server for `app` on a free local port, in a daemon thread: (base URL, server)."""
    import uvicorn

    from secondnature.serve.upstream import free_port
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}/v1", server


if __name__ == "__main__":
    import uvicorn
    uvicorn.run(Responder().app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
