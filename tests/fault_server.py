"""A real HTTP chat-completions server that answers well or injects a fault, for the fault tests and benchmark.

Each request takes the next fault of a queue (or `default` once the queue is empty). An answer that is not a
fault comes from `answer(messages)`, or from an upstream OpenAI-compatible server when `upstream` is given
(then the faults sit between a real model and the client). Faults: 500, 429 (with Retry-After), timeout
(no answer within the client's time), html (a 200 with a web page), notjson, empty (choices: []), nomessage
(a choice without a message), truncated (a body cut mid-JSON), drip (a valid body a byte at a time), reset
(the connection closed without a reply).
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("500", "429", "timeout", "html", "notjson", "empty", "nomessage", "truncated", "drip", "reset")


def completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def _headers_for(h: BaseHTTPRequestHandler, data: bytes) -> bytes:
    """Send a 200's headers announcing all of `data`, for a fault that then sends less of it, or slowly."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    return data


class FaultServer:
    def __init__(self, answer: Callable[[list[dict]], str] = lambda m: "Answer: 0", upstream: str | None = None,
                 stall_s: float = 30.0, drip_s: float = 0.5):
        self.answer, self.upstream, self.stall_s, self.drip_s = answer, upstream, stall_s, drip_s
        self.queue: list[str] = []
        self.default = "ok"
        self.served: list[str] = []
        self.retry_after = "0"  # the 429's Retry-After header
        self.latency_s = 0.0  # how long a good answer takes, as a model's would
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self.busy = self.most_busy = 0  # requests being answered now, and the most at once
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    fault = server.queue.pop(0) if server.queue else server.default
                    server.served.append(fault)
                    server.arrivals.append(time.monotonic())
                    server.busy += 1
                    server.most_busy = max(server.most_busy, server.busy)
                if fault != "ok":
                    server.leave()
                server.respond(self, fault, body)

            def _send(self, code: int, data: bytes, ctype: str = "application/json", extra: dict | None = None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def leave(self) -> None:
        with self.lock:
            self.busy -= 1

    def good(self, body: dict) -> bytes:
        if self.upstream:
            req = urllib.request.Request(self.upstream.rstrip("/") + "/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.read()
        return json.dumps(completion(self.answer(body.get("messages", [])))).encode()

    def respond(self, h: BaseHTTPRequestHandler, fault: str, body: dict) -> None:
        try:
            if fault == "ok":
                time.sleep(self.latency_s)
                data = self.good(body)
                self.leave()  # before the answer goes out: the client may send its next request the moment it has it
                h._send(200, data)
            elif fault == "500":
                h._send(500, b'{"error": {"message": "injected"}}')
            elif fault == "429":
                h._send(429, b'{"error": {"message": "slow down"}}', extra={"Retry-After": self.retry_after})
            elif fault == "timeout":
                time.sleep(self.stall_s)
            elif fault == "html":
                h._send(200, b"<html><body>Bad gateway</body></html>", "text/html")
            elif fault == "notjson":
                h._send(200, b"this is not json")
            elif fault == "empty":
                h._send(200, json.dumps({**completion(""), "choices": []}).encode())
            elif fault == "nomessage":
                h._send(200, json.dumps({**completion(""), "choices": [{"index": 0}]}).encode())
            elif fault == "truncated":
                data = _headers_for(h, self.good(body))
                h.wfile.write(data[: len(data) // 2])
                h.close_connection = True
            elif fault == "drip":
                data = _headers_for(h, self.good(body))
                for i in range(len(data)):
                    h.wfile.write(data[i:i + 1])
                    h.wfile.flush()
                    time.sleep(self.drip_s)
            elif fault == "reset":
                h.close_connection = True
                h.connection.close()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
