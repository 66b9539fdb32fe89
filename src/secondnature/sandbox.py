"""A Python tool for the policy: run model-written code in a separate, limited process, and always come back.

What it does:
- a fresh interpreter (`python -I`: no user site-packages, no PYTHON* environment) in a new session,
  started in a temporary working directory that is removed afterwards, with an empty environment;
- limits set in the child before the code runs: CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS),
  size of any file written (RLIMIT_FSIZE), number of processes (RLIMIT_NPROC, not enforced for root),
  and a wall-clock timeout after which the whole process group is killed;
- an audit hook installed before the code runs refuses sockets, subprocesses, fork/exec, os.system
  and ctypes, so model-written code cannot reach the network or multiply itself through Python;
- stdout and stderr are captured and cut to a bound (head and tail kept, the cut marked).

What it does not do: it is not a security boundary against hostile code. Native code (a C extension
that is already installed) can bypass the audit hook, the process runs as the same user with the
same filesystem rights outside its working directory, and nothing isolates it in a namespace or a
container. It is made for code a model writes by mistake (a hang, a runaway loop, a fork bomb, a
memory hog, a print of a million lines), which it ends with a clear tool error instead of ending the run.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from .text import elide


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 64
    output_chars: int = 2000   # per stream, what the model gets to read


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    exit_code: int | None      # None when killed by the timeout
    timed_out: bool
    seconds: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def as_text(self) -> str:
        """What the policy reads back as the tool's answer."""
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip())
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr.rstrip())
        if self.timed_out:
            parts.append(f"[tool error] the code ran past the time limit and was stopped after {self.seconds:.1f} s")
        elif self.exit_code not in (0, None):
            parts.append(f"[tool error] the code exited with status {self.exit_code}")
        return "\n".join(parts) or "(no output)"


# Runs in the child before the user's code: the limits first, then the audit hook; from there on,
# Python-level escapes raise PermissionError. (Set here rather than in a preexec_fn, which is unsafe
# when the parent runs threads, as rollouts may.)
_GUARD = r'''
import resource, sys
_MB = 1024 * 1024
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu} + 1))
resource.setrlimit(resource.RLIMIT_AS, ({mem} * _MB, {mem} * _MB))
resource.setrlimit(resource.RLIMIT_FSIZE, ({file} * _MB, {file} * _MB))
resource.setrlimit(resource.RLIMIT_NPROC, ({nproc}, {nproc}))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_BLOCKED = ("socket.", "subprocess.", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn",
            "os.system", "os.kill", "os.killpg", "ctypes.", "pty.")
def _guard(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"the sandbox does not allow {event}")
sys.addaudithook(_guard)
del _guard
_code = open("main.py", encoding="utf-8").read()
exec(compile(_code, "main.py", "exec"), {"__name__": "__main__"})
'''


def _clip(text: str, bound: int) -> tuple[str, bool]:
    return elide(text, bound), len(text) > bound


def run_python(code: str, limits: Limits = Limits()) -> RunResult:
    """Run `code` under `limits`; never raises for anything the code does."""
    workdir = tempfile.mkdtemp(prefix="sn-sandbox-")
    t0 = time.perf_counter()
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        guard = _GUARD.replace("{cpu}", str(limits.cpu_s)).replace("{mem}", str(limits.memory_mb)).replace(
            "{file}", str(limits.file_mb)).replace("{nproc}", str(limits.processes))
        # its own session and process group: a timeout kills everything it started
        proc = subprocess.Popen([sys.executable, "-I", "-c", guard], cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"},
                                start_new_session=True, close_fds=True)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
        seconds = time.perf_counter() - t0
        stdout, cut_out = _clip(out.decode("utf-8", "replace"), limits.output_chars)
        stderr, cut_err = _clip(_tidy(err.decode("utf-8", "replace")), limits.output_chars)
        code_ = None if timed_out else proc.returncode
        if code_ is not None and code_ < 0:  # killed by a signal: the CPU limit sends SIGXCPU, memory SIGKILL
            stderr += f"\n[tool error] stopped by signal {signal.Signals(-code_).name}" + (
                " (CPU time limit)" if -code_ == signal.SIGXCPU else "")
        return RunResult(stdout, stderr, code_, timed_out, seconds, cut_out or cut_err)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _tidy(stderr: str) -> str:
    """Drop the guard's own frames from a traceback: the model should see its code's lines, not ours."""
    return "\n".join(line for line in stderr.splitlines()
                     if 'File "<string>"' not in line and not line.startswith("    exec(compile("))
