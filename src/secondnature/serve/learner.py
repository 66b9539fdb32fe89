"""The background learner of `serve`: every so often, for each tenant and scope with enough new traffic, one
learning run over the scope's recorded requests, gated offline.

The run is the offline loop itself (learn.py) on a task set made of the traffic (traffic.py): training steps
replay recorded requests K times through the upstream, and reflection sees those replays scored by the replay
reward (a rubric judge, or an application's checker) beside the reply the application got with its feedback (a
person's score, comment or corrected answer). Each candidate is gated by replaying held-out recorded requests with
and without it, paired; an accepted revision is the scope's new head, which the proxy reads on its next call (live
without a restart). Spending is capped per tenant in replays per rolling hour. Scopes never mix: a run sees only its
scope's calls and writes only its scope's revision."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..learn import LearnConfig, LearnResult, learn
from ..models import Model
from ..store import LessonStore
from ..store import traffic as db
from ..traffic import learnable_calls, recorded_taskset
from ..types import Call, Reward
from .tenants import Tenants

log = logging.getLogger("secondnature.serve")


@dataclass(frozen=True)
class LearnerConfig:
    every_s: float = 60.0       # how often the learner looks at the traffic
    min_calls: int = 24         # finished calls a scope needs before its first run (enough to split train and val)
    min_new: int = 8            # new calls since the scope's last run before another
    spend_per_hour: int = 400   # replays (policy rollouts) a tenant may spend in any rolling hour
    budget: int = 200           # most replays one run may spend
    val_size: int = 12          # paired held-out requests per gate
    max_calls: int = 500        # the scope's most recent calls a run learns from
    max_tokens: int = 384
    spend_cost_per_hour: float | None = None  # and at most this cost of replays per rolling hour (with prices)
    prices: tuple[float, float] | None = None  # per million prompt and completion tokens of the upstream


def _hour_before(now: datetime | None) -> str:
    return ((now or datetime.now(timezone.utc)) - timedelta(hours=1)).isoformat(timespec="seconds")


def spent_last_hour(store: LessonStore, now: datetime | None = None) -> int:
    """Replays spent by learning runs active in the last hour (a run's whole spend counts: a conservative cap)."""
    return sum(r["rollouts_used"] for r in store.runs_since(_hour_before(now)) if r["config"].get("traffic") == 1)


def cost_last_hour(store: LessonStore, prices: tuple[float, float], now: datetime | None = None) -> float:
    """What the replays of learning runs cost in the last hour, at `prices` per million prompt and completion tokens."""
    p = c = 0
    for run_id, (prompt, completion) in store.tokens_since(_hour_before(now)).items():
        run = store.run(run_id)
        if run is not None and run["config"].get("traffic") == 1:  # a learning run over traffic, not an offline one
            p, c = p + prompt, c + completion
    return (p * prices[0] + c * prices[1]) / 1e6


def due(store: LessonStore, scope: str, config: LearnerConfig) -> list[Call]:
    """The scope's calls to learn from when enough new ones came since its last run, else []."""
    calls = learnable_calls(store, scope, config.max_calls)
    if len(calls) < config.min_calls:
        return []
    last = store.last_run(scope)
    if last is not None and last["config"].get("traffic"):
        newer = [c for c in calls if c.created_at > last["created_at"]]
        if len(newer) < config.min_new:
            return []
    return calls


def learn_scope(store: LessonStore, scope: str, policy: Model, reflector: Model, reward: Reward,
                config: LearnerConfig, *, budget: int | None = None) -> LearnResult | None:
    """One learning run over a scope's traffic, or None when it is not due or the budget cannot pay for a gate."""
    calls = due(store, scope, config)
    if not calls:
        return None
    taskset = recorded_taskset(store, scope, reward, calls=calls)
    lc = LearnConfig(budget=min(config.budget, budget if budget is not None else config.budget),
                     val_size=config.val_size, max_tokens=config.max_tokens, screen=4, traffic=True)
    if lc.budget < 2 * lc.val_size + lc.tasks_per_step * lc.group_size:
        return None  # the baseline and one step with its gate would not fit: wait for the cap to free up
    return learn(policy, reflector, taskset, store, lc)


class Learner:
    """The thread that runs `learn_scope` for every tenant and scope; stateful (a thread and its stop flag)."""

    def __init__(self, tenants: Tenants, policy: Callable[[str], Model], reflector: Model, reward: Reward,
                 config: LearnerConfig = LearnerConfig()):
        self.tenants, self.policy, self.reflector, self.reward, self.config = tenants, policy, reflector, reward, config
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, name="secondnature-learner", daemon=True)
        self.runs: list[tuple[str, str, LearnResult]] = []

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=5)

    def run(self) -> None:
        while not self.stop_flag.wait(self.config.every_s):
            self.once()

    def once(self) -> None:
        for tenant in self.tenants.names():
            store = self.tenants.open_store(tenant)  # this thread's own connection
            try:
                for scope in db.traffic_scopes(store):
                    if self.stop_flag.is_set():
                        return
                    self._scope(tenant, store, scope)
            finally:
                store.close()

    def _scope(self, tenant: str, store: LessonStore, scope: str) -> None:
        left = self.config.spend_per_hour - spent_last_hour(store)
        cap, prices = self.config.spend_cost_per_hour, self.config.prices
        if cap is not None and prices is not None and cost_last_hour(store, prices) >= cap:
            return  # the hour's money is spent: wait, as for the replay cap
        try:
            model = db.calls(store, scope, limit=1, newest_first=True)[0].model
            result = learn_scope(store, scope, self.policy(model), self.reflector, self.reward, self.config,
                                 budget=left)
        except Exception:  # a failed run must not stop the server; the next round tries again
            log.exception("learning on %s/%s failed", tenant, scope)
            return
        if result is not None:
            self.runs.append((tenant, scope, result))
            log.info("learned on %s/%s: %d accepted, %d rejected, %d replays; %s", tenant, scope, result.accepted,
                     result.rejected, result.rollouts_used, result.stopped)
