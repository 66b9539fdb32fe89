"""The embedded runtime: a GGUF file run in this process by llama-cpp-python. A call for several samples of one
prompt decodes them together (batch.py); one sample goes through create_chat_completion, which reuses the
prompt prefix the last call left in the KV cache (the next turn of an episode extends the last)."""
from __future__ import annotations

import atexit
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..types import Completion
from . import batch
from .base import ModelError, for_template, parse_tool_calls


@dataclass
class _Native:
    """One loaded model and what goes with it: shared by every LlamaModel of its (file, n_ctx, adapter)."""
    llm: Any                                 # the llama_cpp.Llama
    batcher: batch.Batcher | None = None     # its batched-decoding context, made on first use
    # a llama.cpp context serves one call at a time: rollouts run by several threads take turns on it
    lock: threading.Lock = field(default_factory=threading.Lock)


_LOADED: dict[tuple[str, int, str], _Native] = {}  # one per (file, n_ctx, adapter) per process


@atexit.register
def _close_models() -> None:
    # Free native models while the interpreter is whole; left to __del__ at shutdown, llama-cpp-python
    # prints a spurious "NoneType object is not callable" traceback.
    for key in list(_LOADED):
        _unload(key)


def _unload(key: tuple[str, int, str]) -> None:
    native = _LOADED.pop(key)
    if native.batcher is not None:
        native.batcher.close()  # a context before its model
    native.llm.close()


def release(model: object) -> None:
    """Free an adapter model's native memory now (GRPO loads a new adapter every step). A base model is
    left loaded: every LlamaModel of that file shares it, and closing it under them crashes the process."""
    if getattr(model, "lora", None) is None:
        return
    for key, native in list(_LOADED.items()):
        if native.llm is getattr(model, "llm", None):
            _unload(key)


class LlamaModel:
    """A GGUF file run in-process by llama-cpp-python. Sample i of a call uses seed + i."""

    def __init__(self, path: str | Path, *, n_ctx: int = 4096, threads: int | None = None,
                 lora: str | Path | None = None, concurrency: int = 1):
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ModelError("the embedded runtime needs llama-cpp-python: pip install 'secondnature[embedded]' "
                             "(or use an endpoint with --base-url)") from e
        from ..weights import file_digest
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
                _LOADED[key] = _Native(Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count()
                                             or 2, verbose=False, seed=0, lora_path=str(self.lora) if self.lora else None))
        self.native = _LOADED[key]
        self.llm, self.lock = self.native.llm, self.native.lock
        self.n_ctx = n_ctx
        self.concurrency = concurrency  # rollouts at once; their calls take turns, their tool calls overlap

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
             max_tokens: int = 512, seed: int | None = None, tools: list[dict] | None = None) -> list[Completion]:
        with self.lock:
            if n >= batch.MIN_SEQS and batch.supported(self.llm):
                return self._together(messages, n, temperature, max_tokens, seed or 0, tools)
            return self._one_by_one(messages, n, temperature, max_tokens, seed or 0, tools)

    def _together(self, messages: list[dict], n: int, temperature: float, max_tokens: int, seed: int,
                  tools: list[dict] | None) -> list[Completion]:
        """The n samples decoded in one batch, sharing the prompt (batch.py); each reports an equal share of the
        wall time, so summed latencies stay the model time spent."""
        t0 = time.perf_counter()
        try:
            if self.native.batcher is None:  # room for the shared prompt and a batch of replies
                self.native.batcher = batch.Batcher(self.llm, 2 * self.n_ctx)
            got = self.native.batcher.chat(for_template(messages), tools, n=n, temperature=temperature,
                                           top_p=0.95 if temperature > 0 else 1.0, max_tokens=max_tokens, seed=seed)
        except Exception as e:  # as in single-stream decoding: a context overflow costs these samples, not the run
            dt = (time.perf_counter() - t0) / n
            return [Completion(text="", latency_s=dt, error=f"{type(e).__name__}: {e}") for _ in range(n)]
        dt = (time.perf_counter() - t0) / n
        out = []
        for s in got:
            text, calls = parse_tool_calls(s.text)
            out.append(Completion(text=text, prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
                                  latency_s=dt, tool_calls=calls if tools else ()))
        return out

    def _one_by_one(self, messages: list[dict], n: int, temperature: float, max_tokens: int, seed: int,
                    tools: list[dict] | None) -> list[Completion]:
        out = []
        extra = {"tools": tools} if tools else {}  # the GGUF's chat template renders them; calls come back as text
        for i in range(n):
            t0 = time.perf_counter()
            try:
                r = self.llm.create_chat_completion(messages=for_template(messages), temperature=temperature,
                                                    max_tokens=max_tokens, seed=seed + i,
                                                    top_p=0.95 if temperature > 0 else 1.0, **extra)
                usage = r.get("usage") or {}
                text, calls = parse_tool_calls(r["choices"][0]["message"].get("content") or "")
                out.append(Completion(text=text, prompt_tokens=usage.get("prompt_tokens", 0),
                                      completion_tokens=usage.get("completion_tokens", 0),
                                      latency_s=time.perf_counter() - t0, tool_calls=calls if tools else ()))
            except Exception as e:  # a context overflow or runtime fault costs this sample, not the run
                out.append(Completion(text="", latency_s=time.perf_counter() - t0, error=f"{type(e).__name__}: {e}"))
        return out
