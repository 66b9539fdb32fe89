"""Rollouts per second on Ray workers against local threads, on this machine: the embedded 0.5B model on the first 16
gsm8k test items, greedy, 64 tokens, one sample each. A Ray head with the machine's cores is started for the run
(`ray start --head --block`, stopped by its id at the end); with W workers each task asks for cores/W CPUs, so W
tasks run at once and each worker decodes with max(1, cores/W) threads in its own process, its own copy of the model.

    python benchmarks/ray_scaling.py        # writes benchmarks/results/ray_scaling.json (a few minutes)

Each configuration runs the 16 tasks twice on a fresh connection (new worker processes): the first run includes
starting the workers and loading their models, the second is the steady state reported as the rate. Nothing else
heavy may run meanwhile: decoding is compute-bound, and more workers than cores cannot make it faster."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import records  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "ray_scaling.json"
TASKS, MAX_TOKENS = 16, 64
WORKERS = (1, 2, 4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def head(cores: int) -> tuple[subprocess.Popen, str, str]:
    """A Ray head in a process of its own, and its address."""
    port, agent = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", f"--num-cpus={cores}", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}", f"--dashboard-agent-listen-port={agent}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            # Ray runs workers at niceness 15; the local reference runs at 0, so the workers do too
                            env={**os.environ, "RAY_worker_niceness": "0"})
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}", temp
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the Ray head did not start")


def timed(model, tasks, reward, system, executor) -> tuple[float, list]:
    from secondnature import rollout
    from secondnature.executor import executing
    t = time.perf_counter()
    with executing(executor):
        rs = rollout.run(model, tasks, reward, system, [], n=1, temperature=0.0, max_tokens=MAX_TOKENS)
    return time.perf_counter() - t, rs


def main() -> None:
    import ray

    from secondnature.cluster import RayExecutor
    from secondnature.evaluate import split_tasks
    from secondnature.executor import THREADS
    from secondnature.models import LlamaModel
    from secondnature.tasks import load_taskset
    from secondnature.weights import POLICY, assemble
    cores = os.cpu_count() or 2
    gsm = load_taskset("gsm8k")
    tasks = split_tasks(gsm, "test", limit=TASKS)
    model = LlamaModel(assemble(POLICY), threads=cores)
    timed(model, tasks[:1], gsm.reward, gsm.instruction, THREADS)  # warm: the model's first call pays its setup
    load = os.getloadavg()[0]
    local_s, local = timed(model, tasks, gsm.reward, gsm.instruction, THREADS)
    print(f"local, {cores} threads: {local_s:.1f} s, {len(local) / local_s:.2f} rollouts/s", file=sys.stderr)
    rows = []
    proc, address, temp = head(cores)
    try:
        for w in WORKERS:
            ray.init(address=address, logging_level="WARNING")  # a new job: new worker processes, models loaded anew
            executor = RayExecutor(cpus=int(cores / w * 10_000) / 10_000)  # Ray counts in 1e-4 CPU (3 x 0.6667 > 2)
            load_w = os.getloadavg()[0]
            cold_s, _ = timed(model, tasks, gsm.reward, gsm.instruction, executor)
            wall_s, remote = timed(model, tasks, gsm.reward, gsm.instruction, executor)
            ray.shutdown()
            same = [(r.id, r.completion, r.score) for r in remote] == [(r.id, r.completion, r.score) for r in local]
            rows.append({"executor": "ray", "workers": w, "threads_per_worker": max(1, round(cores / w)),
                         "cold_s": round(cold_s, 2), "wall_s": round(wall_s, 2), "outputs_identical": same,
                         "load_1min_before": round(load_w, 2)})
            print(f"ray, {w} workers: {wall_s:.1f} s (first run {cold_s:.1f} s), identical {same}", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)  # the head this script started, by its id
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", temp], check=False)
    # the local reference again at the end: a machine that got busier meanwhile shows as two different times
    load_after = os.getloadavg()[0]
    again_s, _ = timed(model, tasks, gsm.reward, gsm.instruction, THREADS)
    print(f"local again: {again_s:.1f} s", file=sys.stderr)
    reference = min(local_s, again_s)
    rows.insert(0, {"executor": "local", "workers": 1, "threads_per_worker": cores, "cold_s": None,
                    "wall_s": round(reference, 2), "local_runs_s": [round(local_s, 2), round(again_s, 2)],
                    "outputs_identical": True, "load_1min_before": round(max(load, load_after), 2)})
    for row in rows:
        row["rollouts_per_s"] = round(len(local) / row["wall_s"], 3)
        row["speedup_vs_local"] = round(reference / row["wall_s"], 2)
    record = {**records.header("python benchmarks/ray_scaling.py"), "cores": cores, "ray": ray.__version__,
              "model": "qwen2.5-coder-0.5b-instruct-q4_k_m", "tasks": f"gsm8k test, first {TASKS}",
              "max_tokens": MAX_TOKENS, "prompt_tokens": sum(r.prompt_tokens for r in local),
              "completion_tokens": sum(r.completion_tokens for r in local), "results": rows}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


def section() -> list[str]:
    """The record for BENCHMARKS.md (benchmarks/report.py), if there is one."""
    if not OUT.exists():
        return []
    r = json.loads(OUT.read_text())
    lines = ["### Rollouts on Ray workers, on one machine", "",
             f"{records.preamble(r, 'ray_scaling.json', 'Ray ' + r['ray'])}. The 0.5B model on the {r['tasks']} items, "
             f"greedy, at most {r['max_tokens']} tokens, "
             f"one sample each ({r['prompt_tokens']:,} prompt and {r['completion_tokens']:,} completion tokens in all); "
             f"local: one process and its threads, the faster of a run before and one after the Ray runs; Ray: a head "
             f"with {r['cores']} CPUs on this machine, each worker a process with its own copy of the model. A Ray "
             "row's time is a second run on warm workers; the first run includes starting them and loading their "
             "models.", "",
             "| executor | workers × threads | first run s | wall s | rollouts/s | vs local | same outputs |",
             "|---|---|---|---|---|---|---|"]
    for x in r["results"]:
        cold = f"{x['cold_s']:.1f}" if x["cold_s"] is not None else "-"
        lines.append(f"| {x['executor']} | {x['workers']} × {x['threads_per_worker']} | {cold} | {x['wall_s']:.1f} | "
                     f"{x['rollouts_per_s']:.2f} | {x['speedup_vs_local']:.2f}x | "
                     f"{'yes' if x['outputs_identical'] else 'no'} |")
    ray_rows = [x for x in r["results"] if x["executor"] == "ray"]
    if ray_rows and all(x["speedup_vs_local"] < 1 for x in ray_rows):
        lines += ["", f"On one {r['cores']}-core machine no Ray row beats local threads: the model's work (here mostly "
                  "reading the prompts) is compute-bound and every row shares the same cores, a Ray task adds its "
                  "dispatch and a process of its own, and one-thread workers each holding a copy of the model are "
                  "slower together than one process using both cores. What Ray is for is more machines, each "
                  "decoding its share of the tasks (not measured here); the outputs were the same in every row."]
    return lines + [""]


if __name__ == "__main__":
    main()
