"""The embedded model as an upstream: llama-cpp-python's own OpenAI-compatible server (the `server` extra) in a child
process on a free local port, so `serve --policy GGUF` proxies to it exactly as to any endpoint (streaming and tool
calls included)."""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child: the kernel sends it SIGTERM when the process that started it dies, however it dies (uvicorn
    re-raises SIGTERM after its shutdown, and a kill -9 runs no cleanup at all), so no model server is left behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: stop() and the server's own exit are all there is
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Embedded:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_embedded(spec: str, *, n_ctx: int = 4096, parallel: int = 1, wait_s: float = 300.0,
                   extra: tuple[str, ...] = ()) -> Embedded:
    """llama.cpp's server for a packaged model name or a GGUF path, once it answers. RuntimeError with the fix."""
    from ..weights import resolve  # the packaged weights are assembled on first use
    try:
        import llama_cpp.server  # noqa: F401  (only to say what is missing before starting a process)
    except ImportError as e:
        raise RuntimeError("serving the embedded model needs llama-cpp-python's server: pip install "
                           "'secondnature[embedded,server]', or pass --upstream URL") from e
    path, port = resolve(spec), free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(n_ctx), "--model_alias", spec, *extra]
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: the server logs every request and would fill a pipe
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, preexec_fn=_die_with_parent)
    up = Embedded(f"http://127.0.0.1:{port}/v1", proc)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"llama.cpp's server for {path} exited ({proc.returncode}): {log.read()[-500:]}")
        try:
            urllib.request.urlopen(f"{up.url}/models", timeout=2).close()
            return up
        except OSError:
            time.sleep(0.3)
    up.stop()
    raise RuntimeError(f"llama.cpp's server for {path} did not answer within {wait_s:.0f} s")
