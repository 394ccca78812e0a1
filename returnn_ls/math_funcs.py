"""Elementwise and contracting maths, as in ``returnn.frontend``: ``cumsum``, ``clip_by_value``,
``squared_difference``, ``log_add_exp``, ``matmul`` (and its alias ``dot``); comparisons and logical operations:
:mod:`returnn_ls.logic_funcs`.

Operands broadcast by dim identity, as everywhere (:mod:`returnn_ls.ops`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from frontend_backends.common import result_dtype
from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.ops import (
    _result,
    align,
    axes_of,
    binary,
    broadcast_pair,
    cast,
    check_lengths,
    common_backend,
    constant,
    merge_dims,
    sequence_mask,
    unary,
    where,
)
from returnn_ls.tensor import Tensor, is_scalar

__all__ = ["clip_by_value", "cumsum", "dot", "log_add_exp", "masked_fill", "matmul", "squared_difference"]


def cumsum(source: Tensor, *, spatial_dim: Dim) -> Tensor:
    """:return: the inclusive cumulative sum along ``spatial_dim``, in ``source``'s dtype. Frames inside a sequence
    sum only frames of that sequence; the padding frames of a dynamic ``spatial_dim`` count as 0 (they repeat the
    sequence's total). Example: ``positions = rf.cumsum(rf.cast(mask, "int32"), spatial_dim=time_dim)``"""
    func = "cumsum"
    _validate.check_tensor(source, "source", func)
    axes_of(source, spatial_dim, func)
    if source.dtype == "bool":
        raise TypeError(f"{func}: source must be a number tensor, got dtype bool (cast it, e.g. to int32)")
    if spatial_dim.is_padded():
        source = masked_fill(source, sequence_mask(spatial_dim, source), 0)
    return source.copy_template(source.backend.cumsum(source.raw_tensor, source.dims.index(spatial_dim)))


def clip_by_value(
    x: Tensor, clip_value_min: Any = None, clip_value_max: Any = None, *, allow_broadcast_all_sources: bool = False
) -> Tensor:
    """:return: ``x`` clipped to ``[clip_value_min, clip_value_max]`` (numbers or Tensors, broadcast by dims; None:
    no bound), in ``x``'s dtype; the gradient passes where ``x`` is inside (bounds included).

    :param allow_broadcast_all_sources: allow a result with dims that no single operand has
    Example: ``y = rf.clip_by_value(x, -1.0, 1.0)``
    """
    func = "clip_by_value"
    _validate.check_tensor(x, "x", func)
    bounds = [v for v in (clip_value_min, clip_value_max) if v is not None]
    for name, v in (("clip_value_min", clip_value_min), ("clip_value_max", clip_value_max)):
        if v is not None and not isinstance(v, Tensor) and not is_scalar(v):
            raise TypeError(f"{func}: {name} must be a number, a Tensor or None, got {type(v).__name__}")
    if not bounds:
        return x
    backend = common_backend(x, *bounds)
    check_lengths(x, *bounds)
    dims = merge_dims(x, *bounds)
    if not allow_broadcast_all_sources and not any(len(v.dims) == len(dims) for v in (x, *bounds)
                                                   if isinstance(v, Tensor)):  # fmt: skip
        raise ValueError(f"{func}: no operand has all the dims {list(dims)}; pass allow_broadcast_all_sources=True")
    raws = [None if v is None else align(_as_dtype(v, x), dims) for v in (clip_value_min, clip_value_max)]
    out = Tensor(backend.clip(align(x, dims), *raws), dims, feature_dim=x.feature_dim, sparse_dim=x.sparse_dim,
                 backend=backend)  # fmt: skip
    return out


def _as_dtype(value: Any, like: Tensor) -> Tensor:
    """:return: ``value`` (a number or Tensor) as a Tensor of ``like``'s dtype, on its device"""
    if isinstance(value, Tensor):
        return value if value.dtype == like.dtype else cast(value, like.dtype)
    return constant(value, like=like)


def masked_fill(x: Tensor, mask: Tensor, value: Any) -> Tensor:
    """:return: ``x`` where ``mask``, else ``value`` (a number, in ``x``'s dtype); ``x``'s dims first, in its order,
    and its sparse and feature dim kept"""
    out = where(mask, x, constant(value, like=x))
    out = out.copy_transpose(list(x.dims) + [d for d in out.dims if d not in x.dims])
    out.sparse_dim, out.feature_dim = x.sparse_dim, x.feature_dim
    return out


def squared_difference(a: Any, b: Any) -> Tensor:
    """:return: ``(a - b) ** 2``, broadcast by dims. Example: ``mse = rf.reduce_mean(rf.squared_difference(y, t),
    axis=feat_dim)``"""
    return unary("square", binary("sub", a, b))


def log_add_exp(a: Any, b: Any) -> Tensor:
    """:return: ``log(exp(a) + exp(b))`` computed stably (``-inf`` where both are ``-inf``), broadcast by dims.
    Example: ``total = rf.log_add_exp(log_p_blank, log_p_label)``"""
    backend, dims, ra, rb = broadcast_pair(a, b, "log_add_exp")
    like = a if isinstance(a, Tensor) else b
    if like.dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(f"log_add_exp: needs float operands, got dtype {like.dtype}")
    ra, rb = (backend.convert(v, like.dtype, like=like.raw_tensor) if is_scalar(v) else v for v in (ra, rb))
    return _result(backend.log_add_exp(ra, rb), dims, backend, a, b)


def matmul(a: Tensor, b: Tensor, *, reduce: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """Batched matrix product: sum over the ``reduce`` dims of ``a * b``; the other dims of both are kept, those
    in both being batch dims. The result's dims: the common dims in ``a``'s order, then ``a``'s own, then ``b``'s own.

    :param use_mask: for a dynamic ``reduce`` dim, zero the padding frames of the operands first, so that they add
        nothing (not even a NaN)
    Example: ``att = rf.matmul(weights, values, reduce=key_time_dim)`` (``[B, H, Tq, Tk] x [B, H, Tk, D]``)
    """
    func = "matmul"
    _validate.check_tensor(a, "a", func)
    _validate.check_tensor(b, "b", func)
    reduce = [reduce] if isinstance(reduce, Dim) else list(reduce)
    for d in reduce:
        if not isinstance(d, Dim):
            raise TypeError(f"{func}: reduce must be a Dim or a sequence of Dims, got {d!r}")
        if d not in a.dims and d not in b.dims:
            raise ValueError(f"{func}: reduce dim {d} is in neither a {list(a.dims)} nor b {list(b.dims)}")
    backend = common_backend(a, b)
    check_lengths(a, b)
    dtype = result_dtype(a.dtype, b.dtype)
    a, b = (cast(v, dtype) if v.dtype != dtype else v for v in (a, b))
    if use_mask:
        a, b = _mask_reduce_dims(a, b, reduce)
    common = [d for d in a.dims if d in b.dims and d not in reduce]
    out_dims = common + [d for d in a.dims if d not in b.dims and d not in reduce]
    out_dims += [d for d in b.dims if d not in a.dims and d not in reduce]
    letters = {}
    for d in list(a.dims) + [d for d in b.dims if d not in a.dims]:
        letters[d] = string.ascii_lowercase[len(letters)] if len(letters) < 26 else None
    if None in letters.values():
        raise ValueError(f"{func}: at most 26 distinct dims, got {len(letters)}")
    equation = "{},{}->{}".format(*("".join(letters[d] for d in dims) for dims in (a.dims, b.dims, out_dims)))
    raw = backend.einsum(equation, a.raw_tensor, b.raw_tensor)
    feature = next((v.feature_dim for v in (a, b) if v.feature_dim in out_dims), None)
    return Tensor(raw, out_dims, feature_dim=feature, backend=backend)


def _mask_reduce_dims(a: Tensor, b: Tensor, reduce: list[Dim]) -> tuple[Tensor, Tensor]:
    """:return: ``a`` and ``b`` with the padding frames of the dynamic ``reduce`` dims zeroed in each operand that
    has all dims of the mask (in ``a`` if neither has), so that padding (even NaN) adds nothing"""
    for d in reduce:
        if not d.is_padded():
            continue
        mask = sequence_mask(d, a if d in a.dims else b)
        has = [all(m in v.dims for m in mask.dims) for v in (a, b)]
        if has[0] or not has[1]:
            a = masked_fill(a, mask, 0)
        if has[1]:
            b = masked_fill(b, mask, 0)
    return a, b


#: RETURNN's alias of :func:`matmul`.
dot = matmul


def _in_order(out: Tensor, dim_order: Sequence[Dim] | None, func: str) -> Tensor:
    """:return: ``out`` with the dims of ``dim_order`` it has first, in that order"""
    if dim_order is None:
        return out
    if isinstance(dim_order, Dim) or not all(isinstance(d, Dim) for d in dim_order):
        raise TypeError(f"{func}: dim_order must be a sequence of Dims, got {dim_order!r}")
    first = [d for d in dim_order if d in out.dims]
    return out.copy_transpose(first + [d for d in out.dims if d not in first])
