"""Learning curves as PNG files (matplotlib, headless; the `bench` extra). Imported only when a plot is asked for."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def learning_curve(history: Sequence[dict], path: str | Path, title: str) -> Path:
    """Validation score of the head revision against policy rollouts spent, with the lesson count marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xs = [h["rollouts"] for h in history]
    ys = [h["val"] for h in history]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.step(xs, ys, where="post", marker="o", label="head revision (val)")
    for x, y, h in zip(xs, ys, history):
        ax.annotate(str(h["lessons"]), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("policy rollouts spent (train + validation)")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}\n(numbers: lessons in the head revision)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(by_task: dict[str, list[dict]], path: str | Path) -> Path:
    """Validation accuracy against rollouts spent, one colour per arm, one thin line per seed, one panel per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(by_task), figsize=(5.2 * len(by_task), 4), squeeze=False)
    colours = {"none": "tab:gray", "secondnature": "tab:blue", "gepa": "tab:orange", "grpo": "tab:green"}
    for ax, (task, recs) in zip(axes[0], by_task.items()):
        for rec in recs:
            for j, c in enumerate(rec.get("val_curves", [])):
                xs = [p["rollouts"] for p in c["points"]]
                ys = [p["val"] for p in c["points"]]
                ax.step(xs, ys, where="post", color=colours.get(rec["arm"]), alpha=0.85, lw=1.6,
                        marker="o" if rec["arm"] != "none" else None, ms=3,
                        label=f"{rec['arm']} (test {rec['accuracy']:.0%})" if j == 0 else None)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("policy rollouts spent (train + validation)")
        ax.set_ylabel("validation accuracy (current prompt or weights)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("secondnature bench: learning curves (one line per seed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
