"""Losses: cross entropy, label relaxation, and (re-exported) the fused label-smoothed cross entropy and CTC.

Which one to use: :func:`label_smoothed_cross_entropy` for frame-level targets (it never builds a dense target),
:func:`ctc_loss` with ``label_smoothing`` for CTC (it smooths the posterior, not the loss), and
:func:`label_relaxation_loss` to stop pushing a frame once its target has probability ``1 - alpha``.
"""

from __future__ import annotations

import math

from returnn_ls import _validate
from returnn_ls.ctc import ctc_loss
from returnn_ls.dim import Dim
from returnn_ls.fused_ce import check_targets, label_smoothed_cross_entropy
from returnn_ls.gradient import SmoothedLogSoftmax
from returnn_ls.ops import (
    cast,
    gather,
    log,
    log_softmax,
    maximum,
    range_over_dim,
    valid_frames,
    where,
)
from returnn_ls.reduce import reduce_logsumexp, reduce_sum
from returnn_ls.tensor import Tensor

__all__ = ["cross_entropy", "ctc_loss", "label_relaxation_loss", "label_smoothed_cross_entropy"]

_ESTIMATED_TYPES = ("logits", "log-probs", "probs")
_TINY = {"float16": 6.1e-05, "bfloat16": 1.2e-38, "float32": 1.2e-38, "float64": 2.3e-308}


def _as_log_probs(estimated: Tensor, axis: Dim, estimated_type: str) -> Tensor:
    if estimated_type == "logits":
        return log_softmax(estimated, axis=axis)
    if estimated_type == "probs":  # clip at the smallest normal number so that log(0) does not give -inf
        return log(maximum(estimated, _TINY[estimated.dtype]))
    return estimated


def cross_entropy(*, estimated: Tensor, target: Tensor, axis: Dim, estimated_type: str) -> Tensor:
    """Cross entropy ``-sum_i target[i] * log_prob[i]`` over ``axis``.

    :param estimated: float Tensor over ``axis``: logits, log-probabilities or probabilities
    :param target: class indices with ``sparse_dim == axis`` (then ``-log_prob[target]``), or a float
        distribution over ``axis``
    :param axis: the label axis
    :param estimated_type: ``"logits"``, ``"log-probs"`` or ``"probs"``
    :return: the loss with the dims of ``estimated`` without ``axis``. For sparse targets, labels at padding
        frames of dynamic dims are ignored (any value is allowed there).
    """
    func = "cross_entropy"
    _validate.check_tensor(estimated, "estimated", func)
    _validate.check_tensor(target, "target", func)
    _validate.check_float(estimated, "estimated", func)
    if estimated_type not in _ESTIMATED_TYPES:
        raise ValueError(f"{func}: estimated_type must be one of {list(_ESTIMATED_TYPES)}, got {estimated_type!r}")
    axis = _validate.resolve_axis(estimated, axis, func)
    log_prob = _as_log_probs(estimated, axis, estimated_type)
    if target.sparse_dim is not None:
        if target.sparse_dim is not axis:
            raise ValueError(f"{func}: target.sparse_dim {target.sparse_dim} must be axis {axis}")
        target, bad = _validate.guard_labels(target, axis.dimension, "target", func)
        mask = valid_frames(target)
        if mask is not None:  # labels at padding frames may be anything (e.g. -100)
            target = where(mask, target, 0)
        fused = _fused_log_softmax(log_prob, axis)
        if fused is not None:  # log_softmax (-> smoothed gradient) -> here: one op, no dense one-hot gradient
            return _validate.poison_bad_frames(fused.nll(target), bad)
        return _validate.poison_bad_frames(-gather(log_prob, indices=target, axis=axis), bad)
    _validate.check_float(target, "target", func)
    if axis not in target.dims:
        raise ValueError(f"{func}: dense target must have axis {axis}, got dims {list(target.dims)}")
    return -reduce_sum(target * log_prob, axis=axis)


