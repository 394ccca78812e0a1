"""TensorFlow kernels of the fused label-smoothed cross entropy and the label-smoothed CTC loss.

Both compute the loss and its gradient together in the forward pass of a ``tf.custom_gradient``; the gradient
function only scales the stored gradient by the incoming per-frame (per-sequence) gradient. See
``frontend_backends.base.Backend.label_smoothed_cross_entropy`` and ``Backend.ctc_loss`` for the maths.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def _compute_dtype(x: tf.Tensor) -> tf.DType:
    return tf.float64 if x.dtype == tf.float64 else tf.float32


def _expand_like(dy: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """:return: ``dy`` with trailing size-1 axes so that it broadcasts against ``grad``"""
    return tf.reshape(
        tf.cast(dy, grad.dtype), tf.concat([tf.shape(dy), tf.ones([grad.shape.rank - dy.shape.rank], tf.int32)], 0)
    )


def _fused_rows(x, y, off, on, weight, z_loss: float):
    """:return: (loss ``[N]``, gradient ``[N, K]``) of the rows ``x`` ``[N, K]`` (see ``Backend``).

    One fused kernel gives ``lse - z_y`` and ``softmax - onehot(y)``; the gradient is then
    ``coef * (softmax - onehot) - off_y * v`` plus ``(coef - on_y)`` at the target, so only the gradient and
    one temporary of the logits' size are ever alive.
    """
    x = tf.cast(x, _compute_dtype(x))
    xv = tf.reduce_sum(x, -1) if weight is None else tf.linalg.matvec(x, weight)
    nll, backprop = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=x, labels=y)
    lse = nll + tf.gather(x, y, batch_dims=1)
    vsum = tf.cast(tf.shape(x)[-1], x.dtype) if weight is None else tf.reduce_sum(weight)
    off_y, on_y = tf.gather(off, y), tf.gather(on, y)
    loss = on_y * nll + off_y * (vsum * lse - xv)
    coef = off_y * vsum + on_y
    if z_loss:
        loss += z_loss * tf.square(lse)
        coef += 2.0 * z_loss * lse
    shift = off_y[:, None] if weight is None else off_y[:, None] * weight[None, :]
    grad = coef[:, None] * backprop
    del backprop  # drop references as soon as possible: eager TF then reuses the buffers in place
    grad -= shift
    index = tf.stack([tf.range(tf.shape(y)[0], dtype=y.dtype), y], axis=1)
    return loss, tf.tensor_scatter_nd_add(grad, index, coef - on_y)


def label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask):
    """See ``Backend.label_smoothed_cross_entropy``."""
    frame_shape = tf.shape(logits)[:-1]

    @tf.custom_gradient
    def op(x):
        num_labels = tf.shape(x)[-1]
        rows = tf.reshape(tf.stop_gradient(x), [-1, num_labels])  # keeps the outer tape from recording
        y = tf.reshape(tf.cast(targets, tf.int64), [-1])
        cdt = _compute_dtype(x)
        args = [None if v is None else tf.cast(v, cdt) for v in (off, on, weight)]
        loss, grad = _fused_rows(rows, y, *args, z_loss)
        loss = tf.reshape(loss, frame_shape)
        grad = tf.reshape(grad, tf.shape(x))
        if mask is not None:
            valid = tf.broadcast_to(mask, frame_shape)
            loss = tf.where(valid, loss, tf.constant(0, loss.dtype))
            grad = tf.where(valid[..., None], grad, tf.constant(0, grad.dtype))
        grad = tf.cast(grad, x.dtype)

        def backward(dy):
            if tf.executing_eagerly() and bool(tf.reduce_all(tf.equal(dy, 1.0))):
                return grad  # loss.sum().backward(): no need for another buffer of the logits' size
            return grad * _expand_like(dy, grad)

        return loss, backward

    return op(logits)


def _impossible(targets, in_lens, tgt_lens):
    """:return: bool ``[B]``: the target needs more frames (labels plus repeated neighbours) than it has"""
    same = tf.cast(tf.equal(targets[:, 1:], targets[:, :-1]), tf.int32)
    inside = tf.range(1, tf.shape(targets)[1])[None, :] < tgt_lens[:, None]
    repeats = tf.reduce_sum(same * tf.cast(inside, tf.int32), axis=1)
    return in_lens < tgt_lens + repeats


def _gradient_of_input(lp, g, blank: int, normalized: bool, smoothing: Any):
    """:return: ``-q'`` (w.r.t. free log-probs, ``normalized``) or ``exp(lp) - q'`` (w.r.t. logits), where the
    posterior ``q = softmax(lp) - g`` (``tf.nn.ctc_loss`` treats its input as logits) is smoothed over the
    non-blank labels (blank kept, mass kept)"""
    q = tf.nn.softmax(lp) - g
    if not (isinstance(smoothing, float) and smoothing == 0.0):
        num_labels = lp.shape[-1]
        floor = tf.cast(smoothing, lp.dtype) / (num_labels - 2)
        factor = 1.0 - (num_labels - 1) * floor
        q_blank = q[..., blank : blank + 1]
        included_mass = tf.reduce_sum(q, -1, keepdims=True) - q_blank
        is_blank = tf.range(num_labels) == blank
        q = tf.where(is_blank, q_blank, factor * q + floor * included_mass)
    return -q if normalized else tf.exp(lp) - q


def _ctc_core(x, targets, in_lens, tgt_lens, blank, normalized, smoothing):
    """:return: (loss ``[B]`` with inf for impossible targets, gradient ``[B, T, K]``) of float32 ``x``"""
    lp = x if normalized else tf.nn.log_softmax(x)
    with tf.GradientTape() as tape:
        tape.watch(lp)
        nll = tf.nn.ctc_loss(
            labels=targets, logits=lp, label_length=tgt_lens, logit_length=in_lens,
            logits_time_major=False, blank_index=blank,
        )  # fmt: skip
    g = tape.gradient(nll, lp)
    impossible = _impossible(targets, in_lens, tgt_lens)
    frames = tf.range(tf.shape(x)[1])[None, :] < in_lens[:, None]
    keep = tf.logical_and(frames, tf.logical_not(impossible)[:, None])[..., None]
    grad = tf.where(keep, _gradient_of_input(lp, g, blank, normalized, smoothing), tf.zeros_like(lp))
    return tf.where(impossible, tf.constant(float("inf"), nll.dtype), nll), grad


def ctc_loss(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity):
    """See ``Backend.ctc_loss``. Computed in float32 (``tf.nn.ctc_loss`` supports no other dtype)."""
    batch_shape = tf.shape(logits)[:-2]

    @tf.custom_gradient
    def op(x):
        shape = tf.shape(x)
        flat = tf.cast(tf.reshape(tf.stop_gradient(x), tf.concat([[-1], shape[-2:]], 0)), tf.float32)
        ints = [tf.reshape(tf.cast(v, tf.int32), [-1]) for v in (in_lens, tgt_lens)]
        labels = tf.reshape(tf.cast(targets, tf.int32), tf.stack([-1, tf.shape(targets)[-1]]))
        nll, grad = _ctc_core(flat, labels, *ints, blank, normalized, smoothing)
        if zero_infinity:
            nll = tf.where(tf.math.is_finite(nll), nll, tf.zeros_like(nll))
        grad = tf.cast(tf.reshape(grad, shape), x.dtype)

        def backward(dy):
            return grad * _expand_like(dy, grad)

        return tf.cast(tf.reshape(nll, batch_shape), _compute_dtype(x)), backward

    return op(logits)
