"""Print the markdown table for BENCHMARKS.md from benchmarks/results/*.json (lesson-loop records)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def main(paths: list[str]) -> None:
    files = [Path(p) for p in paths] or sorted((Path(__file__).parent / "results").glob("*.json"))
    print("| task | n test | majority answer | none | secondnature | paired diff vs none (95% CI) | rollouts (train+val) "
          "| lesson tokens | learn wall | lessons |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f in files:
        records = {r["arm"]: r for r in json.loads(f.read_text())}
        none, sn, maj = records.get("none"), records.get("secondnature"), records.get("majority")
        if not none or not sn:
            continue
        lo, hi = sn["diff_ci95"]
        m = f"{pct(maj['accuracy'])}% ('{maj['answer']}')" if maj else "-"
        print(f"| {sn['task']} | {sn['n']} | {m} "
              f"| {pct(none['accuracy'])}% [{pct(none['ci95'][0])}, {pct(none['ci95'][1])}] "
              f"| {pct(sn['accuracy'])}% [{pct(sn['ci95'][0])}, {pct(sn['ci95'][1])}] "
              f"| {100 * sn['diff_vs_none']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] "
              f"| {sn['rollouts']} ({sn['train_rollouts']}+{sn['val_rollouts']}) | {sn['lesson_tokens']} "
              f"| {sn['learn_wall_s']:.0f} s | {len(sn['lessons'])} |")


if __name__ == "__main__":
    main(sys.argv[1:])
