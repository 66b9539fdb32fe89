"""Re-record tests/data/replay.json from a real run's store (tier 2 of the tests).

    python benchmarks/lesson_loop.py letters:medium,hard --budget 400
    python tests/data/record_replay.py benchmarks/runs/letters_medium_hard.db

Keeps every reflector answer of the run (prompt and raw reply, keyed as ReplayModel expects) and a
sample of real policy completions with their task ids, so parser and reward tests see real text.
"""
from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from secondnature.evidence import reflector_messages
from secondnature.models import ReplayModel


def main(db_path: str) -> None:
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    config = json.loads(db.execute("SELECT config FROM runs ORDER BY id LIMIT 1").fetchone()[0])
    records, prompts = {}, []
    for r in db.execute("SELECT id, prompt, raw, model FROM reflections ORDER BY created_at"):
        _, step, sample = r["id"][1:].split("-")
        seed = config["seed"] * 100_003 + int(step) * 101
        messages = reflector_messages(r["prompt"])
        records[ReplayModel.key(messages, seed, int(sample))] = r["raw"]
        prompts.append({"messages": messages, "seed": seed, "sample": int(sample)})
        model = r["model"]
    rollouts = [dict(r) for r in db.execute(
        "SELECT task_id, completion, score, feedback FROM rollouts WHERE purpose='train' ORDER BY rowid LIMIT 40")]
    out = Path(__file__).with_name("replay.json")
    out.write_text(json.dumps({"model": model, "records": records, "prompts": prompts, "policy_rollouts": rollouts},
                              indent=1))
    print(f"wrote {out}: {len(records)} reflections, {len(rollouts)} policy completions")


if __name__ == "__main__":
    main(sys.argv[1])
