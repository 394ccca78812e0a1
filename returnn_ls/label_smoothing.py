r"""Label smoothing of targets and of log-probability gradients (RETURNN's convention).

Smoothing with factor ``a`` over ``K`` labels moves mass ``a`` from the target to the other labels::

    smoothed = prob * (1 - K * floor) + floor,      floor = a / (K - 1)

so a one becomes ``1 - a``, a zero becomes ``a / (K - 1)``, and a distribution keeps summing to one:
``sum(smoothed) = (1 - K*floor) + K*floor = 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.gradient import scaled_gradient_ext
from returnn_ls.ops import constant, range_over_dim, where
from returnn_ls.tensor import Tensor

__all__ = ["label_smoothed_log_prob_gradient", "label_smoothing", "smooth_one_hot"]


def label_smoothing(prob: Tensor, smoothing: float | Tensor, *, axis: Dim | None = None) -> Tensor:
    """Label smoothing, e.g. of cross-entropy targets.

    Dense ``prob``: ``prob * (1 - K*a/(K-1)) + a/(K-1)`` over ``axis``. Sparse ``prob`` (class indices) becomes
    dense via :func:`smooth_one_hot` with ``label_prob = 1 - a``.

    :param prob: a distribution over ``axis`` (float), or class indices with a ``sparse_dim``
    :param smoothing: ``a`` in ``[0, 1]``: a float, or a scalar Tensor (e.g. a schedule)
    :param axis: the label axis; defaults to the sparse dim, else the feature dim
    :return: the smoothed distribution, with the dims of ``prob`` (plus the label axis for sparse input)
    """
    func = "label_smoothing"
    _validate.check_tensor(prob, "prob", func)
    smoothing = _validate.check_fraction(smoothing, "smoothing", func)
    axis = _validate.resolve_axis(prob, axis, func)
    if prob.sparse_dim is not None:
        if axis is not prob.sparse_dim:
            raise ValueError(f"{func}: axis {axis} must be the sparse dim {prob.sparse_dim} of sparse prob")
        return _smooth_one_hot(prob, 1.0 - smoothing, axis, "prob", func)
    _validate.check_float(prob, "prob", func)
    floor = smoothing / (axis.dimension - 1)
    return prob * (1.0 - axis.dimension * floor) + floor


def smooth_one_hot(source: Tensor, *, label_prob: float | Tensor) -> Tensor:
    """Smooth one-hot encoding: ``label_prob`` at the label, ``(1 - label_prob) / (K - 1)`` elsewhere.

    :param source: class indices (an integer Tensor with ``sparse_dim``, K = ``sparse_dim.dimension``)
    :param label_prob: in ``[0, 1]``: a float or a scalar Tensor
    :return: float32 (or ``label_prob``'s dtype) Tensor over ``source.dims + [sparse_dim]``,
        ``feature_dim = sparse_dim``
    """
    func = "smooth_one_hot"
    _validate.check_tensor(source, "source", func)
    if source.sparse_dim is None:
        raise TypeError(f"{func}: source must be sparse (integer class indices with a sparse_dim), got {source}")
    label_prob = _validate.check_fraction(label_prob, "label_prob", func)
    axis = _validate.resolve_axis(source, source.sparse_dim, func, name="source.sparse_dim")
    return _smooth_one_hot(source, label_prob, axis, "source", func)


def _smooth_one_hot(source: Tensor, label_prob: float | Tensor, axis: Dim, name: str, func: str) -> Tensor:
    """:return: the smooth one-hot encoding of the checked labels ``source`` (argument ``name`` of ``func``);
    NaN rows for out-of-range labels in compiled code (see ``_validate.guard_labels``)"""
    _, bad = _validate.guard_labels(source, axis.dimension, name, func)
    on = label_prob if isinstance(label_prob, Tensor) else constant(label_prob, like=source, dtype="float32")
    off = (1.0 - label_prob) / (axis.dimension - 1)
    on, off = (_validate.poison_bad_frames(v, bad) for v in (on, off))  # NaN rows, without a pass over the output
    out = where(range_over_dim(axis, like=source) == source, on, off)
    out = out.copy_transpose(source.dims + (axis,))
    out.feature_dim = axis
    return out


def label_smoothed_log_prob_gradient(
    log_prob: Tensor,
    smoothing: float | Tensor,
    *,
    axis: Dim | None = None,
    exclude_labels: Sequence[int] | None = None,
    returnn_compat: bool = False,
) -> Tensor:
    r"""Identity in the forward pass; label-smooths the negative gradient in the backward pass.

    For a cross-entropy-like loss ``L = -sum_i q[i] * log_prob[i]`` the gradient w.r.t. ``log_prob`` is
    ``g = -q``: the negative gradient is the target distribution (times the loss scale ``s = sum|g|``).
    Smoothing it like :func:`label_smoothing` means ``-g' = factor * q + floor * s``, i.e.::

        g' = factor * g + shift * sum(|g|, axis),    floor = a/(K-1), factor = 1 - K*floor, shift = -floor

    which :func:`scaled_gradient_ext` computes. Frames with zero gradient (padding) stay zero because the
    shift is proportional to ``sum|g|``. Through ``log_prob = log_softmax(z)`` the gradient w.r.t. ``z``
    becomes ``softmax(z) - q'`` with ``q'`` the smoothed target, as for CE against ``label_smoothing(q)``.

    With ``exclude_labels`` (E labels, e.g. the CTC blank) the excluded labels keep their gradient, and the
    K-E included labels are smoothed among themselves: ``floor = a/(K-E-1)``, ``factor = 1 - (K-E)*floor``,
    and the sum scaling the shift runs over the included labels only. Then the included mass is unchanged:
    ``sum_incl(-g') = factor*S + (K-E)*floor*S = S`` with ``S = sum_incl|g|``.

    :param log_prob: float Tensor of log-probabilities over ``axis``
    :param smoothing: ``a`` in ``[0, 1]``: float or scalar Tensor
    :param axis: the label axis; defaults to the feature dim
    :param exclude_labels: labels that keep their gradient unchanged (distinct, in range, leaving >= 2)
    :param returnn_compat: reproduce RETURNN exactly: the shift's sum runs over *all* labels, which adds
        mass where an excluded label carries gradient. Same result as the default without excluded labels.
    :return: ``log_prob`` (same value), with the smoothed gradient
    """
    func = "label_smoothed_log_prob_gradient"
    _validate.check_tensor(log_prob, "log_prob", func)
    if log_prob.sparse_dim is not None:
        raise TypeError(f"{func}: log_prob must be dense float log-probabilities, got sparse {log_prob}")
    _validate.check_float(log_prob, "log_prob", func)
    smoothing = _validate.check_fraction(smoothing, "smoothing", func)
    axis = _validate.resolve_axis(log_prob, axis, func)
    excluded = _validate.check_exclude_labels(exclude_labels, axis.dimension, func)
    if not isinstance(returnn_compat, bool):
        raise TypeError(f"{func}: returnn_compat must be a bool, got {type(returnn_compat).__name__}")
    num_included = axis.dimension - len(excluded)
    floor = smoothing / (num_included - 1)
    factor = 1.0 - num_included * floor
    if not excluded:
        return scaled_gradient_ext(log_prob, scale=factor, shift=-floor, scale_shift_by_sum_over_axis=axis)
    included = range_over_dim(axis, like=log_prob) >= 0
    for label in excluded:
        included = included & (range_over_dim(axis, like=log_prob) != label)
    if not isinstance(factor, Tensor):
        factor, floor = constant(factor, like=log_prob), constant(floor, like=log_prob)
    scale = where(included, factor, 1.0)
    shift = where(included, -floor, 0.0)
    sum_mask = None if returnn_compat else where(included, constant(1.0, like=log_prob), 0.0)
    return scaled_gradient_ext(log_prob, scale=scale, shift=shift, scale_shift_by_sum_over_axis=axis, sum_mask=sum_mask)
