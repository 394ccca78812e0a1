"""Selecting by a mask, as in ``returnn.frontend``: ``masked_select``, ``masked_scatter``, and ``concat`` along
dynamic dims (the sequences of each batch entry joined without the padding in between: :func:`concat_dynamic`, which
``rf.concat`` calls for dynamic dims).

Frames outside the sequences of the mask's dynamic dims are never selected (the mask counts as False there).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

from frontend_backends import Backend
from returnn_ls import _validate
from returnn_ls.array_funcs import _check_dims, dim_length, dim_of_size, expand_to, reshape_to
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import gather_along, search_sorted_along
from returnn_ls.math_funcs import clip_by_value, cumsum, masked_fill
from returnn_ls.ops import align, axes_of, cast, common_backend, range_over_dim, sequence_mask, valid_frames, where
from returnn_ls.reduce import reduce_sum
from returnn_ls.tensor import Tensor

__all__ = ["concat_dynamic", "masked_scatter", "masked_select"]


def _check_mask(mask: Tensor, dims: Sequence[Dim], func: str) -> tuple[Tensor, tuple[Dim, ...]]:
    """:return: ``mask``, False outside the sequences, and ``dims`` (checked: a non-empty subset of its dims)"""
    _validate.check_tensor(mask, "mask", func)
    if mask.dtype != "bool":
        raise TypeError(f"{func}: mask must be a bool Tensor, got dtype {mask.dtype}")
    dims = _check_dims(dims, func)
    if not dims or any(d not in mask.dims for d in dims):
        raise ValueError(f"{func}: dims {list(dims)} must be a non-empty subset of the mask's dims {list(mask.dims)}")
    valid = valid_frames(mask)
    return (mask if valid is None else masked_fill(mask, valid, False)), dims


def _merged(dims: tuple[Dim, ...], like: Tensor) -> tuple[Dim, Any]:
    """:return: a new dim for ``dims`` merged row-major (their lengths in ``like``) and its length"""
    lengths = [dim_length(d, like) for d in dims]
    total = functools.reduce(lambda a, b: like.backend.binary("mul", a, b), lengths)
    size = total if isinstance(total, int) else Tensor(total, (), backend=like.backend)
    return dim_of_size(size, "*".join(str(d.name) for d in dims)), total


def _with_dims(x: Tensor, dims: Sequence[Dim], like: Tensor) -> Tensor:
    """:return: ``x`` broadcast to the ``dims`` it lacks, with their lengths in ``like``"""
    for d in dims:
        if d not in x.dims:
            x = expand_to(x, d, len(x.dims), dim_length(d, like))
    return x


def masked_select(tensor: Tensor, *, mask: Tensor, dims: Sequence[Dim], out_dim: Dim | None = None
                  ) -> tuple[Tensor, Dim]:  # fmt: skip
    """Keep the entries of ``tensor`` where ``mask`` is True, packed along ``dims`` (row-major in their order) into
    one new dim ``out_dim``. With ``dims`` all the mask's dims, ``out_dim``'s size is the number of True entries;
    with fewer, the mask's other dims stay and ``out_dim`` has a size per entry of them (e.g. per sequence), its
    padding frames 0.

    :return: the packed tensor and ``out_dim``
    Example: ``kept, kept_dim = rf.masked_select(x, mask=keep, dims=[time_dim])`` (``keep`` over ``[batch, time]``)
    """
    func = "masked_select"
    _validate.check_tensor(tensor, "tensor", func)
    mask, dims = _check_mask(mask, dims, func)
    if out_dim is not None and not isinstance(out_dim, Dim):
        raise TypeError(f"{func}: out_dim must be a Dim or None, got {type(out_dim).__name__}")
    common_backend(tensor, mask)
    tensor = _with_dims(tensor, dims, mask)
    if len(dims) == len(mask.dims):
        return _select_all(tensor, mask, dims, out_dim)
    if len(dims) == 1:
        return _select_along(tensor, mask, dims[0], out_dim)
    merged, total = _merged(dims, mask)
    flat, flat_mask = (reshape_to(x, dims, [merged], [total]) for x in (tensor, mask))
    return _select_along(flat, flat_mask, merged, out_dim)


def _select_all(tensor: Tensor, mask: Tensor, dims: tuple[Dim, ...], out_dim: Dim | None) -> tuple[Tensor, Dim]:
    backend = tensor.backend
    rest = [d for d in tensor.dims if d not in dims]
    raw = backend.masked_select(align(tensor, list(dims) + rest), align(mask, dims))
    out_dim = _counted_dim(raw, backend, out_dim)
    feature = tensor.feature_dim if tensor.feature_dim in rest else None
    return Tensor(raw, [out_dim] + rest, feature_dim=feature, sparse_dim=tensor.sparse_dim, backend=backend), out_dim


def _counted_dim(packed: Any, backend: Backend, out_dim: Dim | None) -> Dim:
    """:return: ``out_dim`` (a new one if None) with the length of ``packed``'s first axis as its size, if unknown"""
    if out_dim is not None and (out_dim.dimension is not None or out_dim.dyn_size_ext is not None):
        return out_dim
    size = backend.axis_size(packed, 0)
    size = backend.convert(size, "int32", like=packed) if isinstance(size, int) else backend.cast(size, "int32")
    out_dim = out_dim or Dim(None, name="masked_select")
    out_dim.dyn_size_ext = Tensor(size, (), backend=backend)
    return out_dim


