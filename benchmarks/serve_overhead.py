"""What `secondnature serve` costs a request (a benchmark, not a test): the real `openai` SDK asking an upstream
directly and through the proxy, in one run.

    python benchmarks/serve_overhead.py                      # the responder and the packaged 0.5B, full size
    python benchmarks/serve_overhead.py --upstreams responder --n 2000 4000

Upstreams, each in its own process, as is the proxy (`secondnature serve --upstream URL --no-learn`, a fresh store):
- responder: tests/responder.py, which answers at once, so what is measured is the proxy's own cost (the way API
  gateways state theirs); plain and streaming requests (a stream is timed to its last chunk).
- embedded: llama.cpp's server with the packaged 0.5B, a short prompt and `max_tokens` 16, plain requests; it
  decodes one sequence at a time, so at 32 clients the latency is mostly the queue (each batch is 32 requests sent
  at once); at one client the arms alternate request by request, as a model's latency drifts by more than the
  few ms looked for.

At each concurrency the two arms are warmed up, then run in alternating batches (direct, proxied, proxied, direct,
...), so that drift on this shared machine falls on both; intervals resample those batch pairs. The client is one
asyncio process with one AsyncOpenAI client per worker and arm, identical for both arms. Per (upstream, stream,
concurrency) a record in benchmarks/results/serve_overhead.json: latency p50/p99 per arm, `added_ms_p50` (with a
95% bootstrap interval) and `added_ms_p99`, throughput per arm (requests over the arm's summed batch time) and
`throughput_ratio` (with its interval), CPU time per request of the client, the upstream and the proxy, and the
CPU that other processes used meanwhile (the machine is shared).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import openai
import records  # benchmarks/, beside this script

from secondnature.serve.upstream import Embedded, free_port, start_embedded

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "benchmarks" / "results" / "serve_overhead.json"
MESSAGES = [{"role": "user", "content": "Name three colours of the rainbow."}]
MAX_TOKENS = 16
GOAL_ADDED_MS_P50 = 5.0
CONCURRENCY = (1, 32)
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- processes

def wait_up(url: str, proc: subprocess.Popen, wait_s: float = 60.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(proc.args)} exited ({proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {wait_s:.0f} s")


def start_responder() -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "responder.py"), str(port)])
    url = f"http://127.0.0.1:{port}/v1"
    wait_up(f"{url}/models", proc)
    return url, proc


def start_proxy(upstream: str, store: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "secondnature.cli", "--store", str(store), "serve", "--upstream",
                             upstream, "--port", str(port), "--no-learn"])
    wait_up(f"http://127.0.0.1:{port}/health", proc)
    return f"http://127.0.0.1:{port}/v1", proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def busy_s() -> float:
    """CPU seconds every process on the machine has used so far (not idle, not waiting on IO)."""
    t = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(t) - t[3] - t[4]) / TICK


# ---------------------------------------------------------------- the client

async def ask(client: openai.AsyncOpenAI, model: str, stream: bool) -> str:
    """One request; the reply's id (a proxied reply carries the proxy's call id). A stream is read to its end."""
    if not stream:
        return (await client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                     temperature=0)).id
    ids = [chunk.id async for chunk in await client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0, stream=True)]
    return ids[-1]


async def batch(clients: list[openai.AsyncOpenAI], n: int, model: str, stream: bool) -> tuple[list[float], float, str]:
    """`n` requests from len(clients) workers at once: (latencies in s, wall time in s, one reply's id)."""
    left, lat, last = n, [], ""

    async def worker(client: openai.AsyncOpenAI) -> None:
        nonlocal left, last
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            last = await ask(client, model, stream)
            lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    return lat, time.perf_counter() - t0, last


@dataclass
class Arm:
    url: str
    clients: list[openai.AsyncOpenAI]
    latencies: list[list[float]] = field(default_factory=list)  # per batch
    seconds: list[float] = field(default_factory=list)          # per batch
    cpu_s: dict[str, float] = field(default_factory=dict)       # per process, over this arm's batches


def clients_for(url: str, concurrency: int) -> list[openai.AsyncOpenAI]:
    return [openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600) for _ in range(concurrency)]


