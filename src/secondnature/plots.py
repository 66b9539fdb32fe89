"""Learning curves as PNG files (matplotlib, headless). Imported only when a plot is asked for."""
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
