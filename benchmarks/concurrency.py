"""Rollouts in flight against a real local server with parallel slots: llama.cpp's own llama-server (built from the
source llama-cpp-python ships, scripts/llama-server) serving the packaged 0.5B model with 16 slots and continuous
batching, the client this package's endpoint model through the openai SDK.

    python benchmarks/concurrency.py                     # builds llama-server on first use (about 10 minutes)
    python benchmarks/concurrency.py --server PATH --tasks 32

One process runs the same rollouts (gsm8k questions with their working asked for, greedy, one sample each, up
to 128 tokens) with 1, 4 and 16 in flight, each level twice, in the order 1, 4, 16, 16, 4, 1 so a drift in the
machine's speed hits every level, each pass on a fresh server (whose slots hold no prompt of an earlier pass).
speedup is the wall time with one in flight over the wall time with N, from the summed times of the two passes;
both passes' ratios are kept. same_as_one_at_a_time: the share of replies equal to the one-at-a-time run's (a
server batching requests may round differently). Writes benchmarks/results/concurrency.json.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import records  # benchmarks/, beside this script
from throughput import WORKING  # benchmarks/, beside this script: the same prompts, their working asked for

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "concurrency.json"
LEVELS = (1, 4, 16)
SLOTS = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server: str, gguf: Path, port: int, ctx_per_slot: int) -> subprocess.Popen:
    proc = subprocess.Popen([server, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                             "--parallel", str(SLOTS), "-c", str(SLOTS * ctx_per_slot), "--threads", str(os.cpu_count()),
                             "--no-webui"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit("llama-server did not become healthy within 300 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=None, help="a llama-server binary (default: scripts/llama-server builds one)")
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    from secondnature.models import OpenAIModel
    from secondnature.rollout import run
    from secondnature.tasks import load_taskset
    from secondnature.weights import POLICY, assemble
    server = args.server or subprocess.run([str(ROOT / "scripts" / "llama-server"), sys.executable], check=True,
                                           capture_output=True, text=True).stdout.strip()
    gguf = assemble(POLICY)
    ts = load_taskset("gsm8k")
    tasks = list(ts.tasks[:args.tasks])
    seconds: dict[int, list[float]] = {k: [] for k in LEVELS}
    replies: dict[int, list[str]] = {}
    for k in (*LEVELS, *reversed(LEVELS)):
        # a fresh server each pass: its slots would otherwise hold the prompts of the pass before, and skip them
        port = free_port()
        proc = start(server, gguf, port, 1024)
        try:
            model = OpenAIModel("qwen", base_url=f"http://127.0.0.1:{port}/v1", concurrency=k, check=False, timeout=600)
            model.chat([{"role": "user", "content": "Say hi."}], max_tokens=4)  # warm: the weights paged in
            t = time.perf_counter()
            out = run(model, tasks, ts.reward, WORKING, [], max_tokens=args.max_tokens)
            seconds[k].append(time.perf_counter() - t)
        finally:
            proc.terminate()
            proc.wait(30)
        errors = [r.error for r in out if r.error]
        assert not errors, errors[:3]
        replies.setdefault(k, [r.completion for r in out])
        tokens = sum(r.completion_tokens for r in out)
        print(f"{k:>2} in flight: {seconds[k][-1]:6.1f} s, {tokens / seconds[k][-1]:5.1f} tok/s", file=sys.stderr)
    command = "python benchmarks/concurrency.py" + (f" --tasks {args.tasks}" if args.tasks != 32 else "")
    meta = {**records.header(command), "server": f"llama-server, {SLOTS} slots",
            "model": gguf.name, "tasks": len(tasks), "max_tokens": args.max_tokens}
    base = seconds[1]
    rows = [{**meta, "in_flight": k, "seconds": [round(s, 2) for s in seconds[k]],
             "speedup": round(sum(base) / sum(seconds[k]), 3),
             "speedup_per_pass": [round(b / s, 3) for b, s in zip(base, seconds[k])],
             "same_as_one_at_a_time": round(sum(a == b for a, b in zip(replies[k], replies[1])) / len(tasks), 3)}
            for k in LEVELS]
    OUT.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


def section() -> list[str]:
    """The record for BENCHMARKS.md (benchmarks/report.py), if there is one."""
    if not OUT.exists():
        return []
    recs = json.loads(OUT.read_text())
    r0 = recs[0]
    lines = ["### Rollouts in flight against a local server", "",
             f"{records.preamble(r0, 'concurrency.json')}. "
             f"{r0['tasks']} gsm8k rollouts (working asked for, greedy, up to {r0['max_tokens']} tokens) against "
             f"{r0['server']} serving "
             f"`{r0['model']}` on the same machine; each level run twice, interleaved.", "",
             "| in flight | seconds (two passes) | speed-up [per pass] | replies as with 1 in flight |",
             "|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['in_flight']} | {' / '.join(f'{s:.1f}' for s in r['seconds'])} | {r['speedup']:.2f} "
                     f"[{', '.join(f'{x:.2f}' for x in r['speedup_per_pass'])}] | {r['same_as_one_at_a_time']:.0%} |")
    return lines + [""]


if __name__ == "__main__":
    main()
