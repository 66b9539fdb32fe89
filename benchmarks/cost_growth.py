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
sizes, its 95% interval from resampling each size's measurements (cost_growth_figures.py: the figures, the plot and
the page). Records are written after every measurement, so a run that is stopped keeps what it measured.
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
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import records  # benchmarks/, beside this script
import store_scale
from cost_growth_figures import CONFIG, OUT, growth, mean_ci, plot
from cost_growth_figures import section as section  # BENCHMARKS.md's, which report.py reads from here
from ui_speed import median_ci

from secondnature import inject, retrieve
from secondnature.evidence import order_groups
from secondnature.learn import confirm_split, learn, learn_split, observe, planned
from secondnature.models import ScriptedModel
from secondnature.propose import reflector_edits
from secondnature.store import LessonStore, open_store
from secondnature.tasks import load_taskset
from secondnature.types import Lesson, Rollout, Score, Task, TaskSet

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python benchmarks/cost_growth.py"
BUDGET = 300                 # lesson tokens a query may get (store_scale.py's)
QUERY_POOL = 100             # task sets the timed queries go to (their lessons' token counts all memoised)
PARTS_TIMED = 20             # queries whose routing and vocabulary lookup are also timed alone
FULL = {"lessons": (100, 1_000, 10_000, 100_000, 1_000_000), "one_scope_max": 100_000, "queries": 200,
        "rollouts": 1_000_000, "pg_rollouts": 100_000, "window": 10_000, "candidates": (1, 2, 4, 8),
        "gate_budget": 3_000, "groups": (1, 2, 4, 8, 16, 32, 64)}
QUICK = {"lessons": (100, 1_000, 10_000), "one_scope_max": 10_000, "queries": 50, "rollouts": 50_000,
         "pg_rollouts": 20_000, "window": 5_000, "candidates": (1, 2, 4), "gate_budget": 600,
         "groups": (1, 2, 4, 8, 16, 32, 64)}


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


# ---------------------------------------------------------------- the record

def save(record: dict, *, fit: bool = False) -> None:
    """The record as measured so far (with `fit`, its growth figures computed anew) to OUT."""
    if fit:
        record["growth"] = growth(record)
    (record["reruns"][-1] if RERUN else record)["seconds"] = round(time.perf_counter() - STARTED, 1)
    OUT.write_text(json.dumps(record, indent=1) + "\n")


STARTED = time.perf_counter()
RERUN = False  # --only over an existing record: its parts measured again, the rest kept


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
    # this record names the machine by its architecture alone, its cores apart (as the page reads them)
    run = {**records.header(" ".join([COMMAND, *sys.argv[1:]])), "machine": platform.machine(),
           "cores": os.cpu_count(), "python": platform.python_version(), "load_1min_before_run": records.load()}
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
            record.setdefault("load_1min_after", {})[part] = records.load()  # others' work too
            save(record, fit=True)
            plot(record, OUT.with_suffix(".png"))
    print(f"wrote {OUT} and {OUT.with_suffix('.png')} in {time.perf_counter() - STARTED:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
