r"""CTC loss whose gradient smooths the CTC posterior over the non-blank labels.

The CTC loss ``L = -log sum_paths prod_t p_t(path_t)`` has, w.r.t. the log-probabilities ``lp`` of the frames,
the gradient ``-q_t``, where ``q_t`` is the posterior of the labels at frame ``t`` given the target (a
distribution: the rows of ``-q`` sum to -1). Through ``lp = log_softmax(z)`` this becomes ``p_t - q_t`` w.r.t. the
logits ``z``. ``F.ctc_loss`` and ``tf.nn.ctc_loss`` both return ``exp(lp) - q`` as "the gradient" w.r.t. their
log-prob input (not the true ``-q``; the difference vanishes only through a ``log_softmax``), so we recover
``q = exp(lp) - g`` from the framework's gradient ``g``. Label smoothing belongs on ``q``::

    q'_k = (1 - (K-1)*f) * q_k + f * sum_{j != blank} q_j    (k != blank),   q'_blank = q_blank,   f = a/(K-2)

the same as :func:`returnn_ls.label_smoothed_log_prob_gradient` with ``exclude_labels=[blank]`` does to ``-g``: the
non-blank mass is kept, so ``q'`` is still a distribution. :func:`ctc_loss` returns the true gradient with ``q'``
for ``q``: ``-q'`` w.r.t. the input when ``logits_normalized=True`` (rows sum to -1 on valid frames), ``softmax(z)
- q'`` w.r.t. the logits otherwise. So both ways of writing label-smoothed CTC give the same gradient w.r.t. the
logits::

    ctc_loss(logits=z, ..., label_smoothing=a)
    ctc_loss(logits=label_smoothed_log_prob_gradient(log_softmax(z), a, exclude_labels=[blank]), ...,
             logits_normalized=True)

(the second is how RETURNN setups write it). Putting ``label_smoothed_log_prob_gradient`` in front of the
frameworks' own CTC ops instead would smooth ``q - exp(lp)``, which is not a distribution.
"""

from __future__ import annotations

import numbers

from returnn_ls import _validate
from returnn_ls.array_funcs import expand_dims
from returnn_ls.dim import Dim
from returnn_ls.ops import align, cast, range_over_dim, sequence_mask, valid_frames, where
from returnn_ls.reduce import reduce, reduce_sum
from returnn_ls.tensor import Tensor

__all__ = ["ctc_loss"]


def _lengths(dim: Dim, batch_dims: tuple[Dim, ...], like: Tensor, func: str):
    """:return: raw int32 lengths of ``dim`` over exactly ``batch_dims`` (static dims: the full size)"""
    if dim.is_padded() and any(d not in batch_dims for d in dim.dyn_size_ext.dims):
        raise ValueError(
            f"{func}: the lengths of {dim} have dims {list(dim.dyn_size_ext.dims)}, which must be among the "
            f"batch dims {list(batch_dims)}"
        )
    lens = reduce_sum(cast(sequence_mask(dim, like), "int32"), axis=dim, use_mask=False)
    for d in batch_dims:
        if d not in lens.dims:
            lens = lens + cast(range_over_dim(d, like=like), "int32") * 0
    return align(lens, batch_dims)


def _check_blank(blank_index: int, num_labels: int, func: str) -> int:
    if not isinstance(blank_index, numbers.Integral) or isinstance(blank_index, bool):
        raise TypeError(f"{func}: blank_index must be an int, got {type(blank_index).__name__}")
    if not -num_labels <= blank_index < num_labels:
        raise ValueError(f"{func}: blank_index {blank_index} is out of range for {num_labels} labels")
    return int(blank_index) % num_labels


def _check_dims(logits, targets, input_spatial_dim, targets_spatial_dim, axis, func):
    """:return: the batch dims: those of ``logits`` other than time and classes, then those of ``targets`` other
    than ``targets_spatial_dim`` that ``logits`` lacks (either side broadcasts over the other's, as RETURNN)"""
    if not isinstance(input_spatial_dim, Dim) or input_spatial_dim not in logits.dims:
        raise ValueError(f"{func}: input_spatial_dim {input_spatial_dim!r} is not a dim of logits {logits}")
    if input_spatial_dim is axis:
        raise ValueError(f"{func}: input_spatial_dim must not be the class axis {axis}")
    if not isinstance(targets_spatial_dim, Dim) or targets_spatial_dim not in targets.dims:
        raise ValueError(f"{func}: targets_spatial_dim {targets_spatial_dim!r} is not a dim of targets {targets}")
    batch_dims = tuple(d for d in logits.dims if d is not input_spatial_dim and d is not axis)
    extra = tuple(d for d in targets.dims if d is not targets_spatial_dim and d not in batch_dims)
    if input_spatial_dim in extra or axis in extra:
        raise ValueError(
            f"{func}: targets {targets} must not have input_spatial_dim or the class axis; its dims other than "
            f"targets_spatial_dim are batch dims"
        )
    if not targets.dtype.startswith("int"):
        raise TypeError(f"{func}: targets must hold integer labels, got dtype {targets.dtype}")
    if targets.backend is not logits.backend:
        raise TypeError(f"{func}: targets are on {targets.backend.name}, logits on {logits.backend.name}")
    return batch_dims + extra


