"""The Python tool's sandbox: ordinary code runs; a hang, a runaway loop, a fork bomb, a memory hog, a network
call and a flood of output each end that call with a clear tool error, never the test run; every escape
probe (tests/escape_probes.py) is held by the namespaces; without them the tool refuses unless told."""
from __future__ import annotations

import pytest
from escape_probes import PROBES, run_probe

from secondnature import sandbox
from secondnature.sandbox import Limits, run_python

FAST = Limits(wall_s=5.0, cpu_s=2, memory_mb=512, output_chars=400)


def test_ordinary_code_runs_and_prints():
    r = run_python("from itertools import permutations\nprint(sum(1 for _ in permutations(range(4))))", FAST)
    assert r.ok and r.stdout.strip() == "24" and r.as_text() == "24"


def test_an_exception_is_reported_with_the_codes_own_line():
    r = run_python("x = 1\ny = x / 0\n", FAST)
    assert r.exit_code == 1 and "ZeroDivisionError" in r.stderr and 'File "main.py", line 2' in r.stderr
    assert "[tool error] the code exited with status 1" in r.as_text()


def test_a_hang_is_stopped_by_the_wall_clock():
    r = run_python("import time\ntime.sleep(60)", Limits(wall_s=1.0))
    assert r.timed_out and r.exit_code is None and r.seconds < 10
    assert "time limit" in r.as_text()


def test_a_busy_loop_is_stopped_by_the_cpu_limit():
    r = run_python("while True:\n    pass", Limits(wall_s=20.0, cpu_s=1))
    assert not r.ok and (r.timed_out or "CPU time limit" in r.stderr)


def test_a_fork_bomb_and_subprocesses_are_refused():
    r = run_python("import os\nwhile True:\n    os.fork()", FAST)
    assert not r.ok and "does not allow os.fork" in r.stderr
    r = run_python("import subprocess\nsubprocess.run(['echo', 'hi'])", FAST)
    assert not r.ok and "does not allow subprocess" in r.stderr
    r = run_python("import os\nos.system('echo hi')", FAST)
    assert not r.ok and "does not allow os.system" in r.stderr


def test_no_network():
    r = run_python("import socket\nsocket.create_connection(('127.0.0.1', 9))", FAST)
    assert not r.ok and "does not allow socket" in r.stderr


def test_a_memory_hog_fails_inside_the_sandbox():
    r = run_python("x = bytearray(2 * 1024 ** 3)\nprint('allocated')", FAST)
    assert not r.ok and "allocated" not in r.stdout and "MemoryError" in r.stderr


def test_output_is_cut_to_a_bound_with_a_marker():
    r = run_python("for i in range(100000):\n    print(i)", FAST)
    assert r.ok and r.truncated and "elided" in r.stdout and len(r.stdout) < 600
    assert r.stdout.rstrip().endswith("99999")


def test_the_sandbox_writes_only_to_its_own_fresh_tmpfs():
    code = "import os\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd(), sorted(os.listdir('.')))"
    first, second = run_python(code, FAST), run_python(code, FAST)
    assert first.ok and first.stdout.strip() == "/tmp ['scratch.txt']" == second.stdout.strip()


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_every_escape_probe_is_held(probe):
    verdict = run_probe(probe)
    assert not verdict.escaped, verdict.why


def test_without_namespaces_the_tool_refuses_unless_told(monkeypatch):
    monkeypatch.setattr(sandbox, "_bwrap_path", lambda: None)
    sandbox.boundary.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="--insecure-sandbox"):
            sandbox.check()
        r = run_python("print(1)", FAST)
        assert not r.ok and "--insecure-sandbox" in r.stderr and "[tool error]" in r.as_text()
        monkeypatch.setenv(sandbox.INSECURE_ENV, "1")
        sandbox.check()
        assert run_python("print(1)", FAST).stdout.strip() == "1"
    finally:
        sandbox.boundary.cache_clear()


def test_code_too_long_is_refused_not_run():
    r = run_python("x = 1\n" * 50_000, FAST)
    assert not r.ok and "limit" in r.stderr
