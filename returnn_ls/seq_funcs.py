"""Padding, shifting and reversing along a (possibly dynamic) dim, as in ``returnn.frontend``: ``pad``,
``shift_right``, ``shift_left``, ``reverse_sequence`` (``slice``: :mod:`returnn_ls.slice_funcs`).

Along a dynamic dim these work per sequence where RETURNN does: ``pad`` puts right padding after each sequence's end
(``handle_dynamic_dims=True``, RETURNN's default since behaviour version 21), ``reverse_sequence`` reverses each
sequence within its length. The new dims are RETURNN's: ``left + axis + right`` (Dim arithmetic) for ``pad``,
and so on.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from returnn_ls import _validate
from returnn_ls.array_funcs import dim_length, dim_of_size
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import gather, gather_along
from returnn_ls.math_funcs import clip_by_value
from returnn_ls.ops import axes_of, cast, constant, maximum, range_over_dim, where
from returnn_ls.tensor import Tensor, is_scalar

__all__ = ["cum_concat_step", "pad", "reverse_sequence", "shift_left", "shift_right"]

PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(
    source: Tensor, *, axes: Sequence[Dim], padding: Sequence[tuple[int | Dim, int | Dim]],
    out_dims: Sequence[Dim] | None = None, mode: str = "constant", value: Any = None,
    handle_dynamic_dims: bool | None = None,
) -> tuple[Tensor, list[Dim]]:  # fmt: skip
    """Pad ``source`` along ``axes`` with ``padding[i] = (left, right)`` frames (ints >= 0 or Dims).

    :param out_dims: the padded dims (default: ``left + axis + right``, Dim arithmetic)
    :param mode: ``"constant"`` (``value``), ``"reflect"`` (mirrored at the edge frames, which are not repeated),
        ``"replicate"`` (the edge frames repeated) or ``"circular"`` (wrapped around)
    :param value: for ``"constant"``: a number or bool (default 0), or a Tensor over dims of ``source``
    :param handle_dynamic_dims: default True: along a dynamic axis the padding follows each sequence (right padding
        right after its last frame; the other modes reflect, replicate or wrap each sequence within its length)
    :return: the padded tensor and its new dims (one per axis)
    Example: ``y, (padded_time,) = rf.pad(x, axes=[time_dim], padding=[(1, 0)], value=0.0)``
    """
    func = "pad"
    _validate.check_tensor(source, "source", func)
    if isinstance(axes, Dim) or not isinstance(axes, Sequence):
        raise TypeError(f"{func}: axes must be a sequence of Dims, got {axes!r}")
    axes = axes_of(source, list(axes), func)
    padding = _check_padding(padding, len(axes), func)
    if mode not in PAD_MODES:
        raise ValueError(f"{func}: mode must be one of {list(PAD_MODES)}, got {mode!r}")
    value = _check_value(source, axes, mode, value, func)
    handle = True if handle_dynamic_dims is None else bool(handle_dynamic_dims)
    for middle, (left, _) in zip(axes, padding):
        if handle and isinstance(left, Dim) and left.need_masking():
            raise ValueError(f"{func}: left padding {left} of {middle} is a dynamic dim (not supported, as in RETURNN)")
    if out_dims is None:
        out_dims = [_out_dim(middle, left, right, handle, mode) for middle, (left, right) in zip(axes, padding)]
    elif len(out_dims) != len(axes) or not all(isinstance(d, Dim) for d in out_dims):
        raise ValueError(f"{func}: out_dims must be {len(axes)} Dims (one per axis), got {out_dims!r}")
    if mode == "constant":
        out = _pad_constant(source, axes, padding, list(out_dims), value, handle)
    else:
        out = _pad_indexed(source, axes, padding, list(out_dims), mode, handle)
    return out, list(out_dims)


def _check_padding(padding: Any, count: int, func: str) -> list[tuple[int | Dim, int | Dim]]:
    if not isinstance(padding, Sequence) or len(padding) != count:
        raise ValueError(f"{func}: padding must hold one (left, right) pair per axis ({count}), got {padding!r}")
    for pair in padding:
        ok = isinstance(pair, Sequence) and len(pair) == 2
        if not ok or not all(isinstance(v, Dim) or (isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                     and v >= 0) for v in pair):  # fmt: skip
            raise ValueError(f"{func}: each padding pair must be (left, right), ints >= 0 or Dims, got {pair!r}")
    return [(int(a) if isinstance(a, numbers.Integral) else a, int(b) if isinstance(b, numbers.Integral) else b)
            for a, b in padding]  # fmt: skip


def _check_value(source: Tensor, axes: list[Dim], mode: str, value: Any, func: str) -> Any:
    """:return: the padding value: a Tensor, or a Python number in ``source``'s kind (bool, int or float)"""
    if mode != "constant":
        if value is not None:
            raise ValueError(f"{func}: value is only for mode='constant', got mode {mode!r}")
        return None
    if isinstance(value, Tensor):
        extra = [d for d in value.dims if d not in source.dims or d in axes]
        if extra:
            raise ValueError(f"{func}: value has dims {extra} that are not other dims of source {list(source.dims)}")
        return value if value.dtype == source.dtype else cast(value, source.dtype)
    value = 0 if value is None else value
    if not is_scalar(value):
        raise TypeError(f"{func}: value must be a number, a bool or a Tensor, got {type(value).__name__}")
    kind = bool if source.dtype == "bool" else int if source.dtype.startswith("int") else float
    return kind(value)


