"""Rollouts as Ray tasks: the learner stays one process, each task's attempts (their model calls and sandboxed tool
calls) run on a Ray worker, and the results come back in the tasks' order, as from local threads.

A model cannot travel as it is (native memory, HTTP clients, store connections), so the work is pickled with the
built-in models replaced by small recipes: an embedded model by its GGUF path, window, adapter and identity; an
endpoint by its model name, base URL, timeout, retries and concurrency (the key comes from the worker's own
environment and never enters a task's arguments); the completion cache by where its store is (a PostgreSQL URL
without its password, or an SQLite path on this host). A worker rebuilds each recipe once and keeps it, so the 0.5B
model is not loaded again for every task; anything else (a scripted model, your reward) travels as itself.

Ray is imported only here and only when asked for (`--executor ray[:ADDRESS]`, extra `ray`)."""
from __future__ import annotations

import io
import logging
import os
import pickle
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from . import sandbox
from .models import CachedModel, LlamaModel, ModelError, OpenAIModel

T = TypeVar("T")
R = TypeVar("R")
CONNECT_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection by then is not there


class ClusterError(RuntimeError):
    """Ray cannot run the work (not installed, no head at the address, work that cannot be pickled, a worker lost);
    the message says the fix."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ClusterError("--executor ray needs Ray: pip install 'secondnature[ray]' on the learner and on every "
                           "node of the cluster") from e
    return ray


@contextmanager
def connected(address: str | None = None) -> Iterator[RayExecutor]:
    """A RayExecutor on the cluster at `address` (HOST:PORT of a head, `auto`, or a ray:// client address; None: the
    one $RAY_ADDRESS names, else a Ray started for this process). Disconnects on exit if this connected."""
    ray = _ray()
    ours = not ray.is_initialized()
    if ours:
        if address and not address.startswith(("ray://", "auto")):
            _probe(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except Exception as e:
            raise ClusterError(f"cannot connect to Ray at {address or 'a local Ray'} ({type(e).__name__}: {e}); "
                               f"check --executor ray:HOST:PORT (the head's `ray start --head --port=PORT`)") from e
    try:
        yield RayExecutor()
    finally:
        if ours:
            ray.shutdown()


def _probe(address: str) -> None:
    """Fail in seconds, naming the option, where Ray itself would retry for a minute."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as e:
        raise ClusterError(f"no Ray head answers at {address} ({e}); start one there (`ray start --head "
                           f"--port={port or 6379}`) or fix --executor ray:HOST:PORT") from e


class RayExecutor:
    """Each item of a map is one Ray task. `cpus` is what a task asks of a node (default: 1 / the model's
    concurrency, so an endpoint's --concurrency 8 puts 8 tasks on a CPU while an embedded model gets a CPU per task);
    an embedded model on a worker decodes with that many threads."""

    def __init__(self, cpus: float | None = None):
        self.cpus = cpus

    def map(self, fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
        if not items:
            return
        ray = _ray()
        blob, cached = pack(fn)
        job = ray.put(blob)  # sent to the object store once, read by every task of this map
        task = _remote().options(num_cpus=self.cpus if self.cpus is not None else 1 / max(1, workers))
        refs = [task.remote(job, x, sandbox.insecure()) for x in items]
        taken = 0
        try:
            for ref in refs:
                yield _take(ray, ref, cached)
                taken += 1
        finally:  # an error, or a caller that stopped early: what has not started will not
            for ref in refs[taken + 1:]:
                with suppress(Exception):  # a task that finished meanwhile; the error that led here says more
                    ray.cancel(ref)


_REMOTE: Any = None


def _remote() -> Any:
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = _ray().remote(_run)
    return _REMOTE


def _take(ray: Any, ref: Any, cached: list[CachedModel]) -> Any:
    """One task's result in the learner: its notes said once, its model seconds added to the learner's caches, and
    an error raised here as it was raised there."""
    try:
        kind, value, seconds, notes = ray.get(ref)
    except ray.exceptions.RayError as e:
        said = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
        raise ClusterError(f"a Ray task running rollouts failed ({type(e).__name__}: {said}); see the worker's log "
                           f"(`ray logs`), or run with --executor local") from e
    for note in notes:
        _say_once(note)
    for i, (model_s, replayed_s) in seconds.items():
        cached[i].model_s += model_s  # the learner's counters stay the run's compute, wherever it ran
        cached[i].replayed_s += replayed_s
    if kind == "raised":
        raise value
    return value


_SAID: set[str] = set()


def _say_once(note: str) -> None:
    if note not in _SAID:
        _SAID.add(note)
        warnings.warn(note, stacklevel=3)


# ------------------------------------------------------------------ the learner's side: the work as bytes

@cache
def _packer_class() -> type:
    """cloudpickle's Pickler (as Ray ships it), with the built-in models turned into recipes."""
    from ray import cloudpickle

    class Packer(cloudpickle.CloudPickler):
        def __init__(self, file: io.BytesIO):
            super().__init__(file)
            self.cached: list[CachedModel] = []

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, CachedModel):
                self.cached.append(obj)
                return _cached, (obj.inner, place(obj.cache), len(self.cached) - 1)
            if isinstance(obj, LlamaModel):
                return _embedded, (str(obj.path.resolve()), obj.n_ctx, str(obj.lora.resolve()) if obj.lora else None,
                                   obj.identity, obj.concurrency)
            if isinstance(obj, OpenAIModel):  # no key: the worker reads its own environment
                return _endpoint, (obj.model, obj.base_url, obj.timeout, obj.retries, obj.concurrency)
            return super().reducer_override(obj)
    return Packer