async def measure(direct: str, proxied: str, pids: dict[str, int], *, model: str, stream: bool, concurrency: int,
                  n: int, batches: int, warmup: int) -> tuple[Arm, Arm]:
    """Both arms warmed up, then `batches` batches each in ABBA order. `pids`: the processes whose CPU time is
    counted per arm (the client, the upstream, the proxy)."""
    a, b = Arm(direct, clients_for(direct, concurrency)), Arm(proxied, clients_for(proxied, concurrency))
    for arm in (a, b):
        *_, reply_id = await batch(arm.clients, warmup, model, stream)
        if (arm is b) != reply_id.startswith("chatcmpl-sn"):  # the proxy's call ids: the arms go where they should
            raise RuntimeError(f"{arm.url} answered with id {reply_id!r}")
    size = n // batches
    for k in range(batches):
        for arm in ((a, b) if k % 2 == 0 else (b, a)):
            c0 = {name: cpu_s(pid) for name, pid in pids.items()}
            lat, wall, _ = await batch(arm.clients, size, model, stream)
            arm.latencies.append(lat)
            arm.seconds.append(wall)
            for name, pid in pids.items():
                arm.cpu_s[name] = arm.cpu_s.get(name, 0.0) + cpu_s(pid) - c0[name]
    for c in a.clients + b.clients:
        await c.close()
    return a, b


# ---------------------------------------------------------------- figures

