r"""Label-smoothed cross entropy that never builds a dense ``[..., K]`` target.

With log-probabilities ``lp = z - lse`` (``lse = logsumexp(z)``) and a smoothed target ``q`` that is a constant
``f`` on the included labels plus extra mass ``c`` on the target ``y``, ``q = f*m + c*onehot(y)``::

    -sum_k q_k lp_k = -f * (sum_k m_k z_k - M * lse) - c * (z_y - lse),    M = sum_k m_k

so the loss needs only ``lse``, the target logit and a (weighted) sum of the logits, and the gradient w.r.t.
the logits is ``softmax(z) * sum(q) - q`` = ``softmax(z) - q``. The backend computes both in one pass over
the logits (in chunks) and keeps only the gradient for the backward pass.

Targets of the two conventions, ``a = smoothing``, ``K`` labels of which ``E`` are excluded:

=============  ==============================  =====================  ======================
convention     target ``y``                    other included labels  excluded labels
=============  ==============================  =====================  ======================
``returnn``    ``1 - a``                       ``a / (K - E - 1)``    0
``uniform``    ``1 - a + a / (K - E)``         ``a / (K - E)``        0
=============  ==============================  =====================  ======================

If the target itself is an excluded label, that frame is not smoothed (plain cross entropy), as
:func:`returnn_ls.label_smoothed_log_prob_gradient` leaves a gradient on excluded labels unchanged.
Class weights ``w`` weight each label's term: the loss is ``-sum_k w_k q_k lp_k``. With ``uniform`` this is
PyTorch's ``F.cross_entropy(weight=w, label_smoothing=a, reduction="none")``:
``(1-a) * w_y * (-lp_y) + a/K * sum_k w_k * (-lp_k)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.ops import align, cast, constant, range_over_dim, valid_frames, where
from returnn_ls.tensor import Tensor

__all__ = ["label_smoothed_cross_entropy"]

CONVENTIONS = ("returnn", "uniform")


def check_targets(
    targets: Tensor, logits: Tensor, axis: Dim, func: str, *, feature_dim: Dim | None = None, name: str = "logits"
) -> tuple[tuple[Dim, ...], Tensor, Tensor | None]:
    """Check class-index ``targets`` against ``logits`` (or another source ``name`` whose ``feature_dim`` stands
    for the class axis, e.g. the hidden dim). :return: the frame dims (the dims of ``targets``), and the targets
    and bad-label frames from ``_validate.guard_labels``"""
    _validate.check_tensor(targets, "targets", func)
    if not targets.dtype.startswith("int"):
        raise TypeError(f"{func}: targets must hold integer class indices, got dtype {targets.dtype}")
    if targets.backend is not logits.backend:
        raise TypeError(f"{func}: targets are on {targets.backend.name}, {name} on {logits.backend.name}")
    if targets.sparse_dim is not None and targets.sparse_dim is not axis:
        raise ValueError(f"{func}: targets.sparse_dim {targets.sparse_dim} must be the class axis {axis}")
    dropped = axis if feature_dim is None else feature_dim
    expected = [d for d in logits.dims if d is not dropped]
    if axis in targets.dims or set(map(id, targets.dims)) != set(map(id, expected)):
        raise ValueError(
            f"{func}: targets must have the dims of {name} without {dropped}: "
            f"expected {expected} (any order), got {list(targets.dims)}"
        )
    return (targets.dims,) + _validate.guard_labels(targets, axis.dimension, "targets", func)


def _check_z_loss(z_loss: float, func: str) -> float:
    if not isinstance(z_loss, numbers.Real) or isinstance(z_loss, bool):
        raise TypeError(f"{func}: z_loss must be a float >= 0, got {type(z_loss).__name__}")
    if not math.isfinite(z_loss) or z_loss < 0:
        raise ValueError(f"{func}: z_loss must be a finite float >= 0, got {z_loss}")
    return float(z_loss)


def _check_weight(weight: Tensor | None, axis: Dim, func: str) -> Tensor | None:
    if weight is None:
        return None
    _validate.check_tensor(weight, "weight", func)
    _validate.check_float(weight, "weight", func)
    if weight.dims != (axis,):
        raise ValueError(f"{func}: weight must have exactly the dims [{axis}], got {list(weight.dims)}")
    values = weight.concrete_value()
    if values is not None and not (values >= 0).all():
        raise ValueError(f"{func}: weight must be >= 0 (and not NaN), got e.g. {values[~(values >= 0)][:5]}")
    return weight


def smoothing_coefficients(smoothing, convention, excluded, axis, weight, like, dtype):
    """:return: (off, on, v): the backend's per-label coefficient Tensors over ``[axis]`` (``v`` may be None), computed
    in ``dtype`` (float64 coefficients for float64 logits are exact to float64 rounding)"""
    labels = range_over_dim(axis, like=like)

    def in_dtype(value: float | Tensor) -> Tensor:
        return cast(value, dtype) if isinstance(value, Tensor) else constant(value, like=labels, dtype=dtype)

    smoothing = in_dtype(smoothing) if isinstance(smoothing, Tensor) else smoothing
    num_included = axis.dimension - len(excluded)
    floor = smoothing / (num_included - 1 if convention == "returnn" else num_included)
    on_target = 1.0 - smoothing + (0.0 if convention == "returnn" else floor)
    included = labels >= 0
    for label in excluded:
        included = included & (labels != label)
    off = where(included, in_dtype(floor), 0.0)
    on = where(included, in_dtype(on_target - floor), 1.0)
    v = where(included, in_dtype(1.0), 0.0) if excluded else None
    if weight is not None:
        weight = cast(weight, dtype)
        on = on * weight
        v = weight if v is None else v * weight
    return off, on, v


def label_smoothed_cross_entropy(
    *,
    logits: Tensor,
    targets: Tensor,
    axis: Dim,
    smoothing: float | Tensor,
    convention: str = "returnn",
    exclude_labels: Sequence[int] | None = None,
    weight: Tensor | None = None,
    z_loss: float = 0.0,
) -> Tensor:
    """Per-frame cross entropy of ``logits`` against the label-smoothed ``targets``, fused (see module doc).

    Equals ``cross_entropy(estimated=logits, target=label_smoothing(targets, a), estimated_type="logits")``
    for ``convention="returnn"``, and PyTorch's/Keras's label-smoothed cross entropy for ``"uniform"``.
    Never materialises a dense target or one-hot; the gradient ``softmax - q`` is written in a custom backward.

    Frames outside a dynamic dim's length get loss 0 and gradient exactly 0, whatever their target (this
    replaces PyTorch's ``ignore_index``: instead of marking padding with ``-100``, give the frames' dim its
    lengths, e.g. ``Dim(lens)``; ``lens[b]`` = the number of frames before the first ignored one).

    :param logits: float Tensor over ``axis`` (any dtype; float16/bfloat16 are accumulated in float32)
    :param targets: int class indices with the dims of ``logits`` without ``axis``. A label outside ``[0, K)``
        raises a ValueError in eager mode and an error at run time inside ``tf.function``; under XLA and
        ``torch.compile`` that frame's loss (and gradient) is NaN. Padding frames may hold any label.
    :param axis: the class axis, a static dim of ``logits``
    :param smoothing: ``a`` in ``[0, 1]``: float or scalar Tensor (e.g. a schedule)
    :param convention: ``"returnn"`` (others get ``a/(K-1)``) or ``"uniform"`` (all get ``a/K``)
    :param exclude_labels: labels that get no smoothing mass (e.g. a blank); see the module doc
    :param weight: optional non-negative class weights, a float Tensor with dims ``[axis]``
    :param z_loss: adds ``z_loss * logsumexp(logits)**2`` per frame
    :return: the loss with the dims of ``targets``; float32 (float64 for float64 logits)
    """
    func = "label_smoothed_cross_entropy"
    _validate.check_tensor(logits, "logits", func)
    _validate.check_float(logits, "logits", func)
    if convention not in CONVENTIONS:
        raise ValueError(f"{func}: convention must be one of {list(CONVENTIONS)}, got {convention!r}")
    axis = _validate.resolve_axis(logits, axis, func)
    if axis not in logits.dims:
        raise ValueError(f"{func}: axis {axis} is not one of the logits' dims {list(logits.dims)}")
    frame_dims, targets, bad = check_targets(targets, logits, axis, func)
    smoothing = _validate.check_fraction(smoothing, "smoothing", func)
    excluded = _validate.check_exclude_labels(exclude_labels, axis.dimension, func)
    weight = _check_weight(weight, axis, func)
    z_loss = _check_z_loss(z_loss, func)
    dtype = "float64" if logits.dtype == "float64" else "float32"
    off, on, v = smoothing_coefficients(smoothing, convention, excluded, axis, weight, logits, dtype)
    mask = valid_frames(targets)
    if mask is not None:
        targets = where(mask, targets, 0)
    raw = logits.backend.label_smoothed_cross_entropy(
        logits.copy_transpose(frame_dims + (axis,)).raw_tensor,
        align(targets, frame_dims),
        off.raw_tensor,
        on.raw_tensor,
        None if v is None else v.raw_tensor,
        z_loss,
        None if mask is None else align(mask, frame_dims),
    )
    return _validate.poison_bad_frames(Tensor(raw, frame_dims, backend=logits.backend), bad)