def _need_handling(middle: Dim, left: int | Dim, right: int | Dim, mode: str) -> bool:
    """:return: whether padding ``middle`` has to follow the sequences (RETURNN's condition)"""
    if not middle.need_masking() and (isinstance(left, int) or not left.need_masking()):
        return False
    return mode == "circular" or not (isinstance(right, int) and right == 0)


def _out_dim(middle: Dim, left: int | Dim, right: int | Dim, handle: bool, mode: str) -> Dim:
    if handle or not _need_handling(middle, left, right, mode):
        return left + middle + right
    return dim_of_size(_frames(left) + _frames(middle) + _frames(right), "pad")  # the padded length, no sizes


def _frames(v: int | Dim, like: Tensor | None = None) -> int | Tensor:
    """:return: the number of frames of ``v``: an int, or a scalar Tensor (a dynamic dim: its padded length)"""
    if isinstance(v, int):
        return v
    length = dim_length(v, like)
    return length if isinstance(length, int) else Tensor(length, ())


def _raw(v: int | Tensor) -> Any:
    return v.raw_tensor if isinstance(v, Tensor) else v


def _pad_constant(source: Tensor, axes: list[Dim], padding: list, out_dims: list[Dim], value: Any,
                  handle: bool) -> Tensor:  # fmt: skip
    backend = source.backend
    pads = [(0, 0)] * len(source.dims)
    for middle, (left, right) in zip(axes, padding):
        pads[source.dims.index(middle)] = (_raw(_frames(left)), _raw(_frames(right)))
    fill = value if not isinstance(value, Tensor) else False if source.dtype == "bool" else 0
    out = _replace(source, backend.pad(source.raw_tensor, pads, fill), axes, out_dims)
    keep = None
    for middle, out_dim, (left, right) in zip(axes, out_dims, padding):
        sequences = handle and _need_handling(middle, left, right, "constant")
        if not sequences and not isinstance(value, Tensor):
            continue
        positions = range_over_dim(out_dim, like=out)
        length = _length_or_sizes(middle, source, sequences)
        inside = positions < length + _frames(left)
        if isinstance(value, Tensor) and not (isinstance(left, int) and left == 0):
            inside = inside & (positions >= _frames(left))
        keep = inside if keep is None else keep & inside
    if keep is None:
        return out
    filled = where(keep, out, value if isinstance(value, Tensor) else constant(value, like=out))
    return _restore(filled, out)


def _length_or_sizes(dim: Dim, source: Tensor, sequences: bool) -> Tensor | int:
    """:return: the sizes of ``dim`` (int32, on ``source``'s device) if ``sequences``, else its length in
    ``source`` (an int, or a scalar Tensor inside a graph)"""
    if sequences and dim.dyn_size_ext is not None and dim.dimension is None:
        sizes = dim.dyn_size_ext
        return cast(sizes.copy_template(sizes.backend.to_device_of(sizes.raw_tensor, source.raw_tensor)), "int32")
    length = dim_length(dim, source)
    return length if isinstance(length, int) else Tensor(source.backend.cast(length, "int32"), ())


def _replace(source: Tensor, raw: Any, axes: Sequence[Dim], new: Sequence[Dim]) -> Tensor:
    """:return: a Tensor of ``raw`` with ``source``'s dims, ``axes`` replaced by ``new`` (the feature dim too)"""
    mapping = dict(zip(map(id, axes), new))
    out = source.copy_template(raw, [mapping.get(id(d), d) for d in source.dims])
    out.feature_dim = mapping.get(id(source.feature_dim), source.feature_dim)
    return out


def _restore(out: Tensor, like: Tensor) -> Tensor:
    """:return: ``out`` (from ``where``) with ``like``'s dim order (then any new dims), sparse and feature dim"""
    out = out.copy_transpose(list(like.dims) + [d for d in out.dims if d not in like.dims])
    out.sparse_dim, out.feature_dim = like.sparse_dim, like.feature_dim
    return out


def _pad_indexed(source: Tensor, axes: list[Dim], padding: list, out_dims: list[Dim], mode: str,
                 handle: bool) -> Tensor:  # fmt: skip
    """Non-constant padding: each padded axis is a gather at the reflected, replicated or wrapped position."""
    x = source
    for middle, out_dim, (left, right) in zip(axes, out_dims, padding):
        total = _frames(left) + _frames(middle, x) + _frames(right)
        positions = Tensor(x.backend.arange(_raw(total), "int32", like=x.raw_tensor), (out_dim,), backend=x.backend)
        n = _length_or_sizes(middle, x, handle and middle.is_padded())
        index = _source_index(positions - _frames(left), n, mode)
        x = _restore(gather_along(x, cast(index, "int32"), middle), _replace(x, x.raw_tensor, [middle], [out_dim]))
    return x


