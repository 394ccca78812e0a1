"""The cases of ``returnn-ls bench``: one function per (backend, case) that returns a fwd+bwd step.

Each ``make_*`` function builds the inputs (they count towards the memory baseline) and returns a
zero-argument function that runs the forward and backward pass once. Frameworks are imported here only
inside the worker subprocess (see :mod:`returnn_ls.bench`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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


def _returnn_torch_loss(x: Any, y: Any, frames: int, vocab: int, a: float) -> Any:
    import returnn.frontend as rrf
    from returnn.tensor import Dim, Tensor

    rrf.select_backend_torch()
    frame_dim, vocab_dim = Dim(frames, name="frames"), Dim(vocab, name="vocab")
    rx = Tensor("x", dims=[frame_dim, vocab_dim], dtype="float32", raw_tensor=x, feature_dim=vocab_dim)
    ry = Tensor("y", dims=[frame_dim], dtype="int64", raw_tensor=y, sparse_dim=vocab_dim)
    lp = rrf.label_smoothed_log_prob_gradient(rrf.log_softmax(rx, axis=vocab_dim), a)
    return rrf.cross_entropy(estimated=lp, target=ry, axis=vocab_dim, estimated_type="log-probs").raw_tensor


def make_torch(case: str, frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator) -> Step:
    """:return: a fwd+bwd step of ``case`` on PyTorch"""
    import torch
    import torch.nn.functional as F

    rf.select_backend("torch")
    y = torch.tensor(rng.integers(0, vocab, frames))
    if case in LINEAR_CASES:
        h, w, b = (torch.tensor(rng.standard_normal(s, dtype=np.float32) * 0.1, requires_grad=True)
                   for s in ((frames, hidden), (vocab, hidden), (vocab,)))  # fmt: skip
        if case == "ours_linear_fused":
            loss_fn = lambda: ours_linear_loss(h, w, b, y, (frames, hidden, vocab), a).raw_tensor  # noqa: E731
        else:
            loss_fn = lambda: F.cross_entropy(F.linear(h, w, b), y, reduction="none", label_smoothing=a)  # noqa: E731
        params = (h, w, b)
    else:
        x = torch.tensor(rng.standard_normal((frames, vocab), dtype=np.float32), requires_grad=True)
        losses = {
            "plain_ce": lambda: F.cross_entropy(x, y, reduction="none"),
            "framework_ls": lambda: F.cross_entropy(x, y, reduction="none", label_smoothing=a),
            "returnn_path": lambda: _returnn_torch_loss(x, y, frames, vocab, a),
        }
        loss_fn = losses.get(case) or (lambda: ours_loss(case, x, y, frames, vocab, a).raw_tensor)
        params = (x,)

    def step() -> None:
        for p in params:
            p.grad = None
        loss_fn().sum().backward()

    return step


def make_tensorflow(case: str, frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator) -> Step:
    """:return: a fwd+bwd step of ``case`` on TensorFlow (eager)"""
    import keras
    import tensorflow as tf

    if case == "returnn_path":
        raise RuntimeError("RETURNN's TF backend builds graph-mode layers; timed on torch only")
    rf.select_backend("tensorflow")
    y = tf.constant(rng.integers(0, vocab, frames))
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a, reduction=None)
    if case in LINEAR_CASES:
        params = [tf.constant(rng.standard_normal(s, dtype=np.float32) * 0.1)
                  for s in ((frames, hidden), (vocab, hidden), (vocab,))]  # fmt: skip
        if case == "ours_linear_fused":
            loss_fn = lambda h, w, b: ours_linear_loss(h, w, b, y, (frames, hidden, vocab), a).raw_tensor  # noqa: E731
        else:
            loss_fn = lambda h, w, b: cce(tf.one_hot(y, vocab), tf.matmul(h, w, transpose_b=True) + b)  # noqa: E731
    else:
        params = [tf.constant(rng.standard_normal((frames, vocab), dtype=np.float32))]
        losses = {
            "plain_ce": lambda x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
            "framework_ls": lambda x: cce(tf.one_hot(y, vocab), x),
        }
        loss_fn = losses.get(case) or (lambda x: ours_loss(case, x, y, frames, vocab, a).raw_tensor)

    def step() -> None:
        with tf.GradientTape() as tape:
            tape.watch(params)
            total = tf.reduce_sum(loss_fn(*params))
        grads = tape.gradient(total, params)
        grads[0].numpy()  # wait for the result

    return step
