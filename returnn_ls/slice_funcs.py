"""``slice``, as in ``returnn.frontend``: ``x[start:end:step]`` or ``x[start:start + size]`` along a dim, with RETURNN's
new dims (``axis.sub_left(start)``, ``Dim(end - start)``, ...); a Tensor ``start`` (e.g. one per sequence) slices
each entry of its dims on its own, clipped into the sequences."""

from __future__ import annotations

import numbers
from typing import Any

from returnn_ls import _validate
from returnn_ls.array_funcs import dim_length, dim_of_size
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import gather
from returnn_ls.ops import axes_of, range_over_dim
from returnn_ls.seq_funcs import _length_or_sizes, _replace
from returnn_ls.tensor import Tensor

__all__ = ["slice"]


def slice(  # noqa: A001
    source: Tensor, *, axis: Dim, start: int | Tensor | None = None, end: int | Tensor | None = None,
    step: int | None = None, size: int | Tensor | Dim | None = None, out_dim: Dim | None = None,
) -> tuple[Tensor, Dim]:  # fmt: skip
    """``source[start:end:step]`` along ``axis``, or ``source[start:start + size]``.

    :param start: an int (negative: from the end of the padded axis, as RETURNN) or an integer Tensor (then per
        entry of its dims, clipped into each sequence)
    :param end: an int or an integer Tensor
    :param step: an int > 0
    :param size: the length of the slice: an int, an integer Tensor or a Dim
    :param out_dim: the new dim (default as RETURNN: ``size`` itself, ``axis.sub_left(start)``, ``Dim(end -
        start)``, ...; ``ceildiv_right(step)`` for a step)
    :return: the slice and its dim
    Example: ``y, rest_dim = rf.slice(x, axis=time_dim, start=1)``
    """
    func = "slice"
    _validate.check_tensor(source, "source", func)
    axes_of(source, axis, func)
    _check_slice_args(start, end, step, size, out_dim, func)
    start, end, step, size = (int(v) if isinstance(v, numbers.Integral) else v for v in (start, end, step, size))
    if (start is None or (isinstance(start, int) and start == 0)) and end is None and step is None and size is None:
        return (source, axis) if out_dim is None else (_replace(source, source.raw_tensor, [axis], [out_dim]), out_dim)
    if out_dim is None:
        out_dim = _slice_out_dim(axis, start, end, step, size, func)
    if any(isinstance(v, Tensor) for v in (start, end, size)):
        first = 0 if start is None else start
        offsets = range_over_dim(out_dim, like=first if isinstance(first, Tensor) else source) * (step or 1)
        return gather(source, indices=offsets + first, axis=axis, clip_to_valid=True), out_dim
    index, length = source.dims.index(axis), dim_length(axis, source)
    first = 0 if start is None else start + length if start < 0 and isinstance(length, int) else start
    stop = end if size is None else first + (size if isinstance(size, int) else dim_length(size))
    raw = source.backend.slice(source.raw_tensor, index, first, stop, step)
    got = source.backend.axis_size(raw, index)
    if out_dim.dimension is not None and isinstance(got, int) and got != out_dim.dimension:
        raise ValueError(f"{func}: the slice has {got} frames of {axis}, but out_dim {out_dim} has {out_dim.dimension}")
    return _replace(source, raw, [axis], [out_dim]), out_dim


def _check_slice_args(start: Any, end: Any, step: Any, size: Any, out_dim: Any, func: str) -> None:
    for name, v, allowed in (("start", start, (Tensor,)), ("end", end, (Tensor,)), ("size", size, (Tensor, Dim))):
        if v is not None and not isinstance(v, allowed) and not (isinstance(v, numbers.Integral)
                                                                 and not isinstance(v, bool)):  # fmt: skip
            raise TypeError(f"{func}: {name} must be an int, {' or '.join(t.__name__ for t in allowed)} or None, "
                            f"got {type(v).__name__}")  # fmt: skip
        if isinstance(v, Tensor) and not v.dtype.startswith("int"):
            raise TypeError(f"{func}: {name} must be an integer Tensor, got dtype {v.dtype}")
    if step is not None and (not isinstance(step, numbers.Integral) or isinstance(step, bool) or step <= 0):
        raise ValueError(f"{func}: step must be an int > 0 or None, got {step!r} (reverse with rf.reverse_sequence)")
    if size is not None and (end is not None or step not in (None, 1)):
        raise ValueError(f"{func}: size cannot be combined with end or a step other than 1")
    if isinstance(size, numbers.Integral) and size < 0:
        raise ValueError(f"{func}: size must be >= 0, got {size}")
    if out_dim is not None and not isinstance(out_dim, Dim):
        raise TypeError(f"{func}: out_dim must be a Dim or None, got {type(out_dim).__name__}")


def _slice_out_dim(axis: Dim, start: Any, end: Any, step: Any, size: Any, func: str) -> Dim:
    """:return: RETURNN's dim of a slice"""
    if size is not None:
        return size if isinstance(size, Dim) else dim_of_size(size, "slice")
    start = 0 if start is None else start
    if isinstance(start, Tensor):
        total = _length_or_sizes(axis, start, True) if end is None else end
        out = dim_of_size(total - start, "slice")
    elif start >= 0 and end is None:
        out = axis.sub_left(start)
    elif start >= 0 and isinstance(end, int) and end < 0:
        out = axis.sub_left(start).sub_right(-end)
    elif isinstance(end, Tensor) or (start >= 0 and end >= start) or (start < 0 and (end is None or end < 0)):
        out = dim_of_size((-start if end is None else end - start), "slice")
    else:
        raise ValueError(f"{func}: cannot slice from start {start} to end {end}")
    return out if step in (None, 1) else out.ceildiv_right(step)
