"""What the skill searches of a bench run spent and found, read from the run's stores.

    python benchmarks/skill_search.py benchmarks/results/game24_skills.json

For each arm of the record that kept a store (secondnature, skills), every skill draft the reflector wrote is a
reflection whose note says what its tests showed (propose._outcome). This counts them: drafts, refused by the
screen (and why), run, the best share of tests passed, and whether a skill was kept. The summary is added to the
arm's record under "skill_search", so the figure sits beside the arm's accuracy.
"""
from __future__ import annotations

import argparse
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path


def summarize(db: Path) -> dict:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT id, parse_error FROM reflections WHERE id LIKE '%-skill%' ORDER BY rowid").fetchall()
    kept = con.execute("SELECT count(*) FROM lessons WHERE text LIKE 'Skill.%'").fetchone()[0]
    refused = Counter(re.sub(r"\(line \d+\)|: .*", "", n.removeprefix("skill draft refused: "))
                      for _, n in rows if n.startswith("skill draft refused"))
    passed = [(int(m[1]), int(m[2])) for _, n in rows if (m := re.search(r"passed (\d+) of (\d+) tests", n))]
    searches = len({i.split("-skill")[0] for i, _ in rows})
    return {"searches": searches, "drafts": len(rows), "refused": sum(refused.values()),
            "refused_why": dict(refused.most_common()), "run": len(passed),
            "best_passed": max((f"{p}/{t}" for p, t in passed), key=lambda s: int(s.split("/")[0]), default="-"),
            "drafts_passing_all": sum(p == t for p, t in passed), "skills_kept": kept}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record", type=Path)
    args = ap.parse_args()
    recs = json.loads(args.record.read_text())
    for r in recs:
        for store in r.get("stores", []):
            if Path(store).exists():
                r["skill_search"] = summarize(Path(store))
                print(r["arm"], json.dumps(r["skill_search"]))
    args.record.write_text(json.dumps(recs, indent=1) + "\n")


if __name__ == "__main__":
    main()
