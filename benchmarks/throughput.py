"""Aggregate decoding speed of the embedded model when a group's K samples of one prompt decode together (llama.cpp
batching, models/batch.py) against single-stream decoding of the same samples, in one process on the same prompts.

    python benchmarks/throughput.py                       # the 0.5B policy; K = 1, 2, 4, 8
    python benchmarks/throughput.py --model reflector --prompts 4

For each prompt (a gsm8k question, its working asked for) and K, both arms make K greedy samples (max 128
tokens): `single` asks for them one call at a time (each call reusing the prompt the last one left in the KV cache,
as single-stream decoding does), `batched` decodes them together in one llama.cpp batch at every K (chat() itself
batches from batch.MIN_SEQS samples, where batching starts to pay on this kind of machine). The arms alternate
which goes first. tokens_per_s is completion tokens over wall seconds, summed over the prompts; ratio_vs_single is
batched over single at the same K, with a 95% bootstrap interval over prompts; outputs_identical says every batched
text equals its single-stream text; ms_per_step is what one decoding step of K rows cost. Writes
benchmarks/results/throughput.json.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import records  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "throughput.json"
KS = (1, 2, 4, 8)
GOAL = 2.0  # at K = 4


WORKING = "Solve the problem step by step, showing each calculation, then end with a line of the form Answer: N."


def prompts(n: int) -> list[list[dict]]:
    """The first n questions of gsm8k, asked with their working shown: replies of about a hundred tokens, as a group's
    samples are when a lesson asks the policy to reason."""
    from secondnature.tasks import load_taskset
    ts = load_taskset("gsm8k")
    return [[{"role": "system", "content": WORKING}, {"role": "user", "content": t.prompt}] for t in ts.tasks[:n]]


def arm(model, messages: list[dict], k: int, together: bool, max_tokens: int) -> tuple[float, int, list[str]]:
    t = time.perf_counter()
    if together:  # llama.cpp's batching at every K, although chat() takes it only from batch.MIN_SEQS samples
        with model.lock:
            out = model._together(messages, k, 0.0, max_tokens, 0, None)
    else:
        out = [model.chat(messages, n=1, max_tokens=max_tokens, seed=i)[0] for i in range(k)]
    seconds = time.perf_counter() - t
    assert not any(c.error for c in out), [c.error for c in out]
    return seconds, sum(c.completion_tokens for c in out), [c.text for c in out]


def ratio_ci(rows: list[dict], reps: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval over prompts for the ratio of summed batched to summed single-stream speed."""
    rng, ratios = random.Random(0), []
    for _ in range(reps):
        pick = [rng.choice(rows) for _ in rows]
        single = sum(r["single_tokens"] for r in pick) / sum(r["single_s"] for r in pick)
        ratios.append(sum(r["batched_tokens"] for r in pick) / sum(r["batched_s"] for r in pick) / single)
    ratios.sort()
    return ratios[int(0.025 * reps)], ratios[int(0.975 * reps) - 1]


def measure(spec: str, n_prompts: int, max_tokens: int) -> list[dict]:
    from secondnature.models import load_model
    model = load_model(spec)
    asks = prompts(n_prompts)
    arm(model, asks[0], 2, True, 8)  # warm: the batch context made, the weights paged in
    out = []
    for k in KS:
        rows = []
        for i, messages in enumerate(asks):
            first = i % 2 == 0  # alternate which arm goes first, so a drift in the machine's speed hits both
            runs = {together: arm(model, messages, k, together, max_tokens)
                    for together in ((True, False) if first else (False, True))}
            (bs, bt, btext), (ss, st, stext) = runs[True], runs[False]
            rows.append({"batched_s": bs, "batched_tokens": bt, "single_s": ss, "single_tokens": st,
                         "identical": btext == stext})
            print(f"K={k} prompt {i}: single {st / ss:5.1f} tok/s, batched {bt / bs:5.1f} tok/s, "
                  f"identical {btext == stext}", file=sys.stderr)
        single = sum(r["single_tokens"] for r in rows) / sum(r["single_s"] for r in rows)
        batched = sum(r["batched_tokens"] for r in rows) / sum(r["batched_s"] for r in rows)
        lo, hi = ratio_ci(rows)
        out.append({"k": k, "tokens_per_s": round(batched, 2), "single_tokens_per_s": round(single, 2),
                    "ratio_vs_single": round(batched / single, 3), "ratio_ci95": [round(lo, 3), round(hi, 3)],
                    "outputs_identical": all(r["identical"] for r in rows),
                    "identical_prompts": sum(r["identical"] for r in rows), "prompts": len(rows),
                    "completion_tokens": sum(r["batched_tokens"] for r in rows), "model": model.name,
                    # what one decoding step of k tokens costs: flat if reading the weights set the pace
                    "ms_per_step": round(1000 * sum(r["batched_s"] for r in rows) * k /
                                         sum(r["batched_tokens"] for r in rows), 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    command = "python benchmarks/throughput.py" + (f" --model {args.model}" if args.model != "default" else "") + \
        (f" --prompts {args.prompts}" if args.prompts != 6 else "")
    head = records.header(command)  # the code that runs: taken before it runs
    load = [records.load()]  # other work on the machine slows both arms
    rows = measure(args.model, args.prompts, args.max_tokens)
    load.append(records.load())
    meta = {**head, "load_average": load, "max_tokens": args.max_tokens, "greedy": True}
    old = json.loads(OUT.read_text()) if OUT.exists() else []
    keep = [r for r in old if r.get("model") != rows[0]["model"]]  # one run per model is kept
    OUT.write_text(json.dumps(keep + [{**meta, **r} for r in rows], indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


def section() -> list[str]:
    """The record for BENCHMARKS.md (benchmarks/report.py), if there is one."""
    if not OUT.exists():
        return []
    recs = json.loads(OUT.read_text())
    r0 = recs[0]
    lines = ["### Batched decoding on the embedded runtime", "",
             f"{records.preamble(r0, 'throughput.json')}. A group's K "
             f"greedy samples of one prompt ({r0['prompts']} gsm8k prompts, up to {r0['max_tokens']} tokens each) "
             f"decoded together in one llama.cpp batch, against the same samples decoded one at a time, in one "
             f"process; the ratio with a 95% bootstrap interval over prompts. Goal: {GOAL:.0f}x at K = 4.", "",
             "| model | K | single-stream tok/s | batched tok/s | ratio [95% CI] | ms a step | outputs identical |",
             "|---|---|---|---|---|---|---|"]
    for r in recs:
        lo, hi = r["ratio_ci95"]
        same = "yes" if r["outputs_identical"] else f"{r['identical_prompts']} of {r['prompts']} prompts"
        lines.append(f"| {r['model'].removeprefix('llama.cpp:')} | {r['k']} | {r['single_tokens_per_s']:.1f} | "
                     f"{r['tokens_per_s']:.1f} | {r['ratio_vs_single']:.2f} [{lo:.2f}, {hi:.2f}] | "
                     f"{r['ms_per_step']:.0f} | {same} |")
    return lines + [""]


if __name__ == "__main__":
    main()
