"""Dim-aware operations: every other module builds on these.

The one mechanism here is :func:`align`: it transposes a tensor into a target dim order and inserts size-1
axes for dims it lacks, so that any raw elementwise operation broadcasts correctly by dim identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from frontend_backends import Backend
from frontend_backends.common import FLOAT_DTYPES, result_dtype
from returnn_ls import _backend
from returnn_ls.dim import Dim
from returnn_ls.tensor import Tensor, is_scalar

__all__ = [
    "abs", "cast", "constant", "exp", "gather", "log", "log_softmax", "maximum", "minimum", "range_over_dim",
    "relu", "sequence_mask", "sigmoid", "softmax", "tanh", "valid_frames", "where",
]  # fmt: skip

_COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")


def common_backend(*values: Any) -> Backend:
    """:return: the backend shared by all Tensors among ``values``; mixing backends is a TypeError"""
    backends = {v.backend.name: v.backend for v in values if isinstance(v, Tensor)}
    if len(backends) > 1:
        raise TypeError(f"cannot mix tensors of different backends in one operation: {sorted(backends)}")
    return next(iter(backends.values())) if backends else _backend.selected_backend()


def merge_dims(*values: Any) -> tuple[Dim, ...]:
    """:return: the dims of the Tensors among ``values``, in order of first appearance"""
    dims: list[Dim] = []
    for v in values:
        if isinstance(v, Tensor):
            dims.extend(d for d in v.dims if d not in dims)
    return tuple(dims)


def align(x: Tensor, dims: Sequence[Dim]) -> Any:
    """:return: ``x``'s raw tensor with axes in the order of ``dims`` and a size-1 axis for each missing dim"""
    missing = [d for d in x.dims if d not in dims]
    if missing:
        raise ValueError(f"cannot align {x} to dims {list(dims)}: it has extra dims {missing}")
    perm = [x.dims.index(d) for d in dims if d in x.dims]
    raw = x.raw_tensor
    if perm != sorted(perm):
        raw = x.backend.transpose(raw, perm)
    for i, d in enumerate(dims):
        if d not in x.dims:
            raw = x.backend.expand_dims(raw, i)
    return raw


def _promote(values: Sequence[Any]) -> str | None:
    """:return: the dtype all non-bool Tensor operands are cast to (:func:`~frontend_backends.common.result_dtype`;
    a Python float counts as ``float32``, a Python int takes the Tensors' dtype), or None if they already agree"""
    dtypes = [v.dtype for v in values if isinstance(v, Tensor) and v.dtype != "bool"]
    if any(isinstance(v, float) for v in values) and not any(d in FLOAT_DTYPES for d in dtypes):
        dtypes.append("float32")
    if not dtypes:
        return None
    target = result_dtype(*dtypes)
    return None if all(d == target for d in dtypes) else target


def check_lengths(*values: Any) -> None:
    """Raise a ValueError if one dim has different known lengths in two operands.

    A dynamic dim's padded length is the data's, so a mask of length ``max(sizes)`` and data padded further
    disagree: positional broadcasting would silently stretch the shorter one.
    """
    seen: dict[int, tuple[int, Tensor]] = {}
    for v in values:
        if not isinstance(v, Tensor):
            continue
        for dim, size in zip(v.dims, v.backend.shape(v.raw_tensor)):
            if size is None:
                continue
            first = seen.setdefault(id(dim), (size, v))
            if first[0] != size:
                raise ValueError(
                    f"{dim} has length {first[0]} in {first[1]} but {size} in {v}; for the mask of a dynamic dim "
                    "use rf.sequence_mask(dim, like=data), which takes the data's padded length"
                )


def _prepare(values: Sequence[Any], dims: tuple[Dim, ...]) -> list[Any]:
    """Align Tensor operands to ``dims`` and cast them to a common dtype; Python scalars pass through."""
    target = _promote(values)
    out = []
    for v in values:
        if isinstance(v, Tensor):
            if target is not None and v.dtype != target and v.dtype != "bool":
                v = cast(v, target)
            out.append(align(v, dims))
        elif is_scalar(v):
            out.append(v)
        else:
            raise TypeError(f"expected a Tensor or a number, got {type(v).__name__}")
    return out


def _result(raw: Any, dims: tuple[Dim, ...], backend: Backend, *sources: Any) -> Tensor:
    feature = next((v.feature_dim for v in sources if isinstance(v, Tensor) and v.feature_dim in dims), None)
    return Tensor(raw, dims, feature_dim=feature, backend=backend)


