"""Helpers of the attention modules: relabel, split and merge dims, trigonometry, module copies. Not public."""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

from returnn_ls.array_funcs import reshape
from returnn_ls.dim import Dim
from returnn_ls.ops import unary
from returnn_ls.tensor import Tensor


def replace_dim(x: Tensor, in_dim: Dim, out_dim: Dim) -> Tensor:
    """:return: ``x`` with the axis ``in_dim`` named ``out_dim`` (same data; ``out_dim`` has the same length)"""
    dims = [out_dim if d is in_dim else d for d in x.dims]
    out = x.copy_template(x.raw_tensor, dims)
    if x.feature_dim is in_dim:
        out.feature_dim = out_dim
    return out


def kv_copy(dim: Dim, name: str) -> Dim:
    """:return: a new dim with the sizes of ``dim`` (its static size, or its current sizes)"""
    if dim.dimension is not None:
        return Dim(dim.dimension, name=name)
    return dim.copy(same_as_self=False, description=name)


def split_dims(x: Tensor, axis: Dim, dims: Sequence[Dim]) -> Tensor:
    """:return: ``x`` with the static ``axis`` split (row-major) into ``dims``"""
    return reshape(x, [axis], list(dims))


def merge_dims(x: Tensor, dims: Sequence[Dim], out_dim: Dim) -> Tensor:
    """:return: ``x`` with the static ``dims`` merged (row-major) into ``out_dim``, its feature dim"""
    out = reshape(x, list(dims), [out_dim])
    out.feature_dim = out_dim
    return out


def split(x: Tensor, axis: Dim, out_dims: Sequence[Dim]) -> tuple[Tensor, ...]:
    """:return: consecutive parts of the static ``axis``, one per ``out_dims`` (their sizes add up to its size)"""
    index = x.dims.index(axis)
    parts, start = [], 0
    for dim in out_dims:
        raw = x.backend.slice(x.raw_tensor, index, start, start + dim.dimension, None)
        part = x.copy_template(raw, [dim if d is axis else d for d in x.dims])
        part.feature_dim = dim if x.feature_dim is axis else x.feature_dim
        parts.append(part)
        start += dim.dimension
    return tuple(parts)


def sizes_on(dim: Dim, like: Tensor) -> int | Tensor:
    """:return: the static size of ``dim``, or its sizes moved to the device of ``like``"""
    if dim.dimension is not None:
        return dim.dimension
    return to_device_of(dim.get_size_tensor(), like)


def to_device_of(x: Tensor, like: Tensor) -> Tensor:
    """:return: ``x`` on the device of ``like`` (itself if it is there)"""
    return x.copy_template(x.backend.to_device_of(x.raw_tensor, like.raw_tensor))


def sin(x: Tensor) -> Tensor:
    """:return: elementwise sine"""
    return unary("sin", x)


def copy_module(module: Any) -> Any:
    """:return: a deep copy of ``module`` (new parameters, same values) that shares its dims and backends

    Dims are matched by identity, so a copied layer must keep naming the model's dims (RETURNN's ``Dim`` copies
    itself as itself). Framework objects are copied by the framework.
    """
    memo: dict[int, Any] = {}
    seen: set[int] = set()

    def collect(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Dim):
            memo[id(obj)] = obj
        elif isinstance(obj, Tensor):
            memo[id(obj.backend)] = obj.backend
            for d in obj.dims:
                collect(d)
        elif isinstance(obj, (list, tuple, set)):
            for item in obj:
                collect(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                collect(item)
        elif isinstance(obj, functools.partial):
            collect(obj.args)
            collect(obj.keywords)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            for item in vars(obj).values():
                collect(item)

    collect(module)
    return copy.deepcopy(module, memo)
