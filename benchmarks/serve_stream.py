"""A production stream, simulated: a task set replayed as an application's traffic through `secondnature serve`.

    python benchmarks/serve_stream.py                                   # bbh/object_counting, 4 arms
    python benchmarks/serve_stream.py --feedback none,checker --windows 2 --window 8   # a quick look

Several clients (the real `openai` SDK, threads) send the task set's items, in windows of `--window`, through the
proxy (a real uvicorn server in this process) to the embedded 0.5B behind llama.cpp's own server, greedily, as an
application would: its system prompt is the task set's instruction, the scope named in `extra_body`. After each
reply the application sends feedback to /v1/feedback from one source per arm:
- none: no feedback and no learning (the reference every other arm is paired with, item by item);
- checker: the task's checker (it knows the reference answer);
- judge: the packaged 1.5B as a rubric judge that never sees the reference (RUBRIC below);
- majority: label-free, agreement with the majority answer of 5 samples of the policy (test-time RL).
Between windows the learner runs once (what its timer does in `serve`), replaying recorded requests scored by
the same source (the checker, the judge, the majority) and gating each candidate on held-out recorded requests,
paired; an accepted revision serves the next window. Every reply of every arm is then scored by the checker: the
application's accuracy per window. Each arm has its own store; the judge's and the majority's model calls share
a completion cache so an identical question is asked once.

Goals (issue 23): with judge feedback at least 70% of the lift checker feedback gives; learning never serves a
revision worse than the one before it for more than one window (each revision change is checked by replaying
the window it served with the previous revision, paired). Record: benchmarks/results/serve_stream.json, one
record per feedback source; the curve: benchmarks/results/serve_stream.png.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import records  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
RECORD = ROOT / "benchmarks" / "results" / "serve_stream.json"
SCOPE = "counting"
RUBRIC = """The user lists items and asks how many of one kind they have. A good reply counts only the items of the
kind asked about, counts each listed quantity (a word such as "two" or "three" counts as that many), adds them up
correctly, and ends with a final line 'Answer: <number>'. Check the count yourself from the list in the question.
Give 10 when the final number is the right count, 0 when it is wrong or missing."""


def ask(client, instruction: str, task, extra: dict) -> tuple[str, str, str]:
    """One application request through the proxy: (reply, call id, revision served)."""
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "system", "content": instruction}, {"role": "user", "content": task.prompt}],
        temperature=0, max_tokens=256, seed=0, extra_body={"secondnature": extra})
    r = raw.parse()
    return r.choices[0].message.content or "", r.id, raw.headers.get("x-secondnature-revision", "")


def feedback_source(kind: str, taskset, judge, majority):
    """The application's verdict on a reply, from the arm's source: (task, reply) -> Score."""
    if kind == "checker":
        return taskset.reward
    if kind == "judge":
        return lambda task, reply: judge(as_traffic(task, taskset.instruction), reply)
    return lambda task, reply: majority(as_traffic(task, taskset.instruction), reply)


def as_traffic(task, instruction: str):
    """An item as the learner sees a recorded request (no reference answer), so the judge's and the majority's calls
    on live replies and on replays are the same calls (one cache)."""
    from secondnature.types import Task
    msgs = [{"role": "system", "content": instruction}, {"role": "user", "content": task.prompt}]
    return Task("q" + hashlib.sha256(task.prompt.encode()).hexdigest()[:12], task.prompt, "", {"messages": msgs})


def replay_reward(kind: str, taskset, judge, majority):
    """What scores a replay in the learner's gates: the checker (reference found by the request's text), the judge,
    or the majority."""
    if kind == "checker":
        by_prompt = {t.prompt: t for t in taskset.tasks}

        def checker(task, reply):
            ref = by_prompt.get(task.prompt)
            from secondnature.types import Score
            return taskset.reward(ref, reply) if ref else Score(0.0, "no reference for this request")
        return checker
    if kind == "judge":
        return lambda task, reply: judge(as_traffic(task, taskset.instruction), reply)
    return lambda task, reply: majority(as_traffic(task, taskset.instruction), reply)


def run_arm(kind: str, items: list, args, taskset, up_url: str, reflector, judge, majority, work: Path) -> dict:
    import openai
    from responder import serve_in_thread

    from secondnature import inject
    from secondnature.models import OpenAIModel
    from secondnature.serve import ServeConfig, Upstream, load_tenants, make_app
    from secondnature.serve.learner import Learner, LearnerConfig
    from secondnature.stats import wilson
    tenants = load_tenants(None, store=str(work / f"{kind}.db"))
    url, server = serve_in_thread(make_app(ServeConfig(Upstream(up_url), tenants, SCOPE)))
    client = openai.OpenAI(base_url=url, api_key="app", max_retries=2, timeout=600)
    policy = lambda model: OpenAIModel("default", base_url=up_url, api_key="none")  # noqa: E731
    learner = Learner(tenants, policy, reflector, replay_reward(kind, taskset, judge, majority),
                      LearnerConfig(min_calls=args.min_calls, min_new=8, spend_per_hour=10**9, budget=args.learn_budget,
                                    val_size=args.val_size, max_tokens=256))
    live = feedback_source(kind, taskset, judge, majority) if kind != "none" else None
    windows, t0 = [], time.time()
    for w in range(args.windows):
        batch = items[w * args.window:(w + 1) * args.window]
        with ThreadPoolExecutor(args.clients) as pool:
            got = list(pool.map(lambda t: ask(client, taskset.instruction, t, {"scope": SCOPE}), batch))
        right = [taskset.reward(t, reply).value for t, (reply, _, _) in zip(batch, got)]
        fb = []
        if live:
            for t, (reply, call_id, _) in zip(batch, got):
                s = live(t, reply)
                fb.append(s.value)
                client.post("/feedback", body={"id": call_id, "score": s.value, "comment": s.feedback[:500],
                                               "source": kind}, cast_to=object)
        revisions = sorted({rev for _, _, rev in got})
        windows.append({"window": w + 1, "n": len(batch), "accuracy": sum(right) / len(batch),
                        "ci95": wilson(sum(right), len(batch)), "revision": revisions, "scores": right,
                        "feedback_scores": fb, "items": [t.id for t in batch]})
        print(f"[{kind}] window {w + 1}: {sum(right)}/{len(batch)} right, revision {revisions}", flush=True)
        if kind != "none" and w < args.windows - 1:
            before = len(learner.runs)
            learner.once()
            for _, _, r in learner.runs[before:]:
                print(f"[{kind}]   learned: {r.accepted} accepted, {r.rejected} rejected, {r.rollouts_used} replays; "
                      f"{r.stopped}", flush=True)
    store = tenants.open_store("default")
    heads = store.revisions(SCOPE)
    server.should_exit = True
    runs = [r for _, _, r in learner.runs]
    return {"windows": windows, "wall_s": round(time.time() - t0, 1),
            "replays": sum(r.rollouts_used for r in runs), "learning_runs": len(runs),
            "accepted": sum(r.accepted for r in runs), "rejected": sum(r.rejected for r in runs),
            "reflector_tokens": sum(r.reflector_tokens for r in runs),
            "revisions": [{"id": h.id, "lessons": [x.text for x in store.revision_lessons(h)], "note": h.note}
                          for h in heads], "lessons_block": {h.id: inject.lessons_block(store.revision_lessons(h))
                                                              for h in heads}}


def revision_checks(arm: dict, taskset, up_url: str) -> list[dict]:
    """Each change of the served revision, checked: the window the new revision served, replayed with the previous
    revision (or none), paired item by item. A change that was worse and stayed live another window is a miss."""
    from secondnature import inject
    from secondnature.models import OpenAIModel
    from secondnature.stats import paired_bootstrap
    policy = OpenAIModel("default", base_url=up_url, api_key="none")
    by_id = {t.id: t for t in taskset.tasks}
    out, prev = [], ""
    for k, w in enumerate(arm["windows"]):
        served = ",".join(w["revision"])
        if k and served != prev and len(w["revision"]) == 1:
            block = arm["lessons_block"].get(int(prev), "") if prev else ""
            old = []
            for tid in w["items"]:
                t = by_id[tid]
                msgs = inject.into_messages([{"role": "system", "content": taskset.instruction},
                                             {"role": "user", "content": t.prompt}], block)
                c = policy.chat(msgs, temperature=0, max_tokens=256, seed=0)[0]
                old.append(taskset.reward(t, c.text).value)
            diff, ci = paired_bootstrap(old, w["scores"])
            nxt = arm["windows"][k + 1]["revision"] if k + 1 < len(arm["windows"]) else []
            out.append({"window": w["window"], "from": prev or None, "to": served, "diff": diff, "ci95": ci,
                        "worse": diff < 0, "stayed_live": nxt == w["revision"]})
        prev = served
    return out


def arm_records(arms: dict, taskset, args, checks: dict, judge_agreement: dict | None) -> list[dict]:
    from secondnature.stats import paired_bootstrap, wilson
    base = arms.get("none")
    learned = range(1, args.windows)  # windows served after the first learning run
    out = []
    lift = {}
    for kind, arm in arms.items():
        scores = [s for w in learned for s in arm["windows"][w]["scores"]]
        rec = {"task": args.task, "feedback": kind, "arm": kind, "n": len(scores),
               "accuracy": sum(scores) / max(1, len(scores)), "ci95": wilson(sum(scores), len(scores)),
               "windows": [{k: v for k, v in w.items() if k not in ("items", "feedback_scores")} for w in arm["windows"]]}
        if base is not None:
            ref = [s for w in learned for s in base["windows"][w]["scores"]]
            rec["diff_vs_none"], rec["diff_ci95"] = paired_bootstrap(ref, scores)
            for w, bw in zip(rec["windows"], base["windows"]):
                w["diff_vs_none"], w["diff_ci95"] = paired_bootstrap(bw["scores"], w["scores"])
            lift[kind] = rec["diff_vs_none"]
        rec.update({k: arm[k] for k in ("wall_s", "replays", "learning_runs", "accepted", "rejected",
                                         "reflector_tokens", "revisions")})
        rec["revision_checks"] = checks.get(kind, [])
        rec["worse_revision_live_over_one_window"] = sum(c["worse"] and c["stayed_live"] for c in rec["revision_checks"])
        if kind == "judge" and judge_agreement:
            rec["judge_agreement"] = judge_agreement
        out.append(rec)
    for rec in out:
        if rec["feedback"] in ("judge", "majority") and lift.get("checker"):
            rec["lift_share_of_checker"] = lift[rec["feedback"]] / lift["checker"] if lift["checker"] > 0 else None
    common = {"command": "python " + " ".join(sys.argv), "commit": args.commit, "date": records.today(),
              "machine": records.machine(), "policy": "packaged 0.5B behind llama_cpp.server",
              "reflector": "packaged 1.5B", "judge": "packaged 1.5B", "windows_total": args.windows,
              "window": args.window, "clients": args.clients, "learn_budget": args.learn_budget,
              "val_size": args.val_size}
    return [{**common, **r} for r in out]


def plot(recs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    styles = ["-", "--", ":", "-."]  # arms that served the same replies draw the same line: the styles keep them apart
    for k, r in enumerate(recs):
        xs = [w["window"] for w in r["windows"]]
        ax.plot(xs, [100 * w["accuracy"] for w in r["windows"]], marker="os^D"[k % 4], linestyle=styles[k % 4],
                label=f"{r['feedback']} ({r['accepted']} accepted)", alpha=0.85)
    ax.set_xticks(xs)
    ax.set_xlabel(f"window of traffic ({recs[0]['window']} requests each); learning runs between windows")
    ax.set_ylabel("accuracy served (%)")
    ax.set_title(f"{recs[0]['task']} through serve, by feedback source", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="bbh/object_counting")
    ap.add_argument("--feedback", default="none,checker,judge,majority")
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--learn-budget", type=int, default=120, help="replays per learning run")
    ap.add_argument("--val-size", type=int, default=16)
    ap.add_argument("--min-calls", type=int, default=24)
    ap.add_argument("--majority-n", type=int, default=5)
    ap.add_argument("--out", default=None, help="record path (default benchmarks/results/serve_stream.json)")
    args = ap.parse_args()
    args.commit = records.commit()  # the code that runs: taken at the start of a run that lasts an hour or more
    from secondnature.judge import agreement, judge_reward, majority_reward
    from secondnature.models import OpenAIModel, cached, load_model
    from secondnature.serve.upstream import start_embedded
    from secondnature.store import open_store
    from secondnature.tasks import load_taskset
    taskset = load_taskset(args.task)
    items = list(taskset.tasks)
    random.Random(0).shuffle(items)
    items = items[:args.windows * args.window]
    work = Path(tempfile.mkdtemp(prefix="serve_stream_"))
    up = start_embedded("default", n_ctx=4096)
    try:
        cache = open_store(work / "cache.db")
        reflector = load_model("reflector", n_ctx=8192)
        judge = judge_reward(cached(reflector, cache), RUBRIC)
        sampler = cached(OpenAIModel("default", base_url=up.url, api_key="none"), cache)
        majority = majority_reward(sampler, n=args.majority_n, system=taskset.instruction, max_tokens=256)
        arms, checks = {}, {}
        out = Path(args.out) if args.out else RECORD
        for kind in args.feedback.split(","):
            arms[kind] = run_arm(kind, items, args, taskset, up.url, reflector, judge, majority, work)
            checks[kind] = revision_checks(arms[kind], taskset, up.url)
            agree = None
            if "judge" in arms:
                fb = [s for w in arms["judge"]["windows"] for s in w["feedback_scores"]]
                right = [s for w in arms["judge"]["windows"] for s in w["scores"]]
                agree = agreement(fb, right)
            recs = arm_records(arms, taskset, args, checks, agree)
            out.write_text(json.dumps(recs, indent=1) + "\n")  # after every arm: a long run that stops keeps its arms
            plot(recs, out.with_suffix(".png"))
    finally:
        up.stop()
    for r in recs:
        print(f"{r['feedback']:>9}: {r['accuracy']:.1%} on windows 2-{args.windows}"
              + (f", {r['diff_vs_none']:+.1%} {r['diff_ci95']}" if "diff_vs_none" in r else ""))


if __name__ == "__main__":
    main()
