"""Rewards without a checker: a rubric judge (a reward model, pointwise or pairwise) and a label-free majority vote.

A judge is a model that reads a rubric, the request and a reply, and says how well the reply meets the rubric. It
never sees the task's reference answer: tasks scored by a judge usually have none, and a judge shown one grades by
likeness to it, a checker's job done worse. Small judges have two known faults, and the rules here answer them:
they wander off the format (the verdict is read from many shapes; an unreadable one is asked again, then scored 0
with the reason, since a failed judge call must never be a score a candidate can beat), and they favour one
position in a comparison (pairwise asks twice with the replies swapped and averages the two verdicts).

The judge is asked greedily with a fixed seed, so its verdict is a function of its prompt: the completion cache
replays it, and a gate comparing two lesson sets meets a judge that does not change its mind between them.

The majority reward needs neither rubric nor labels (test-time RL): the policy answers each task n times, the most
common answer stands in for the label, and a reply scores 1 when it gives that answer. It rewards consistency, not
truth: where the policy is mostly wrong it teaches the common mistake, so measure it against a checker first.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, TypeVar

from .inject import content_text
from .models import Model, as_completion
from .rewards import extract_answer, parse_number
from .stats import wilson
from .text import elide
from .types import Completion, Reward, Score, Task

MAX_REQUEST_CHARS = 3000  # the request and each reply as the judge reads them: head and tail of a long one
MAX_REPLY_CHARS = 3000
MAX_TURNS = 6             # a chat request: its last this many messages, each at most MAX_TURN_CHARS
MAX_TURN_CHARS = 1200
MAX_RATIONALE = 160       # characters of the judge's rationale kept in the feedback
RETRIES = 2               # asks after the first when a verdict cannot be read
RETRY_TEMPERATURE = 0.7   # the last retry samples: greedy decoding ignores the seed, and may be stuck
T = TypeVar("T")

JUDGE_SYSTEM = "You are a strict, fair grader. You grade a reply against the rubric you are given and nothing else."

JUDGE_PROMPT = """Grade the reply below against the rubric.

<rubric>
{rubric}
</rubric>

<request>
{request}
</request>

<reply>
{reply}
</reply>

