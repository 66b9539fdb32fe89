"""Where independent pieces of work run: one after another, several at once in threads (a rollout against an
endpoint spends its time waiting on the network, so many may be in flight), or as Ray tasks on other machines
(cluster.py). The results come back in the order of the work whatever finished first, so seeds, the completion
cache and paired comparisons do not depend on timing or place.

The executor is chosen once for a stretch of work (`with executing("ray:HOST:PORT"): learn(...)`, or the CLI's
--executor) rather than passed through every caller of rollout.run: learn, validation, evaluation and the bench
all ask `current()`."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
        """fn over items, yielded in the items' order; `workers` is how many the work's model takes at once."""
        ...


def in_flight(model: object) -> int:
    """How many rollouts a model takes at once: its `concurrency` (an endpoint's --concurrency), found through any
    wrapper (the completion cache); 1 for a model that does not say."""
    while not hasattr(model, "concurrency") and hasattr(model, "inner"):
        model = model.inner
    n = getattr(model, "concurrency", 1)
    return n if isinstance(n, int) and n >= 1 else 1


def ordered(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """fn over items, up to `workers` at a time, yielded in the items' order as soon as each one's turn comes. An
    error is raised at its item's turn; work not started by then is cancelled, work running is waited for."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="rollout")
    try:
        futures = [pool.submit(fn, x) for x in items]
        for f in futures:
            yield f.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class Threads:
    """The default: this process, up to `workers` threads."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
        return ordered(fn, items, workers)


THREADS = Threads()
_CURRENT: ContextVar[Executor] = ContextVar("secondnature_executor", default=THREADS)


def current() -> Executor:
    """The executor rollouts run on here and now (local threads unless `executing` said otherwise)."""
    return _CURRENT.get()


def parse(spec: str) -> str | None:
    """The Ray address in an --executor value: None for `local`, "" for `ray` (RAY_ADDRESS, or a Ray started for this
    run), "HOST:PORT" for `ray:HOST:PORT`; ValueError naming the forms for anything else."""
    spec = spec.strip()
    if spec in ("", "local", "threads"):
        return None
    if spec == "ray" or spec.startswith("ray:"):
        return spec[4:]
    raise ValueError(f"--executor takes `local` or `ray[:HOST:PORT]`, not {spec!r}")


@contextmanager
def executing(spec: str | Executor | None) -> Iterator[Executor]:
    """Rollouts started inside run on `spec`: an Executor, or an --executor value (`local`, `ray`, `ray:HOST:PORT`;
    None is local). A Ray cluster is connected on entry (cluster.ClusterError with the fix when it cannot be) and
    disconnected on exit if this connected it."""
    if isinstance(spec, str) and (address := parse(spec)) is not None:
        from .cluster import connected  # Ray is imported only when asked for
        with connected(address or None) as on_ray, executing(on_ray) as chosen:
            yield chosen
        return
    token = _CURRENT.set(THREADS if spec is None or isinstance(spec, str) else spec)
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)
