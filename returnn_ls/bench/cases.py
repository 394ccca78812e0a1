"""The cases of ``returnn-ls bench``: their names, descriptions and our side of each loss.

The per-framework functions (``torch_cases.make_torch``, ``tensorflow_cases.make_tensorflow``) build the inputs
(they count towards the memory baseline) and return a zero-argument function that runs the forward and backward
pass once. Frameworks are imported only inside the worker subprocess (see :mod:`returnn_ls.bench`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import returnn_ls as rf

#: Cases on the logits ``[frames, vocab]`` and, with ``--hidden``, on the projection ``hidden @ W + b``.
LOGIT_CASES = ("plain_ce", "framework_ls", "returnn_path", "ours_path_no_smoothing", "ours_path", "ours_fused")
LINEAR_CASES = ("linear_framework_ls", "ours_linear_fused")
#: What each case is, for the table's legend.
DESCRIPTIONS = {
    "plain_ce": "F.cross_entropy / tf.nn.sparse_softmax_cross_entropy_with_logits, no smoothing",
    "framework_ls": "F.cross_entropy(label_smoothing=a) / Keras CategoricalCrossentropy(label_smoothing=a) on one-hot",
    "returnn_path": "RETURNN: rf.log_softmax -> rf.label_smoothed_log_prob_gradient -> rf.cross_entropy (torch)",
    "ours_path_no_smoothing": "ours: log_softmax -> cross_entropy (the same path without smoothing)",
    "ours_path": "ours: log_softmax -> label_smoothed_log_prob_gradient -> cross_entropy",
    "ours_fused": "ours: label_smoothed_cross_entropy(convention='uniform')",
    "linear_framework_ls": "hidden @ W + b, then the framework's own label smoothing",
    "ours_linear_fused": "ours: linear_label_smoothed_cross_entropy(convention='uniform'), chunked",
}

Step = Callable[[], Any]


def _ours_inputs(raw_x: Any, raw_y: Any, frames: int, vocab: int) -> tuple[rf.Tensor, rf.Tensor, rf.Dim]:
    frame_dim, vocab_dim = rf.Dim(frames, name="frames"), rf.Dim(vocab, name="vocab")
    x = rf.convert_to_tensor(raw_x, dims=[frame_dim, vocab_dim], feature_dim=vocab_dim)
    y = rf.convert_to_tensor(raw_y, dims=[frame_dim], sparse_dim=vocab_dim)
    return x, y, vocab_dim


def ours_loss(case: str, raw_x: Any, raw_y: Any, frames: int, vocab: int, a: float) -> rf.Tensor:
    """:return: the per-frame loss of one of our logit cases"""
    x, y, vocab_dim = _ours_inputs(raw_x, raw_y, frames, vocab)
    if case == "ours_fused":
        return rf.label_smoothed_cross_entropy(logits=x, targets=y, axis=vocab_dim, smoothing=a, convention="uniform")
    lp = rf.log_softmax(x, axis=vocab_dim)
    if case == "ours_path":
        lp = rf.label_smoothed_log_prob_gradient(lp, a)
    return rf.cross_entropy(estimated=lp, target=y, axis=vocab_dim, estimated_type="log-probs")


def ours_linear_loss(raw_h: Any, raw_w: Any, raw_b: Any, raw_y: Any, sizes: tuple[int, int, int], a: float):
    """:return: the per-frame loss of :func:`returnn_ls.linear_label_smoothed_cross_entropy` (``W`` is [K, H])"""
    frames, hidden, vocab = sizes
    frame_dim, hidden_dim, vocab_dim = rf.Dim(frames, name="f"), rf.Dim(hidden, name="h"), rf.Dim(vocab, name="v")
    return rf.linear_label_smoothed_cross_entropy(
        hidden=rf.convert_to_tensor(raw_h, dims=[frame_dim, hidden_dim]),
        weight=rf.convert_to_tensor(raw_w, dims=[vocab_dim, hidden_dim]),
        bias=rf.convert_to_tensor(raw_b, dims=[vocab_dim]),
        targets=rf.convert_to_tensor(raw_y, dims=[frame_dim], sparse_dim=vocab_dim),
        axis=vocab_dim,
        smoothing=a,
        convention="uniform",
    )
