"""TensorFlow kernels of the fused label-smoothed cross entropy and the label-smoothed CTC loss.

The cross entropy is two kernels (XLA-compiled for large logits, see :mod:`.kernels`): the forward pass
computes each frame's loss and ``lse = logsumexp(z)`` in one read of the logits, the backward pass recomputes
``softmax(z) = exp(z - lse)`` and writes the gradient in one pass. The CTC loss computes its gradient in the
forward pass of a ``tf.custom_gradient``, and the gradient function scales it by the incoming per-sequence
gradient. See ``frontend_backends.base.Backend.label_smoothed_cross_entropy`` and ``Backend.ctc_loss`` for the
maths.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from frontend_backends.tensorflow.kernels import Kernel, compute_dtype, in_xla_context

_compute_dtype = compute_dtype


def _expand_like(dy: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """:return: ``dy`` with trailing size-1 axes so that it broadcasts against ``grad``"""
    return tf.reshape(
        tf.cast(dy, grad.dtype), tf.concat([tf.shape(dy), tf.ones([grad.shape.rank - dy.shape.rank], tf.int32)], 0)
    )


@Kernel
def _rows_loss(x, y, off_y, on_y, v, vsum, z_loss, valid, with_softmax=False):
    """:return: (loss ``[N]``, ``lse`` ``[N]``, ``softmax(x)`` if ``with_softmax`` else None) of the rows ``x``
    ``[N, K]`` (module docstring)

    With ``top = max(x)`` and ``lse0 = log sum exp(x - top)`` (so ``lse = top + lse0``), the loss is
    ``on_y * (lse0 - (x_y - top)) + off_y * (V * lse0 - (sum_k v_k x_k - V * top))``. Every reduction reads
    ``x`` itself, so XLA keeps only ``exp(x - top)`` as a temporary of the logits' size.
    """
    x = tf.cast(x, off_y.dtype)
    top = tf.reduce_max(x, axis=-1)
    exp = tf.exp(x - top[:, None])
    total = tf.reduce_sum(exp, axis=-1)
    lse0 = tf.math.log(total)
    xv = tf.reduce_sum(x, axis=-1) if v is None else tf.linalg.matvec(x, v)
    x_y = tf.gather(x, y, batch_dims=1)
    loss = on_y * (lse0 - (x_y - top)) + off_y * (vsum * lse0 - (xv - vsum * top))
    lse = lse0 + top
    if z_loss:
        loss += z_loss * tf.square(lse)
    if valid is not None:
        loss = tf.where(valid, loss, tf.zeros_like(loss))
    return loss, lse, exp / total[:, None] if with_softmax else None


@Kernel
def _rows_gradient(x, lse, dl, y, off_y, on_y, v, vsum, z_loss, valid, softmax=None):
    """:return: ``dl * (coef * softmax(x) - off_y * v - on_y * onehot(y))`` ``[N, K]`` in ``x``'s dtype, where
    ``coef = off_y * V + on_y + 2 * z_loss * lse``; rows that are not ``valid`` get exactly 0. ``softmax`` is
    ``exp(x - lse)`` unless given."""
    if valid is not None:
        dl = tf.where(valid, dl, tf.zeros_like(dl))
    coef = off_y * vsum + on_y
    if z_loss:
        coef += 2.0 * z_loss * lse
    shift = (off_y * dl)[:, None] if v is None else (off_y * dl)[:, None] * v[None, :]
    if softmax is None:
        softmax = tf.exp(tf.cast(x, lse.dtype) - lse[:, None])
    grad = softmax * (coef * dl)[:, None] - shift
    is_target = tf.equal(tf.range(tf.shape(x)[-1], dtype=y.dtype)[None, :], y[:, None])  # ==: identity in TF1
    grad = tf.where(is_target, grad - (on_y * dl)[:, None], grad)
    if valid is not None:
        grad = tf.where(valid[:, None], grad, tf.zeros_like(grad))
    return tf.cast(grad, x.dtype)


def label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask):
    """See ``Backend.label_smoothed_cross_entropy``.

    The forward pass keeps only ``lse`` per frame (the logits are alive anyway); the backward pass recomputes
    ``softmax`` from the logits and writes the gradient in one pass. So no buffer of the logits' size lives
    from the forward to the backward pass in eager mode and in ``tf.function``. Inside an enclosing
    ``jit_compile=True`` function, XLA materialises ``exp(z - max)`` for its sum anyway (as for Keras's loss);
    there the backward pass reuses it instead of a second ``exp`` pass over the logits.
    """
    logits = tf.convert_to_tensor(logits)
    frame_shape = tf.shape(logits)[:-1]
    num_labels = logits.shape[-1] if logits.shape[-1] is not None else tf.shape(logits)[-1]
    cdt = compute_dtype(logits)
    y = tf.reshape(tf.cast(targets, tf.int32), [-1])
    off_y, on_y = (tf.gather(tf.cast(c, cdt), y) for c in (off, on))
    v = None if weight is None else tf.cast(weight, cdt)
    vsum = tf.cast(num_labels, cdt) if v is None else tf.reduce_sum(v)
    valid = None if mask is None else tf.reshape(tf.broadcast_to(mask, frame_shape), [-1])
    coefficients = (y, off_y, on_y, v, vsum, float(z_loss), valid)

    @tf.custom_gradient
    def op(x):
        rows = tf.reshape(tf.stop_gradient(x), [-1, num_labels])  # keeps the outer tape from recording
        loss, lse, softmax = _rows_loss(rows, *coefficients, in_xla_context())

        def backward(dy):
            dl = tf.reshape(tf.cast(dy, cdt), [-1])
            return tf.reshape(_rows_gradient(rows, lse, dl, *coefficients, softmax), tf.shape(x))

        return tf.reshape(loss, frame_shape), backward

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
        num_labels = lp.shape.as_list()[-1]  # an int also under tf.compat.v1 (v1 TensorShape, as in RETURNN)
        floor = tf.cast(smoothing, lp.dtype) / (num_labels - 2)
        factor = 1.0 - (num_labels - 1) * floor
        q_blank = q[..., blank : blank + 1]
        included_mass = tf.reduce_sum(q, -1, keepdims=True) - q_blank
        is_blank = tf.equal(tf.range(num_labels), blank)  # not ==: under tf.compat.v1 graph mode that is identity
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