def _select_along(tensor: Tensor, mask: Tensor, axis: Dim, out_dim: Dim | None) -> tuple[Tensor, Dim]:
    """Pack along one dim: output frame ``j`` is the frame where the running count of True entries reaches ``j+1``."""
    counts = reduce_sum(cast(mask, "int32"), axis=axis, use_mask=False)
    if out_dim is None or (out_dim.dimension is None and out_dim.dyn_size_ext is None):
        out_dim = out_dim or Dim(None, name="masked_select")
        out_dim.dyn_size_ext = counts
    totals = cumsum(cast(mask, "int32"), spatial_dim=axis)
    positions = range_over_dim(out_dim, like=mask)
    index = search_sorted_along(totals, positions, axis, "right", "int32")
    length = dim_length(axis, tensor)
    top = length - 1 if isinstance(length, int) else Tensor(tensor.backend.cast(length, "int32"), ()) - 1
    out = gather_along(tensor, clip_by_value(index, 0, top), axis)
    return masked_fill(out, sequence_mask(out_dim, out), 0), out_dim


def masked_scatter(source: Tensor, backup: Tensor | None = None, *, mask: Tensor, dims: Sequence[Dim],
                   in_dim: Dim) -> Tensor:  # fmt: skip
    """The inverse of :func:`masked_select`: the frames of ``source`` along ``in_dim`` go, in order, to the True
    entries of ``mask`` over ``dims``; the other entries are ``backup`` (a Tensor over some of the result's dims;
    default 0). Differentiable w.r.t. ``source`` and ``backup``.

    Example: ``y = rf.masked_scatter(kept, x, mask=keep, dims=[time_dim], in_dim=kept_dim)``
    """
    func = "masked_scatter"
    _validate.check_tensor(source, "source", func)
    mask, dims = _check_mask(mask, dims, func)
    axes_of(source, in_dim, func)
    if backup is not None and not isinstance(backup, Tensor):
        raise TypeError(f"{func}: backup must be a Tensor or None, got {type(backup).__name__}")
    common_backend(source, mask, *([backup] if backup is not None else []))
    merged, total = _merged(dims, mask) if len(dims) > 1 else (dims[0], None)
    flat = reshape_to(mask, dims, [merged], [total]) if len(dims) > 1 else mask
    index = masked_fill(cumsum(cast(flat, "int32"), spatial_dim=merged) - 1, flat, 0)
    if len(dims) > 1:
        index = reshape_to(index, [merged], dims, [dim_length(d, mask) for d in dims])
    out = where(mask, gather_along(source, index, in_dim), backup if backup is not None else 0)
    out.sparse_dim = source.sparse_dim
    out.feature_dim = source.feature_dim if source.feature_dim in out.dims else None
    return out