def quantile(xs: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    s = sorted(xs)
    i = q * (len(s) - 1)
    lo = int(i)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (i - lo)


def added_p50_ci(a: Arm, b: Arm, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of proxied p50 minus direct p50 by a two-level bootstrap: batch pairs (a batch of each arm, run
    side by side) drawn with replacement, so that drift between batches widens it, then requests within each."""
    rng = random.Random(seed)
    k = len(a.latencies)
    diffs = []
    for _ in range(resamples):
        d, p = [], []
        for i in (rng.randrange(k) for _ in range(k)):
            d += rng.choices(a.latencies[i], k=len(a.latencies[i]))
            p += rng.choices(b.latencies[i], k=len(b.latencies[i]))
        diffs.append(1000 * (statistics.median(p) - statistics.median(d)))
    diffs.sort()
    return diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples) - 1]


def ratio_ci(a: Arm, b: Arm, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the throughput ratio, resampling batch pairs (throughput is a figure per batch, not per
    request)."""
    rng = random.Random(seed)
    k = len(a.seconds)
    ratios = []
    for _ in range(resamples):
        pick = [rng.randrange(k) for _ in range(k)]
        ratios.append(sum(a.seconds[i] for i in pick) / sum(b.seconds[i] for i in pick))  # equal n per batch
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def figures(a: Arm, b: Arm) -> dict:
    d, p = [x for lat in a.latencies for x in lat], [x for lat in b.latencies for x in lat]
    ms = {f"{name}_ms_{tag}": round(1000 * quantile(xs, q), 2) for name, xs in (("direct", d), ("proxied", p))
          for tag, q in (("p50", 0.5), ("p99", 0.99))}
    rps_d, rps_p = len(d) / sum(a.seconds), len(p) / sum(b.seconds)
    added = round(ms["proxied_ms_p50"] - ms["direct_ms_p50"], 2)
    ratio = rps_p / rps_d
    return {**ms, "added_ms_p50": added, "added_ms_p50_ci95": [round(x, 2) for x in added_p50_ci(a, b)],
            "added_ms_p99": round(ms["proxied_ms_p99"] - ms["direct_ms_p99"], 2),
            "direct_rps": round(rps_d, 1), "proxied_rps": round(rps_p, 1), "throughput_ratio": round(ratio, 3),
            "throughput_ratio_ci95": [round(x, 3) for x in ratio_ci(a, b)],
            "proxy_cpu_ms_per_request": round(1000 * b.cpu_s["proxy"] / len(p), 2),
            **{f"{arm}_{name}_cpu_ms_per_request": round(1000 * x.cpu_s[name] / len(xs), 2)
               for arm, x, xs in (("direct", a, d), ("proxied", b, p)) for name in ("client", "upstream")},
            "n": len(d), "batches": len(a.seconds)}


def goal(rec: dict) -> bool | None:
    """The issue's goal, under 5 ms added at p50 and no throughput lost, as the intervals tell it: True when both
    say so, False when one says the opposite, None when they cannot tell (a model's latency hides a few ms)."""
    lo, hi = rec["added_ms_p50_ci95"]
    if lo >= GOAL_ADDED_MS_P50 or rec["throughput_ratio_ci95"][1] < 1:
        return False
    return True if hi < GOAL_ADDED_MS_P50 else None


# ---------------------------------------------------------------- the run

def part(upstream: str, upstream_pid: int, label: str, model: str, runs: list[tuple[bool, int, int, int, int]],
         store: Path) -> list[dict]:
    """Records of one upstream: runs are (stream, concurrency, n per arm, batches, warm-up requests)."""
    url, proxy = start_proxy(upstream, store)
    pids = {"client": os.getpid(), "upstream": upstream_pid, "proxy": proxy.pid}
    out = []
    try:
        for stream, conc, n, batches, warmup in runs:
            t0, busy0, mine0 = time.time(), busy_s(), sum(map(cpu_s, pids.values()))
            load = os.getloadavg()[0]
            a, b = asyncio.run(measure(upstream, url, pids, model=model, stream=stream, concurrency=conc, n=n,
                                       batches=batches, warmup=warmup))
            seconds = time.time() - t0
            others = busy_s() - busy0 - (sum(map(cpu_s, pids.values())) - mine0)
            rec = {"benchmark": "serve_overhead", "upstream": label, "stream": stream, "concurrency": conc,
                   **figures(a, b), "max_tokens": MAX_TOKENS, "load_1min_at_start": round(load, 2),
                   "others_cpu_cores": round(max(0.0, others) / seconds, 2), "seconds": round(seconds, 1)}
            rec["goal_reached"] = goal(rec)
            print(f"{label:9s} stream={stream!s:5s} c={conc:<2d} n={rec['n']}: p50 {rec['direct_ms_p50']} -> "
                  f"{rec['proxied_ms_p50']} ms ({rec['added_ms_p50']:+} {rec['added_ms_p50_ci95']}), p99 "
                  f"{rec['direct_ms_p99']} -> {rec['proxied_ms_p99']} ms, {rec['direct_rps']} -> {rec['proxied_rps']} "
                  f"req/s (x{rec['throughput_ratio']} {rec['throughput_ratio_ci95']}), proxy CPU "
                  f"{rec['proxy_cpu_ms_per_request']} ms/req, others {rec['others_cpu_cores']} cores", flush=True)
            out.append(rec)
    finally:
        stop(proxy)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstreams", default="responder,embedded")
    ap.add_argument("--n", type=int, nargs=2, default=[2000, 4000], metavar=("N1", "N32"),
                    help="responder requests per arm at 1 and at 32 clients")
    ap.add_argument("--embedded-n", type=int, nargs=2, default=[48, 192], metavar=("N1", "N32"),
                    help="embedded model requests per arm at 1 and at 32 clients")
    ap.add_argument("--out", default=str(RECORD))
    args = ap.parse_args()
    load, t0, rows = records.load(), time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        if "responder" in args.upstreams:
            url, responder = start_responder()
            try:
                runs = [(s, c, n, 20, max(200, 5 * c)) for s in (False, True) for c, n in zip(CONCURRENCY, args.n)]
                rows += part(url, responder.pid, "responder", "responder", runs, Path(tmp) / "responder.db")
            finally:
                stop(responder)
        if "embedded" in args.upstreams:
            model: Embedded = start_embedded("default", n_ctx=2048)
            try:
                (n1, n32), c32 = args.embedded_n, CONCURRENCY[1]
                runs = [(False, 1, n1, n1, 4), (False, c32, n32, max(2, n32 // c32), c32)]
                rows += part(model.url, model.process.pid, "embedded 0.5B", "default", runs,
                                Path(tmp) / "embedded.db")
            finally:
                model.stop()
    common = {"date": records.today(), "commit": records.commit(), "command": "python " + " ".join(sys.argv),
              "machine": records.machine(python=True), "cores": os.cpu_count(),
              "load_1min_before_run": load, "run_seconds": round(time.time() - t0, 1)}
    Path(args.out).write_text(json.dumps([{**r, **common} for r in rows], indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
