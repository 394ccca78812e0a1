"""Epoch scores as RETURNN accumulates them, the per-epoch summary line, and the progress bar.

Per step the engine gets, per marked loss, the summed loss (``loss:<name>:sum``) and its inverse norm factor
(``loss:<name>:norm``); an epoch's score is ``sum of sums / sum of norms`` over its steps (as RETURNN's engines
accumulate it).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from returnn_ls._optional import optional_import

__all__ = ["ScoreAccumulator", "format_scores", "hms", "progress_bar", "summary_line"]


class ScoreAccumulator:
    """Sums of the summed losses and of the inverse norm factors over the steps of an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.norms: dict[str, float] = {}

    @staticmethod
    def step_scores(outputs: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
        """:return: ``name -> (summed loss, inverse norm)`` of one step's outputs"""
        names = [k[len("loss:") : -len(":sum")] for k in outputs if k.startswith("loss:") and k.endswith(":sum")]
        return {n: (float(np.sum(outputs[f"loss:{n}:sum"])), float(np.sum(outputs[f"loss:{n}:norm"]))) for n in names}

    def add(self, scores: dict[str, tuple[float, float]]) -> None:
        """Add the ``(sum, norm)`` pairs of one step."""
        for name, (total, norm) in scores.items():
            self.sums[name] = self.sums.get(name, 0.0) + total
            self.norms[name] = self.norms.get(name, 0.0) + norm

    def result(self) -> dict[str, float]:
        """:return: per name ``sum / norm`` (nan where nothing was counted)"""
        return {n: (self.sums[n] / self.norms[n] if self.norms[n] else float("nan")) for n in self.sums}


def hms(seconds: float) -> str:
    """:return: ``0:00:01`` for a duration in seconds (RETURNN's format)"""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) and abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def format_scores(scores: dict[str, float], sep: str) -> str:
    """:return: ``"score: 0.0279 error: 0.0061"`` (``sep`` ``": "``) or ``"score 0.0155 error 0.0025"``"""
    return " ".join(f"{name}{sep}{_number(value)}" for name, value in scores.items())


def summary_line(epoch: int, train: dict[str, float], seconds: float, dev: dict[str, float],
                 extra: dict[str, Any] | None = None, *, backend: str | None = None) -> str:  # fmt: skip
    """:return: RETURNN's line per epoch, e.g.
    ``epoch 3 score: 0.0279 error: 0.0061 elapsed: 0:00:01 dev: score 0.0155 error 0.0025``, then the ``extra``
    numbers and (if given) ``backend torch``"""
    line = f"epoch {epoch} {format_scores(train, ': ')} elapsed: {hms(seconds)}"
    if dev:
        line += f" dev: {format_scores(dev, ' ')}"
    for key, value in (extra or {}).items():
        line += f" {key} {_number(value)}"
    if backend is not None:
        line += f" backend {backend}"
    return line


def progress_bar(epoch: int, total: int | None, enabled: bool) -> Any:
    """:return: a tqdm bar counting the steps of an epoch (on a terminal; hidden otherwise or if not ``enabled``)"""
    tqdm = optional_import("tqdm", "the training progress bar").tqdm
    return tqdm(total=total, desc=f"epoch {epoch}", unit="step", leave=False, file=sys.stderr, mininterval=0.1,
                miniters=1, dynamic_ncols=True, disable=None if enabled else True)  # fmt: skip
