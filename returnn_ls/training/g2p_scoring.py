"""Scores of a grapheme-to-phoneme system: phone and word error rate against several references, and the
negative log-likelihood and calibration of per-phone posteriors.

- A hypothesis is word-correct if it equals any reference of its word (WER counts the others).
- Its phone errors are its edit distance (substitutions, insertions, deletions; each costs 1) to the closest
  reference; PER is the sum of these over the words divided by the sum of the lengths of those closest
  references (of equally close ones the first listed).
- Per-phone posteriors (e.g. of a decoder fed the reference, the EOS step included): NLL is the mean of
  ``-log p(reference phone)``; the expected calibration error (ECE) compares the largest posterior (confidence)
  with whether its phone is the reference phone, in 10 equal-width bins (:mod:`returnn_ls.training.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from returnn_ls.training.metrics import edit_alignment, expected_calibration_error, reliability_bins

__all__ = ["closest_reference", "edit_distance", "posterior_scores", "score_hypotheses"]


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance (unit costs) between two sequences of comparable items.

    Example: ``edit_distance("kitten", "sitting")`` is 3.
    """
    return edit_alignment(list(hyp), list(ref))[0]


def closest_reference(hyp: Sequence, refs: Sequence[Sequence]) -> tuple[int, Sequence]:
    """:return: the smallest edit distance of ``hyp`` to any of ``refs`` and that reference (the first listed of
    equally close ones)

    :raise ValueError: if ``refs`` is empty
    """
    if not refs:
        raise ValueError("closest_reference: refs must hold at least one reference")
    distances = [edit_distance(hyp, ref) for ref in refs]
    best = int(np.argmin(distances))
    return distances[best], refs[best]


def score_hypotheses(hyps: Mapping[str, Sequence], refs: Mapping[str, Sequence[Sequence]]) -> dict[str, float]:
    """Score one hypothesis per word against all references of the word.

    Example: ``score_hypotheses({"a": ["EY"]}, {"a": [["AH"], ["EY"]]})`` gives ``per`` 0 and ``wer`` 0.

    :param hyps: word -> hypothesis (phones); exactly the words of ``refs``
    :param refs: word -> its references
    :return: ``per``, ``wer``, ``phone_errors``, ``ref_phones``, ``word_errors``, ``words``
    :raise ValueError: if the words of ``hyps`` and ``refs`` differ (naming one)
    """
    missing, extra = set(refs) - set(hyps), set(hyps) - set(refs)
    if missing or extra:
        what = f"no hypothesis for {sorted(missing)[0]!r}" if missing else f"no reference for {sorted(extra)[0]!r}"
        raise ValueError(f"score_hypotheses: hyps and refs must have the same words: {what}")
    phone_errors = ref_phones = word_errors = 0
    for word, word_refs in refs.items():
        hyp = list(hyps[word])
        distance, ref = closest_reference(hyp, [list(r) for r in word_refs])
        phone_errors += distance
        ref_phones += len(ref)
        word_errors += distance > 0
    return {
        "per": phone_errors / max(ref_phones, 1),
        "wer": word_errors / max(len(refs), 1),
        "phone_errors": phone_errors,
        "ref_phones": ref_phones,
        "word_errors": word_errors,
        "words": len(refs),
    }


def posterior_scores(log_probs: np.ndarray, targets: np.ndarray) -> dict:
    """NLL and calibration of per-phone posteriors.

    :param log_probs: [N, V] log posteriors (one row per scored phone)
    :param targets: [N] the reference phone of each row
    :return: ``nll`` (mean ``-log p(target)``), ``ece``, ``accuracy`` (of the argmax) and ``reliability`` (bins)
    :raise ValueError: for mismatching shapes
    """
    log_probs, targets = np.asarray(log_probs, dtype=np.float64), np.asarray(targets)
    if log_probs.ndim != 2 or targets.shape != log_probs.shape[:1]:
        raise ValueError(f"posterior_scores: log_probs must be [N, V] and targets [N], got {log_probs.shape} and "
                         f"{targets.shape}")  # fmt: skip
    if len(targets) == 0:
        return {"nll": 0.0, "ece": 0.0, "accuracy": 0.0, "reliability": reliability_bins(np.zeros(0), np.zeros(0))}
    correct = log_probs.argmax(-1) == targets
    bins = reliability_bins(np.exp(log_probs.max(-1)), correct)
    return {
        "nll": float(-log_probs[np.arange(len(targets)), targets].mean()),
        "ece": expected_calibration_error(bins),
        "accuracy": float(correct.mean()),
        "reliability": bins,
    }
