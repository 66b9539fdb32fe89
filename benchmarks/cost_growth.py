"""Cost as the work grows: the store and the loop measured at several sizes, each with the figure that says how its
cost grows (a benchmark, not a test; no model runs: scripted models, and the packaged models' tokenizers read from
their GGUF files with vocab_only).

    python benchmarks/cost_growth.py            # all four; writes benchmarks/results/cost_growth.json and .png
    python benchmarks/cost_growth.py --quick    # small sizes, to try the script (writes to /tmp)

1. select + render: one query's lessons chosen and rendered under a 300-token budget (routing, the head revision,
   selection, render) in stores of 100 to 1,000,000 lessons (store_scale.py's stores and timing);
2. logging rollouts: store.add_rollouts in batches of a step's attempts as the store grows to 1,000,000 rollouts:
   seconds per 10,000 and bytes per rollout (SQLite; and PostgreSQL to 100,000 when a private cluster can start,
   as tests/pg.py starts one);
3. the gate's cost per candidate: learn() with a scripted policy and reflector at 1, 2, 4, 8 candidates a step:
   rollouts and model calls per candidate gated, and whether the current revision's validation is paid once;
4. the reflector's prompt against the number of groups (1 to 64 groups of K=4 attempts): tokens, and what the
   loop keeps of them in the reflector's 8,192-token window.

Growth: the slope b of log(cost) against log(size) (cost ~ size^b: 0 flat, 1 linear), least squares over the
sizes, its 95% interval from resampling each size's measurements. Records are written after every measurement,
so a run that is stopped keeps what it measured.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import store_scale  # benchmarks/, beside this script
from ui_speed import median_ci

from secondnature import inject, retrieve
from secondnature.evidence import order_groups
from secondnature.learn import LearnConfig, confirm_split, learn, learn_split, observe, planned
from secondnature.models import ScriptedModel
from secondnature.propose import reflector_edits
from secondnature.store import LessonStore, open_store
from secondnature.tasks import load_taskset
from secondnature.types import Lesson, Rollout, Score, Task, TaskSet

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "cost_growth.json"
COMMAND = "python benchmarks/cost_growth.py"
BUDGET = 300                 # lesson tokens a query may get (store_scale.py's)
QUERY_POOL = 100             # task sets the timed queries go to (their lessons' token counts all memoised)
PARTS_TIMED = 20             # queries whose routing and vocabulary lookup are also timed alone
FLAT = 0.1                   # a slope whose whole interval is below this is flat: at most x1.26 per tenfold
DRAWS = 1_000                # bootstrap draws of a growth interval
CONFIG = LearnConfig()       # the loop's defaults: window, reply, group size, validation sample
FULL = {"lessons": (100, 1_000, 10_000, 100_000, 1_000_000), "one_scope_max": 100_000, "queries": 200,
        "rollouts": 1_000_000, "pg_rollouts": 100_000, "window": 10_000, "candidates": (1, 2, 4, 8),
        "gate_budget": 3_000, "groups": (1, 2, 4, 8, 16, 32, 64)}
QUICK = {"lessons": (100, 1_000, 10_000), "one_scope_max": 10_000, "queries": 50, "rollouts": 50_000,
         "pg_rollouts": 20_000, "window": 5_000, "candidates": (1, 2, 4), "gate_budget": 600,
         "groups": (1, 2, 4, 8, 16, 32, 64)}


# ---------------------------------------------------------------- growth figures

def loglog(points: list[tuple[float, float]], *, by_size: bool = True, seed: int = 0) -> dict:
    """The slope of log(y) on log(x) by least squares, with a 95% bootstrap interval: the points resampled within
    each x (`by_size`: repeated measurements of one size), or all together (one point per size)."""
    def slope(pts: list[tuple[float, float]]) -> float:
        xs, ys = [math.log(x) for x, _ in pts], [math.log(max(y, 1e-12)) for _, y in pts]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else math.nan
    rng = random.Random(seed)
    groups: dict[float, list[tuple[float, float]]] = {}
    for p in points:
        groups.setdefault(p[0] if by_size else 0, []).append(p)
    draws = sorted(slope([q for g in groups.values() for q in rng.choices(g, k=len(g))]) for _ in range(DRAWS))
    draws = [d for d in draws if not math.isnan(d)]
    lo, hi = (draws[int(0.025 * len(draws))], draws[int(0.975 * len(draws)) - 1]) if draws else (math.nan, math.nan)
    return {"slope": slope(points), "ci95": [lo, hi], "sizes": len({x for x, _ in points}), "points": len(points)}


def verdict(g: dict, what: str) -> str:
    """'flat', 'linear' or 'grows as size^b', said from the slope's interval."""
    lo, hi = g["ci95"]
    if hi < FLAT:
        return f"flat in {what}"
    if lo < FLAT:
        return f"no growth shown in {what}, none ruled out either (b up to {hi:+.2f})"
    if lo <= 1 <= hi or abs(g["slope"] - 1) < FLAT:
        return f"linear in {what}"
    return f"grows as {what}^{g['slope']:.2f}"


