"""Fuzzing where untrusted text enters: task files, the reflector's replies, the policy's completions (the
checkers) and the calculator's expressions. Each must answer in its own terms (TaskFileError; a value; a Score;
a string) whatever it is given, and quickly.

Each target is a strategy and a check, importable without pytest, so a benchmark can run as many examples as it
likes and count the unhandled exceptions instead of stopping at the first:

    python tests/test_fuzz.py 5000               # every target, 5000 examples each: "<target> <examples> <failures>"
    python tests/test_fuzz.py 5000 calculator    # one target

or from Python, with tests/ on sys.path: `failures = run_target("checkers", 5000)` (a list of one-line
descriptions of each exception), or `run_targets(5000)` for every target ({target: {"examples", "unhandled",
"first"}}, what benchmarks/faults.py records); `fuzz_targets()` names the targets. Below, the same checks run as tests at
`MAX_EXAMPLES` each, and the inputs that once hung or crashed are pinned as plain tests.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from secondnature import reflect
from secondnature.rewards import CHECKERS, exact, reference_problem
from secondnature.tasks.jsonl import TaskFileError, load_jsonl
from secondnature.tools import calculate
from secondnature.types import Edit, Score, Task

MAX_EXAMPLES = 300  # per test here; the whole file runs in about 20 s
SECONDS = 1.0       # a generous bound per call on a shared machine: the real cost is milliseconds
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

# ---------------------------------------------------------------- strategies

SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
TEXT = st.one_of(st.text(max_size=200),
                 st.text(st.one_of(st.sampled_from('{}[]()"\\`\n *-:#<>/.,=$_0123456789AaLx'), SURROGATE), max_size=400))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=8)
TASK_ROWS = st.fixed_dictionaries({}, optional={
    "prompt": JSON_VALUES, "answer": JSON_VALUES, "id": JSON_VALUES, "numbers": JSON_VALUES,
    "checker": st.one_of(st.sampled_from([*CHECKERS, "os:system", "json:loads", "fuzzy", ""]), JSON_VALUES)})
RAW_LINES = st.one_of(
    TASK_ROWS.map(lambda row: json.dumps(row, allow_nan=True)),
    TEXT,
    st.integers(1, 6000).map(lambda n: '{"prompt": "p", "answer": ' + "7" * n + "}"),          # int() refuses 4301+
    st.integers(1, 3000).map(lambda n: '{"prompt": "p", "answer": ' + "[" * n + "]" * n + "}"),  # deep nesting
    st.sampled_from(['{"prompt": "p", "answer": NaN}', '{"prompt": "p", "answer": "\\ud800"}', "\ufeff", "\x00"]))
JSONL_FILES = st.one_of(
    st.lists(RAW_LINES, max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    st.binary(max_size=300))

REPLIES = st.one_of(
    TEXT,
    st.lists(st.sampled_from(["{", "}", "[", "]", '"', "\\", "```", "```json\n", "\n", " ", "**Add**:", "- ", "1. ",
                              "<guide>", "</guide>", "\\[", "\\]", "\\frac{", "\\text{", '{"edits": [', '"op": "add"',
                              '"text": "Check each step before you answer."', "Delete L1:", "word "]),
             max_size=300).map("".join))

NUMBER_TEXT = st.one_of(st.integers().map(str), st.fractions().map(str),
                        st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str))
ANSWERS = {
    "number": NUMBER_TEXT,
    "choice": st.sampled_from("ABCDEFG").map(lambda x: f"({x})"),
    "exact": TEXT,
    "dyck": st.text(")]}> ", min_size=1, max_size=20),
    "regex": st.sampled_from(["^par", r"\d{3}-\d{4}", "(a+)+$", "(x+x+)+y", "^(\\w+\\s?)*$", "yes|no", "[", ".*"]),
    "expression24": st.just("(1+2)*(3+5)"),
}
COMPLETIONS = st.one_of(TEXT, REPLIES, TEXT.map(lambda t: f"Answer: {t}"),
                        st.tuples(st.sampled_from(" a*.$\n{(1,"), st.integers(1, 30_000)).map(lambda cn: cn[0] * cn[1]),
                        st.integers(1, 30_000).map(lambda n: "Answer: " + "a" * n + "b"))
CHECKER_CASES = st.sampled_from(sorted(ANSWERS)).flatmap(
    lambda name: st.tuples(st.just(name), ANSWERS[name], st.lists(st.integers(1, 13), min_size=4, max_size=4),
                           COMPLETIONS))


def _arith(leaf: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "^"])
    return st.recursive(leaf, lambda inner: st.one_of(
        st.tuples(inner, ops, inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda e: f"({e})"), inner.map(lambda e: f"-{e}")), max_leaves=30)


EXPRESSIONS = st.one_of(
    TEXT,
    _arith(st.one_of(st.integers(-10**6, 10**6).map(str), st.integers(0, 10**80).map(str),
                     st.floats(allow_nan=False).map(repr), st.sampled_from(["1e308", "1e-300", "0", "1,250", "64"]))),
    st.lists(_arith(st.integers(-99, 99).map(str)), max_size=25).map("\n".join),
    st.tuples(st.sampled_from(["-", "(", "9", "2**", "((1+1/999999999999)**64)**"]), st.integers(1, 8000))
    .map(lambda pn: pn[0] * pn[1] + "1"))

# ---------------------------------------------------------------- checks: raise on a failure


def _timed(call: Callable[[], Any], bound: float = SECONDS) -> Any:
    start = time.perf_counter()
    result = call()
    assert time.perf_counter() - start < bound, f"took {time.perf_counter() - start:.2f} s"
    return result


def check_jsonl(data: bytes) -> None:
    """A task file of any bytes: tasks, or TaskFileError; nothing else comes out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tasks.jsonl"
        path.write_bytes(data)
        try:
            taskset = load_jsonl(path)
        except TaskFileError as err:
            str(err).encode("utf-8")  # a message that can be printed
            return
    for task in taskset.tasks:
        json.dumps([task.id, task.prompt, task.answer], ensure_ascii=False).encode("utf-8")  # storable


