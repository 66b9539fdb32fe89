"""Checkers: right, wrong and missing answers, the never-raise contract, and user checkers."""
from __future__ import annotations

import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secondnature.rewards import CHECKERS, MAX_COMPLETION, as_reward, extract_answer, get_checker, reference_problem
from secondnature.types import Score, Task

G24 = Task("g", "Use 1 1 4 6", "((1-1)+(4*6))", {"numbers": [1, 1, 4, 6]})
TASKS = {
    "exact": Task("e", "q", "True"),
    "number": Task("n", "q", "3"),
    "choice": Task("c", "Options:\n(A) red\n(B) blue\n(C) green", "(B)"),
    "regex": Task("r", "q", r"^pa(ri|ry)s$"),
    "expression24": G24,
    "dyck": Task("d", "q", "] ) >"),
}


def score(name: str, task: Task, completion: str) -> Score:
    return CHECKERS[name](task, completion)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(CHECKERS)), text=st.text())
def test_checkers_never_raise_on_arbitrary_text(name: str, text: str) -> None:
    for completion in (text, "Answer: " + text, text + "\nAnswer:"):
        result = score(name, TASKS[name], completion)
        assert 0.0 <= result.value <= 1.0
        assert result.feedback.strip()
        assert f"checker {name} failed" not in result.feedback  # the safety net in rewards._safe stayed idle


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(CHECKERS)), answer=st.text(), text=st.text())
def test_checkers_never_raise_on_arbitrary_references(name: str, answer: str, text: str) -> None:
    task = Task("x", text, answer, {"numbers": [1, 2, 3, 4]})
    result = score(name, task, "Answer: " + text)
    assert 0.0 <= result.value <= 1.0 and result.feedback.strip()
    assert f"checker {name} failed" not in result.feedback


@pytest.mark.parametrize("text, expected", [
    ("Answer: 3", "3"),
    ("reasoning\n**Answer:** 42", "42"),
    ("**Answer**: `(B)`", "(B)"),
    ("Final answer: \\boxed{7}.", "7"),
    ("answer: first\nmore\nANSWER: second.", "second"),
    ("Answer:\n  12", "12"),
    ("The answer is 3", None),
    ("no answer here", None),
])
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_exact_right_wrong_and_last_line() -> None:
    task = Task("e", "q", "Hello  World")
    assert score("exact", task, "Answer: hello world").value == 1.0
    wrong = score("exact", task, "Answer: goodbye")
    assert wrong.value == 0.0 and wrong.feedback == "expected Hello World, got goodbye"
    fallback = score("exact", task, "thinking\nhello world\n")
    assert fallback.value == 1.0 and "no 'Answer:' line" in fallback.feedback
    assert score("exact", task, "   ").feedback.startswith("no answer found")


def test_number_feedback_cases() -> None:
    task = TASKS["number"]
    assert score("number", task, "Answer: 3") == Score(1.0, "correct: 3")
    assert score("number", task, "Answer: 2") == Score(0.0, "expected 3, got 2")
    fallback = score("number", task, "I count 1, then 2")
    assert fallback == Score(0.0, "no 'Answer:' line; took the last number 2 from the text: expected 3")
    assert score("number", task, "I count 3 r's").value == 1.0
    missing = score("number", task, "no idea")
    assert missing.value == 0.0 and missing.feedback.startswith("no answer found")


@pytest.mark.parametrize("completion", [
    "Answer: $1,234", "Answer: 1,234 dollars", "Answer: $1,234.00.", "Answer: 1234.0000000001",
    "Answer: 16 - 3 + 1221 = 1234", "**Answer:** \\boxed{1234}", "so she pays 1,234",
])
def test_number_accepts_formats(completion: str) -> None:
    assert score("number", Task("n", "q", "1234"), completion).value == 1.0


def test_number_fractions_decimals_negatives() -> None:
    assert score("number", Task("n", "q", "0.75"), "Answer: 3/4").value == 1.0
    assert score("number", Task("n", "q", "-35"), "Answer: -35").value == 1.0
    assert score("number", Task("n", "q", "2"), "Answer: 2 (r at positions 3, 8, 9)").value == 1.0
    bad_ref = score("number", Task("n", "q", "blue"), "Answer: 3")
    assert bad_ref.value == 0.0 and "not a number" in bad_ref.feedback


@pytest.mark.parametrize("completion", ["Answer: (B)", "Answer: B", "Answer: B)", "Answer: (B) blue",
                                        "Answer: b) ", "Answer: blue", "I pick (A)... no, (B)"])
def test_choice_accepts_forms(completion: str) -> None:
    assert score("choice", TASKS["choice"], completion).value == 1.0