def broadcast_to(x: Tensor, dims: tuple[Dim, ...]) -> Tensor:
    """:return: ``x`` repeated along those of ``dims`` it lacks (the CTC kernels take no size-1 batch axes)"""
    missing = [d for d in dims if d not in x.dims]
    return expand_dims(x, missing) if missing else x


def ctc_loss(
    *,
    logits: Tensor,
    targets: Tensor,
    input_spatial_dim: Dim,
    targets_spatial_dim: Dim,
    blank_index: int,
    logits_normalized: bool = False,
    label_smoothing: float | Tensor = 0.0,
    zero_infinity: bool = False,
    use_native_op: bool | None = None,
    axis: Dim | None = None,
) -> Tensor:
    """Per-sequence CTC loss (``F.ctc_loss(..., reduction="none")``) with a label-smoothed posterior gradient.

    :param logits: float Tensor with dims ``[*batch, input_spatial_dim, classes]`` in any order; the class axis
        is ``axis`` (the blank included). Computed in float32 (float64 on torch for float64).
    :param targets: int labels with dims ``[*batch, targets_spatial_dim]`` (no blanks; padding ignored). Batch dims
        that only one of ``logits`` and ``targets`` has are broadcast (as RETURNN): e.g. logits ``[B, beam, T, C]``
        with targets ``[B, S]`` give a loss ``[B, beam]``
    :param input_spatial_dim: the time dim of ``logits``, usually dynamic (``Dim(lengths)``)
    :param targets_spatial_dim: the label-sequence dim of ``targets``, usually dynamic
    :param blank_index: the blank's class index (negative counts from the end)
    :param logits_normalized: ``logits`` are already log-probabilities (no ``log_softmax`` is applied); the
        gradient w.r.t. them is then the true ``-q'`` (rows sum to -1), not the frameworks' ``exp(lp) - q``
    :param label_smoothing: ``a`` in ``[0, 1]`` (float or scalar Tensor): the gradient becomes
        ``softmax(logits) - q'`` (``-q'`` for normalized input) with the posterior ``q`` smoothed over the
        non-blank labels (see module doc).
        The loss value is not changed. Needs at least 3 classes when ``a`` may be nonzero.
    :param zero_infinity: a target that cannot be aligned to its frames (too long) gets loss 0 instead of inf.
        Its gradient is 0 either way (PyTorch would give NaN without ``zero_infinity``). RETURNN's PyTorch backend
        always zeroes them: pass ``zero_infinity=True`` for its numbers on such targets.
    :param use_native_op: accepted for RETURNN compatibility, and changes nothing: RETURNN chooses between its own
        compiled CTC op (True) and the framework's (False); both compute the same loss, and here it is always the
        framework's own op (``F.ctc_loss``, ``tf.nn.ctc_loss``) with the gradient described above
    :param axis: the class axis of ``logits`` (as the other losses call it; RETURNN's ``ctc_loss`` has no such
        argument and uses ``logits.feature_dim``, which is the default here too)
    :return: float loss with the batch dims (those of ``logits``, then those only ``targets`` has)
    """
    func = "ctc_loss"
    _validate.check_tensor(logits, "logits", func)
    _validate.check_tensor(targets, "targets", func)
    _validate.check_float(logits, "logits", func)
    if axis is None and logits.feature_dim is None:
        raise ValueError(f"{func}: logits must have a feature_dim (the class axis), or pass axis=, got {logits}")
    if use_native_op is not None and not isinstance(use_native_op, bool):
        raise TypeError(f"{func}: use_native_op must be None or a bool, got {type(use_native_op).__name__}")
    axis = _validate.resolve_axis(logits, axis, func, name="axis" if axis is not None else "logits.feature_dim")
    batch_dims = _check_dims(logits, targets, input_spatial_dim, targets_spatial_dim, axis, func)
    blank = _check_blank(blank_index, axis.dimension, func)
    smoothing = _validate.check_fraction(label_smoothing, "label_smoothing", func)
    if axis.dimension < 3 and not (isinstance(smoothing, float) and smoothing == 0.0):
        raise ValueError(f"{func}: label_smoothing needs at least 3 classes (blank + 2 labels), got {axis}")
    for name, flag in (("logits_normalized", logits_normalized), ("zero_infinity", zero_infinity)):
        if not isinstance(flag, bool):
            raise TypeError(f"{func}: {name} must be a bool, got {type(flag).__name__}")
    logits, targets = broadcast_to(logits, batch_dims), broadcast_to(targets, batch_dims)
    targets, bad = _validate.guard_labels(targets, axis.dimension, "targets", func)
    mask = valid_frames(targets)
    if mask is not None:
        targets = where(mask, targets, 0)
    raw = logits.backend.ctc_loss(
        logits.copy_transpose(batch_dims + (input_spatial_dim, axis)).raw_tensor,
        align(targets, batch_dims + (targets_spatial_dim,)),
        _lengths(input_spatial_dim, batch_dims, logits, func),
        _lengths(targets_spatial_dim, batch_dims, targets, func),
        blank,
        logits_normalized,
        smoothing.raw_tensor if isinstance(smoothing, Tensor) else smoothing,
        zero_infinity,
    )
    loss = Tensor(raw, batch_dims, backend=logits.backend)
    if bad is not None:  # a sequence with a bad label gets NaN
        bad = reduce(bad, mode="any", axis=targets_spatial_dim, use_mask=False)
    return _validate.poison_bad_frames(loss, bad)