def _source_index(i: Tensor, n: Tensor | int, mode: str) -> Tensor:
    """:return: the source frame of output frame ``i`` (relative to the first source frame) of a sequence of ``n``"""
    if mode == "replicate":
        return clip_by_value(i, 0, maximum(n - 1, 0) if isinstance(n, Tensor) else max(n - 1, 0),
                             allow_broadcast_all_sources=True)  # fmt: skip
    if mode == "circular":
        return i % (maximum(n, 1) if isinstance(n, Tensor) else max(n, 1))
    period = maximum(n * 2 - 2, 1) if isinstance(n, Tensor) else max(2 * n - 2, 1)
    m = i % period
    return where(m < n, m, period - m)


def shift_right(source: Tensor, *, axis: Dim, pad_value: Any, amount: int = 1) -> Tensor:
    """:return: ``source`` shifted by ``amount`` frames to the right along ``axis`` (same dims): the first ``amount``
    frames are ``pad_value``. Example: ``prev_labels = rf.shift_right(labels, axis=label_dim, pad_value=bos_idx)``"""
    return _shift(source, axis, pad_value, amount, "shift_right")


def shift_left(source: Tensor, *, axis: Dim, pad_value: Any, amount: int = 1) -> Tensor:
    """:return: ``source`` shifted by ``amount`` frames to the left along ``axis`` (same dims): the last ``amount``
    frames of each sequence are ``pad_value``. Example: ``next_x = rf.shift_left(x, axis=time_dim, pad_value=0.0)``"""
    return _shift(source, axis, pad_value, amount, "shift_left")


def _shift(source: Tensor, axis: Dim, pad_value: Any, amount: int, func: str) -> Tensor:
    _validate.check_tensor(source, "source", func)
    axes_of(source, axis, func)
    if not isinstance(amount, numbers.Integral) or isinstance(amount, bool) or amount < 0:
        raise ValueError(f"{func}: amount must be an int >= 0, got {amount!r}")
    if amount == 0:
        return source
    pair = (amount, 0) if func == "shift_right" else (0, amount)
    padded, (padded_dim,) = pad(source, axes=[axis], padding=[pair], value=pad_value, handle_dynamic_dims=True)
    index = padded.dims.index(padded_dim)
    first = 0 if func == "shift_right" else amount
    length = dim_length(axis, source)
    raw = padded.backend.slice(padded.raw_tensor, index, first, first + length, None)
    return _replace(padded, raw, [padded_dim], [axis])


def reverse_sequence(tensor: Tensor, *, axis: Dim, handle_dynamic_dims: bool = True) -> Tensor:
    """:return: ``tensor`` reversed along ``axis`` (same dims). Along a dynamic axis with ``handle_dynamic_dims``,
    each sequence is reversed within its length ("a b c <pad>" becomes "c b a <pad>"); else the padded axis is
    flipped as a whole. Example: ``backward_in = rf.reverse_sequence(x, axis=time_dim)``"""
    func = "reverse_sequence"
    _validate.check_tensor(tensor, "tensor", func)
    axes_of(tensor, axis, func)
    if not handle_dynamic_dims or not axis.need_masking():
        return tensor.copy_template(tensor.backend.flip(tensor.raw_tensor, tensor.dims.index(axis)))
    if axis.dyn_size_ext is None:
        raise ValueError(f"{func}: the sizes of {axis} are not known yet (set its dyn_size_ext)")
    indices = _length_or_sizes(axis, tensor, True) - 1 - range_over_dim(axis, like=tensor)
    return gather(tensor, indices=indices, axis=axis, clip_to_valid=True)


def cum_concat_step(source: Tensor, *, prev_accum: Tensor, axis: Dim, out_spatial_dim: Dim | None = None
                    ) -> tuple[Tensor, Dim]:  # fmt: skip
    """One step of accumulating frames (RETURNN's ``CumConcatLayer``, e.g. the keys of step-wise self-attention):
    ``prev_accum`` along ``axis`` with ``source`` appended as a new last frame (per sequence for a dynamic axis).

    :param source: the new frame: ``prev_accum``'s dims without ``axis``
    :param out_spatial_dim: the grown dim (default: ``axis + 1``)
    :return: the accumulated frames and ``out_spatial_dim``
    """
    out_spatial_dim = out_spatial_dim if out_spatial_dim is not None else axis + 1
    out, (out_spatial_dim,) = pad(prev_accum, axes=[axis], padding=[(0, 1)], out_dims=[out_spatial_dim],
                                  value=source)  # fmt: skip
    return out, out_spatial_dim