def test_choice_reference_without_parentheses_and_wrong_answers() -> None:
    assert score("choice", Task("c", "q", "B"), "Answer: (B)").value == 1.0
    assert score("choice", TASKS["choice"], "Answer: (C)") == Score(0.0, "expected (B), got (C)")
    assert score("choice", TASKS["choice"], "so the option is (B)").value == 1.0  # fallback: last (X)
    assert score("choice", TASKS["choice"], "Answer: I think (A)").value == 0.0
    assert score("choice", TASKS["choice"], "no idea").feedback.startswith("no answer found")


def test_regex() -> None:
    assert score("regex", TASKS["regex"], "Answer: Paris").value == 1.0
    assert score("regex", TASKS["regex"], "Answer: London").value == 0.0
    assert score("regex", Task("r", "q", "par"), "it is paris").value == 1.0  # whole text without Answer line
    invalid = score("regex", Task("r", "q", "([unclosed"), "Answer: x")
    assert invalid.value == 0.0 and "invalid regular expression" in invalid.feedback


@pytest.mark.parametrize("completion", ["Answer: (1-1)+(4*6)", "Answer: (1-1)+(4*6) = 24", "Answer: 4*6*(1/1)",
                                        "Answer: `((1-1)+(4*6))`", "Answer: 6 × 4 × 1 ÷ 1", "Answer: 4 x 6 + 1 - 1"])
def test_expression24_accepts(completion: str) -> None:
    result = score("expression24", G24, completion)
    assert result.value == 1.0, result.feedback


@pytest.mark.parametrize("completion, reason", [
    ("Answer: 4*6", "uses [4, 6] but the puzzle has [1, 1, 4, 6]"),
    ("Answer: 4*6*1*1*1", "uses [1, 1, 1, 4, 6]"),
    ("Answer: (1+1)*4+6", "evaluates to 14, not 24"),
    ("Answer: 4*6-1*1", "evaluates to 23, not 24"),
    ("Answer: __import__('os')", "Call is not allowed"),
    ("Answer: x*4*6*1", "Name is not allowed"),
    ("Answer: 4*6/(1-1)", "division by zero"),
    ("Answer: 4**6+1+1", "only + - * / are allowed"),
    ("Answer: 4*6*1.0*1", "not a whole number"),
    ("Answer: -1+1+4*6", "unary signs are not allowed"),
    ("Answer: 4*6 +", "could not parse"),
])
def test_expression24_rejects(completion: str, reason: str) -> None:
    result = score("expression24", G24, completion)
    assert result.value == 0.0 and reason in result.feedback, result.feedback


def test_expression24_without_numbers_metadata() -> None:
    assert score("expression24", Task("g", "q", "x"), "Answer: 4*6").value == 0.0


def test_dyck_ignores_whitespace() -> None:
    assert score("dyck", TASKS["dyck"], "Answer: ])>").value == 1.0
    assert score("dyck", TASKS["dyck"], "Answer: ] ) > )").value == 0.0


def test_get_checker_builtin_and_unknown() -> None:
    assert get_checker("number") is CHECKERS["number"]
    with pytest.raises(ValueError, match="exact, number, choice"):
        get_checker("fuzzy")
    with pytest.raises(ValueError, match="PYTHONPATH"):
        get_checker("no_such_module_xyz:check")