def broadcast_pair(a: Any, b: Any, func: str) -> tuple[Backend, tuple[Dim, ...], Any, Any]:
    """Align two operands (Tensors, or one a number) to their merged dims and common dtype.

    :return: ``(backend, dims, raw a, raw b)``; a number stays a number
    :raise TypeError: naming ``func`` if neither is a Tensor
    """
    backend = common_backend(a, b)
    check_lengths(a, b)
    dims = merge_dims(a, b)
    ra, rb = _prepare([a, b], dims)
    if is_scalar(ra) and is_scalar(rb):
        raise TypeError(f"{func}: at least one operand must be a Tensor")
    return backend, dims, ra, rb


def binary(op: str, a: Any, b: Any) -> Tensor:
    """Elementwise ``op`` (see ``frontend_backends.base.BINARY_OPS``) of two Tensors or a Tensor and a number."""
    backend, dims, ra, rb = broadcast_pair(a, b, "binary")
    return _result(backend.binary(op, ra, rb), dims, backend, a, b)


def maximum(a: Any, b: Any) -> Tensor:
    """:return: elementwise maximum, broadcast by dims"""
    return binary("maximum", a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """:return: elementwise minimum, broadcast by dims"""
    return binary("minimum", a, b)


def unary(op: str, x: Tensor) -> Tensor:
    """Elementwise ``op`` (see ``frontend_backends.base.UNARY_OPS``); keeps dims, feature and sparse dim."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    return x.copy_template(x.backend.unary(op, x.raw_tensor))


def exp(x: Tensor) -> Tensor:
    """:return: ``e**x``"""
    return unary("exp", x)


def log(x: Tensor) -> Tensor:
    """:return: natural logarithm"""
    return unary("log", x)


def abs(x: Tensor) -> Tensor:  # noqa: A001
    """:return: ``|x|``"""
    return unary("abs", x)


def relu(x: Tensor) -> Tensor:
    """:return: ``max(x, 0)``"""
    return unary("relu", x)


def tanh(x: Tensor) -> Tensor:
    """:return: hyperbolic tangent"""
    return unary("tanh", x)


def sigmoid(x: Tensor) -> Tensor:
    """:return: logistic sigmoid"""
    return unary("sigmoid", x)


def cast(x: Tensor, dtype: str) -> Tensor:
    """:return: ``x`` converted to ``dtype`` (sparse dim kept only for integer dtypes)"""
    out = x.copy_template(x.backend.cast(x.raw_tensor, dtype))
    if not dtype.startswith("int"):
        out.sparse_dim = None
    return out


def constant(value: float | int | bool, *, like: Tensor, dtype: str | None = None) -> Tensor:
    """:return: a scalar Tensor (no dims) on ``like``'s backend and device, with ``dtype`` (default ``like.dtype``)"""
    return Tensor(like.backend.convert(value, dtype or like.dtype, like=like.raw_tensor), (), backend=like.backend)


def where(cond: Tensor, true_value: Any, false_value: Any) -> Tensor:
    """:return: ``true_value`` where ``cond`` else ``false_value``, broadcast by dims"""
    backend = common_backend(cond, true_value, false_value)
    check_lengths(cond, true_value, false_value)
    dims = merge_dims(cond, true_value, false_value)
    rc = align(cond, dims)
    rt, rf_ = _prepare([true_value, false_value], dims)
    if is_scalar(rt) and is_scalar(rf_):
        rt = backend.convert(rt, "float32" if isinstance(rt, float) else None, like=rc)
    return _result(backend.where(rc, rt, rf_), dims, backend, true_value, false_value)


def axes_of(x: Tensor, axis: Dim | Sequence[Dim], func: str) -> list[Dim]:
    axes = [axis] if isinstance(axis, Dim) else list(axis)
    for a in axes:
        if not isinstance(a, Dim):
            raise TypeError(f"{func}: axis must be a Dim or a sequence of Dims, got {type(a).__name__}")
        if a not in x.dims:
            raise ValueError(f"{func}: axis {a} is not one of the tensor's dims {list(x.dims)}")
    return axes


def range_over_dim(dim: Dim, *, like: Tensor | None = None, dtype: str | None = None,
                   device: str | None = None) -> Tensor:  # fmt: skip
    """:return: ``[0, 1, ..., size-1]`` over ``[dim]``, with ``sparse_dim=dim`` for an integer ``dtype``.

    :param like: the result goes to its device; if it has ``dim``, its axis length is used (for a dynamic dim,
        else its capacity if declared, else the max size)
    :param dtype: default ``"int32"``
    :param device: move the result there (e.g. ``x.device``)
    """
    if device is not None:
        out = range_over_dim(dim, like=like, dtype=dtype)
        return out.copy_template(out.backend.to_device(out.raw_tensor, device))
    dtype = dtype or "int32"
    device = like.raw_tensor if like is not None else None
    if like is not None and dim in like.dims:
        backend = like.backend
        n = backend.axis_size(like.raw_tensor, like.dims.index(dim))
    elif dim.dimension is not None or dim.capacity is not None:
        backend = like.backend if like is not None else _backend.selected_backend()
        n = dim.dimension if dim.dimension is not None else dim.capacity
    elif dim.dyn_size_ext is not None:
        sizes = dim.dyn_size_ext
        backend, n = sizes.backend, sizes.backend.reduce("max", sizes.raw_tensor, range(len(sizes.dims)))
        device = device if device is not None else sizes.raw_tensor
    else:
        raise ValueError(f"range_over_dim: the sizes of {dim} are not known (pass like=, a tensor that has {dim})")
    sparse_dim = dim if dtype.startswith("int") else None
    return Tensor(backend.arange(n, dtype, like=device), (dim,), sparse_dim=sparse_dim, backend=backend)


def sequence_mask(dim: Dim | Sequence[Dim], like: Tensor | None = None, *, device: str | None = None) -> Tensor:
    """:return: bool Tensor, True inside each sequence: dims ``dyn_size_ext.dims + [dim]`` (``[dim]`` if static).
    Several dims (RETURNN's ``rf.sequence_mask(dims)``): True inside the sequences of all of them, over the dims
    their sizes vary along and the padded ones (a scalar True if none is padded).

    :param like: a tensor that has ``dim``; its axis length sets the mask's length
    :param device: move the mask there (e.g. ``x.device``)
    """
    if not isinstance(dim, Dim):
        masks = [sequence_mask(d, like) for d in dim if d.is_padded()]
        out = masks[0] if masks else Tensor(_backend.selected_backend().convert(True, "bool"), ())
        for m in masks[1:]:
            out = out & m
        return out if device is None else out.copy_template(out.backend.to_device(out.raw_tensor, device))
    if device is not None:
        out = sequence_mask(dim, like)
        return out.copy_template(out.backend.to_device(out.raw_tensor, device))
    indices = range_over_dim(dim, like=like)
    if not dim.is_padded():
        return indices >= 0
    sizes = dim.dyn_size_ext
    if sizes.backend is not indices.backend:
        raise TypeError(f"the sizes of {dim} are on {sizes.backend.name}, the data on {indices.backend.name}")
    sizes = sizes.copy_template(sizes.backend.to_device_of(sizes.raw_tensor, indices.raw_tensor))
    return sizes > cast(indices, sizes.dtype)


def valid_frames(x: Tensor) -> Tensor | None:
    """:return: bool Tensor, True on frames inside every padded dim of ``x``; None if ``x`` has none"""
    mask = None
    for dim in x.dims:
        if dim.is_padded():
            dim_mask = sequence_mask(dim, x)
            mask = dim_mask if mask is None else mask & dim_mask
    return mask


def _normalize(op: str, x: Tensor, axis: Dim, use_mask: bool) -> Tensor:
    """Apply the backend's ``log_softmax`` or ``softmax`` over ``axis``, masking padding of a dynamic axis."""
    axes_of(x, axis, op)
    masked = use_mask and axis.is_padded()
    if masked:
        mask = sequence_mask(axis, x)
        x = where(mask, x, float("-inf"))
    out = x.copy_template(getattr(x.backend, op)(x.raw_tensor, x.dims.index(axis)))
    if masked:  # a sequence of length 0 is all -inf: NaN from the backend, the padding value here
        fixed = where(mask, out, 0.0 if op == "softmax" else float("-inf")).copy_transpose(out.dims)
        out = out.copy_template(fixed.raw_tensor)
    out.feature_dim = x.feature_dim or axis
    if op == "log_softmax":
        out.log_softmax_of = (x, axis)
    return out


def log_softmax(x: Tensor, *, axis: Dim, use_mask: bool = True) -> Tensor:
    """:return: ``x - logsumexp(x, axis)``; padding of a dynamic ``axis`` gets ``-inf``"""
    return _normalize("log_softmax", x, axis, use_mask)


def softmax(x: Tensor, *, axis: Dim, use_mask: bool = True) -> Tensor:
    """:return: ``exp(log_softmax(x, axis))``; padding of a dynamic ``axis`` gets probability 0"""
    return _normalize("softmax", x, axis, use_mask)


def gather(x: Tensor, *, indices: Tensor, axis: Dim) -> Tensor:
    """:return: ``x`` at position ``indices`` along ``axis``; ``indices`` has the dims of ``x`` without ``axis``"""
    axes_of(x, axis, "gather")
    common_backend(x, indices)
    others = tuple(d for d in x.dims if d is not axis)
    if set(map(id, indices.dims)) != set(map(id, others)):
        raise ValueError(f"gather: indices dims {list(indices.dims)} must be the dims of x without {axis}: {others}")
    raw = x.backend.gather_last(align(x, others + (axis,)), align(indices, others))
    return Tensor(raw, others, backend=x.backend)
