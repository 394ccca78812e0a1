"""The TensorFlow cases of ``returnn-ls bench`` (see :mod:`returnn_ls.bench.cases`).

Each case runs in one of three modes, the ways TensorFlow training runs a step:

=============  ==========================================================================================
``eager``      the forward and backward pass op by op (``tf.GradientTape`` outside any ``tf.function``)
``function``   the whole fwd+bwd step in one ``tf.function`` (graph mode, as Keras ``fit`` runs it)
``xla``        the whole step in one ``tf.function(jit_compile=True)`` (XLA, as Keras 3 compiles it)
=============  ==========================================================================================

In the compiled modes the step is traced (and compiled) on its first call, the runner's warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls.bench.cases import LINEAR_CASES, Step, ours_linear_loss, ours_loss

__all__ = ["MODES", "make_tensorflow"]

#: The modes of :func:`make_tensorflow`.
MODES = ("eager", "function", "xla")


def _linear_case(case, frames, vocab, hidden, a, rng, y) -> tuple[list[Any], Callable[..., Any]]:
    """:return: (inputs hidden ``[F, H]``, weight ``[H, K]``, bias ``[K]``; per-frame loss of them)

    The weight is ``[H, K]`` as Keras's ``Dense`` stores its kernel (``h @ W + b``).
    """
    import keras
    import tensorflow as tf

    params = [tf.constant(rng.standard_normal(s, dtype=np.float32) * 0.1)
              for s in ((frames, hidden), (hidden, vocab), (vocab,))]  # fmt: skip
    if case == "ours_linear_fused":
        return (
            params,
            lambda h, w, b: ours_linear_loss(h, w, b, y, (frames, hidden, vocab), a, hidden_first=True).raw_tensor,
        )
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a, reduction=None)
    return params, lambda h, w, b: cce(tf.one_hot(y, vocab), tf.matmul(h, w) + b)


def _logit_case(case, frames, vocab, a, rng, y) -> tuple[list[Any], Callable[..., Any]]:
    """:return: (inputs: the logits ``[F, K]``; per-frame loss of them)"""
    import keras
    import tensorflow as tf

    params = [tf.constant(rng.standard_normal((frames, vocab), dtype=np.float32))]
    if case == "plain_ce":
        return params, lambda x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
    if case == "framework_ls":
        cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a, reduction=None)
        return params, lambda x: cce(tf.one_hot(y, vocab), x)
    return params, lambda x: ours_loss(case, x, y, frames, vocab, a).raw_tensor


def make_tensorflow(
    case: str, frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator, mode: str = "eager"
) -> Step:
    """Build the inputs of ``case`` and :return: a function running its fwd+bwd step once in ``mode``.

    The step computes the summed per-frame loss and its gradients w.r.t. all inputs (logits, or hidden, weight
    and bias of the linear cases) and waits for them.

    :param case: one of :data:`returnn_ls.bench.cases.LOGIT_CASES` or ``LINEAR_CASES``
    :param frames: rows of the logits (or of ``hidden``)
    :param vocab: number of labels ``K``
    :param hidden: hidden size ``H`` of the linear cases (unused by the others)
    :param a: label smoothing
    :param rng: draws the inputs
    :param mode: ``"eager"``, ``"function"`` (``tf.function``) or ``"xla"`` (``tf.function(jit_compile=True)``)

    Example::

        step = make_tensorflow("ours_fused", 4096, 10000, 0, 0.1, np.random.default_rng(0), mode="xla")
        step()  # traces and compiles
        step()  # one compiled fwd+bwd step
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"bench: mode must be one of {list(MODES)}, got {mode!r}")
    if case == "returnn_path":
        raise RuntimeError("RETURNN's TF backend builds graph-mode layers; timed on torch only")
    rf.select_backend("tensorflow")
    y = tf.constant(rng.integers(0, vocab, frames))
    if case in LINEAR_CASES:
        params, loss_fn = _linear_case(case, frames, vocab, hidden, a, rng, y)
    else:
        params, loss_fn = _logit_case(case, frames, vocab, a, rng, y)
    tf.zeros([])  # TF holds the numpy array of its last tf.constant until its next op: free it before the baseline

    def fwd_bwd(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            total = tf.reduce_sum(loss_fn(*inputs))
        return total, tape.gradient(total, inputs)  # the loss too, as training reports it (XLA would drop it)

    if mode != "eager":
        fwd_bwd = tf.function(fwd_bwd, jit_compile=mode == "xla")

    def step() -> None:
        total, _ = fwd_bwd(*params)
        total.numpy()  # wait for the result (not the gradients': .numpy() would copy them)

    return step