def test_get_checker_user_function(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_checks.py").write_text(
        "from secondnature.types import Score\n"
        "def starts(task, completion):\n    return completion.startswith(task.answer)\n"
        "def half(task, completion):\n    return 0.5\n"
        "def big(task, completion):\n    return Score(7, 'too much')\n"
        "def boom(task, completion):\n    raise ValueError('bad input')\n"
        "def text(task, completion):\n    return 'yes'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = Task("t", "q", "ok")
    assert get_checker("my_checks:starts")(task, "ok then").value == 1.0
    assert get_checker("my_checks:starts")(task, "no").value == 0.0
    assert get_checker("my_checks:half")(task, "x").value == 0.5
    assert get_checker("my_checks:big")(task, "x") == Score(1.0, "too much")
    assert get_checker("my_checks:boom")(task, "x") == Score(0.0, "checker raised ValueError: bad input")
    assert get_checker("my_checks:text")(task, "x").value == 0.0
    with pytest.raises(ValueError, match="no function 'missing'"):
        get_checker("my_checks:missing")
    sys.modules.pop("my_checks", None)


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_a_regex_that_backtracks_times_out_and_scores_zero() -> None:
    task = Task("r", "q", "(a+)+$")  # re would backtrack for ever on 'aaa...b'
    result = None

    def run() -> None:
        nonlocal result
        result = score("regex", task, "a" * 5000 + "b")

    assert _seconds(run) < 1.0
    assert result.value == 0.0 and "took too long" in result.feedback and "/(a+)+$/" in result.feedback, result
    assert score("regex", task, "Answer: aaaa").value == 1.0  # the same pattern still matches where it can


def test_a_regex_too_large_to_compile_is_refused_not_compiled() -> None:
    result = score("regex", Task("r", "q", "((a{1000}){1000}){1000}"), "Answer: a")
    assert result.value == 0.0 and "too large to compile" in result.feedback
    assert score("regex", Task("r", "q", r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"), "Answer: 2024-01-02T03:04:05").value == 1


# Completions built to make a pattern backtrack or a loop go round once per character; 100,000 characters each.
HOSTILE = {
    "spaces in a Game of 24 answer": "Answer: 1" + " " * 100_000 + "= 24",
    "spaces then x": "Answer: 1" + " " * 100_000 + "x",
    "bare spaces": " " * 100_000,
    "nested boxes": "Answer: " + "\\boxed{" * 14_000 + "3" + "}" * 14_000,
    "bold and dots": "Answer: " + "*." * 50_000,
    "dollars": "Answer: $" + "$" * 100_000,
    "answer lines": "Answer: x\n" * 10_000,
    "digit groups": "Answer: " + "1," * 50_000,
    "digits": "9" * 100_000,
    "parentheses": "Answer: " + "(" * 100_000,
}


@pytest.mark.parametrize("name", sorted(CHECKERS))
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_checkers_are_fast_on_hostile_completions(name: str, kind: str) -> None:
    result = None

    def run() -> None:
        nonlocal result
        result = score(name, TASKS[name], HOSTILE[kind])

    assert _seconds(run) < 1.0  # 100,000 spaces in a Game of 24 answer took 25 s
    assert 0.0 <= result.value <= 1.0 and f"checker {name} failed" not in result.feedback, result.feedback


def test_checkers_read_the_tail_of_a_long_completion() -> None:
    assert MAX_COMPLETION >= 10_000  # a policy reply (a few hundred tokens) is always read whole
    long = "Answer: 5\n" + "x" * (2 * MAX_COMPLETION) + "\nAnswer: 3"
    assert score("number", TASKS["number"], long).value == 1.0
    assert score("number", TASKS["number"], "Answer: 3\n" + "x" * (2 * MAX_COMPLETION)).value == 0.0
    seen = []
    as_reward(lambda task, completion: seen.append(len(completion)) or 1.0)(TASKS["exact"], "y" * (3 * MAX_COMPLETION))
    assert seen == [MAX_COMPLETION]


def test_a_number_beyond_a_float_is_shown_not_a_checker_failure() -> None:
    result = score("number", TASKS["number"], "Answer: " + "9" * 400 + ".5")
    assert result.value == 0.0 and "failed" not in result.feedback and result.feedback.startswith("expected 3, got")


@pytest.mark.parametrize("name, answer, metadata, words", [
    ("number", "seven", {}, "not a number"), ("number", "7 apples", {}, ""), ("choice", "maybe", {}, "option letter"),
    ("choice", "b", {}, ""), ("regex", "(", {}, "invalid regular expression"), ("regex", "^a", {}, ""),
    ("exact", "`**`", {}, "empty once markup"), ("exact", "Paris", {}, ""), ("dyck", " ", {}, "empty"),
    ("expression24", "x", {"numbers": [1, 2]}, ""), ("expression24", "x", {"numbers": "1 2"}, "puzzle's integers"),
    ("my_module:check", "anything", {}, ""),
])
def test_reference_problem_says_what_each_checker_needs(name: str, answer: str, metadata: dict, words: str) -> None:
    why = reference_problem(name, Task("t", "q", answer, metadata))
    assert (words in why and why) if words else why == "", why


def test_answer_label_reads_what_the_checker_reads():
    from secondnature.rewards import answer_label
    mc = Task("m", "Which is green?\nOptions:\n(A) red ball\n(B) blue cup\n(C) green present", "(C)")
    assert answer_label(mc, "Answer: (C) green present") == "(C)"  # the letter, not the whole line
    assert answer_label(mc, "Answer: green present") == "(C)"       # an option's text names its letter
    assert answer_label(mc, "I think it is (B) here.") == "(B)"     # no answer line: the last (X)
    assert answer_label(mc, "no idea") == "no answer"
    n = Task("n", "How many?", "12")
    assert answer_label(n, "Answer: 3 + 4 = 7") == "7"
    assert answer_label(n, "so there are 9 of them") == "9"         # GEPA's replies have no answer line: still read
    assert answer_label(n, "") == "no answer"
    t = Task("t", "Capital?", "Paris")
    assert answer_label(t, "Thinking...\nAnswer: **Paris**.") == "Paris"