def concat_dynamic(*sources: tuple[Tensor, Dim], allow_broadcast: bool = False, out_dim: Dim | None = None,
                   handle_dynamic_dims: bool | None = None) -> tuple[Tensor, Dim]:  # fmt: skip
    """``rf.concat`` along dims of which some are dynamic (RETURNN's): with ``handle_dynamic_dims`` (default: when a
    dim before the last has padding) the sequences of each entry of the other dims are joined without the padding in
    between, and ``out_dim`` (default ``dim_1 + dim_2 + ...``) has the summed sizes; without, the padded tensors are
    joined as they are (``out_dim``: the summed padded lengths, no sizes)."""
    func = "concat"
    backend, others = check_concat_sources(sources, allow_broadcast, func)
    need = any(dim.need_masking() for _, dim in sources[:-1])
    handle = need if handle_dynamic_dims is None else bool(handle_dynamic_dims)
    lengths = [dim_length(dim, src) for src, dim in sources]
    total = functools.reduce(lambda a, b: backend.binary("add", a, b), lengths)
    if out_dim is None and (handle or not need):
        out_dim = functools.reduce(operator.add, [d for _, d in sources])
    elif out_dim is None:
        out_dim = _length_dim(backend, total)
    position = sources[0][0].dims.index(sources[0][1])
    joined = _length_dim(backend, total) if handle and need else out_dim
    order = others[:position] + [joined] + others[position:]
    raws = [align(src, [dim if d is joined else d for d in order]) for src, dim in sources]
    out = Tensor(backend.concat(raws, position), order, backend=backend)
    if handle and need:
        out, _ = masked_select(out, mask=_joined_mask(sources, joined, backend), dims=[joined], out_dim=out_dim)
    first = sources[0][0].feature_dim
    same = all(src.feature_dim is dim for src, dim in sources)
    out.feature_dim = out_dim if same else first if first in out.dims else None
    return out, out_dim


def _length_dim(backend: Backend, total: Any) -> Dim:
    """:return: a new dim of length ``total`` (an int or a raw scalar, set as its size without reading it)"""
    return dim_of_size(total if isinstance(total, int) else Tensor(total, (), backend=backend), "concat")


def check_concat_sources(sources: tuple, allow_broadcast: bool, func: str) -> tuple[Backend, list[Dim]]:
    """:return: the backend of ``sources`` and their other dims (first appearance order), after checking them"""
    if not sources:
        raise ValueError(f"{func}: give at least one (tensor, dim) pair")
    for i, pair in enumerate(sources):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], Tensor)):
            raise TypeError(f"{func}: sources[{i}] must be a (Tensor, Dim) pair, got {type(pair).__name__}")
        axes_of(pair[0], pair[1], func)
    others = [d for d in sources[0][0].dims if d is not sources[0][1]]
    for i, (src, dim) in enumerate(sources[1:], 1):
        rest = [d for d in src.dims if d is not dim]
        if not allow_broadcast and set(map(id, rest)) != set(map(id, others)):
            raise ValueError(f"{func}: sources[{i}] has other dims {rest} than sources[0] {others}; "
                             "pass allow_broadcast=True to broadcast")  # fmt: skip
        others += [d for d in rest if d not in others]
    return common_backend(*(src for src, _ in sources)), others


def _joined_mask(sources: tuple, joined: Dim, backend: Backend) -> Tensor:
    """:return: bool over ``[size dims..., joined]``: True at the frames inside each source's sequences"""
    masks = [sequence_mask(dim, src) if dim.is_padded() else range_over_dim(dim, like=src) >= 0 for src, dim in sources]
    mask_dims = []
    for mask, (_, dim) in zip(masks, sources):
        mask_dims += [d for d in mask.dims if d is not dim and d not in mask_dims]
    raws = [align(mask, mask_dims + [dim]) for mask, (_, dim) in zip(masks, sources)]
    return Tensor(backend.concat(raws, len(mask_dims)), mask_dims + [joined], backend=backend)
