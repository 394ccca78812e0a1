"""Sorting and the masks of sampling-based decoding, as in ``returnn.frontend``: ``sort``, ``top_k_mask`` and
``top_p_mask`` (nucleus sampling)."""

from __future__ import annotations

from typing import Any

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import dtype_limit, top_k
from returnn_ls.math_funcs import cumsum
from returnn_ls.ops import align, axes_of, cast, range_over_dim, sequence_mask, where
from returnn_ls.scatter_funcs import scatter
from returnn_ls.seq_funcs import shift_right
from returnn_ls.tensor import Tensor

__all__ = ["sort", "top_k_mask", "top_p_mask"]


def sort(source: Tensor, *, axis: Dim, descending: bool = False, stable: bool = True) -> tuple[Tensor, Tensor, Dim]:
    """Sort ``source`` along ``axis``, stably (equal values keep their order); per sequence for a dynamic axis (the
    padding stays at the end).

    Example: ``values, order, sorted_dim = rf.sort(scores, axis=vocab_dim, descending=True)``

    :param stable: accepted for RETURNN's signature; the sort is always stable
    :return: the sorted values, the int64 indices into ``axis`` (``sparse_dim=axis``) and the new dim of both
        (``axis``' size and sequence lengths)
    """
    func = "sort"
    _validate.check_tensor(source, "source", func)
    axes_of(source, axis, func)
    del stable
    key = cast(source, "int32") if source.dtype == "bool" else source
    if axis.is_padded():  # the padding sorts last
        key = where(sequence_mask(axis, key), key, dtype_limit(key.dtype, -1 if descending else 1))
    others = [d for d in source.dims if d is not axis]
    values, indices = source.backend.sort(align(key, others + [axis]), descending)
    out_dim = axis.copy(same_as_self=False, description=f"{axis.name or 'axis'}-sorted")
    dims = others + [out_dim]
    indices = Tensor(indices, dims, sparse_dim=axis, backend=source.backend)
    values = Tensor(values, dims, feature_dim=out_dim if source.feature_dim is axis else source.feature_dim,
                    sparse_dim=source.sparse_dim, backend=source.backend)  # fmt: skip
    return (cast(values, "bool") if source.dtype == "bool" else values), indices, out_dim


def _mask_at(indices: Tensor, keep: Tensor, indices_dim: Dim, axis: Dim) -> Tensor:
    """:return: the bool mask over ``axis`` that is true where an index of a kept entry points"""
    hits = scatter(cast(keep, "int32"), indices=indices, indices_dim=indices_dim, out_dim=axis)
    return hits > 0


def top_k_mask(values: Tensor, *, axis: Dim, k: int | Tensor) -> Tensor:
    """:return: a bool mask over ``values``' dims, true at its ``k`` largest entries along ``axis`` (ties: the
    first ones)"""
    _, indices, k_dim = top_k(values, axis=axis, k=k)
    keep = range_over_dim(k_dim, like=values) >= 0
    return _mask_at(indices, keep, k_dim, axis)


def top_p_mask(probs: Tensor, *, axis: Dim, p: float | Tensor, one_more: bool = True,
               min_tokens_to_keep: int = 1) -> Tensor:  # fmt: skip
    """The nucleus of nucleus (top-p) sampling: the most probable entries along ``axis`` whose probabilities add up
    to at most ``p``.

    :param probs: probabilities (each row sums to 1)
    :param p: in ``[0, 1]``: a float, or a Tensor without ``axis``
    :param one_more: keep also the first entry above ``p`` (as the original implementation: at least one kept)
    :param min_tokens_to_keep: keep at least this many
    :return: bool mask over ``probs``' dims
    """
    func = "top_p_mask"
    _validate.check_tensor(probs, "probs", func)
    if isinstance(p, Tensor):
        if axis in p.dims:
            raise ValueError(f"{func}: p must not have the dim {axis}")
    elif not 0.0 <= p <= 1.0:
        raise ValueError(f"{func}: p must be in [0, 1], got {p!r}")
    sorted_probs, order, sorted_dim = sort(probs, axis=axis, descending=True)
    keep: Any = cumsum(sorted_probs, spatial_dim=sorted_dim) <= p
    if one_more:
        keep = shift_right(keep, axis=sorted_dim, pad_value=True)
    if min_tokens_to_keep > (1 if one_more else 0):
        keep = keep | (range_over_dim(sorted_dim, like=probs) < min_tokens_to_keep)
    return _mask_at(order, keep, sorted_dim, axis)
