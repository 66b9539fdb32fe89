"""Where independent pieces of work run: one after another, or several at once in threads (a rollout against an
endpoint spends its time waiting on the network, so many may be in flight). The results come back in the order of
the work whatever finished first, so seeds, the completion cache and paired comparisons do not depend on timing."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


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
