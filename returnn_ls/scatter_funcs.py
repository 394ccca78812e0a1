"""Scattering, the inverse of :func:`returnn_ls.gather`, as in ``returnn.frontend``: ``scatter`` (modes ``"sum"``,
``"max"``, ``"min"``, ``"mean"``, ``"logsumexp"``, ``"logmeanexp"``, ``"argmax"``), ``scatter_count``,
``scatter_mean``, ``scatter_logsumexp``, ``scatter_logmeanexp``, ``scatter_argmax``.

``scatter(source [B, I, F], indices=i [B, I], indices_dim=I, out_dim=O)`` is ``[B, O, F]`` with ``out[b, o]`` the
reduction of the ``source[b, t]`` with ``i[b, t] == o``. Dims of ``indices`` other than ``indices_dim`` are batch
dims. Frames outside the sequences of a dynamic ``indices_dim`` never contribute (RETURNN's masking of behaviour
version 25); an output entry that nothing is scattered to gets ``fill_value``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from frontend_backends.array_kernels import SCATTER_MODES
from returnn_ls import _validate
from returnn_ls.array_funcs import dim_length, expand_to
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import dtype_limit, gather_along
from returnn_ls.math_funcs import masked_fill
from returnn_ls.ops import align, cast, common_backend, range_over_dim, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = ["scatter", "scatter_argmax", "scatter_count", "scatter_logmeanexp", "scatter_logsumexp", "scatter_mean"]

#: RETURNN's modes: the backend's reductions and those built on them
MODES = SCATTER_MODES + ("mean", "logsumexp", "logmeanexp", "argmax")


def _default_fill(mode: str, dtype: str) -> float | int:
    """:return: RETURNN's fill value of ``mode``: 0 for a sum, the lowest (highest) value for a max (min)"""
    if mode == "sum":
        return 0
    sign = -1 if mode == "max" else 1
    return dtype_limit(dtype, sign) if dtype.startswith("int") else sign * math.inf