def pack(fn: Callable) -> tuple[bytes, list[CachedModel]]:
    """`fn` as bytes a worker can load, and the completion caches met on the way (their order is their index)."""
    packer = _packer_class()
    buf = io.BytesIO()
    p = packer(buf)
    try:
        p.dump(fn)
    except Exception as e:
        raise ClusterError(_why_not(fn, packer, e)) from e
    return buf.getvalue(), p.cached


def _why_not(fn: Callable, packer: type, e: Exception) -> str:
    """Which of the work's variables cannot travel, and the fix."""
    culprit, why = "work", f"{type(e).__name__}: {e}"
    for name, cell in zip(getattr(fn, "__code__", None) and fn.__code__.co_freevars or (), fn.__closure__ or ()):
        try:
            packer(io.BytesIO()).dump(cell.cell_contents)
        except Exception as inner:
            culprit, why = f"`{name}`", f"{type(inner).__name__}: {inner}"
            break
    return (f"the rollouts' {culprit} cannot be sent to Ray workers ({why[:300]}): whatever a rollout uses must "
            f"pickle (a reward as a module-level function or an object whose fields pickle; the built-in models and "
            f"judges travel as recipes), or run with --executor local")


def place(cache: object) -> tuple[str, ...] | None:
    """Where a completion cache's store is, as a worker can find it: a PostgreSQL URL without its password (the
    worker's $PGPASSWORD or ~/.pgpass supplies it), or an SQLite file with this host's name; None for another cache."""
    if getattr(cache, "postgres", False):
        return ("postgresql", without_password(str(cache.path)))  # type: ignore[attr-defined]
    path = getattr(cache, "path", None)
    if isinstance(path, Path):
        return ("sqlite", socket.gethostname(), str(path.resolve()))
    return None


def without_password(url: str) -> str:
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    netloc = f"{user.split(':', 1)[0]}@{host}" if at else parts.netloc
    query = "&".join(q for q in parts.query.split("&") if q and not q.lower().startswith("password="))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


# ------------------------------------------------------------------ the worker's side

_MODELS: dict[tuple, Any] = {}  # recipe -> model, kept for the worker process's life
_STORES: dict[tuple, Any] = {}  # place -> store (None: not reachable from here)
_TASK: dict[str, Any] = {"cached": {}, "notes": []}  # what the task being loaded built: reset by each _run


