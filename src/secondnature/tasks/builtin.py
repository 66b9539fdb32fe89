"""The built-in task sets, read from the data files packaged beside this module (see data/ATTRIBUTION.md).

Each loader turns one upstream format into Tasks plus the checker that scores them. Prompts ask for
a short reasoning and a final 'Answer:' line, because small models otherwise ramble past their token
budget without ever answering (33 of 60 test answers in the GEPA baseline run).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from secondnature.rewards import get_checker
from secondnature.types import Task, TaskSet

DATA = Path(__file__).parent / "data"

LETTER_TIERS = ("easy", "medium", "hard", "names", "foreign", "sentence", "paragraph")
BBH_TASKS = tuple(sorted(p.stem for p in (DATA / "bbh").glob("*.json") if p.stem != "published_codex_accuracy"))

# What goes after "Answer:" for each checker; the instruction shows the policy this shape.
ANSWER_SHAPES = {
    "number": "<number>",
    "choice": "<option letter in parentheses, e.g. (A)>",
    "expression24": "<arithmetic expression using the four numbers, e.g. (1+2)*(3+5)>",
    "dyck": "<the closing brackets, separated by spaces>",
    "exact": "<answer>",
    "regex": "<answer>",
}


def instruction(shape: str) -> str:
    """The base system instruction: short reasoning, then one machine-checkable answer line."""
    return (
        "Solve the problem. Keep your reasoning short: a few brief lines at most. "
        "Then end with a final line exactly of the form:\n"
        f"Answer: {shape}"
    )


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def letters(tiers: tuple[str, ...] = LETTER_TIERS) -> TaskSet:
    """StrawberryBench letter counting. Gold is word.lower().count(letter): say so when case matters."""
    tasks = []
    for row in _jsonl(DATA / "letter_count" / "strawberry_bench.jsonl"):
        if row["difficulty"] not in tiers:
            continue
        word, letter = row["word"], row["letter"]
        if " " in word:
            prompt = f"How many times does the letter '{letter}' appear in the following text?\n\n{word}"
        else:
            prompt = f"How many times does the letter '{letter}' appear in the word '{word}'?"
        if letter.upper() in word:
            prompt += " Count upper- and lower-case letters alike."
        meta = {"tier": row["difficulty"], "word": word, "letter": letter}
        tasks.append(Task(row["id"], prompt, str(row["answer"]), meta))
    name = "letters" if tuple(tiers) == LETTER_TIERS else "letters:" + ",".join(tiers)
    return TaskSet(name, tuple(tasks), get_checker("number"), instruction(ANSWER_SHAPES["number"]))


def game24() -> TaskSet:
    """Game of 24 (ToT puzzles). Ids 900-999 are the test split used by ToT and Dynamic Cheatsheet."""
    tasks = []
    for row in _jsonl(DATA / "game24" / "game24.jsonl"):
        a, b, c, d = row["numbers"]
        prompt = (f"Use the numbers {a} {b} {c} {d} and + - * / with parentheses to make 24. "
                  "Use each number exactly once.")
        meta = {"numbers": list(row["numbers"]), "puzzle_id": row["id"],
                "standard_test": 900 <= row["id"] <= 999, "human_solved_rate": row.get("human_solved_rate")}
        tasks.append(Task(f"g24_{row['id']}", prompt, row["example_solution"], meta))
    return TaskSet("game24", tuple(tasks), get_checker("expression24"), instruction(ANSWER_SHAPES["expression24"]))


def gsm8k(part: str = "test") -> TaskSet:
    """GSM8K grade-school math; the gold is the integer after '####'. The worked solution stays in metadata."""
    if part not in ("test", "train"):
        raise ValueError(f"unknown gsm8k part {part!r}: use gsm8k (the test file), gsm8k:test or gsm8k:train")
    tasks = []
    for i, row in enumerate(_jsonl(DATA / "gsm8k" / f"{part}.jsonl")):
        gold = row["answer"].split("####")[-1].strip().replace(",", "")
        tasks.append(Task(f"gsm8k_{part}_{i}", row["question"], gold, {"solution": row["answer"]}))
    name = "gsm8k" if part == "test" else f"gsm8k:{part}"
    return TaskSet(name, tuple(tasks), get_checker("number"), instruction(ANSWER_SHAPES["number"]))


def _is_option(target: str) -> bool:
    return re.fullmatch(r"\([A-Z]\)", target) is not None


def bbh_checker(task: str, targets: list[str]) -> str:
    """Which checker fits a BBH task, judged from its targets: '(A)'.. -> choice, all integers -> number.

    Choice needs 95% of targets, not all: upstream movie_recommendation has one broken item whose
    target is 'Monsters, Inc' with the title split across options (A) and (B); `bbh` drops it.
    """
    if task == "dyck_languages":
        return "dyck"
    if targets and sum(map(_is_option, targets)) >= 0.95 * len(targets):
        return "choice"
    if all(re.fullmatch(r"-?\d+", t) for t in targets):
        return "number"
    return "exact"


def bbh(task: str) -> TaskSet:
    """One BIG-Bench Hard task. For free-text tasks with few distinct targets, name them in the instruction."""
    if task not in BBH_TASKS:
        raise ValueError(f"unknown BBH task {task!r}: use bbh/<task> with one of {', '.join(BBH_TASKS)}")
    examples = json.loads((DATA / "bbh" / f"{task}.json").read_text(encoding="utf-8"))["examples"]
    targets = [str(e["target"]) for e in examples]
    checker = bbh_checker(task, targets)
    # Ids keep the upstream index, so dropping a broken choice item leaves the other ids unchanged.
    tasks = tuple(Task(f"{task}_{i}", e["input"], t, {"task": task}) for i, (e, t) in enumerate(zip(examples, targets))
                  if checker != "choice" or _is_option(t))
    shape = ANSWER_SHAPES[checker]
    distinct = sorted(set(targets))
    if checker == "exact" and len(distinct) <= 4:
        shape = "<one of: " + ", ".join(distinct) + ">"
    elif task == "word_sorting":
        shape = "<the words in sorted order, separated by spaces>"
    return TaskSet(f"bbh/{task}", tasks, get_checker(checker), instruction(shape))