First check the reply against the rubric in a few short lines, working out yourself anything the rubric asks you
to check, and say what you found. Then end with a line exactly of the form
Score: N/10
where N is a whole number from 0 (fails the rubric) to 10 (meets it fully)."""

SCORE_NUDGE = "Now end with one line exactly of the form Score: N/10, with N a whole number from 0 to 10."

# "Score: 7/10", "**Score:** 7 / 10", "Final score = 8 out of 10", "Rating: 0.7", "Grade: 70%"
_SCORE_LINE = re.compile(r"^[ \t>#*_\-]*(?:final[ \t]+)?(?:score|rating|grade)[ \t*_]*[:=](.*)$", re.I | re.M)
_OUT_OF = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)", re.I)
_BARE = re.compile(r"(\d+(?:\.\d+)?)\s*(%?)")
_WRAPPING = " \t*_`\"'[]()."


def _number_score(text: str, loose: bool) -> float | None:
    """A score in [0, 1] from the start of `text`: 'N/D' or 'N out of D', 'N%', a decimal up to 1, or N of 10.
    `loose` (text that is not on a score line): only 'N/D' with D 5, 10 or 100, or the text a number alone."""
    text = text.strip(_WRAPPING)
    pair = _OUT_OF.match(text)
    if pair:
        n, d = float(pair.group(1)), float(pair.group(2))
        if d <= 0 or n > d or (loose and d not in (5, 10, 100)):
            return None
        return n / d
    bare = _BARE.fullmatch(text) if loose else _BARE.match(text)
    if not bare:
        return None
    n = float(bare.group(1))
    if bare.group(2):
        return n / 100 if n <= 100 else None
    if "." in bare.group(1) and n <= 1:
        return n
    return n / 10 if n <= 10 else None


def _rationale(text: str) -> str:
    """The judge's conclusion, clipped, for the reflector to read: the last whole sentence before its verdict (a
    judge reasons first and concludes last; "Therefore, the score is" before "10/10" is no sentence)."""
    text = re.sub(r"^[ \t>#*_\-]*(?:rationale|reasoning|explanation|assessment)[ \t*_]*:", "", text.strip(), flags=re.I)
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", " ".join(text.replace("*", "").split())) if x]
    if len(sentences) > 1 and sentences[-1][-1] not in ".!?":
        sentences.pop()
    last = sentences[-1] if sentences else ""
    if len(last) > MAX_RATIONALE:
        last = last[: MAX_RATIONALE - 3] + "..."
    return last or "no rationale given"


def parse_score(text: str) -> tuple[float, str] | None:
    """(score in [0, 1], one-sentence rationale) from a judge's answer, or None when it gives no readable score.

    The last 'Score:' line (also Rating or Grade) wins: 'N/10', 'N out of 10', 'N%', a decimal up to 1 such as
    0.7, or a whole number read on the 0-10 scale the prompt asks for. Without such a line: the last 'N/10' or
    'N out of 10' in the text (denominators 5, 10, 100), or a last line that is a number alone."""
    lines = list(_SCORE_LINE.finditer(text))
    for m in reversed(lines):  # a later score line with no number ("Score: see above") gives way to an earlier one
        value = _number_score(m.group(1), loose=False)
        if value is not None:
            return round(value, 4), _rationale(text[: m.start()] or text[m.end():])
    for m in reversed(list(_OUT_OF.finditer(text))):
        value = _number_score(m.group(0), loose=True)
        if value is not None:
            return round(value, 4), _rationale(text[: m.start()])
    rest = [x for x in text.strip().split("\n") if x.strip()]
    if rest and (value := _number_score(rest[-1], loose=True)) is not None:
        return round(value, 4), _rationale("\n".join(rest[:-1]))
    return None


def request_of(task: Task) -> str:
    """What the judge reads as the request: the task's prompt, or, when `task.metadata["messages"]` holds chat
    messages (an application's recorded call), its last MAX_TURNS messages as a short transcript. Never the answer."""
    messages = task.metadata.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        shown = [f"{m.get('role', 'user')}: {elide(content_text(m.get('content')).strip(), MAX_TURN_CHARS)}"
                 for m in messages[-MAX_TURNS:]]
        left_out = len(messages) - MAX_TURNS
        return (f"[{left_out} earlier messages left out]\n" if left_out > 0 else "") + "\n\n".join(shown)
    return elide(task.prompt.strip(), MAX_REQUEST_CHARS, "the request")


def judge_messages(rubric: str, request: str, reply: str) -> list[dict]:
    user = JUDGE_PROMPT.format(rubric=rubric, request=request,
                               reply=elide(reply.strip() or "(empty reply)", MAX_REPLY_CHARS, "the reply"))
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _clip(text: str, bound: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= bound else text[: bound - 3] + "..."


def ask_judge(model: Model, messages: list[dict], parse: Callable[[str], T | None], nudge: str, *,
              max_tokens: int, seed: int) -> tuple[T | None, str]:
    """(the parsed verdict, '') or (None, why there is none). An unreadable answer is shown back to the judge with
    `nudge` and asked again with another seed, at most RETRIES times; a failed call counts as unreadable. Greedy
    but for the last retry, which samples in case greedy decoding is stuck: a judge that reasoned but forgot its
    score line gives, asked greedily, the score its reasoning leads to. A retry is read after the first reasoning
    given, so a bare 'Score: 2/10' keeps that reasoning as its rationale. Never raises."""
    why, msgs, reasoning = "", messages, ""
    for k in range(1 + RETRIES):
        try:
            got = model.chat(msgs, n=1, temperature=RETRY_TEMPERATURE if k == RETRIES else 0.0,
                             max_tokens=max_tokens, seed=seed + k)
            c = as_completion(got[0]) if got else Completion("", error="the model returned no completion")
        except Exception as e:  # noqa: BLE001 - the Model contract says chat never raises; a user's model might
            c = Completion("", error=f"{type(e).__name__}: {e}")
        if c.error:
            why = f"the judge's call failed ({_clip(c.error, 160)})"
            continue
        verdict = parse(f"{reasoning}\n{c.text}" if reasoning else c.text)
        if verdict is not None:
            return verdict, ""
        why = f"no verdict line in {_clip(c.text)!r}" if c.text.strip() else "an empty answer"
        reasoning = reasoning or c.text.strip()
        msgs = [*messages, {"role": "assistant", "content": elide(c.text, MAX_REPLY_CHARS)},
                {"role": "user", "content": nudge}]
    return None, f"{why}, after {1 + RETRIES} asks"


def judge_reward(model: Model, rubric: str, *, max_tokens: int = 256, seed: int = 0) -> Reward:
    """A reward scored by `model` against `rubric` (what a good reply does, in plain words): the judge reads the
    rubric, the request (`request_of`) and the reply, never `task.answer`, and answers with a rationale and a line
    'Score: N/10'. Its feedback is 'judge: <the last sentence of its reasoning>'.

    When no score can be read after RETRIES more asks (or every call failed), the reply scores 0 with feedback
    'judge gave no verdict: <why>': a reply the judge could not grade has earned nothing, and a lesson set must
    never win a gate on the judge's silence. Asked greedily with `seed`, so the completion cache replays it."""
    rubric = rubric.strip()
    if not rubric:
        raise ValueError("the rubric is empty: write what a good reply does, in a few plain sentences")

    def reward(task: Task, completion: str) -> Score:
        msgs = judge_messages(rubric, request_of(task), completion)
        verdict, why = ask_judge(model, msgs, parse_score, SCORE_NUDGE, max_tokens=max_tokens, seed=seed)
        if verdict is None:
            return Score(0.0, f"judge gave no verdict: {why}")
        return Score(verdict[0], f"judge: {verdict[1]}")

    reward.__name__ = "judge"
    return reward


# ---------------------------------------------------------------- pairwise, position-swapped

PAIR_PROMPT = """Compare two replies to the same request against the rubric.

<rubric>
{rubric}
</rubric>

<request>
{request}
</request>

<reply_A>
{a}
</reply_A>

<reply_B>
{b}
</reply_B>

First compare the replies against the rubric in a few short lines, working out yourself anything the rubric asks
you to check, and say which is better and why. Then end with a line exactly of the form
Winner: A
or Winner: B, or Winner: tie when neither is better."""

WINNER_NUDGE = "Now end with one line exactly of the form Winner: A, Winner: B or Winner: tie."

_WINNER_LINE = re.compile(r"^[ \t>#*_\-]*(?:final[ \t]+)?(?:winner|better[ \t]+reply|verdict)[ \t*_]*:[ \t*_\"'`]*"
                          r"(?:reply[ \t_]*)?(a|b|tie|neither|both|equal)\b", re.I | re.M)
_TIES = ("tie", "neither", "both", "equal")


def parse_winner(text: str) -> tuple[str, str] | None:
    """('A', 'B' or 'tie'; one-sentence rationale) from a comparison, or None when it names no winner: the last
    'Winner:' line (also 'Better reply:' or 'Verdict:'), else a last line that is A, B or tie alone."""
    found = list(_WINNER_LINE.finditer(text))
    if found:
        m = found[-1]
        word = m.group(1).lower()
        return ("tie" if word in _TIES else word.upper()), _rationale(text[: m.start()] or text[m.end():])
    rest = [x for x in text.strip().split("\n") if x.strip()]
    last = rest[-1].strip(_WRAPPING).lower() if rest else ""
    last = re.sub(r"^(?:reply|option)\s+", "", last)
    if last in ("a", "b") or last in _TIES:
        return ("tie" if last in _TIES else last.upper()), _rationale("\n".join(rest[:-1]))
    return None


def pair_messages(rubric: str, request: str, a: str, b: str) -> list[dict]:
    def shown(reply: str) -> str:
        return elide(reply.strip() or "(empty reply)", MAX_REPLY_CHARS, "the reply")
    user = PAIR_PROMPT.format(rubric=rubric, request=request, a=shown(a), b=shown(b))
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


_POINTS = {"won": 1.0, "tied": 0.5, "lost": 0.0}


def pairwise_reward(model: Model, rubric: str, *, anchor: str = "anchor", max_tokens: int = 256,
                    seed: int = 0) -> Reward:
    """A reward from comparisons with a reference reply: `task.metadata[anchor]` (the reply an application got, or
    the policy's reply without lessons; never the reference answer). The judge compares the two twice, the reply
    as A and then as B, so a judge that favours a position scores it 0.5, not a win; the value is the mean over
    the two orders of 1 for a win, 0.5 for a tie and 0 for a loss. A task without an anchor is judged pointwise
    (`judge_reward`). An order with no verdict after the retries scores the reply 0, as in `judge_reward`."""
    pointwise = judge_reward(model, rubric, max_tokens=max_tokens, seed=seed)
    rubric = rubric.strip()

    def reward(task: Task, completion: str) -> Score:
        other = task.metadata.get(anchor)
        if not isinstance(other, str) or not other.strip():
            return pointwise(task, completion)
        if other.strip() == completion.strip():
            return Score(0.5, "judge: the reply is the anchor reply itself")
        request, outcomes, reasons = request_of(task), [], []
        for mine, (a, b) in (("A", (completion, other)), ("B", (other, completion))):
            verdict, why = ask_judge(model, pair_messages(rubric, request, a, b), parse_winner, WINNER_NUDGE,
                                     max_tokens=max_tokens, seed=seed)
            if verdict is None:
                return Score(0.0, f"judge gave no verdict with the reply as {mine}: {why}")
            winner, rationale = verdict
            outcomes.append("tied" if winner == "tie" else "won" if winner == mine else "lost")
            reasons.append(_clip(rationale, 100))
        value = sum(_POINTS[o] for o in outcomes) / 2
        return Score(value, f"judge against the anchor: {outcomes[0]} as A ({reasons[0]}); "
                            f"{outcomes[1]} as B ({reasons[1]})")

    reward.__name__ = "pairwise_judge"
    return reward


# ---------------------------------------------------------------- majority vote, label-free

_OPTION = re.compile(r"\(?([a-z])\)?")
_LEADING_NUMBER = re.compile(r"^[\s$]*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?)(?![\w.,/])")


def answer_of(text: str) -> str:
    """The answer a reply gives, in a form where equal answers are equal strings: its 'Answer:' line
    (rewards.extract_answer; a number at its start, after the last '=', as the number itself: '$1,000.00' and
    '1000 dollars' are both '1000'), else the last number in the text, else its last line, case-folded with
    whitespace collapsed. '' when it gives nothing."""
    line = extract_answer(text)
    if line is None:
        number = parse_number(text)
        if number is not None:
            return _number_text(number)
        lines = [x for x in text.split("\n") if x.strip()]
        line = lines[-1] if lines else ""
    m = _LEADING_NUMBER.match(line.rsplit("=", 1)[-1].replace("\u2212", "-"))
    if m and (number := parse_number(m.group(1))) is not None:
        return _number_text(number)
    text = " ".join(line.split()).strip(" *`.").casefold()
    option = _OPTION.fullmatch(text)  # "(B)", "B)" and "B" name one option
    return option.group(1) if option else text


def _number_text(x: Fraction) -> str:
    return str(x)  # '9', '-5/2': exact, so 2.5 and 5/2 agree


def majority_reward(policy: Model, *, n: int = 5, system: str = "", temperature: float = 0.8,
                    max_tokens: int = 384, seed: int = 0) -> Reward:
    """A label-free reward (test-time RL): for each task `policy` answers `n` times (once per task id, kept here),
    `answer_of` reads each answer, and the most common one is the pseudo-label; a reply scores 1 when its answer
    equals it, else 0. A tie goes to the answer sampled first (samples are seeded, so the choice is repeatable).
    Give `system` the instruction the policy answers under (a task set's `instruction`). A task none of whose
    samples gives an answer scores every reply 0; when every sampling call failed it is asked again next time."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    votes: dict[str, tuple[str, int]] = {}  # task id -> (pseudo-label, how many samples gave it)

    def vote(task: Task) -> tuple[str, int]:
        if task.id in votes:
            return votes[task.id]
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": task.prompt}]
        try:
            samples = [as_completion(c) for c in policy.chat(msgs, n=n, temperature=temperature,
                                                             max_tokens=max_tokens, seed=seed)]
        except Exception:  # noqa: BLE001 - the Model contract says chat never raises; a user's model might
            samples = []
        answers = [a for c in samples if not c.error and (a := answer_of(c.text))]
        counts = Counter(answers)  # most_common keeps first-seen order among equal counts: the tie-break
        label, k = counts.most_common(1)[0] if counts else ("", 0)
        if any(not c.error for c in samples):
            votes[task.id] = (label, k)
        return label, k

    def reward(task: Task, completion: str) -> Score:
        label, k = vote(task)
        if not label:
            return Score(0.0, f"no majority: none of {n} samples gave an answer")
        said = f"majority of {n}: {_clip(label, 40)!r} ({k} of {n} agree)"
        mine = answer_of(completion)
        if mine == label:
            return Score(1.0, said)
        return Score(0.0, f"{said}; this reply gave {_clip(mine, 40)!r}" if mine else f"{said}; this reply gave none")

    reward.__name__ = "majority"
    return reward


# ---------------------------------------------------------------- how far to trust a judge

def agreement(judge: Sequence[float], checker: Sequence[float], threshold: float = 0.5) -> dict:
    """How well a judge's scores agree with a checker's on the same replies: a judge score >= `threshold` is a pass,
    a checker score >= 0.5 is right. n, accuracy (share of replies where they agree) with a 95% Wilson interval,
    Cohen's kappa (agreement beyond what the two pass rates give by chance; None when both raters are constant),
    the pass rates, the judge's mean score on replies the checker calls right and on those it calls wrong (None
    without any), and the four counts."""
    if len(judge) != len(checker):
        raise ValueError(f"agreement needs paired scores: {len(judge)} judge scores, {len(checker)} checker scores")
    n = len(judge)
    passes = [j >= threshold for j in judge]
    right = [c >= 0.5 for c in checker]
    agree = sum(p == r for p, r in zip(passes, right))
    on_right = [j for j, r in zip(judge, right) if r]
    on_wrong = [j for j, r in zip(judge, right) if not r]
    out: dict[str, Any] = {"n": n, "threshold": threshold, "accuracy": agree / n if n else None,
                           "accuracy_ci95": list(wilson(agree, n)), "kappa": None,
                           "judge_pass_rate": sum(passes) / n if n else None,
                           "checker_pass_rate": sum(right) / n if n else None,
                           "judge_mean_when_right": sum(on_right) / len(on_right) if on_right else None,
                           "judge_mean_when_wrong": sum(on_wrong) / len(on_wrong) if on_wrong else None,
                           "right": len(on_right), "wrong": len(on_wrong),
                           "both_pass": sum(p and r for p, r in zip(passes, right)),
                           "judge_only": sum(p and not r for p, r in zip(passes, right)),
                           "checker_only": sum(r and not p for p, r in zip(passes, right)),
                           "both_fail": sum(not p and not r for p, r in zip(passes, right))}
    if n:
        pj, pc = out["judge_pass_rate"], out["checker_pass_rate"]
        chance = pj * pc + (1 - pj) * (1 - pc)
        if chance < 1:
            out["kappa"] = (out["accuracy"] - chance) / (1 - chance)
    return out
