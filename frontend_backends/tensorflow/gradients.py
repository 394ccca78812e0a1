r"""TensorFlow kernels that change only gradients: the scaled gradient, the label-smoothed log-softmax gradient,
and a gather whose gradient is one pass.

The gradient-smoothing path ``log_softmax -> label_smoothed_log_prob_gradient -> cross_entropy`` runs three of
them: the forward pass is ``lp = log_softmax(z)`` and ``-lp[y]``; the backward pass turns the per-frame gradient
into a dense ``g`` (:func:`gather_last`), smooths it and applies the log-softmax backward in one kernel
(:func:`log_softmax_smoothed_gradient`)::

    g' = g * scale + shift * S1,                      S1 = sum_k |g_k| * w_k
    dz = g' - softmax(z) * sum_k g'_k,                sum_k g'_k = sum_k g_k * scale_k + S1 * sum_k shift_k

The second form of the sum needs only reductions of ``g`` itself (not of ``g'``), so XLA computes every sum
in one pass over ``g`` and the result in a second one (``softmax(z) = exp(lp)`` from the stored ``lp``).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from frontend_backends.tensorflow.kernels import Kernel, in_xla_context, remember_softmax, remembered_softmax


def log_softmax(x: tf.Tensor, axis: int) -> tf.Tensor:
    """:return: ``x - logsumexp(x, axis)``: ``tf.nn.log_softmax``, except under XLA, where it is written out so that
    the backward passes of this module can reuse its ``softmax`` (:func:`.kernels.remembered_softmax`)"""
    if not in_xla_context() or x.dtype not in (tf.float32, tf.float64):
        return tf.nn.log_softmax(x, axis=axis)
    top = tf.stop_gradient(tf.reduce_max(x, axis=axis, keepdims=True))  # any constant shift; no gradient
    exp = tf.exp(x - top)
    total = tf.reduce_sum(exp, axis=axis, keepdims=True)
    log_probs = (x - top) - tf.math.log(total)
    remember_softmax(log_probs, exp / total)
    return log_probs


def _as_tensor(value: Any, dtype: tf.DType) -> tf.Tensor:
    """:return: a Python float as a scalar tensor (so a new value retraces nothing), a tensor cast to ``dtype``"""
    return tf.cast(value, dtype) if isinstance(value, (tf.Tensor, tf.Variable)) else tf.constant(value, dtype)


def _sum_along(x: tf.Tensor, axis: int, like: tf.Tensor) -> tf.Tensor:
    """:return: ``sum(broadcast_to(x, like.shape), axis, keepdims=True)`` without broadcasting ``x`` first"""
    if x.shape.rank == 0 or x.shape[axis] == 1:
        return x * tf.cast(tf.shape(like)[axis], x.dtype)
    return tf.reduce_sum(x, axis=axis, keepdims=True)


def _scaled(g, scale, shift, sum_weight, axis):
    """:return: (``g' = g * scale + shift * S1``, ``S1``) with ``S1 = sum(|g| * sum_weight, axis)``"""
    absg = tf.abs(g) if sum_weight is None else tf.abs(g) * sum_weight
    s1 = tf.reduce_sum(absg, axis=axis, keepdims=True)
    return g * scale + shift * s1, s1


@Kernel
def _scaled_gradient(dy, scale, shift, sum_axis, sum_weight):
    """:return: ``dy * scale + shift * sum(|dy| * sum_weight, sum_axis)`` (see ``Backend.scaled_gradient_ext``)"""
    if shift is None:
        return dy * scale
    if sum_axis is None:
        return dy * scale + shift
    return _scaled(dy, scale, shift, sum_weight, sum_axis)[0]


def scaled_gradient_ext(x, scale, shift, sum_axis, sum_weight):
    """See ``Backend.scaled_gradient_ext``."""
    args = [None if v is None else _as_tensor(v, x.dtype) for v in (scale, shift, sum_weight)]

    @tf.custom_gradient
    def op(x_):
        def grad(dy):
            return _scaled_gradient(dy, args[0], args[1], sum_axis, args[2])

        return tf.identity(x_), grad

    return op(x)


@Kernel
def _smoothed_logit_gradient(dy, log_probs, scale, shift, sum_weight, axis, out_dtype, softmax=None):
    """:return: ``dz`` of the module docstring, in ``out_dtype`` (half precision computed in float32);
    ``softmax`` is ``exp(log_probs)`` unless given"""
    cdt = tf.float64 if dy.dtype == tf.float64 else tf.float32
    g = tf.cast(dy, cdt)
    scale, shift = tf.cast(scale, cdt), tf.cast(shift, cdt)
    sum_weight = None if sum_weight is None else tf.cast(sum_weight, cdt)
    scaled, s1 = _scaled(g, scale, shift, sum_weight, axis)
    if scale.shape.rank == 0 or scale.shape[axis] == 1:
        g_total = scale * tf.reduce_sum(g, axis=axis, keepdims=True)
    else:
        g_total = tf.reduce_sum(g * scale, axis=axis, keepdims=True)
    total = g_total + s1 * _sum_along(shift, axis, g)
    probs = tf.exp(tf.cast(log_probs, cdt)) if softmax is None else tf.cast(softmax, cdt)
    return tf.cast(scaled - probs * total, out_dtype)


def log_softmax_smoothed_gradient(logits, log_probs, axis, scale, shift, sum_weight):
    """See ``Backend.log_softmax_smoothed_gradient``: ``log_probs`` forward, ``dz`` (module docstring) backward."""
    cdt = tf.float64 if log_probs.dtype == tf.float64 else tf.float32
    args = [None if v is None else _as_tensor(v, cdt) for v in (scale, shift, sum_weight)]
    softmax = remembered_softmax(log_probs)

    @tf.custom_gradient
    def op(z):
        def grad(dy):
            return _smoothed_logit_gradient(dy, log_probs, *args, axis, z.dtype, softmax)

        return tf.identity(log_probs), grad

    return op(logits)


def _at_targets(value: tf.Tensor, y: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """:return: ``value`` (a scalar or broadcasting against ``like`` ``[*S, K]``) at the labels ``y``, keepdims"""
    if value.shape.rank == 0 or value.shape[-1] == 1:
        return value
    if all(size == 1 for size in value.shape[:-1]):
        return tf.gather(tf.reshape(value, [-1]), y)[..., None]
    rank = y.shape.rank
    return tf.gather(tf.broadcast_to(value, tf.shape(like)), y, batch_dims=rank, axis=rank)[..., None]


@Kernel
def _smoothed_nll_gradient(log_probs, targets, dl, scale, shift, sum_weight, out_dtype, softmax=None):
    """:return: ``dz = shift * S - exp(lp) * T - scale_y * dl * onehot(y)`` (:func:`log_softmax_smoothed_nll`);
    ``softmax`` is ``exp(lp)`` unless given"""
    cdt = tf.float64 if log_probs.dtype == tf.float64 else tf.float32
    lp = tf.cast(log_probs, cdt)
    y = tf.cast(targets, tf.int32)
    dl = tf.cast(dl, cdt)[..., None]
    scale, shift = tf.cast(scale, cdt), tf.cast(shift, cdt)
    scale_y = _at_targets(scale, y, lp)
    s1 = tf.abs(dl) if sum_weight is None else tf.abs(dl) * _at_targets(tf.cast(sum_weight, cdt), y, lp)
    total = s1 * _sum_along(shift, lp.shape.rank - 1, lp) - scale_y * dl
    hit = tf.equal(tf.range(tf.shape(lp)[-1]), y[..., None])  # not ==: identity in tf.compat.v1 graphs
    out = shift * s1 - (tf.exp(lp) if softmax is None else tf.cast(softmax, cdt)) * total
    return tf.cast(tf.where(hit, out - scale_y * dl, out), out_dtype)


def log_softmax_smoothed_nll(logits, log_probs, targets, scale, shift, sum_weight):
    """``-log_probs[..., targets]`` forward (class axis last); backward the smoothed path's gradient to ``logits``.

    Upstream of ``-lp_y`` the gradient w.r.t. ``lp`` is ``g = -dl * onehot(y)`` (``dl`` per frame), so the sums of
    the module docstring are per frame: ``S1 = |dl| * w_y`` and ``sum_k g'_k = -scale_y * dl + S1 * sum_k shift_k``,
    and ``dz = shift * S1 - exp(lp) * sum_k g'_k - scale_y * dl * onehot(y)`` is one pass over ``lp`` that never
    builds the dense ``g``.
    """
    cdt = tf.float64 if log_probs.dtype == tf.float64 else tf.float32
    args = [None if v is None else _as_tensor(v, cdt) for v in (scale, shift, sum_weight)]
    rank = targets.shape.rank
    softmax = remembered_softmax(log_probs)

    @tf.custom_gradient
    def op(z):
        def grad(dl):
            return _smoothed_nll_gradient(log_probs, targets, dl, *args, z.dtype, softmax)

        return -tf.gather(tf.stop_gradient(log_probs), targets, batch_dims=rank, axis=rank), grad

    return op(logits)


def _scatter_size(dy, indices, num_labels, dtype) -> int | None:
    """:return: the size of the result; 0 (run op by op) for a label count only known at run time (XLA needs it)"""
    if not isinstance(num_labels, int):
        return 0
    size = dy.shape.num_elements()
    return None if size is None else size * num_labels


def _one_hot_scatter(dy, indices, num_labels, dtype):
    """:return: ``[*S, K]``: ``dy`` at ``indices`` along the new last axis, 0 elsewhere (one pass)"""
    hit = tf.equal(tf.range(num_labels, dtype=tf.int32), tf.cast(indices, tf.int32)[..., None])
    return tf.where(hit, tf.cast(dy, dtype)[..., None], tf.zeros([], dtype))


_one_hot_scatter = Kernel(_one_hot_scatter, size=_scatter_size)


def gather_last(x, indices):
    """See ``Backend.gather_last``. The gradient w.r.t. ``x`` is written in one pass.

    TensorFlow's own gradient of a batched ``tf.gather`` is an ``unsorted_segment_sum`` over all
    ``frames * labels`` positions (zero fill, scatter, reshapes): several times slower for large ``K``.
    """
    rank = indices.shape.rank
    if not x.dtype.is_floating:
        return tf.gather(x, indices, batch_dims=rank, axis=rank)

    @tf.custom_gradient
    def op(x_):
        def grad(dy):
            num_labels = x_.shape[-1] if x_.shape[-1] is not None else tf.shape(x_)[-1]
            return _one_hot_scatter(dy, indices, num_labels, x_.dtype)

        return tf.gather(tf.stop_gradient(x_), indices, batch_dims=rank, axis=rank), grad

    return op(x)
