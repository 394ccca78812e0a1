"""Replacing or growing a dim, as in ``returnn.frontend``: ``replace_dim``, ``replace_dim_v2``, ``set_sparse_dim``,
``repeat``, ``limit_repeats``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls import _validate
from returnn_ls.array_funcs import dim_length
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import gather, search_sorted_along
from returnn_ls.math_funcs import cumsum, masked_fill
from returnn_ls.ops import axes_of, cast, maximum, range_over_dim, sequence_mask, where
from returnn_ls.reduce import reduce_sum
from returnn_ls.tensor import Tensor

__all__ = [
    "last_frame_position_of_dim", "limit_repeats", "linspace_over_dim", "range_over_dim_strided",
    "range_over_merged_dims", "repeat", "replace_dim", "replace_dim_v2", "set_sparse_dim",
]  # fmt: skip


def _check_new(source: Tensor, in_dim: Dim, out_dim: Dim | None, func: str) -> None:
    _validate.check_tensor(source, "source", func)
    axes_of(source, in_dim, func)
    if out_dim is not None and not isinstance(out_dim, Dim):
        raise TypeError(f"{func}: out_dim must be a Dim, got {type(out_dim).__name__}")
    if out_dim is not None and out_dim is not in_dim and out_dim in source.dims:
        raise ValueError(f"{func}: out_dim {out_dim} is a dim of source {source} already")


def _renamed(source: Tensor, raw: object, in_dim: Dim, out_dim: Dim) -> Tensor:
    """:return: ``raw`` (``source``'s layout) with ``in_dim`` named ``out_dim``"""
    out = source.copy_template(raw, [out_dim if d is in_dim else d for d in source.dims])
    out.feature_dim = out_dim if source.feature_dim is in_dim else source.feature_dim
    return out


def replace_dim(source: Tensor, *, in_dim: Dim, out_dim: Dim | None = None) -> tuple[Tensor, Dim]:
    """:return: the same data with ``in_dim`` named ``out_dim`` (default: a new dim of ``in_dim``'s size), and
    ``out_dim``. An ``out_dim`` whose sizes are not known yet takes those of ``in_dim``; sizes are not compared (as
    in RETURNN: use :func:`replace_dim_v2` to pad or cut). Example: ``k, kv_dim = rf.replace_dim(x, in_dim=time_dim)``
    """
    func = "replace_dim"
    _check_new(source, in_dim, out_dim, func)
    if out_dim is None:
        out_dim = in_dim.copy(same_as_self=False, description="new-dim")
    elif out_dim.dimension is None and out_dim.dyn_size_ext is None and in_dim.dimension is None:
        out_dim.dyn_size_ext = in_dim.dyn_size_ext
    return _renamed(source, source.raw_tensor, in_dim, out_dim), out_dim


def replace_dim_v2(
    source: Tensor, *, in_dim: Dim, out_dim: Dim, allow_expand: bool = True, allow_shrink: bool = True
) -> Tensor:
    """:return: ``source`` with ``in_dim`` replaced by ``out_dim`` of another length: frame ``t`` of ``out_dim`` is
    frame ``t`` of ``in_dim`` inside its sequence, else 0 (``False``); frames beyond ``out_dim``'s length are cut.
    (When ``source`` lacks dims that ``in_dim``'s sizes vary along, its frames are taken as they are, padding too.)

    :param allow_expand: whether ``out_dim``'s (padded) length may exceed ``in_dim``'s (else a ValueError)
    :param allow_shrink: whether it may be shorter
    Example: ``cond_ext = rf.replace_dim_v2(cond, in_dim=time_dim, out_dim=time_dim + 1)``
    """
    func = "replace_dim_v2"
    _check_new(source, in_dim, out_dim, func)
    if out_dim is in_dim or out_dim is None:
        raise ValueError(f"{func}: out_dim must be a new Dim, not {out_dim!r}")
    backend, axis = source.backend, source.dims.index(in_dim)
    old, new = (_known(backend, n) for n in (dim_length(in_dim, source), dim_length(out_dim)))
    if isinstance(old, int) and isinstance(new, int):
        if new > old and not allow_expand:
            raise ValueError(f"{func}: not allowed to expand {in_dim} ({old}) to {out_dim} ({new})")
        if new < old and not allow_shrink:
            raise ValueError(f"{func}: not allowed to shrink {in_dim} ({old}) to {out_dim} ({new})")
    if in_dim.is_padded() and all(d in source.dims for d in in_dim.dyn_size_ext.dims):
        source = masked_fill(source, sequence_mask(in_dim, source), 0)  # (else, e.g. packed, the frames as they are)
    pads = [(0, 0)] * len(source.dims)
    grow = max(new - old, 0) if isinstance(old, int) and isinstance(new, int) else new  # unknown: pad, then cut
    pads[axis] = (0, grow)
    raw = backend.pad(source.raw_tensor, pads, False if source.dtype == "bool" else 0)
    return _renamed(source, backend.slice(raw, axis, 0, new, None), in_dim, out_dim)


def _known(backend: Any, length: Any) -> Any:
    """:return: ``length`` as an int where it is one or a raw scalar with a value (Dim sizes live on the host), else
    the raw scalar (e.g. inside a graph)"""
    if isinstance(length, int):
        return length
    value = backend.concrete_value(length)
    return length if value is None else int(value)


def set_sparse_dim(source: Tensor, sparse_dim: Dim) -> Tensor:
    """:return: the same integer data with ``sparse_dim`` as its sparse dim (its class dim)"""
    _validate.check_tensor(source, "source", "set_sparse_dim")
    if not isinstance(sparse_dim, Dim) or not source.dtype.startswith("int"):
        raise TypeError(f"set_sparse_dim: needs an integer source and a Dim, got {source} and {sparse_dim!r}")
    out = source.copy_template(source.raw_tensor)
    out.sparse_dim = sparse_dim
    return out


def repeat(
    values: Tensor, *, in_spatial_dim: Dim, repeats: Tensor, out_spatial_dim: Dim | None = None,
    max_len_factor: float | None = None,
) -> tuple[Tensor, Dim]:  # fmt: skip
    """Repeat each frame of ``values`` along ``in_spatial_dim`` ``repeats`` times (0: drop it), e.g. to expand
    tokens by durations.

    :param values: ``[..., in_spatial_dim, ...]``
    :param repeats: integer ``[..., in_spatial_dim]``, >= 0; padding frames count as 0
    :param out_spatial_dim: the new dim (default: a new one; its sizes, the sums of ``repeats``, are set if unknown)
    :param max_len_factor: bound each sequence's output to ``max_len_factor`` times its input length (see
        :func:`limit_repeats`); a new ``out_spatial_dim`` is then ``bounded_by`` ``in_spatial_dim * max_len_factor``
    :return: ``values`` with ``in_spatial_dim`` replaced by ``out_spatial_dim`` (plus the other dims of
        ``repeats``), and ``out_spatial_dim``. Differentiable w.r.t. ``values``.
    Example: ``frames, frame_dim = rf.repeat(phones, in_spatial_dim=phone_dim, repeats=durations)``
    """
    func = "repeat"
    _validate.check_tensor(values, "values", func)
    _validate.check_tensor(repeats, "repeats", func)
    axes_of(values, in_spatial_dim, func)
    axes_of(repeats, in_spatial_dim, func)
    if not repeats.dtype.startswith("int"):
        raise TypeError(f"{func}: repeats must be an integer Tensor, got dtype {repeats.dtype}")
    counts = repeats.copy_template(repeats.raw_tensor)
    counts.sparse_dim = None
    if in_spatial_dim.is_padded():
        counts = masked_fill(counts, sequence_mask(in_spatial_dim, counts), 0)
    if max_len_factor is not None:
        counts = limit_repeats(counts, in_spatial_dim=in_spatial_dim, max_len_factor=max_len_factor)
    ends = cumsum(counts, spatial_dim=in_spatial_dim)  # frame i fills outputs [ends[i] - repeats[i], ends[i])
    if out_spatial_dim is None:
        bound = None if max_len_factor is None or int(max_len_factor) != max_len_factor else \
            in_spatial_dim * int(max_len_factor)  # fmt: skip
        out_spatial_dim = Dim(reduce_sum(counts, axis=in_spatial_dim, use_mask=False), name="repeat", bounded_by=bound)
    elif out_spatial_dim.dimension is None and out_spatial_dim.dyn_size_ext is None:
        out_spatial_dim.dyn_size_ext = reduce_sum(counts, axis=in_spatial_dim, use_mask=False)
    positions = cast(range_over_dim(out_spatial_dim, like=None), ends.dtype)
    index = search_sorted_along(ends, positions, in_spatial_dim, "right", "int32")
    return gather(values, indices=index, axis=in_spatial_dim, clip_to_valid=True), out_spatial_dim


def limit_repeats(repeats: Tensor, *, in_spatial_dim: Dim, max_len_factor: float) -> Tensor:
    """:return: ``repeats`` scaled down in each sequence whose total exceeds ``max_len_factor`` times its length, so
    that :func:`repeat` gives at most that many frames: every element with a repeat keeps one frame, and the repeats
    beyond that one are multiplied by one factor per sequence (rounded down), keeping their ratios. Sequences
    within the bound are unchanged (so this is idempotent); padding frames become 0.

    :param repeats: integer ``[..., in_spatial_dim]``, >= 0
    :param max_len_factor: >= 1
    Example: ``durations = rf.limit_repeats(durations, in_spatial_dim=phone_dim, max_len_factor=10)``
    """
    func = "limit_repeats"
    _validate.check_tensor(repeats, "repeats", func)
    axes_of(repeats, in_spatial_dim, func)
    if not isinstance(max_len_factor, (int, float)) or isinstance(max_len_factor, bool) or max_len_factor < 1:
        raise ValueError(f"{func}: max_len_factor must be a number >= 1, got {max_len_factor!r}")
    if in_spatial_dim.is_padded():
        repeats = masked_fill(repeats, sequence_mask(in_spatial_dim, repeats), 0)
    length = in_spatial_dim.get_size_tensor_or_int()
    allowed = (cast(length, "float32") if isinstance(length, Tensor) else float(length)) * float(max_len_factor)
    kept = cast(repeats > 0, repeats.dtype)  # one frame per element with a repeat is never scaled away
    extra = repeats - kept
    n_kept = cast(reduce_sum(kept, axis=in_spatial_dim, use_mask=False), "float32")
    n_extra = cast(reduce_sum(extra, axis=in_spatial_dim, use_mask=False), "float32")
    factor = where(n_kept + n_extra > allowed, maximum(allowed - n_kept, 0.0) / maximum(n_extra, 1.0), 1.0)
    out = kept + cast(cast(extra, "float32") * factor, repeats.dtype)
    return out.copy_transpose(repeats.dims) if set(out.dims) == set(repeats.dims) else out


def linspace_over_dim(dim: Dim, start: Any = 0.0, end: Any = 1.0, *, dtype: str | None = None,
                      device: str | None = None) -> Tensor:  # fmt: skip
    """:return: ``start + (end - start) * i / max(size, 1)`` for ``i`` over ``dim`` (as RETURNN: ``end`` itself is
    not reached), per sequence for a dynamic dim; ``start``/``end`` numbers or Tensors

    :param dtype: a float dtype (default float32)
    """
    dtype = dtype or "float32"
    if not dtype.startswith(("float", "bfloat")):
        raise ValueError(f"linspace_over_dim: dtype must be a float dtype, got {dtype!r}")
    indices = range_over_dim(dim, dtype=dtype, device=device)
    size = dim.get_size_tensor() if dim.dimension is None else dim.dimension
    out = indices / (cast(maximum(size, 1), dtype) if isinstance(size, Tensor) else float(max(size, 1)))
    if not (isinstance(end, (int, float)) and isinstance(start, (int, float)) and end - start == 1):
        out = out * (end - start)
    if not (isinstance(start, (int, float)) and start == 0):
        out = out + start
    return out


def last_frame_position_of_dim(dim: Dim, *, device: str | None = None, allow_scalar_on_cpu: bool = True) -> Any:
    """:return: the index of the last frame: ``size - 1`` (an int for a static dim, 0 for size 0), or per sequence
    ``max(length - 1, 0)`` as an int Tensor with ``sparse_dim=dim`` (on the sizes' device)

    :param device: accepted for RETURNN's signature; the positions are on the device of the sizes
    :param allow_scalar_on_cpu: accepted for RETURNN's signature
    """
    del device, allow_scalar_on_cpu
    if dim.dimension is not None:
        return max(dim.dimension - 1, 0)
    positions = maximum(dim.get_size_tensor() - 1, 0)
    positions.sparse_dim = dim
    return positions


def range_over_dim_strided(dim: Dim, *, stride: int | Tensor, out_dim: Dim | None = None, dtype: str | None = None,
                           device: str | None = None) -> tuple[Tensor, Dim]:  # fmt: skip
    """:return: ``0, stride, 2*stride, ...`` below the size of ``dim`` (per sequence for a dynamic dim) over
    ``out_dim`` (default ``ceil(dim / stride)``: ``dim.ceildiv_right(stride)`` for an int stride), and that dim"""
    if out_dim is None:
        if isinstance(stride, Tensor):
            sizes = dim.get_size_tensor()
            out_dim = Dim(-(-sizes // cast(stride, sizes.dtype)), name=f"{dim.name}:strided")
        else:
            out_dim = dim.ceildiv_right(stride)
    return range_over_dim(out_dim, dtype=dtype, device=device) * stride, out_dim


def range_over_merged_dims(dims: Sequence[Dim], *, dtype: str | None = None, device: str | None = None) -> Tensor:
    """:return: over ``dims``, the index into their merged dim (row-major: ``i_0 * size_1 + i_1`` for two), with
    ``sparse_dim`` that dim (``dims[0] * dims[1] * ...``), for indexing the result of :func:`returnn_ls.merge_dims`
    """
    from returnn_ls.split_funcs import split_dims

    if not dims:
        raise ValueError("range_over_merged_dims: dims must hold at least one Dim")
    merged = dims[0]
    for dim in dims[1:]:
        merged = merged * dim
    indices = range_over_dim(merged, dtype=dtype, device=device)
    return split_dims(indices, axis=merged, dims=list(dims)) if len(dims) > 1 else indices
