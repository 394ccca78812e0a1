"""Plots with matplotlib (Agg backend, files only): learning curves, reliability diagrams, comparisons."""

from __future__ import annotations

from typing import Any

__all__ = ["compare_figure", "learning_curves", "reliability_diagram"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve(ax: Any, history: list[dict], key: str, label: str | None = None) -> None:
    ax.plot([h["epoch"] for h in history], [h[key] for h in history], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def _reliability(ax: Any, bins: dict, label: str | None = None) -> None:
    centers = [(i + 0.5) / len(bins["count"]) for i in range(len(bins["count"]))]
    points = [(c, a) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"]) if n > 0]
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    if label is None:
        ax.bar(centers, bins["accuracy"], width=1 / len(centers), edgecolor="black", alpha=0.6, label="accuracy")
    else:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)


def learning_curves(metrics: dict, path: str) -> None:
    """Draw train/dev loss, dev error rate and dev ECE per epoch of one run into ``path``."""
    plt = _pyplot()
    history = metrics["history"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    _curve(axes[0], history, "train_loss", "train (as optimized)")
    _curve(axes[0], history, "dev_loss", "dev (unsmoothed)")
    axes[0].set_title("loss")
    axes[0].legend()
    _curve(axes[1], history, "dev_error_rate")
    axes[1].set_title(f"dev {metrics.get('error_rate', 'frame')} error rate")
    _curve(axes[2], history, "dev_ece")
    axes[2].set_title("dev expected calibration error")
    fig.suptitle(f"{metrics['config']} ({metrics['backend']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reliability_diagram(metrics: dict, path: str) -> None:
    """Draw the reliability diagram of the last epoch's dev predictions into ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    _reliability(ax, metrics["reliability"])
    ece = metrics["history"][-1]["dev_ece"] if metrics["history"] else float("nan")
    ax.set_title(f"reliability (dev), ECE {ece:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare_figure(runs: list[dict], path: str) -> None:
    """Draw dev loss, error rate, ECE per epoch and the final reliability diagrams of several runs side by side.

    :param runs: ``metrics.json`` contents, each with a ``smoothing`` entry
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for run in runs:
        label = f"smoothing {run['smoothing']:g}"
        _curve(axes[0], run["history"], "dev_loss", label)
        _curve(axes[1], run["history"], "dev_error_rate", label)
        _curve(axes[2], run["history"], "dev_ece", label)
        _reliability(axes[3], run["reliability"], label)
    kind = runs[0].get("error_rate", "frame") if runs else "frame"
    titles = ["dev loss (unsmoothed)", f"dev {kind} error rate", "dev expected calibration error", "reliability (dev)"]
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.legend(fontsize=8)
    if runs:
        fig.suptitle(f"label smoothing comparison: {runs[0]['config']} ({runs[0]['backend']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
