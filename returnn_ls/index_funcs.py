"""Indexing, as in ``returnn.frontend``: ``gather``, ``search_sorted``, ``top_k``.

Dims that a tensor and its indices share are batch dims: ``gather(x [B, T, F], indices=i [B, N], axis=T)`` is
``[B, N, F]`` with ``out[b, n] = x[b, i[b, n]]``. Padding frames of a dynamic axis never take part where RETURNN
masks them (``top_k``; ``gather`` with ``clip_to_valid``; here also ``search_sorted``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from frontend_backends.array_kernels import SEARCH_SIDES
from frontend_backends.common import result_dtype
from returnn_ls import _validate
from returnn_ls.array_funcs import dim_length, expand_dim
from returnn_ls.dim import Dim
from returnn_ls.math_funcs import clip_by_value
from returnn_ls.ops import (
    align,
    axes_of,
    cast,
    check_lengths,
    common_backend,
    constant,
    minimum,
    relu,
    sequence_mask,
    where,
)
from returnn_ls.tensor import Tensor

__all__ = ["dtype_limit", "gather", "search_sorted", "top_k"]


def dtype_limit(dtype: str, sign: int) -> float | int:
    """:return: the largest (``sign=1``) or smallest (``sign=-1``) finite value of ``dtype``"""
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        return int(info.max) if sign > 0 else int(info.min)
    top = 3.3895313892515355e38 if dtype == "bfloat16" else float(np.finfo(dtype).max)
    return top if sign > 0 else -top


def gather(source: Tensor, *, indices: Tensor | int, axis: Dim | None = None, clip_to_valid: bool = False) -> Tensor:
    """:return: the entries of ``source`` at ``indices`` along ``axis``: ``[*shared, *indices' own dims, *rest]``
    in ``source``'s order with ``axis`` replaced by the dims that only ``indices`` has (dims of both are batch
    dims). Differentiable w.r.t. ``source``.

    :param indices: an int, or an integer Tensor with values in ``[0, length of axis)``
    :param axis: default: ``indices.sparse_dim``
    :param clip_to_valid: clip the indices into ``[0, size - 1]``, per sequence for a dynamic ``axis``
    Example: ``emb = rf.gather(weights, indices=labels)`` (``labels.sparse_dim`` is the vocabulary dim)
    """
    func = "gather"
    _validate.check_tensor(source, "source", func)
    if axis is None:
        if not isinstance(indices, Tensor) or indices.sparse_dim is None:
            raise ValueError(f"{func}: without axis, indices must be a Tensor with a sparse_dim (the axis)")
        axis = indices.sparse_dim
    axes_of(source, axis, func)
    indices = _indices_tensor(source, indices, axis, func)
    if clip_to_valid:
        indices = _clip_to_valid(source, indices, axis)
    return gather_along(source, indices, axis)


def _indices_tensor(source: Tensor, indices: Any, axis: Dim, func: str) -> Tensor:
    """:return: ``indices`` as an integer Tensor (an int becomes a scalar; a negative int counts from the end)"""
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        length = dim_length(axis, source)
        value = int(indices) + length if indices < 0 and isinstance(length, int) else int(indices)
        return constant(value, like=source, dtype="int64")
    if not isinstance(indices, Tensor):
        raise TypeError(f"{func}: indices must be an int or an integer Tensor, got {type(indices).__name__}")
    if not indices.dtype.startswith("int"):
        raise TypeError(f"{func}: indices must have an integer dtype, got {indices.dtype}")
    common_backend(source, indices)
    return indices


def _clip_to_valid(source: Tensor, indices: Tensor, axis: Dim) -> Tensor:
    """:return: ``indices`` clipped into ``[0, size - 1]`` (per sequence for a dynamic ``axis``)"""
    sizes = axis.dyn_size_ext
    if sizes is None:
        length = dim_length(axis, source)
        top = length - 1 if isinstance(length, int) else Tensor(source.backend.cast(length, indices.dtype), ()) - 1
        return clip_by_value(indices, 0, top)
    sizes = sizes.copy_template(sizes.backend.to_device_of(sizes.raw_tensor, indices.raw_tensor))
    top = relu(cast(sizes, indices.dtype) - 1)
    out = clip_by_value(indices, 0, top, allow_broadcast_all_sources=True)
    out.sparse_dim = indices.sparse_dim
    return out


def gather_along(source: Tensor, indices: Tensor, axis: Dim) -> Tensor:
    """:func:`gather` with an integer Tensor ``indices`` inside the axis (no checks)"""
    backend = common_backend(source, indices)
    check_lengths(source, indices)
    shared = [d for d in source.dims if d in indices.dims and d is not axis]
    own = [d for d in indices.dims if d not in shared]
    rest = [d for d in source.dims if d not in shared and d is not axis]
    feature = source.feature_dim if source.feature_dim is not axis else None
    if not own and not rest:  # one index per entry of the other dims: the loss functions' kernel
        raw = backend.gather_last(align(source, shared + [axis]), align(indices, shared))
        return Tensor(raw, shared, feature_dim=feature, sparse_dim=source.sparse_dim, backend=backend)
    raw = backend.gather(align(source, shared + [axis] + rest), align(indices, shared + own), len(shared))
    out = Tensor(raw, shared + own + rest, feature_dim=feature, sparse_dim=source.sparse_dim, backend=backend)
    position = source.dims.index(axis)
    return out.copy_transpose(list(source.dims[:position]) + own + list(source.dims[position + 1 :]))


def search_sorted(
    sorted_seq: Tensor, values: Tensor, *, axis: Dim, side: str = "left", out_dtype: str = "int32"
) -> Tensor:
    """:return: for each entry of ``values``, its insertion index into ``sorted_seq`` along ``axis`` (ascending):
    with ``side="left"`` the number of entries ``< value``, with ``"right"`` the number ``<= value``;
    ``sparse_dim=axis``. The other dims of ``sorted_seq`` must be dims of ``values`` (batch dims). Padding frames of
    a dynamic ``axis`` are not counted (RETURNN does not support a dynamic axis).

    Example: ``bucket = rf.search_sorted(boundaries, lengths, axis=bucket_dim, side="right")``
    """
    func = "search_sorted"
    _validate.check_tensor(sorted_seq, "sorted_seq", func)
    _validate.check_tensor(values, "values", func)
    axes_of(sorted_seq, axis, func)
    if side not in SEARCH_SIDES:
        raise ValueError(f"{func}: side must be one of {list(SEARCH_SIDES)}, got {side!r}")
    if out_dtype not in ("int32", "int64"):
        raise ValueError(f"{func}: out_dtype must be 'int32' or 'int64', got {out_dtype!r}")
    missing = [d for d in sorted_seq.dims if d is not axis and d not in values.dims]
    if missing:
        raise ValueError(f"{func}: dims {missing} of sorted_seq are not dims of values {list(values.dims)}")
    return search_sorted_along(sorted_seq, values, axis, side, out_dtype)


def search_sorted_along(sorted_seq: Tensor, values: Tensor, axis: Dim, side: str, out_dtype: str) -> Tensor:
    """:func:`search_sorted` without checks; ``values`` is broadcast to the other dims of ``sorted_seq``"""
    backend = common_backend(sorted_seq, values)
    check_lengths(sorted_seq, values)
    dtype = result_dtype(sorted_seq.dtype, values.dtype)
    sorted_seq, values = (cast(v, dtype) if v.dtype != dtype else v for v in (sorted_seq, values))
    if axis.is_padded():  # padding frames sort last and are never counted
        sorted_seq = where(sequence_mask(axis, sorted_seq), sorted_seq, dtype_limit(dtype, 1))
    shared = [d for d in sorted_seq.dims if d is not axis]
    for d in shared:
        if d not in values.dims:
            values = expand_dim(values, d)
    rest = [d for d in values.dims if d not in shared]
    raw = align(values, shared + rest)
    shape = [backend.axis_size(raw, i) for i in range(len(shared) + len(rest))]
    flat = int(np.prod(shape[len(shared) :])) if all(isinstance(n, int) for n in shape) else -1
    raw = backend.reshape(raw, shape[: len(shared)] + [flat])
    raw = backend.search_sorted(align(sorted_seq, shared + [axis]), raw, side, out_dtype)
    out = Tensor(backend.reshape(raw, shape), shared + rest, sparse_dim=axis, backend=backend)
    if axis.is_padded():
        sizes = axis.dyn_size_ext
        sizes = sizes.copy_template(sizes.backend.to_device_of(sizes.raw_tensor, out.raw_tensor))
        out = minimum(out, cast(sizes, out_dtype))
        out.sparse_dim = axis
    return out


def top_k(
    source: Tensor, *, axis: Dim | Sequence[Dim], k: int | Tensor | None = None, k_dim: Dim | None = None,
    sorted: bool = True,  # noqa: A002
) -> tuple[Tensor, Tensor | list[Tensor], Dim]:  # fmt: skip
    """The ``k`` largest entries of ``source`` along ``axis`` (a dim, or several taken together); the other dims
    are batch dims. Padding frames of a dynamic axis are never chosen before real ones (they get the dtype's
    smallest value, as in RETURNN).

    :param k: an int or an integer Tensor (default: the size of ``k_dim``)
    :param k_dim: the new dim of the ``k`` entries (default: a new one of size ``k``)
    :param sorted: in descending order of the values (else in the framework's order)
    :return: ``(values, indices, k_dim)``: both ``[..., k_dim]``; ``indices`` int64 with ``sparse_dim=axis`` (a
        list, one per axis, for several axes)
    Example: ``scores, labels, beam_dim = rf.top_k(log_probs, axis=vocab_dim, k=4)``
    """
    func = "top_k"
    _validate.check_tensor(source, "source", func)
    axes = axes_of(source, axis, func)
    k, k_dim = _k_and_dim(k, k_dim, func)
    for a in axes:
        if a.is_padded():
            source = _masked_min(source, a)
    others = [d for d in source.dims if d not in axes]
    backend = source.backend
    raw = align(source, others + axes)
    lengths = [backend.axis_size(raw, len(others) + i) for i in range(len(axes))]
    if len(axes) > 1:
        raw = backend.reshape(raw, [backend.axis_size(raw, i) for i in range(len(others))] + [-1])
    values_raw, flat = backend.top_k(raw, dim_length(k_dim), sorted)
    dims = others + [k_dim]
    feature = k_dim if source.feature_dim in axes else source.feature_dim
    values = Tensor(values_raw, dims, feature_dim=feature, sparse_dim=source.sparse_dim, backend=backend)
    if isinstance(axis, Dim):
        return values, Tensor(flat, dims, sparse_dim=axis, backend=backend), k_dim
    indices = []
    for a, length in reversed(list(zip(axes, lengths))):
        indices.insert(0, Tensor(backend.binary("mod", flat, length), dims, sparse_dim=a, backend=backend))
        flat = backend.binary("floordiv", flat, length)
    return values, indices, k_dim


def _masked_min(source: Tensor, axis: Dim) -> Tensor:
    """:return: ``source`` with the padding frames of ``axis`` set to the dtype's smallest value"""
    out = where(sequence_mask(axis, source), source, dtype_limit(source.dtype, -1))
    out.feature_dim, out.sparse_dim = source.feature_dim, source.sparse_dim
    return out


def _k_and_dim(k: Any, k_dim: Dim | None, func: str) -> tuple[Any, Dim]:
    """:return: ``k`` and ``k_dim`` of :func:`top_k`, the missing one made from the other"""
    if k is None:
        if not isinstance(k_dim, Dim) or (k_dim.dimension is None and k_dim.dyn_size_ext is None):
            raise ValueError(f"{func}: give k, or a k_dim with a known size")
        k = k_dim.dimension if k_dim.dimension is not None else k_dim.dyn_size_ext
    if isinstance(k, Tensor):
        if not k.dtype.startswith("int"):
            raise TypeError(f"{func}: k must be an int or an integer Tensor, got dtype {k.dtype}")
    elif not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 0:
        raise ValueError(f"{func}: k must be an int >= 0 or an integer Tensor, got {k!r}")
    if k_dim is None:
        k_dim = Dim(int(k) if not isinstance(k, Tensor) else k, name="top-k-dim")
    elif not isinstance(k_dim, Dim):
        raise TypeError(f"{func}: k_dim must be a Dim or None, got {type(k_dim).__name__}")
    return k, k_dim