def scatter(
    source: Tensor, *, indices: Tensor, indices_dim: Dim | Sequence[Dim], mode: str = "sum",
    fill_value: float | int | None = None, out_dim: Dim | Sequence[Dim] | None = None, use_mask: bool | None = None,
) -> Tensor:  # fmt: skip
    """Scatter ``source`` into a new tensor: entry ``o`` of ``out_dim`` gets the reduction (``mode``) of the frames
    of ``source`` along ``indices_dim`` whose index is ``o``.

    :param source: ``[batch dims..., indices_dim(s)..., feature dims...]``
    :param indices: integer ``[batch dims..., indices_dim(s)...]``, values in ``[0, size of out_dim)``
    :param indices_dim: the dim(s) of ``indices`` (and ``source``) scattered over
    :param mode: ``"sum"``, ``"max"``, ``"min"``, ``"mean"``, ``"logsumexp"``, ``"logmeanexp"`` or ``"argmax"``
        (the last: :func:`scatter_argmax`, ``fill_value`` its ``invalid_idx``)
    :param fill_value: the value of entries nothing is scattered to; default 0 for ``"sum"``, ``-inf`` (``inf``) or
        the dtype's lowest (highest) value for ``"max"`` (``"min"``)
    :param out_dim: the target dim (default ``indices.sparse_dim``); several dims: ``indices`` index them merged,
        row-major
    :param use_mask: leave out the padding frames of ``indices_dim`` (default True; False: they are scattered too).
        With a mask, the padding frames of a dynamic ``out_dim`` are 0 (modes other than ``"sum"``).
    :return: ``[batch dims..., out_dim(s)..., feature dims...]``. Differentiable w.r.t. ``source``.
    Example: ``per_state = rf.scatter(scores, indices=states, indices_dim=hyp_dim, mode="max", out_dim=state_dim)``
    """
    func = "scatter"
    if mode not in MODES:
        raise ValueError(f"{func}: mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "argmax":
        return scatter_argmax(source, indices=indices, indices_dim=indices_dim, out_dim=out_dim,
                              invalid_idx=-1 if fill_value is None else fill_value)  # fmt: skip
    if mode in ("mean", "logsumexp", "logmeanexp"):
        reduce = {"mean": scatter_mean, "logsumexp": scatter_logsumexp, "logmeanexp": scatter_logmeanexp}[mode]
        return reduce(source, indices=indices, indices_dim=indices_dim, fill_value=fill_value, out_dim=out_dim)
    indices_dims, out_dims = _check(source, indices, indices_dim, out_dim, func)
    fill = _default_fill(mode, source.dtype) if fill_value is None else fill_value
    use_mask = True if use_mask is None else bool(use_mask)
    out = _scatter(source, indices, indices_dims, out_dims, mode, fill, use_mask)
    if use_mask and mode != "sum":
        for d in out_dims:
            if d.is_padded():
                out = masked_fill(out, sequence_mask(d, out), 0)
    return _finish(out, source)


def _finish(out: Tensor, source: Tensor) -> Tensor:
    out.feature_dim = source.feature_dim if source.feature_dim in out.dims else None
    out.sparse_dim = source.sparse_dim
    return out


def _check(source: Tensor, indices: Tensor, indices_dim: Any, out_dim: Any, func: str) -> tuple[list[Dim], list[Dim]]:
    """:return: ``indices_dim`` and ``out_dim`` as lists, after checking the arguments"""
    _validate.check_tensor(source, "source", func)
    _validate.check_tensor(indices, "indices", func)
    if not indices.dtype.startswith("int"):
        raise TypeError(f"{func}: indices must have an integer dtype, got {indices.dtype}")
    common_backend(source, indices)
    indices_dims = [indices_dim] if isinstance(indices_dim, Dim) else list(indices_dim)
    if not indices_dims or any(not isinstance(d, Dim) or d not in indices.dims for d in indices_dims):
        raise ValueError(f"{func}: indices_dim must be one or more dims of indices {list(indices.dims)}, "
                         f"got {indices_dim!r}")  # fmt: skip
    if out_dim is None:
        if indices.sparse_dim is None:
            raise ValueError(f"{func}: without out_dim, indices must have a sparse_dim (the target dim)")
        out_dim = indices.sparse_dim
    out_dims = [out_dim] if isinstance(out_dim, Dim) else list(out_dim)
    if not out_dims or any(not isinstance(d, Dim) for d in out_dims):
        raise TypeError(f"{func}: out_dim must be a Dim, a sequence of Dims or None, got {out_dim!r}")
    clash = [d for d in out_dims if d in indices.dims or d in source.dims]
    if clash:
        raise ValueError(f"{func}: out_dim {clash} must be a new dim, not one of source or indices")
    return indices_dims, out_dims


def _scatter(source: Tensor, indices: Tensor, indices_dims: list[Dim], out_dims: list[Dim], mode: str,
             fill: float | int, use_mask: bool) -> Tensor:  # fmt: skip
    """The reduction ``mode`` (sum, max, min) on the raw backend: every batch entry scatters into its own block of
    ``size + 1`` rows of one flat tensor; masked frames go to the extra row, which is dropped."""
    backend = source.backend
    batch = [d for d in indices.dims if d not in indices_dims]
    for d in batch + indices_dims:
        if d not in source.dims:
            source = expand_to(source, d, len(source.dims), dim_length(d, indices))
    feature = [d for d in source.dims if d not in batch and d not in indices_dims]
    lengths = [dim_length(d) for d in out_dims]
    size = _product(backend, lengths)
    if use_mask:
        valid = None
        for d in indices_dims:
            if d.is_padded():
                mask = sequence_mask(d, indices)
                valid = mask if valid is None else valid & mask
        if valid is not None:
            extra = size if isinstance(size, int) else Tensor(backend.cast(size, indices.dtype), (), backend=backend)
            indices = where(valid, indices, extra)
    raw_x = align(source, batch + indices_dims + feature)
    batch_lengths = [backend.axis_size(raw_x, i) for i in range(len(batch))]
    index_lengths = [backend.axis_size(raw_x, len(batch) + i) for i in range(len(indices_dims))]
    feature_lengths = [backend.axis_size(raw_x, len(batch) + len(indices_dims) + i) for i in range(len(feature))]
    n_batch, n_index = _product(backend, batch_lengths), _product(backend, index_lengths)
    rows = backend.binary("add", size, 1)
    raw_i = backend.reshape(backend.cast(align(indices, batch + indices_dims), "int64"), [n_batch, n_index])
    offsets = backend.binary("mul", backend.arange(n_batch, "int64", like=raw_i), rows)
    flat_i = backend.reshape(backend.binary("add", raw_i, backend.expand_dims(offsets, 1)), [-1])
    flat_x = backend.reshape(raw_x, [backend.binary("mul", n_batch, n_index)] + feature_lengths)
    raw = backend.scatter(flat_x, flat_i, backend.binary("mul", n_batch, rows), mode, fill)
    raw = backend.reshape(raw, batch_lengths + [rows] + feature_lengths)
    raw = backend.slice(raw, len(batch), 0, size, None)
    raw = backend.reshape(raw, batch_lengths + lengths + feature_lengths)
    return Tensor(raw, batch + out_dims + feature, backend=backend)


def _product(backend: Any, values: list[Any]) -> Any:
    """:return: the product of ints and raw scalar tensors (an int if all are ints, else an int64 raw scalar)"""
    out: Any = 1
    for v in values:
        v = v if isinstance(v, int) else backend.cast(v, "int64")
        out = out * v if isinstance(out, int) and isinstance(v, int) else backend.binary("mul", out, v)
    return out


def scatter_count(
    *, indices: Tensor, indices_dim: Dim | Sequence[Dim], out_dim: Dim | Sequence[Dim] | None = None,
    fill_value: int | None = None,
) -> Tensor:  # fmt: skip
    """:return: int32 ``[batch dims..., out_dim(s)...]``: how many valid frames scatter to each entry;
    ``fill_value`` (default 0) where none. Example: ``counts = rf.scatter_count(indices=ids, indices_dim=time_dim)``
    """
    func = "scatter_count"
    _validate.check_tensor(indices, "indices", func)
    ones = Tensor(indices.backend.full([indices.backend.axis_size(indices.raw_tensor, i)
                                        for i in range(len(indices.dims))], 1, "int32", like=indices.raw_tensor),
                  indices.dims, backend=indices.backend)  # fmt: skip
    counts = scatter(ones, indices=indices, indices_dim=indices_dim, out_dim=out_dim)
    if fill_value is not None and fill_value != 0:
        counts = _keep_order(where(counts > 0, counts, int(fill_value)), counts)
    return counts


def _keep_order(x: Tensor, like: Tensor) -> Tensor:
    return x.copy_transpose(like.dims) if set(x.dims) == set(like.dims) else x


def scatter_mean(
    source: Tensor, *, indices: Tensor, indices_dim: Dim | Sequence[Dim], fill_value: float | int | None = None,
    out_dim: Dim | Sequence[Dim] | None = None,
) -> Tensor:  # fmt: skip
    """:return: :func:`scatter` with the mean of the frames scattered to an entry (``fill_value``, default 0, where
    none). Example: ``centroid = rf.scatter_mean(x, indices=cluster, indices_dim=time_dim, out_dim=cluster_dim)``"""
    counts = scatter_count(indices=indices, indices_dim=indices_dim, fill_value=1, out_dim=out_dim)
    total = scatter(source, indices=indices, indices_dim=indices_dim, fill_value=fill_value, out_dim=out_dim)
    return _finish(_keep_order(total / counts, total), source)


def scatter_logsumexp(
    source: Tensor, *, indices: Tensor, indices_dim: Dim | Sequence[Dim], fill_value: float | None = None,
    out_dim: Dim | Sequence[Dim] | None = None,
) -> Tensor:  # fmt: skip
    """:return: :func:`scatter` with ``log(sum(exp(x)))`` of the frames scattered to an entry, computed stably
    (``-inf`` where none; ``fill_value`` is not supported, as in RETURNN). Differentiable w.r.t. ``source``."""
    from returnn_ls.gradient import stop_gradient

    func = "scatter_logsumexp"
    if fill_value is not None:
        raise ValueError(f"{func}: fill_value is not supported (as in RETURNN); entries without frames are -inf")
    indices_dims, out_dims = _check(source, indices, indices_dim, out_dim, func)
    top = _scatter(stop_gradient(source), indices, indices_dims, out_dims, "max", -math.inf, True)
    flat = _flat_out_dim(out_dims)
    safe = _keep_order(where(top == -math.inf, 0.0, top), top)  # a sum of nothing stays log(0) = -inf
    shifted = source - gather_along(_merge_out(safe, out_dims, flat), _clip_indices(indices, indices_dims, flat), flat)
    total = _scatter(_exp(shifted), indices, indices_dims, out_dims, "sum", 0, True)
    return _finish(_keep_order(_log(total) + safe, top), source)


def _flat_out_dim(out_dims: list[Dim]) -> Dim:
    """:return: the single out dim, or a new dim for several merged"""
    if len(out_dims) == 1:
        return out_dims[0]
    from returnn_ls.array_funcs import dim_of_size

    size = 1
    for d in out_dims:
        size = size * d.get_dim_value_tensor()
    return dim_of_size(size, "scatter")


def _merge_out(x: Tensor, out_dims: list[Dim], flat: Dim) -> Tensor:
    if len(out_dims) == 1:
        return x
    from returnn_ls.array_funcs import reshape_to

    return reshape_to(x, out_dims, [flat], [_product(x.backend, [dim_length(d) for d in out_dims])])


def _clip_indices(indices: Tensor, indices_dims: list[Dim], flat: Dim) -> Tensor:
    """:return: ``indices`` with the padding frames of ``indices_dims`` set to 0 (valid to gather with)"""
    out = indices
    for d in indices_dims:
        if d.is_padded():
            out = where(sequence_mask(d, indices), out, 0)
    out = _keep_order(out, indices)
    out.sparse_dim = flat
    return out


def _exp(x: Tensor) -> Tensor:
    from returnn_ls.ops import exp

    return exp(x)


def _log(x: Tensor) -> Tensor:
    from returnn_ls.ops import log

    return log(x)


def scatter_logmeanexp(
    source: Tensor, *, indices: Tensor, indices_dim: Dim | Sequence[Dim], fill_value: float | None = None,
    out_dim: Dim | Sequence[Dim] | None = None,
) -> Tensor:  # fmt: skip
    """:return: :func:`scatter_logsumexp` minus the log of the number of frames (``-inf`` where none)"""
    counts = scatter_count(indices=indices, indices_dim=indices_dim, fill_value=1, out_dim=out_dim)
    out = scatter_logsumexp(source, indices=indices, indices_dim=indices_dim, fill_value=fill_value, out_dim=out_dim)
    return _finish(_keep_order(out - _log(cast(counts, out.dtype)), out), source)


def scatter_argmax(
    source: Tensor, *, indices: Tensor, indices_dim: Dim, invalid_idx: int = -1, out_dim: Dim | None = None
) -> Tensor:
    """:return: for each entry of ``out_dim``, the position along ``indices_dim`` of the (first) maximum among the
    frames scattered to it, ``invalid_idx`` where none: ``[batch dims..., out_dim, feature dims...]`` of
    ``indices``' dtype, ``sparse_dim=indices_dim``. Example: ``best = rf.scatter_argmax(scores, indices=state,
    indices_dim=hyp_dim, out_dim=state_dim)``"""
    func = "scatter_argmax"
    indices_dims, out_dims = _check(source, indices, indices_dim, out_dim, func)
    if len(indices_dims) != 1 or len(out_dims) != 1:
        raise ValueError(f"{func}: indices_dim and out_dim must be one Dim each")
    (axis,), (target,) = indices_dims, out_dims
    top = _scatter(source, indices, indices_dims, out_dims, "max", _default_fill("max", source.dtype), True)
    safe = _clip_indices(indices, indices_dims, target)
    at_max = gather_along(top, safe, target) == source
    if axis.is_padded():
        at_max = at_max & sequence_mask(axis, indices)
    positions = cast(range_over_dim(axis, like=indices), indices.dtype)
    never = dtype_limit(indices.dtype, 1)
    candidates = where(at_max, positions, never)
    out = _scatter(candidates, indices, indices_dims, out_dims, "min", never, True)
    out = where(out == never, int(invalid_idx), out).copy_transpose(out.dims)
    out.sparse_dim, out.feature_dim = axis, None
    return out
