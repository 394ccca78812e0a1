"""Splitting and merging dims, as in ``returnn.frontend``: ``split`` (a static dim into parts), ``split_dims`` (a dim
into several dims), ``merge_dims`` (the reverse), and dense labels: ``sparse_to_dense``, ``one_hot``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from returnn_ls import _validate
from returnn_ls.array_funcs import dim_length, expand_dim, reshape_to
from returnn_ls.dim import Dim
from returnn_ls.dim_funcs import replace_dim
from returnn_ls.logic_funcs import compare_bc
from returnn_ls.ops import axes_of, range_over_dim, where
from returnn_ls.slice_funcs import slice as slice_
from returnn_ls.tensor import Tensor

__all__ = ["merge_dims", "one_hot", "sparse_to_dense", "split", "split_dims"]


def _dims(dims: Any, func: str, name: str) -> list[Dim]:
    if isinstance(dims, Dim) or not isinstance(dims, Sequence) or not all(isinstance(d, Dim) for d in dims):
        raise TypeError(f"{func}: {name} must be a sequence of Dims, got {dims!r}")
    return list(dims)


def split(source: Tensor, *, axis: Dim, out_dims: Sequence[Dim]) -> tuple[Tensor, ...]:
    """Cut the static dim ``axis`` into consecutive parts, one per dim of ``out_dims``.

    Example: ``a, b = rf.split(x, axis=model_dim, out_dims=[half_dim, half_dim])``

    :return: one tensor per dim of ``out_dims``, ``axis`` replaced by it
    :raise ValueError: if a dim is not static or the sizes of ``out_dims`` do not add up to ``axis``'s
    """
    func = "split"
    _validate.check_tensor(source, "source", func)
    axes_of(source, axis, func)
    out_dims = _dims(out_dims, func, "out_dims")
    if axis.dimension is None or any(d.dimension is None for d in out_dims):
        raise ValueError(f"{func}: axis and out_dims must be static dims, got {axis} and {out_dims}")
    if sum(d.dimension for d in out_dims) != axis.dimension:
        raise ValueError(f"{func}: the sizes of out_dims {[d.dimension for d in out_dims]} must add up to {axis}")
    parts, start = [], 0
    for dim in out_dims:
        parts.append(slice_(source, axis=axis, start=start, end=start + dim.dimension, out_dim=dim)[0])
        start += dim.dimension
    return tuple(parts)


def split_dims(
    source: Tensor, *, axis: Dim, dims: Sequence[Dim], pad_to_multiples: bool | None = None, pad_value: Any = None
) -> Tensor:
    """Split ``axis`` into ``dims`` (row-major), which take its place; :func:`merge_dims` is the reverse.

    Example: ``heads = rf.split_dims(x, axis=model_dim, dims=[num_heads_dim, head_dim])``

    :param dims: their sizes multiply to ``axis``'s; at most one of them dynamic (it takes the rest of the padded
        length, e.g. ``[chunks_dim, window_dim]`` of a time dim whose padded length is a multiple of the window)
    :param pad_to_multiples: accepted for RETURNN's signature; padding is not supported (False or None only)
    :param pad_value: accepted for RETURNN's signature (unused)
    :raise ValueError: for sizes that do not match, or ``pad_to_multiples=True``
    """
    func = "split_dims"
    _validate.check_tensor(source, "source", func)
    axes_of(source, axis, func)
    dims = _dims(dims, func, "dims")
    del pad_value
    if pad_to_multiples:
        raise ValueError(f"{func}: pad_to_multiples=True is not supported; pad the axis first (rf.pad)")
    static = [d.dimension for d in dims if d.dimension is not None]
    dynamic = [d for d in dims if d.dimension is None]
    if not dynamic and axis.dimension is not None and math.prod(static) != axis.dimension:
        raise ValueError(f"{func}: the sizes of dims {static} must multiply to the size of {axis}")
    if len(dynamic) == 1:
        lengths = [d.dimension if d.dimension is not None else -1 for d in dims]
    else:
        lengths = [d.dimension if d.dimension is not None else dim_length(d) for d in dims]
    return reshape_to(source, [axis], dims, lengths)


def merge_dims(source: Tensor, *, dims: Sequence[Dim], out_dim: Dim | None = None) -> tuple[Tensor, Dim]:
    """Flatten ``dims`` (row-major, in the given order) into one dim at the place of the first of them.

    Example: ``y, feat_dim = rf.merge_dims(x, dims=[num_heads_dim, head_dim])``

    :param out_dim: the merged dim; default: the product of ``dims`` (dim arithmetic; a new dim of the padded size
        if a dim after the first is dynamic, since the product's sizes would not describe the padded data)
    :return: the merged tensor and ``out_dim``
    """
    func = "merge_dims"
    _validate.check_tensor(source, "source", func)
    dims = _dims(dims, func, "dims")
    if not dims:
        out_dim = out_dim if out_dim is not None else Dim(1, name="ext")
        if out_dim.dimension != 1:
            raise ValueError(f"{func}: merging no dims gives a dim of size 1, got out_dim {out_dim}")
        return expand_dim(source, out_dim), out_dim
    axes_of(source, dims, func)
    if len(dims) == 1:
        return (source, dims[0]) if out_dim is None or out_dim is dims[0] else replace_dim(
            source, in_dim=dims[0], out_dim=out_dim)  # fmt: skip
    total = math.prod(dim_length(d, source) for d in dims)  # an int, or a raw scalar for dynamic dims
    if out_dim is None:
        if any(d.is_padded() for d in dims[1:]):
            out_dim = Dim(total, name="merged")
        else:
            out_dim = dims[0]
            for dim in dims[1:]:
                out_dim = out_dim * dim
    return reshape_to(source, dims, [out_dim], [total if isinstance(total, int) else -1]), out_dim


def sparse_to_dense(labels: Tensor, *, label_value: Any, other_value: Any, axis: Dim | None = None) -> Tensor:
    """:return: ``label_value`` where the new dim ``axis`` equals the label, else ``other_value`` (dims of
    ``labels`` then ``axis``)

    :param axis: the class dim; default: ``labels.sparse_dim``
    :raise ValueError: without ``axis`` for labels without a sparse dim
    """
    func = "sparse_to_dense"
    _validate.check_tensor(labels, "labels", func)
    axis = axis if axis is not None else labels.sparse_dim
    if axis is None:
        raise ValueError(f"{func}: labels has no sparse_dim; pass axis= (the class dim)")
    return where(compare_bc(labels, "==", range_over_dim(axis, like=labels)), label_value, other_value)


def one_hot(source: Tensor) -> Tensor:
    """:return: float32 one-hot vectors of the sparse labels ``source`` over ``source.sparse_dim``"""
    return sparse_to_dense(source, label_value=1.0, other_value=0.0)
