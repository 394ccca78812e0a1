"""The TensorFlow cases of ``returnn-ls bench`` (see :mod:`returnn_ls.bench.cases`)."""

from __future__ import annotations

import numpy as np

import returnn_ls as rf
from returnn_ls.bench.cases import LINEAR_CASES, Step, ours_linear_loss, ours_loss

__all__ = ["make_tensorflow"]


def make_tensorflow(
    case: str, frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator, mode: str = "eager"
) -> Step:
    """:return: a fwd+bwd step of ``case`` on TensorFlow: ``mode`` ``"eager"``, ``"function"`` (``tf.function``)
    or ``"xla"`` (``tf.function(jit_compile=True)``)"""
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

    def grads():
        with tf.GradientTape() as tape:
            tape.watch(params)
            total = tf.reduce_sum(loss_fn(*params))
        return tape.gradient(total, params)

    if mode != "eager":
        grads = tf.function(grads, jit_compile=mode == "xla")

    def step() -> None:
        grads()[0].numpy()  # wait for the result

    return step
