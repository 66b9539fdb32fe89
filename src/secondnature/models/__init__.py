"""Model clients behind one small protocol: the embedded llama.cpp runtime and any OpenAI-compatible endpoint.

HTTP and native inference live only here. A failed call never raises into the loop: it comes back
as a Completion with `error` set, so one bad rollout scores 0 and the run goes on. Only problems the
user must fix (no key, unreachable endpoint, missing weights) raise ModelError, before any work.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import (
    CachedModel,
    CompletionCache,
    Model,
    ModelError,
    ReplayModel,
    ScriptedModel,
    as_completion,
    cache_key,
    cached,
    parse_tool_calls,
    window_of,
)
from .embedded import LlamaModel, release
from .endpoint import MAX_RESPONSE_BYTES, OpenAIModel, parse_response

__all__ = ["CachedModel", "CompletionCache", "LlamaModel", "MAX_RESPONSE_BYTES", "Model", "ModelError", "OpenAIModel",
           "ReplayModel", "ScriptedModel", "as_completion", "cache_key", "cached", "load_model", "parse_response",
           "parse_tool_calls", "release", "window_of"]


def load_model(spec: str, *, base_url: str | None = None, n_ctx: int = 4096, concurrency: int | None = None) -> Model:
    """A model by name. Embedded (llama.cpp, in this process): a packaged name ("default" or "0.5b", "reflector" or
    "1.5b"; assembled from their packages on first use) or any GGUF path, a distilled LoRA adapter included. With
    `base_url` (or $SECONDNATURE_BASE_URL): a model name on any OpenAI-compatible endpoint, the key from
    $OPENAI_API_KEY or $SECONDNATURE_API_KEY. `n_ctx` is the embedded model's window (a reflector wants 8192).
    `concurrency`: rollouts in flight at once (an endpoint's default is 4; the embedded model's 1, since its calls
    take turns on one context and its samples of one prompt already decode together)."""
    if (base_url or os.environ.get("SECONDNATURE_BASE_URL")) and not Path(spec).expanduser().is_file():
        if spec in ("default", "reflector"):
            spec = os.environ.get("SECONDNATURE_MODEL") or "gpt-4o-mini"
        return OpenAIModel(spec, base_url=base_url, **({"concurrency": concurrency} if concurrency else {}))
    from ..weights import PACKAGED, WeightsError, adapter_meta, resolve
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
        return LlamaModel(base, n_ctx=n_ctx, lora=path, concurrency=concurrency or 1)
    return LlamaModel(path, n_ctx=n_ctx, concurrency=concurrency or 1)
