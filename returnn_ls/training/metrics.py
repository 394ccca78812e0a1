"""Evaluation metrics in numpy: frame and label error rates, and the expected calibration error (ECE).

Calibration compares confidence with accuracy. For frame-level models every valid frame counts: confidence is
the largest posterior, correct means it is the target label. For CTC models the greedy decoding (best label per
frame, repeats merged, blanks removed) is aligned to the reference by edit distance; every emitted label
counts, with the posterior of its frame as confidence, and is correct if the alignment matches it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MetricAccumulator", "edit_alignment", "expected_calibration_error", "reliability_bins"]

NUM_BINS = 10


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS) -> dict[str, list]:
    """:return: per equal-width confidence bin: ``count``, mean ``confidence`` and ``accuracy`` (0 where empty)"""
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=num_bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=num_bins)
    safe = np.maximum(count, 1)
    return {
        "count": count.tolist(),
        "confidence": (conf_sum / safe).tolist(),
        "accuracy": (acc_sum / safe).tolist(),
    }


def expected_calibration_error(bins: dict[str, list]) -> float:
    """:return: ``sum_b n_b/N * |accuracy_b - confidence_b|`` over the bins of :func:`reliability_bins`"""
    count = np.asarray(bins["count"], dtype=np.float64)
    if count.sum() == 0:
        return 0.0
    gap = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float((count * gap).sum() / count.sum())


def edit_alignment(hyp: list[int], ref: list[int]) -> tuple[int, list[bool]]:
    """:return: the edit distance of ``hyp`` to ``ref`` and, per hypothesis label, whether it is a match"""
    n, m = len(hyp), len(ref)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = cost[i - 1, j - 1] + (hyp[i - 1] != ref[j - 1])
            cost[i, j] = min(sub, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    matched = [False] * n
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + (hyp[i - 1] != ref[j - 1]):
            matched[i - 1] = hyp[i - 1] == ref[j - 1]
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(cost[n, m]), matched


class MetricAccumulator:
    """Collects dev predictions batch by batch; :meth:`result` gives error rate, ECE and reliability bins."""

    def __init__(self, frame_level: bool):
        self.frame_level = frame_level
        self.errors = 0
        self.total = 0
        self.confidence: list[np.ndarray] = []
        self.correct: list[np.ndarray] = []

    def add(self, log_probs: np.ndarray, lengths: np.ndarray, targets: np.ndarray, target_lengths: np.ndarray,
            blank: int | None = None) -> None:  # fmt: skip
        """Add a batch: ``log_probs`` [B, T, K], ``targets`` [B, T] (frame level) or [B, L] (label sequences)."""
        best = log_probs.argmax(-1)
        conf = np.exp(log_probs.max(-1))
        for b in range(len(lengths)):
            t = int(lengths[b])
            if self.frame_level:
                correct = best[b, :t] == targets[b, :t]
                self._collect(conf[b, :t], correct, int((~correct).sum()), t)
                continue
            hyp, hyp_conf, prev = [], [], None
            for frame in range(t):
                label = int(best[b, frame])
                if label != prev and label != blank:
                    hyp.append(label)
                    hyp_conf.append(conf[b, frame])
                prev = label
            ref = [int(x) for x in targets[b, : int(target_lengths[b])]]
            dist, matched = edit_alignment(hyp, ref)
            self._collect(np.asarray(hyp_conf, dtype=np.float64), np.asarray(matched, dtype=bool), dist, len(ref))

    def _collect(self, confidence: np.ndarray, correct: np.ndarray, errors: int, total: int) -> None:
        self.confidence.append(confidence.astype(np.float64))
        self.correct.append(correct)
        self.errors += errors
        self.total += total

    def result(self) -> dict:
        """:return: ``error_rate``, ``ece`` and ``reliability`` (see :func:`reliability_bins`)"""
        conf = np.concatenate(self.confidence) if self.confidence else np.zeros(0)
        correct = np.concatenate(self.correct) if self.correct else np.zeros(0, dtype=bool)
        bins = reliability_bins(conf, correct)
        return {
            "error_rate": self.errors / max(self.total, 1),
            "ece": expected_calibration_error(bins),
            "reliability": bins,
        }
