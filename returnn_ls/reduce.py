"""Reductions over one or several dims; padding frames of dynamic dims are masked out by default."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from returnn_ls.dim import Dim
from returnn_ls.ops import axes_of, cast, log, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = [
    "num_entries", "reduce", "reduce_all", "reduce_any", "reduce_logmeanexp", "reduce_logsumexp", "reduce_max",
    "reduce_mean", "reduce_min", "reduce_sum",
]  # fmt: skip

_NEUTRAL = {"sum": 0.0, "mean": 0.0, "max": float("-inf"), "min": float("inf"), "logsumexp": float("-inf")}


def reduce(x: Tensor, *, mode: str, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """Reduce over ``axis`` (a Dim or several). Padding frames of dynamic dims are ignored when ``use_mask``.

    :param mode: ``"sum"``, ``"mean"``, ``"max"``, ``"min"``, ``"logsumexp"``, ``"any"`` or ``"all"``
    """
    axes = axes_of(x, axis, f"reduce_{mode}")
    dynamic = [a for a in axes if a.is_padded()] if use_mask else []
    for a in dynamic:
        neutral = _NEUTRAL.get(mode, mode == "all")
        if x.dtype.startswith("int") and mode in ("sum", "max", "min"):  # keep the dtype (a float would promote)
            neutral = {"sum": 0, "max": int(np.iinfo(x.dtype).min), "min": int(np.iinfo(x.dtype).max)}[mode]
        x = where(sequence_mask(a, x), x, neutral)
    raw_mode = "sum" if (mode == "mean" and dynamic) else mode
    raw = x.backend.reduce(raw_mode, x.raw_tensor, [x.dims.index(a) for a in axes])
    out_dims = tuple(d for d in x.dims if d not in axes)
    out = Tensor(raw, out_dims, feature_dim=x.feature_dim if x.feature_dim in out_dims else None, backend=x.backend)
    if raw_mode != mode:
        out = out / count_valid(x, axes, dynamic, out.dtype)
    return out


def count_valid(x: Tensor, axes: list[Dim], dynamic: list[Dim], dtype: str) -> Tensor:
    """:return: the number of non-padding entries of ``x`` over ``axes`` (``dynamic``: those of them that are
    padded, at least one), over the remaining dims"""
    mask = sequence_mask(dynamic[0], x)
    for a in dynamic[1:]:
        mask = mask & sequence_mask(a, x)
    count = reduce_sum(cast(mask, dtype), axis=[a for a in axes if a in mask.dims], use_mask=False)
    for a in axes:
        if a not in mask.dims:  # a static or unpadded dim: all of its entries count
            size = x.backend.axis_size(x.raw_tensor, x.dims.index(a))
            count = count * (float(size) if isinstance(size, int) else Tensor(x.backend.cast(size, dtype), ()))
    return count


def reduce_sum(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: sum over ``axis``"""
    return reduce(x, mode="sum", axis=axis, use_mask=use_mask)


def reduce_mean(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: mean over ``axis`` (over valid frames only for dynamic dims)"""
    return reduce(x, mode="mean", axis=axis, use_mask=use_mask)


def reduce_max(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: maximum over ``axis``"""
    return reduce(x, mode="max", axis=axis, use_mask=use_mask)


def reduce_min(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: minimum over ``axis``"""
    return reduce(x, mode="min", axis=axis, use_mask=use_mask)


def reduce_logsumexp(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: ``log(sum(exp(x)))`` over ``axis``, computed stably"""
    return reduce(x, mode="logsumexp", axis=axis, use_mask=use_mask)


def reduce_logmeanexp(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: ``log(mean(exp(x)))`` over ``axis`` (over valid frames only for dynamic dims), computed stably"""
    out = reduce_logsumexp(x, axis=axis, use_mask=use_mask)
    count = num_entries(x, axes_of(x, axis, "reduce_logmeanexp"), use_mask=use_mask, dtype=out.dtype)
    return out - (float(np.log(count)) if isinstance(count, float) else log(count))


def num_entries(x: Tensor, axes: list[Dim], *, use_mask: bool, dtype: str) -> float | Tensor:
    """:return: the number of entries of ``x`` over ``axes``, over the remaining dims (with ``use_mask``: the
    padding of dynamic dims left out): a float where it is known on the host, else a Tensor of ``dtype``"""
    dynamic = [a for a in axes if a.is_padded()] if use_mask else []
    if dynamic:
        return count_valid(x, axes, dynamic, dtype)
    count: float | Tensor = 1.0
    for a in axes:
        size = x.backend.axis_size(x.raw_tensor, x.dims.index(a))
        count = count * (float(size) if isinstance(size, int) else Tensor(x.backend.cast(size, dtype), ()))
    return count


def reduce_any(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: whether any entry of the bool tensor ``x`` over ``axis`` is true (padding counts as false)"""
    return reduce(x, mode="any", axis=axis, use_mask=use_mask)


def reduce_all(x: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: whether all entries of the bool tensor ``x`` over ``axis`` are true (padding counts as true)"""
    return reduce(x, mode="all", axis=axis, use_mask=use_mask)