def _fused_log_softmax(log_prob: Tensor, axis: Dim) -> SmoothedLogSoftmax | None:
    """:return: how ``log_prob`` was made, if it is the output of :func:`returnn_ls.log_softmax` over ``axis``
    (scale 1, shift 0), possibly with a smoothed gradient over ``axis``; else None"""
    smoothed = log_prob.smoothed_log_softmax_of
    if smoothed is not None:
        return smoothed if smoothed.axis is axis else None
    if log_prob.log_softmax_of is None or log_prob.log_softmax_of[1] is not axis:
        return None
    return SmoothedLogSoftmax(log_prob.log_softmax_of[0], log_prob, axis, 1.0, 0.0, None)


def _xlogx(a: float | Tensor) -> float | Tensor:
    """:return: ``a * log(a)`` with ``0 * log(0) = 0``"""
    if isinstance(a, Tensor):
        return where(a > 0.0, a * log(maximum(a, 1e-30)), 0.0)
    return a * math.log(a) if a > 0 else 0.0


def label_relaxation_loss(*, logits: Tensor, targets: Tensor, axis: Dim, alpha: float | Tensor) -> Tensor:
    r"""Label relaxation (Lienen and Huellermeier, 2021): ``KL(q || p)`` against the credal target ``q``.

    ``p = softmax(logits)``. The target set holds all distributions with at least ``1 - alpha`` on the target
    ``y``; ``q`` is the projection of ``p`` onto it: ``1 - alpha`` on ``y`` and ``alpha`` spread over the other
    labels in proportion to ``p``. Where ``p_y >= 1 - alpha``, ``p`` is already in the set: loss 0 and gradient
    0. Elsewhere, with ``q_k / p_k = alpha / (1 - p_y)`` for ``k != y``, the KL divergence collapses to::

        L = (1 - alpha) * log((1 - alpha) / p_y) + alpha * log(alpha / (1 - p_y))

    computed in log space: ``log p_y = z_y - lse`` and ``log(1 - p_y) = logsumexp_{k != y}(z_k) - lse``, so no
    probability is ever passed to ``log``. The gradient w.r.t. the logits is ``p - q``. ``alpha = 0`` gives
    plain cross entropy.

    :param logits: float Tensor over ``axis`` (no sigmoid or softmax applied before; float16/bfloat16 are
        computed in float32)
    :param targets: int class indices with the dims of ``logits`` without ``axis``
    :param axis: the class axis
    :param alpha: in ``[0, 1)``: float or scalar Tensor
    :return: the per-frame loss with the dims of ``targets``; 0 on padding frames of dynamic dims
    """
    func = "label_relaxation_loss"
    _validate.check_tensor(logits, "logits", func)
    _validate.check_float(logits, "logits", func)
    axis = _validate.resolve_axis(logits, axis, func)
    if axis not in logits.dims:
        raise ValueError(f"{func}: axis {axis} is not one of the logits' dims {list(logits.dims)}")
    frame_dims, targets, bad = check_targets(targets, logits, axis, func)
    alpha = _validate.check_fraction(alpha, "alpha", func, upper_open=True)
    if logits.dtype in ("float16", "bfloat16"):
        logits = cast(logits, "float32")
    mask = valid_frames(targets)
    if mask is not None:
        targets = where(mask, targets, 0)
    lse = reduce_logsumexp(logits, axis=axis)
    log_p_target = gather(logits, indices=targets, axis=axis) - lse
    is_target = range_over_dim(axis, like=logits) == targets
    log_rest = reduce_logsumexp(where(is_target, float("-inf"), logits), axis=axis) - lse
    loss = _xlogx(1.0 - alpha) - (1.0 - alpha) * log_p_target + _xlogx(alpha) - alpha * log_rest
    inside = log_p_target >= (math.log(1.0 - alpha) if isinstance(alpha, float) else log(1.0 - alpha))
    loss = where(inside, 0.0, loss)
    if mask is not None:
        loss = where(mask, loss, 0.0)
    return _validate.poison_bad_frames(loss.copy_transpose(frame_dims), bad)
