"""Cross entropy."""

from __future__ import annotations

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.ops import gather, log, log_softmax, maximum, reduce_sum, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = ["cross_entropy"]

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
        _validate.check_labels_in_range(target, axis.dimension, "target", func)
        for dim in target.dims:
            if dim.dimension is None:
                target = where(sequence_mask(dim, target), target, 0)
        return -gather(log_prob, indices=target, axis=axis)
    _validate.check_float(target, "target", func)
    if axis not in target.dims:
        raise ValueError(f"{func}: dense target must have axis {axis}, got dims {list(target.dims)}")
    return -reduce_sum(target * log_prob, axis=axis)