def check_reflect(raw: str) -> None:
    """Every parser of a reply: its documented result, no exception, in bounded time."""
    edits, notes = _timed(lambda: reflect.parse(raw, {"L1", "L2"}, [Task("t", "Count the letters in 'banana'.", "3")]))
    assert all(isinstance(e, Edit) and e.op in ("add", "edit", "delete") for e in edits) and isinstance(notes, list)
    guide, why = _timed(lambda: reflect.parse_guide(raw))
    assert isinstance(guide, str) and isinstance(why, str) and bool(guide) != bool(why)
    lesson, why = _timed(lambda: reflect.demo_lesson(raw, Task("t", "What is 2+2?", "4"), exact))
    assert isinstance(lesson, str) and isinstance(why, str)
    assert isinstance(_timed(lambda: reflect.plain_math(raw)), str)


def check_checker(case: tuple[str, str, list[int], str]) -> None:
    """A built-in checker on a valid reference and any completion: a Score in [0, 1], in bounded time."""
    name, answer, numbers, completion = case
    task = Task("t", "Pick one:\n(A) yes\n(B) no", answer, {"numbers": numbers})
    if reference_problem(name, task):  # a reference the loader refuses never reaches a checker
        return
    score = _timed(lambda: CHECKERS[name](task, completion))
    assert isinstance(score, Score) and 0.0 <= score.value <= 1.0 and isinstance(score.feedback, str)


def check_calculator(text: str) -> None:
    """Any text: a string back, every line bounded (20 lines at most, each well under 50 ms)."""
    assert isinstance(_timed(lambda: calculate(text)), str)


def fuzz_targets() -> dict[str, tuple[st.SearchStrategy, Callable[[Any], None]]]:
    """Each target's name -> (the strategy of its inputs, the check that raises on a failure)."""
    return {"jsonl": (JSONL_FILES, check_jsonl), "reflect": (REPLIES, check_reflect),
            "checkers": (CHECKER_CASES, check_checker), "calculator": (EXPRESSIONS, check_calculator)}