# ---------------------------------------------------------------- 1. select + render

def select_render(p: dict, d: Path, count, name: str, record: dict) -> None:
    """store_scale.py's stores (spread: 20 lessons a task set; one-scope: every lesson in one head) and timing, to
    a million lessons; each store deleted once measured."""
    rows = record["select_render"] = [r for r in record.get("select_render", []) if r["lessons"] not in p["lessons"]]
    for n in p["lessons"]:
        for layout in ("spread", "one-scope"):
            if layout == "one-scope" and n > p["one_scope_max"]:
                continue  # each cold query selects from the whole head: seconds a query at a million
            path = d / f"{layout}-{n}.db"
            t = time.perf_counter()
            queries = store_scale.build(path, n, layout)
            built = time.perf_counter() - t
            size = sum(f.stat().st_size for f in d.glob(f"{path.name}*"))
            pool = random.Random(n).sample(queries, min(QUERY_POOL, len(queries)))
            # fewer where a query takes long: routing at a million lessons; at a one-scope 100,000 every cold query
            # tokenizes the whole head again (more lessons than inject's token memo holds)
            many = 3 if layout == "one-scope" and n >= 100_000 else 40 if n >= 1_000_000 else p["queries"]
            s = LessonStore(path)
            got = store_scale.time_queries(s, pool, BUDGET, count, many)
            parts = {"route_ms": lambda q: retrieve.route(s, q), "vocab_ms": s.rare_words}  # where routing goes
            timed = {k: [timer(f, q) for q in itertools.islice(itertools.cycle(pool), PARTS_TIMED)]
                     for k, f in parts.items()}
            s.close()
            for f in d.glob(f"{path.name}*"):
                f.unlink()
            row = {"lessons": n, "layout": layout, "scopes": len(queries), "build_s": round(built, 1),
                   "file_bytes": size, "queries": many, "routed": got["routed"], "injected": got["injected"],
                   "tokenizer": name, **{k: statistics.median(v) for k, v in timed.items()}}
            for mode in ("warm", "cold"):
                ms = got[mode]
                row[f"{mode}_ms"], row[f"{mode}_ci95"] = statistics.median(ms), list(median_ci(ms))
                row[f"{mode}_samples"] = [round(x, 4) for x in ms]
            rows.append(row)
            rows.sort(key=lambda r: (r["lessons"], r["layout"] != "spread"))
            print(f"select+render {layout:9s} {n:>9,} lessons: warm {row['warm_ms']:.2f} ms, cold {row['cold_ms']:.2f} "
                  f"ms, route {row['route_ms']:.2f} ms, routed {row['routed']:.0%} (built in {built:.0f} s, {size / 1e6:.0f} MB)", file=sys.stderr)
            save(record)


def timer(f, *args) -> float:
    t = time.perf_counter()
    f(*args)
    return (time.perf_counter() - t) * 1000


# ---------------------------------------------------------------- realistic attempts (2 and 4)

def reply(task: Task, right: bool, long: bool) -> str:
    """An attempt at a GSM8K task: its worked solution (calculator notes removed), ending in an answer line; a wrong
    one ends one off, and a `long` one works it through twice, as a small model's replies often run on."""
    lines = [re.sub(r"<<[^>]*>>", "", x) for x in task.metadata["solution"].splitlines() if not x.startswith("####")]
    working = "\n".join(lines)
    answer = task.answer if right else str(int(float(task.answer)) + 1)
    if long:
        working = f"Let me solve this step by step.\n{working}\nLet me check each step again.\n{working}"
    return f"{working}\nAnswer: {answer}"


LESSONS = tuple(Lesson(f"L{i}", t, "gsm8k") for i, t in enumerate((
    "Write down every quantity given in the problem with its unit before you compute anything.",
    "Work out each intermediate amount on its own line, then check it against the question's wording.",
    "When the problem says 'of the remainder', subtract first and take the fraction of what is left.",
    "Before the answer line, re-read the question and make sure you answer the quantity it asks for.",
    "Keep money in dollars and cents until the end; round only the final answer if the question asks.",
), 1))


def attempts(tasks: list[Task], k: int, system: str, count) -> list[Rollout]:
    """K attempts at each task, half right and half wrong (every group mixed: the reflector is shown a contrast)."""
    out = []
    for task in tasks:
        for i in range(k):
            right = i < k // 2
            text = reply(task, right, long=not right)
            out.append(Rollout(f"r{task.id}-{i}", task.id, ({"role": "system", "content": system},
                                                            {"role": "user", "content": task.prompt},
                                                            {"role": "assistant", "content": text}),
                               text, Score(float(right), "correct" if right else f"expected {task.answer}"),
                               tuple(x.id for x in LESSONS), "llama.cpp:qwen2.5-coder-0.5b-instruct-q4_k_m", 0, i,
                               prompt_tokens=count(system) + count(task.prompt), completion_tokens=count(text)))
    return out


# ---------------------------------------------------------------- 2. logging rollouts