def _run(blob: bytes, item: Any, insecure: bool) -> tuple[str, Any, dict, list[str]]:
    """A Ray task: load the work (rebuilding its models), run it on one item. An error comes back as a value, to be
    raised in the learner as itself."""
    _TASK.update(cached={}, notes=[])
    try:
        with _opted_out(insecure):
            value = pickle.loads(blob)(item)
        seconds = {i: (m.model_s, m.replayed_s) for i, m in _TASK["cached"].items()}
        return "ok", value, seconds, _TASK["notes"]
    except Exception as e:
        return "raised", _portable(e), {}, _TASK["notes"]


@contextmanager
def _opted_out(insecure: bool) -> Iterator[None]:
    """The learner's --insecure-sandbox for this task only (the worker may run other users' jobs after)."""
    before = os.environ.get(sandbox.INSECURE_ENV)
    if insecure:
        os.environ[sandbox.INSECURE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(sandbox.INSECURE_ENV, None)
        else:
            os.environ[sandbox.INSECURE_ENV] = before


def _portable(e: Exception) -> Exception:
    """The error as the learner can raise it: the problems a user must fix say which machine; anything that does not
    pickle becomes a RuntimeError with its text."""
    from .store import StoreError
    from .weights import WeightsError
    if type(e) in (ModelError, StoreError, WeightsError, sandbox.SandboxUnavailable, ClusterError):
        e = type(e)(f"on the Ray worker {socket.gethostname()}: {e}")
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


def _threads() -> int | None:
    """The CPUs Ray gave this task, as decoding threads (more threads than cores slows llama.cpp down)."""
    try:
        import ray
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not in a Ray task (a test loading the bytes itself)
        return None
    return max(1, round(cpus)) if cpus else None


def _embedded(path: str, n_ctx: int, lora: str | None, identity: str, concurrency: int) -> LlamaModel:
    key = ("embedded", path, n_ctx, lora, identity)
    if key not in _MODELS:
        model = LlamaModel(_local_gguf(path), n_ctx=n_ctx, lora=_local_gguf(lora) if lora else None,
                           threads=_threads(), concurrency=concurrency)
        if model.identity != identity:  # another file under the same name: its answers would poison the cache
            raise ModelError(f"{path} differs here ({model.identity}) from the learner's ({identity}); put the same "
                             f"GGUF file on every node")
        _MODELS[key] = model
    return _MODELS[key]


def _local_gguf(path: str) -> Path:
    """The learner's GGUF path here, or the packaged model of that name assembled from this node's packages."""
    if Path(path).is_file():
        return Path(path)
    from .weights import PACKAGED, assemble
    packaged = next((p for p in PACKAGED.values() if p.filename == Path(path).name), None)
    if packaged is None:
        raise ModelError(f"{path} is not on this node; copy it to the same path on every node of the cluster")
    return assemble(packaged)


def _endpoint(model: str, base_url: str, timeout: float, retries: int, concurrency: int) -> OpenAIModel:
    key = ("endpoint", model, base_url, timeout, retries, concurrency)
    if key not in _MODELS:
        _MODELS[key] = OpenAIModel(model, base_url=base_url, timeout=timeout, max_retries=retries,
                                   concurrency=concurrency)
    return _MODELS[key]


def _cached(inner: Any, where: tuple[str, ...] | None, index: int) -> Any:
    """The model behind the learner's completion cache when this worker can open its store (a fresh wrapper per
    task, so its seconds are this task's); else the model uncached, and a note for the learner to show once."""
    store = _store_at(where)
    if store is None:
        shown = "a completion cache that is not a store" if where is None else where[-1]
        _TASK["notes"].append(f"Ray workers on {socket.gethostname()} cannot open the completion cache ({shown}): "
                              f"their rollouts ran uncached. A PostgreSQL store (--store postgresql://...) shares "
                              f"the cache with every node (docs/ray.md)")
        return inner
    model = CachedModel(inner, store)
    _TASK["cached"][index] = model
    return model


def _store_at(where: tuple[str, ...] | None) -> Any:
    if where is None:
        return None
    if where not in _STORES:
        kind, location = where[0], where[-1]
        if kind == "sqlite" and (where[1] != socket.gethostname() or not Path(location).is_file()):
            _STORES[where] = None  # another machine's file: never create one of the same name here
        else:
            from .store import LessonStore
            _STORES[where] = LessonStore(location)
    return _STORES[where]