def run_target(name: str, examples: int) -> list[str]:
    """`examples` generated inputs through one target; each exception as one line (type, message, input)."""
    strategy, check = fuzz_targets()[name]
    failures: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def go(value: Any) -> None:
        try:
            check(value)
        except Exception as err:  # noqa: BLE001 - counted, not raised: the benchmark wants the count
            failures.append(f"{type(err).__name__}: {str(err)[:120]} <- {ascii(value)[:120]}")

    go()
    return failures


def run_targets(examples: int) -> dict[str, dict[str, Any]]:
    """Every target for `examples` inputs: {target: {"examples", "unhandled", "first"}} (benchmarks/faults.py)."""
    counts = {}
    for name in fuzz_targets():
        failures = run_target(name, examples)
        counts[name] = {"examples": examples, "unhandled": len(failures), "first": failures[:3]}
    return counts


# ---------------------------------------------------------------- the fuzz tests


@FUZZ
@given(JSONL_FILES)
def test_fuzz_jsonl_loader(data: bytes) -> None:
    check_jsonl(data)


@FUZZ
@given(REPLIES)
def test_fuzz_reflect_parsers(raw: str) -> None:
    check_reflect(raw)


@FUZZ
@given(CHECKER_CASES)
def test_fuzz_checkers(case: tuple[str, str, list[int], str]) -> None:
    check_checker(case)


@FUZZ
@given(EXPRESSIONS)
def test_fuzz_calculator(text: str) -> None:
    check_calculator(text)


def test_run_targets_counts_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_targets(3) == {name: {"examples": 3, "unhandled": 0, "first": []} for name in fuzz_targets()}

    def broken(text: str) -> None:
        raise RuntimeError("found one")

    monkeypatch.setattr(sys.modules[__name__], "fuzz_targets", lambda: {"calculator": (EXPRESSIONS, broken)})
    found = run_target("calculator", 4)
    assert len(found) == 4 and found[0].startswith("RuntimeError: found one <- ")


# ---------------------------------------------------------------- inputs that once hung or crashed


def _best_of(call: Callable[[], Any], tries: int = 3) -> float:
    """The fastest of a few runs: the cost of the call itself, not of whatever else the machine is doing."""
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize("line, words", [
    ("((((1+1/999999999999)**64)**64)**64)**64", "too large"),  # ran past 60 s in the loop's process
    ("-" * 6000 + "1", "too long"),                              # MemoryError / RecursionError out of ast.parse
    ("-" * 151 + "1", "= -1"),
    ("(" * 40 + "1" + ")" * 40, "nested too deeply"),
    ("9" * 10_000, "too long"),
    ("2 ** 4096 ** 4096", "too large"),
    ("2 ** 2000 * 3 ** 2000", "too large"),
    ("(1/3) ** 1000 + (1/7) ** 1000", "too large"),                # each power fits; their sum would not
    ("10 ** 1000 / 3", "= 3.333333333e+999"),
    ("1 / 10 ** 400", "= 1e-400"),
    ("1e999", "too large"),
    ("0 ** -1", "division by zero"),
    ("+".join(["12"] * 60), "= 720"),                             # a long sum is a deep tree, and fine
])
def test_calculator_lines_that_hung_or_crashed_answer_in_milliseconds(line: str, words: str) -> None:
    out = calculate(line)
    assert words in out and out.count("\n") == 0, out
    assert _best_of(lambda: calculate(line)) < 0.05


def test_calculator_twenty_hostile_lines_answer_together_in_well_under_a_second() -> None:
    hostile = "\n".join(["((((1+1/999999999999)**64)**64)**64)**64", "-" * 6000 + "1", "(" * 199 + "1"] * 7)
    out = calculate(hostile)
    assert out.count("[tool error]") == 20
    assert _best_of(lambda: calculate(hostile)) < 0.5


if __name__ == "__main__":  # python tests/test_fuzz.py N [target ...]: the failures of N examples per target
    n = int(sys.argv[1]) if len(sys.argv) > 1 else MAX_EXAMPLES
    for target in sys.argv[2:] or list(fuzz_targets()):
        found = run_target(target, n)
        print(target, n, len(found), flush=True)
        for line in found[:5]:
            print("   ", line)