def store_bytes(s: LessonStore, path: Path | None) -> int:
    if path is None:
        return int(s.db.execute("SELECT pg_total_relation_size('rollouts')").fetchone()[0])
    return sum(f.stat().st_size for f in path.parent.glob(f"{path.name}*"))


def logging(target: str, path: Path | None, total: int, window: int, backend: str, record: dict) -> None:
    """store.add_rollouts, a step's attempts (tasks_per_step x group_size) a call, to `total` rollouts; each window
    of `window` rollouts timed (the rollouts are made before the clock starts)."""
    gsm = load_taskset("gsm8k")
    system = inject.render(gsm.instruction, LESSONS)
    pool = attempts(list(gsm.tasks[:250]), CONFIG.group_size, system, lambda t: len(t) // 4)
    batch = CONFIG.tasks_per_step * CONFIG.group_size
    rows = record.setdefault("logging", {})[backend] = []
    rng = random.Random(0)
    s = open_store(target)
    try:
        for w in range(total // window):
            rs = [replace(pool[i % len(pool)], id=f"r{rng.getrandbits(60):015x}", seed=i,
                          purpose="val" if i % 3 == 0 else "train") for i in range(w * window, (w + 1) * window)]
            t = time.perf_counter()
            for i in range(0, window, batch):
                s.add_rollouts(rs[i:i + batch], run_id=1, scope="gsm8k")
            dt = time.perf_counter() - t
            rows.append({"rollouts": (w + 1) * window, "seconds": dt, "per_10k_s": dt * 10_000 / window,
                         "bytes": store_bytes(s, path), "batch": batch})
            if (w + 1) * window in (10_000, 100_000, 1_000_000) or w % 10 == 9:
                print(f"logging {backend}: {(w + 1) * window:>9,} rollouts, {dt * 10_000 / window:.2f} s per 10k, "
                      f"{rows[-1]['bytes'] / ((w + 1) * window):.0f} bytes each", file=sys.stderr)
                save(record)
        if path is not None:  # the write-ahead log folded in: the file's own size
            s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        record["logging"][f"{backend}_final_bytes"] = store_bytes(s, path)
        record["logging"]["row_payload_bytes"] = statistics.fmean(
            len(json.dumps(r.messages)) + len(r.completion) for r in pool)
    finally:
        s.close()
    save(record)


def postgres_logging(total: int, window: int, record: dict) -> None:
    """The same on a private PostgreSQL cluster started as the tests start one (tests/pg.py), if it can start."""
    sys.path.insert(0, str(ROOT / "tests"))
    import pg
    import pytest
    record.setdefault("logging", {}).pop("postgres_skipped", None)
    try:
        cluster = pg.start()
    except (pytest.skip.Exception, Exception) as e:  # no server binaries: this part is optional
        record.setdefault("logging", {})["postgres_skipped"] = f"{type(e).__name__}: {e}"[:300]
        save(record)
        return
    try:
        record.setdefault("logging", {})["postgres_settings"] = "tests/pg.py's cluster: fsync, synchronous_commit " \
                                                                "and full_page_writes off"
        logging(cluster.create_db(), None, total, window, "postgres", record)
    finally:
        cluster.stop()


# ---------------------------------------------------------------- 3. the gate's cost per candidate

HELPS = HURTS = 0.15  # a candidate lesson flips an item to right (or to wrong) with this chance, item by item
HABIT = re.compile(r"\(habit (\d+)\)")


def unit(tag: str, i: int) -> float:
    return int(hashlib.sha256(f"{tag}:{i}".encode()).hexdigest()[:8], 16) / 16 ** 8


def policy_reply(messages: list[dict]) -> str:
    """Right on every fourth item; each lesson in the prompt then flips some items to right and some to wrong (its
    own, fixed by its tag): most candidates neither help nor hurt much, as a weak reflector's."""
    i = int(messages[-1]["content"].split("word number ")[1].rstrip("?"))
    right = i % 4 == 0
    for tag in HABIT.findall(messages[0]["content"]):
        u = unit(tag, i)
        right = True if u < HELPS else False if u >= 1 - HURTS else right
    return f"Answer: {i % 3 + 1 if right else i % 3 + 2}"


class Counted(ScriptedModel):
    """A scripted model that counts the samples it computed (calls the completion cache did not answer)."""

    def __init__(self, reply, name: str):
        super().__init__(reply, name)
        self.samples = {"greedy": 0, "sampled": 0}

    def chat(self, messages, **kw):
        out = super().chat(messages, **kw)
        self.samples["greedy" if kw.get("temperature", 0) == 0 else "sampled"] += len(out)
        return out


def reflector(n: int) -> Counted:
    """n new add-edits a call, each lesson with a tag of its own, worded apart (no two near duplicates)."""
    made, rng = itertools.count(1), random.Random(n)

    def lesson() -> str:
        return f"Before answering, check the {' and '.join(rng.sample(store_scale.VOCAB, 3))} once more " \
               f"(habit {next(made)})."

    def reply(_messages):
        return json.dumps({"edits": [{"op": "add", "text": lesson()} for _ in range(n)]})
    return Counted(reply, "reflector")


def gate_cost(p: dict, d: Path, record: dict) -> None:
    """learn() at n candidates a step (reflector edits only, one reflector sample proposing n lessons), the same
    rollout budget each: what every gated candidate cost, and what the current revision's validation cost."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_learn import taskset
    ts = taskset(400)
    rows = record["gate"] = []
    for n in p["candidates"]:
        config = replace(CONFIG, budget=p["gate_budget"], proposals=1, max_candidates=n, skill_samples=0)
        store = LessonStore(d / f"gate-{n}.db")
        paid: list[tuple[str, str, str]] = []
        add = store.add_rollouts

        def counting(rollouts, _add=add, **kw):
            paid.extend((r.purpose, r.messages[0]["content"], r.task_id) for r in rollouts)
            _add(rollouts, **kw)
        store.add_rollouts = counting
        policy, refl = Counted(policy_reply, "policy"), reflector(n)
        t = time.perf_counter()
        result = learn(policy, refl, ts, store, config, proposers=(reflector_edits,))
        seconds = time.perf_counter() - t
        plan = planned(config, lambda _n, _m: None)  # the validation sample the run used (a small budget shrinks it)
        gate_ids = {x.id for x in learn_split(ts, plan)[1]}
        confirm_ids = {x.id for x in confirm_split(ts, plan)}
        heads, head, per, current, val = set(), None, {}, 0, []
        for purpose, system, task in paid:  # in the order paid: the head in force is the last step's prompt
            if purpose == "train":
                heads.add(system)
                head = system
            elif purpose == "val":
                val.append((system, task))
                if head is None or system == head:  # the start's validation, or the current revision's
                    current += 1
                else:
                    per.setdefault(system, [0, 0])[task in confirm_ids] += 1
        costs = [g + c for g, c in per.values()]
        gates = store.gates(ts.name)
        row = {"candidates_per_step": n, "steps": result.steps, "rollouts": result.rollouts_used,
               "train_rollouts": result.train_rollouts, "val_rollouts": result.val_rollouts,
               "gated": len(per), "gate_records": len(gates),
               "screened_out": sum(g.reason.startswith("screen:") for g in gates),
               "accepted": result.accepted, "head_revisions": len(heads),
               "rollouts_per_candidate": statistics.fmean(costs) if costs else math.nan,
               "rollouts_per_candidate_ci95": mean_ci(costs),
               "per_candidate": [[g, c] for g, c in per.values()],
               "gate_items_max": max((g for g, _ in per.values()), default=0),
               "confirm_items_max": max((c for _, c in per.values()), default=0),
               "val_size": len(gate_ids), "confirm_size": len(confirm_ids),
               "current_val_rollouts": current,
               "repeated_val_rollouts": len(val) - len(set(val)),
               "policy_samples": sum(policy.samples.values()), "policy_greedy_samples": policy.samples["greedy"],
               "rollouts_recorded": len(paid), "reflector_calls": len(refl.calls), "seconds": round(seconds, 1)}
        rows.append(row)
        store.close()
        print(f"gate: {n} candidates a step: {row['steps']} steps, {row['gated']} gated, {row['accepted']} accepted, "
              f"{row['rollouts_per_candidate']:.1f} rollouts a candidate, current revision's validation "
              f"{current} in all, {row['repeated_val_rollouts']} paid twice",
              file=sys.stderr)
        save(record)


def mean_ci(xs: list[float], seed: int = 0) -> list[float]:
    """A 95% bootstrap interval for the mean."""
    if len(xs) < 2:
        return [math.nan, math.nan]
    rng = random.Random(seed)
    draws = sorted(statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(DRAWS))
    return [draws[int(0.025 * DRAWS)], draws[int(0.975 * DRAWS) - 1]]


# ---------------------------------------------------------------- 4. the reflector's prompt

def prompt_size(p: dict, count, name: str, record: dict) -> None:
    """The edit request's tokens (what fit_groups counts: the messages' contents) over n groups of K attempts at
    GSM8K tasks, and what the loop's observe() keeps of them when a step shows n tasks, in the default window."""
    gsm = load_taskset("gsm8k")
    ts = TaskSet(gsm.name, gsm.tasks[:max(p["groups"])], gsm.reward, gsm.instruction)
    system = inject.render(ts.instruction, LESSONS)
    refl = ScriptedModel(lambda m: "", "reflector")
    refl.count_tokens = count  # the reflector's own tokenizer; no reflector runs
    rows = record["prompt"] = []
    limit = CONFIG.reflect_context - CONFIG.reflect_max_tokens
    for n in p["groups"]:
        rs = attempts(list(ts.tasks[:n]), CONFIG.group_size, system, count)
        config = replace(CONFIG, tasks_per_step=n)
        seen = observe(1, 0, 0, ts, LESSONS, rs, refl, "L6", config)
        whole = replace(seen, groups=tuple(tuple(g) for g in order_groups(rs)))
        tokens = sum(count(m["content"]) for m in whole.prompt())
        kept = sum(count(m["content"]) for m in seen.prompt())
        rows.append({"groups": n, "k": CONFIG.group_size, "tokens": tokens, "kept_groups": len(seen.groups),
                     "kept_tokens": kept, "limit": limit, "window": CONFIG.reflect_context, "tokenizer": name,
                     "chars": sum(len(m["content"]) for m in whole.prompt())})
        print(f"prompt: {n:>2} groups: {tokens:>6,} tokens; observe keeps {len(seen.groups)} groups, {kept:,} tokens",
              file=sys.stderr)
    save(record)


# ---------------------------------------------------------------- the record, its figures, the page

def growth(record: dict) -> dict:
    """The growth figure of every measurement made so far."""
    out: dict = {}
    sel = record.get("select_render", [])
    for layout in ("spread", "one-scope"):
        for mode in ("warm", "cold"):
            pts = [(r["lessons"], x) for r in sel if r["layout"] == layout for x in r[f"{mode}_samples"]]
            if len({x for x, _ in pts}) >= 2:
                out[f"select_{layout}_{mode}"] = loglog(pts)
    for backend, rows in record.get("logging", {}).items():
        if isinstance(rows, list) and len(rows) >= 2:
            out[f"logging_{backend}"] = loglog([(r["rollouts"], r["per_10k_s"]) for r in rows], by_size=False)
    gate = record.get("gate", [])
    pts = [(r["candidates_per_step"], g + c) for r in gate for g, c in r["per_candidate"]]
    if len({x for x, _ in pts}) >= 2:
        out["gate_per_candidate"] = loglog(pts)
    prompt = record.get("prompt", [])
    if len(prompt) >= 2:
        xs, ys = [r["groups"] for r in prompt], [r["tokens"] for r in prompt]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        a = my - b * mx
        worst = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))
        over = [r["groups"] for r in prompt if r["tokens"] > r["limit"]]
        out["prompt"] = {"per_group": b, "fixed": a, "worst_residual": worst,
                         "fits_groups": int((prompt[0]["limit"] - a) // b), "first_over": min(over) if over else None,
                         "kept_max": max(r["kept_groups"] for r in prompt)}
    return out


def save(record: dict, *, fit: bool = False) -> None:
    """The record as measured so far (with `fit`, its growth figures computed anew) to OUT."""
    if fit:
        record["growth"] = growth(record)
    (record["reruns"][-1] if RERUN else record)["seconds"] = round(time.perf_counter() - STARTED, 1)
    OUT.write_text(json.dumps(record, indent=1) + "\n")


STARTED = time.perf_counter()
RERUN = False  # --only over an existing record: its parts measured again, the rest kept


def plot(record: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    for layout in ("spread", "one-scope"):
        rows = [r for r in record.get("select_render", []) if r["layout"] == layout]
        for mode, style in (("warm", "-o"), ("cold", "--s")):
            if rows:
                ax.plot([r["lessons"] for r in rows], [r[f"{mode}_ms"] for r in rows], style, label=f"{layout}, {mode}")
        if layout == "spread" and rows and "route_ms" in rows[0]:
            ax.plot([r["lessons"] for r in rows], [r["route_ms"] for r in rows], ":^", label="spread, routing alone")
    ax.set(xscale="log", yscale="log", xlabel="lessons in the store", ylabel="ms a query (median)",
           title="1. select + render one query's lessons")
    legend(ax)
    ax = axes[0][1]
    for backend, rows in record.get("logging", {}).items():
        if isinstance(rows, list) and rows:
            ax.plot([r["rollouts"] for r in rows], [r["per_10k_s"] for r in rows], ".-", label=backend)
    ys = [r["per_10k_s"] for rows in record.get("logging", {}).values() if isinstance(rows, list) for r in rows]
    ax.set(xscale="log", yscale="log", xlabel="rollouts in the store", ylabel="seconds per 10,000 rollouts",
           title="2. logging rollouts", **({"ylim": (min(ys) / 4, max(ys) * 4)} if ys else {}))
    legend(ax)
    ax = axes[1][0]
    gate = record.get("gate", [])
    if gate:
        ax.errorbar([r["candidates_per_step"] for r in gate], [r["rollouts_per_candidate"] for r in gate],
                    yerr=[[r["rollouts_per_candidate"] - r["rollouts_per_candidate_ci95"][0] for r in gate],
                          [r["rollouts_per_candidate_ci95"][1] - r["rollouts_per_candidate"] for r in gate]],
                    fmt="-o", label="rollouts a gated candidate")
        ax.axhline(gate[0]["val_size"], color="grey", lw=0.8, ls=":", label="validation sample")
        ax.axhline(gate[0]["val_size"] + gate[0]["confirm_size"], color="grey", lw=0.8, ls="--",
                   label="validation and confirmation samples")
    ax.set(xscale="log", yscale="log", xlabel="candidates gated a step", ylabel="policy rollouts",
           title="3. the gate's cost per candidate", ylim=(3, 100), xticks=[r["candidates_per_step"] for r in gate])
    legend(ax)
    ax = axes[1][1]
    prompt = record.get("prompt", [])
    if prompt:
        ax.plot([r["groups"] for r in prompt], [r["tokens"] for r in prompt], "-o", label="all groups")
        ax.plot([r["groups"] for r in prompt], [r["kept_tokens"] for r in prompt], "--s", label="kept by the loop")
        ax.axhline(prompt[0]["limit"], color="grey", lw=0.8, ls=":", label="window minus the reply")
    ax.set(xscale="log", yscale="log", xlabel="groups of 4 attempts", ylabel="prompt tokens",
           title="4. the reflector's prompt")
    legend(ax)
    for ax in axes.flat:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, records to /tmp (to try the script)")
    ap.add_argument("--only", nargs="+", choices=["select", "logging", "postgres", "gate", "prompt"],
                    help="these measurements only (over an existing record: the rest of it kept)")
    ap.add_argument("--lessons", type=int, nargs="+", help="select + render at these store sizes only (others kept)")
    args = ap.parse_args(argv)
    global OUT, RERUN
    p = QUICK if args.quick else FULL
    p = {**p, "lessons": tuple(args.lessons)} if args.lessons else p
    if args.quick:
        OUT = Path(tempfile.gettempdir()) / "cost_growth_quick.json"
    parts = args.only or ["select", "logging", "postgres", "gate", "prompt"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    run = {"command": " ".join([COMMAND, *sys.argv[1:]]),
           "date": date.today().isoformat(), "commit": commit.strip(), "machine": platform.machine(),
           "cores": os.cpu_count(), "python": platform.python_version(),
           "load_1min_before_run": round(os.getloadavg()[0], 2)}
    RERUN = bool(args.only or args.lessons) and OUT.exists()
    if RERUN:
        record = json.loads(OUT.read_text())
        record.setdefault("reruns", []).append({**run, "parts": parts})
    else:
        record = {**run, "sizes": QUICK if args.quick else FULL, "budget_tokens": BUDGET, "query_pool": QUERY_POOL}
    with tempfile.TemporaryDirectory(prefix="cost-growth-") as tmp:
        d = Path(tmp)
        for part in parts:
            if part == "select":
                count, name = store_scale.tokenizer("policy")
                select_render(p, d, count, name, record)
            elif part == "logging":
                logging(str(d / "rollouts.db"), d / "rollouts.db", p["rollouts"], p["window"], "sqlite", record)
                for f in d.glob("rollouts.db*"):
                    f.unlink()
            elif part == "postgres":
                postgres_logging(p["pg_rollouts"], p["window"], record)
            elif part == "gate":
                gate_cost(p, d, record)
            elif part == "prompt":
                count, name = store_scale.tokenizer("reflector")
                prompt_size(p, count, name, record)
            record.setdefault("load_1min_after", {})[part] = round(os.getloadavg()[0], 2)  # others' work too
            save(record, fit=True)
            plot(record, OUT.with_suffix(".png"))
    print(f"wrote {OUT} and {OUT.with_suffix('.png')} in {time.perf_counter() - STARTED:.0f} s", file=sys.stderr)


# ---------------------------------------------------------------- BENCHMARKS.md

def num(x: float) -> str:
    """Milliseconds: decimals below 100, none above (nor a thousands comma, read as an interval's comma)."""
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fig(g: dict | None) -> str:
    return "-" if not g else f"{g['slope']:+.2f} [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}]"


def section() -> list[str]:
    """The record for BENCHMARKS.md (benchmarks/report.py), if there is one."""
    if not OUT.exists():
        return []
    r = json.loads(OUT.read_text())
    g = r.get("growth", {})
    lines = ["### Cost as the work grows", "",
             f"`cost_growth.json`; {r['date']}; commit {r['commit']}; {r['machine']}, {r['cores']} cores; "
             f"`{r['command']}`, {r['seconds'] / 60:.0f} minutes to its last row. No model runs: scripted models, and the "
             "packaged models' tokenizers read with vocab_only. Growth: the slope b of log(cost) against log(size) "
             "(cost ~ size^b; 0 is flat, 1 linear) over the sizes, with its 95% interval from resampling each size's "
             f"measurements; flat when the whole interval is below {FLAT} (at most x{10 ** FLAT:.2f} per tenfold).",
             *([r["note"]] if r.get("note") else []),
             *([f"The machine was shared (other sessions compiling and benchmarking): 1-minute load after each part "
                f"{', '.join(f'{k} {v}' for k, v in r['load_1min_after'].items())} (2 cores)."]
               if r.get("load_1min_after") else []),
             *[f"Then: {', '.join(x['parts'])} at {x['commit']}, {x['date']} (`{x['command']}`, "
               f"{x.get('seconds', 0) / 60:.0f} minutes)." for x in r.get("reruns", [])],
             "", "![cost against size, log-log](results/cost_growth.png)", ""]
    sel = r.get("select_render", [])
    if sel:
        lines += ["**1. Select + render** one query's lessons under a {}-token budget: routing, the head revision, "
                  "selection, render (`store_scale.py`'s stores: `spread`, 20 lessons a task set; `one-scope`, every "
                  "lesson in one head). Median ms with its 95% interval; `cold`: the scope's selection not memoised."
                  .format(r["budget_tokens"]), "",
                  "| lessons | layout | n | warm ms | cold ms | route ms |", "|---|---|---|---|---|---|"]
        for x in sel:
            lines.append(f"| {x['lessons']:,} | {x['layout']} | {x['queries']} | {num(x['warm_ms'])} [{num(x['warm_ci95'][0])}, "
                         f"{num(x['warm_ci95'][1])}] | {num(x['cold_ms'])} [{num(x['cold_ci95'][0])}, "
                         f"{num(x['cold_ci95'][1])}] | {num(x['route_ms']) if 'route_ms' in x else '-'} |")
        lines.append("")
        for key, what in (("spread_warm", "spread, warm"), ("spread_cold", "spread, cold"),
                          ("one-scope_warm", "one-scope, warm"), ("one-scope_cold", "one-scope, cold")):
            if f"select_{key}" in g:
                lines.append(f"- {what}: b = {fig(g[f'select_{key}'])}: "
                             f"{verdict(g[f'select_{key}'], 'the lessons in the store' if 'spread' in key else 'the head')}")
        big = max((x for x in sel if x["layout"] == "spread" and "route_ms" in x), key=lambda x: x["lessons"],
                  default=None)
        if big:
            lines.append(f"- where a warm query's time goes at {big['lessons']:,} lessons ({big['scopes']:,} task sets): "
                         f"routing, timed alone, takes {num(big['route_ms'])} ms (the whole query {num(big['warm_ms'])}"
                         f" ms), {num(big['vocab_ms'])} ms of it finding the query's rarest words (`rare_words`)")
        met = g.get("select_spread_warm", {}).get("ci95", [1, 1])[1] < FLAT
        lines += ["", "Goal: flat in the store's size for a routed query (it reads one task set's head). A one-scope "
                  "store's cold query selects from its whole head, so it is linear in that head; the memo "
                  "(one selection per head revision) should make the warm query flat again. One-scope stops at "
                  f"{r['sizes']['one_scope_max']:,} lessons: a cold query there already selects from all of them.",
                  "", "Met." if met else "Not met: routing grows with the number of task sets. It ranks every "
                  "learned-on prompt that shares a word with the query's six rarest indexed words "
                  "(`match_prompts(rare=True)`); in these stores a task set has one word of its own and draws the "
                  "rest from 45 shared words, so the six include common words and the full-text query ranks most of "
                  "the prompts (250,000 at a million lessons). `rare_words` reads the vocabulary with `term IN (...)`, "
                  "which scans the fts5vocab table; `term = ?` is a lookup. The one-scope warm query reads its head "
                  "revision (a list of every id) on each call; the cold one at 100,000 lessons holds more lesson "
                  "texts than inject's token memo (65,536), so it tokenizes the whole head again.", ""]
    log = r.get("logging", {})
    if log.get("sqlite"):
        pg = {x["rollouts"]: x for x in log.get("postgres", [])}
        marks = [x for x in log["sqlite"] if x["rollouts"] in (10_000, 100_000, 1_000_000) or x is log["sqlite"][-1]]
        lines += [f"**2. Logging rollouts**: `store.add_rollouts`, {marks[0]['batch']} rollouts a call (a step's "
                  f"attempts), GSM8K-length rollouts ({log.get('row_payload_bytes', 0):,.0f} bytes of messages and "
                  "reply each), as the store grows:", "",
                  "| rollouts | SQLite s/10k | bytes each | PostgreSQL s/10k | bytes each |",
                  "|---|---|---|---|---|"]
        for x in {m["rollouts"]: m for m in marks}.values():
            q = pg.get(x["rollouts"])
            lines.append(f"| {x['rollouts']:,} | {x['per_10k_s']:.2f} | {x['bytes'] / x['rollouts']:,.0f} | "
                         + (f"{q['per_10k_s']:.2f} | {q['bytes'] / q['rollouts']:,.0f} |" if q else "- | - |"))
        lines.append("")
        for backend in ("sqlite", "postgres"):
            if f"logging_{backend}" in g:
                lines.append(f"- {backend}: b = {fig(g[f'logging_{backend}'])} over "
                             f"{g[f'logging_{backend}']['sizes']} windows: {verdict(g[f'logging_{backend}'], 'the rollouts stored')}")
        if "sqlite_final_bytes" in log:
            n = log["sqlite"][-1]["rollouts"]
            lines.append(f"- SQLite file at {n:,} rollouts, its log checkpointed: {log['sqlite_final_bytes'] / 1e9:.2f} "
                         f"GB, {log['sqlite_final_bytes'] / n:,.0f} bytes a rollout")
        if log.get("postgres_settings") and log.get("postgres"):
            lines.append(f"- PostgreSQL: {log['postgres_settings']}; bytes: the rollouts table with its indexes")
        elif log.get("postgres_skipped"):
            lines.append(f"- PostgreSQL not measured: {log['postgres_skipped']}")
        lines += ["", "Goal: a constant cost a rollout (flat).", ""]
    gate = r.get("gate", [])
    if gate:
        x0 = gate[0]
        lines += [f"**3. The gate's cost per candidate**: `learn()` with a scripted policy and reflector, "
                  f"a budget of {r['sizes']['gate_budget']:,} rollouts a run, the defaults otherwise (validation sample "
                  f"{x0['val_size']}, confirmation {x0['confirm_size']}); one reflector sample a step proposes n "
                  "lessons (n a step), each flipping 15% of items to right and 15% to wrong. Rollouts a gated candidate (gate "
                  "and confirmation, mean [95% CI]); current's: the current revisions' validation rollouts in all; "
                  "paid twice: a (prompt, item) validated more than once.", "",
                  "| n | steps | gated | kept | rollouts/candidate | current's | paid twice |",
                  "|---|---|---|---|---|---|---|"]
        for x in gate:
            ci = x["rollouts_per_candidate_ci95"]
            lines.append(f"| {x['candidates_per_step']} | {x['steps']} | {x['gated']} | {x['accepted']} | "
                         f"{x['rollouts_per_candidate']:.1f} [{ci[0]:.1f}, {ci[1]:.1f}] | "
                         f"{x['current_val_rollouts']} | {x['repeated_val_rollouts']} |")
        lines.append("")
        if "gate_per_candidate" in g:
            lines.append(f"- rollouts a candidate against candidates a step: b = {fig(g['gate_per_candidate'])}: "
                         f"{verdict(g['gate_per_candidate'], 'the candidates a step')}")
        calls = "; ".join(f"n={x['candidates_per_step']}: {x['reflector_calls'] / max(1, x['gated']):.2f}" for x in gate)
        lines += ["- the current revision's validation, reused across candidates: " + "; ".join(
            f"n={x['candidates_per_step']}: {x['current_val_rollouts']} rollouts over {x['head_revisions']} "
            f"revision(s) (were it paid per candidate: {sum(a + b for a, b in x['per_candidate']):,})"
            for x in gate) + (": yes, each item once per revision" if all(
                x["current_val_rollouts"] <= (x["val_size"] + x["confirm_size"]) * (x["head_revisions"] + 1)
                for x in gate) else ": NO, some items were paid more than once per revision"),
                  "- what a candidate cost: " + "; ".join(
                      f"n={x['candidates_per_step']}: {sum(c == 0 and a <= CONFIG.screen for a, c in x['per_candidate'])}"
                      f" stopped by the screen (at most {CONFIG.screen} items), "
                      f"{sum(c == 0 and a > CONFIG.screen for a, c in x['per_candidate'])} gated further, "
                      f"{sum(c > 0 for _, c in x['per_candidate'])} confirmed too" for x in gate),
                  f"- reflector calls a gated candidate: {calls} (one call a step, shared by its candidates)",
                  "- policy samples computed = rollouts recorded in every run (no completion-cache hits needed): "
                  + ("yes" if all(x["policy_samples"] == x["rollouts_recorded"] for x in gate) else "no"),
                  "", f"Goal: flat, at most a validation sample and a confirmation a candidate "
                  f"({x0['val_size']} + {x0['confirm_size']}), the current revision's validation paid once per "
                  "revision, never per candidate.", ""]
    prompt = r.get("prompt", [])
    if prompt and "prompt" in g:
        p = g["prompt"]
        lines += [f"**4. The reflector's prompt** (the edit request) over n groups of {prompt[0]['k']} attempts at "
                  "GSM8K tasks (mixed groups: the best and the worst attempt shown, each clipped at 700 characters), "
                  f"in the reflector's tokens; `kept`: what the loop's observe() keeps in its {prompt[0]['window']:,}"
                  f"-token window less the {CONFIG.reflect_max_tokens}-token reply, when a step shows n tasks.", "",
                  "| groups | prompt tokens | kept groups | kept tokens |", "|---|---|---|---|"]
        for x in prompt:
            lines.append(f"| {x['groups']} | {x['tokens']:,} | {x['kept_groups']} | {x['kept_tokens']:,} |")
        lines += ["", f"- linear: {p['per_group']:.0f} tokens a group over a fixed {p['fixed']:.0f} (worst residual "
                      f"{p['worst_residual']:.0%}: the tasks' lengths differ); capped: past {p['fits_groups']} groups the prompt would outgrow "
                      f"{prompt[0]['limit']:,} tokens"
                  + (f" (first over at {p['first_over']} measured)" if p["first_over"] else "")
                  + f", and observe() drops groups from the end (fit_groups) to keep at most {p['kept_max']}; a step "
                  f"shows {CONFIG.tasks_per_step} tasks by default (tasks_per_step), well inside the window.", ""]
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
