"""Learning curves as PNG files (matplotlib, headless; the `bench` extra). Imported only when a plot is asked for:
validation accuracy against policy rollouts spent, for one learning run or for every arm and seed of a bench."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLOURS = {"none": "tab:gray", "secondnature": "tab:blue", "gepa": "tab:orange", "grpo": "tab:green"}


def _figure(panels: int, width: float) -> tuple[Any, Any]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, 4), squeeze=False)
    return fig, axes[0]


def _axes(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("policy rollouts spent (train + validation)")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def _save(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curve(history: Sequence[dict], path: str | Path, title: str) -> Path:
    """Validation score of the head revision against policy rollouts spent, with the lesson count marked."""
    fig, (ax,) = _figure(1, 6.4)
    xs, ys = [h["rollouts"] for h in history], [h["val"] for h in history]
    ax.step(xs, ys, where="post", marker="o", label="head revision")
    for x, y, h in zip(xs, ys, history):
        ax.annotate(str(h["lessons"]), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    _axes(ax, f"{title}\n(numbers: lessons in the head revision)")
    return _save(fig, path)


def plot_curves(by_task: dict[str, list[dict]], path: str | Path) -> Path:
    """One panel per task, one colour per arm, one line per seed (bench records' `val_curves`)."""
    fig, axes = _figure(len(by_task), 5.2)
    for ax, (task, recs) in zip(axes, by_task.items()):
        for rec in recs:
            for j, c in enumerate(rec.get("val_curves", [])):
                ax.step([p["rollouts"] for p in c["points"]], [p["val"] for p in c["points"]], where="post",
                        color=COLOURS.get(rec["arm"]), alpha=0.85, lw=1.6, ms=3,
                        marker="o" if rec["arm"] != "none" else None,
                        label=f"{rec['arm']} (test {rec['accuracy']:.0%})" if j == 0 else None)
        _axes(ax, task)
    fig.suptitle("secondnature bench: learning curves (one line per seed)", fontsize=10)
    return _save(fig, path)
