"""Plots with matplotlib (Agg backend, files only): learning curves, reliability diagrams, comparisons."""

from __future__ import annotations

from typing import Any

from returnn_ls._optional import optional_import

__all__ = ["compare_figure", "learning_curves", "reliability_diagram"]


def _pyplot() -> Any:
    optional_import("matplotlib", "plots").use("Agg")
    return optional_import("matplotlib.pyplot", "plots")


def _curve(ax: Any, history: list[dict], key: str, label: str | None = None, group: str | None = None) -> None:
    """Plot ``h[key]`` (or ``h[group][key]``) per epoch, with integer epoch ticks."""
    MaxNLocator = optional_import("matplotlib.ticker", "plots").MaxNLocator  # noqa: N806 (a class)

    values = [(h[group] if group else h).get(key, float("nan")) for h in history]
    ax.plot([h["epoch"] for h in history], values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _reliability(ax: Any, bins: dict, label: str | None = None) -> None:
    """A reliability diagram: bars with the frame count of each bin (one run), or lines whose marker area is
    proportional to the bin's frame count (several runs)."""
    centers = [(i + 0.5) / len(bins["count"]) for i in range(len(bins["count"]))]
    points = [(c, a, n) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"]) if n > 0]
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    if label is None:
        ax.bar(centers, bins["accuracy"], width=1 / len(centers), edgecolor="black", alpha=0.6, label="accuracy")
        for x, y, n in zip(centers, bins["accuracy"], bins["count"]):  # how many frames each bin holds
            ax.annotate(f"{n}", (x, min(y, 0.93) + 0.01), ha="center", fontsize=7)
    else:
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], label=label)
        total = max(sum(p[2] for p in points), 1)
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=[6 + 400 * p[2] / total for p in points],
                   color=line.get_color(), alpha=0.7)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)


def _score_curves(metrics: dict, path: str) -> None:
    """Draw each train and dev score per epoch (rf-style configs: the ``mark_as_loss`` names)."""
    plt = _pyplot()
    history = metrics["history"]
    names = list(dict.fromkeys(k for h in history for k in (*h["train_scores"], *h["dev_scores"])))
    fig, axes = plt.subplots(1, len(names), figsize=(4.3 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        _curve(ax, history, name, "train", "train_scores")
        _curve(ax, history, name, "dev", "dev_scores")
        ax.set_title(name)
        ax.set_ylabel(name)
        ax.legend()
    fig.suptitle(f"{metrics['config']} ({metrics['backend']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _terms(metrics: dict) -> str:
    """:return: ``", sum of ce + ctc"`` when the unsmoothed dev loss adds several losses, else ``""``"""
    terms = metrics.get("dev_loss_terms") or ()
    return f", sum of {' + '.join(terms)}" if len(terms) > 1 else ""


def learning_curves(metrics: dict, path: str) -> None:
    """Draw train/dev loss, dev error rate and dev ECE per epoch of one run into ``path`` (network dicts), or
    every score per epoch (rf-style configs)."""
    history = metrics["history"]
    if not all("dev_loss" in h for h in history):
        _score_curves(metrics, path)
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    _curve(axes[0], history, "train_loss", "train (as optimized)")
    _curve(axes[0], history, "dev_loss", f"dev (unsmoothed{_terms(metrics)})")
    axes[0].set_title("loss")
    axes[0].set_ylabel("loss per frame (CTC: per label)")
    axes[0].legend()
    _curve(axes[1], history, "dev_error_rate")
    axes[1].set_title(f"dev {metrics.get('error_rate', 'frame')} error rate")
    axes[1].set_ylabel("error rate")
    _curve(axes[2], history, "dev_ece")
    axes[2].set_title("dev expected calibration error")
    axes[2].set_ylabel("ECE")
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


def _compare_scores(runs: list[dict], path: str) -> None:
    """Draw each dev score per epoch of several rf-style runs (their ``mark_as_loss`` names), one panel per name."""
    plt = _pyplot()
    group = "dev_scores" if any(h["dev_scores"] for run in runs for h in run["history"]) else "train_scores"
    names = list(dict.fromkeys(k for run in runs for h in run["history"] for k in h[group])) or ["none"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.3 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        for run in runs:
            _curve(ax, run["history"], name, f"smoothing {run['smoothing']:g}", group)
        ax.set_title(f"{group.split('_')[0]} {name}")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    if runs:
        fig.suptitle(f"label smoothing comparison: {runs[0]['config']} ({runs[0]['backend']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare_figure(runs: list[dict], path: str) -> None:
    """Draw dev loss, error rate, ECE per epoch and the final reliability diagrams of several runs side by side.

    :param runs: ``metrics.json`` contents, each with a ``smoothing`` entry (rf-style runs: their dev scores)
    """
    if not all("dev_loss" in h for run in runs for h in run["history"]):
        _compare_scores(runs, path)
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for run in runs:
        label = f"smoothing {run['smoothing']:g}"
        _curve(axes[0], run["history"], "dev_loss", label)
        _curve(axes[1], run["history"], "dev_error_rate", label)
        _curve(axes[2], run["history"], "dev_ece", label)
        _reliability(axes[3], run["reliability"], label)
    kind = runs[0].get("error_rate", "frame") if runs else "frame"
    titles = [f"dev loss (unsmoothed{_terms(runs[0]) if runs else ''})", f"dev {kind} error rate",
              "dev expected calibration error", "reliability (dev; marker area ~ frames)"]  # fmt: skip
    ylabels = ["loss per frame (CTC: per label)", "error rate", "ECE", "accuracy"]
    for ax, title, ylabel in zip(axes, titles, ylabels):
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    if runs:
        fig.suptitle(f"label smoothing comparison: {runs[0]['config']} ({runs[0]['backend']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
