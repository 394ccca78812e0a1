"""Helpers of the layers: argument checks, parameter dims, dim sizes. Nothing here is public."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from frontend_backends import Backend
from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.run_ctx import get_run_ctx
from returnn_ls.tensor import Tensor


def check_static_dim(dim: Any, name: str, func: str) -> Dim:
    """:return: ``dim`` if it is a static :class:`Dim` of size >= 1, else raise"""
    if not isinstance(dim, Dim):
        raise TypeError(f"{func}: {name} must be a returnn_ls.Dim, got {type(dim).__name__}")
    if dim.dimension is None or dim.dimension < 1:
        raise ValueError(f"{func}: {name} must be a static Dim of size >= 1, got {dim}")
    return dim


def check_input(source: Any, func: str, *dims: tuple[str, Dim | None]) -> Tensor:
    """:return: ``source`` if it is a float Tensor that has each of ``dims`` (``(argument name, dim)``), else raise"""
    _validate.check_tensor(source, "source", func)
    _validate.check_float(source, "source", func)
    for name, dim in dims:
        if not isinstance(dim, Dim):
            raise TypeError(f"{func}: {name} must be a returnn_ls.Dim, got {type(dim).__name__}")
        if dim not in source.dims:
            raise ValueError(f"{func}: source {source} does not have {name} {dim}")
    return source


def param_dim(dim: Dim, *others: Dim) -> Dim:
    """:return: ``dim``, or a new dim of its size if it is one of ``others`` (the dims of a parameter must be
    distinct: ``Linear(d, d)`` has a weight ``[d', d]``)"""
    if any(dim is other for other in others):
        return Dim(dim.dimension, name=f"{dim.name}'" if dim.name else None)
    return dim


def raw_param(param: Tensor, like: Tensor) -> Any:
    """:return: the raw tensor of ``param`` in the dtype of ``like`` (gradients still flow to it)"""
    raw = param.raw_tensor
    return raw if param.dtype == like.dtype else like.backend.cast(raw, like.dtype)


def dim_size(dim: Dim, backend: Backend) -> Any:
    """:return: the (padded) size of ``dim``: an int, or a scalar int raw tensor (the max of dynamic sizes)"""
    if dim.dimension is not None:
        return dim.dimension
    sizes = dim.dyn_size_ext
    if sizes is None:
        raise ValueError(f"the sizes of {dim} are not known yet (set its dyn_size_ext)")
    return sizes.backend.reduce("max", sizes.raw_tensor, range(len(sizes.dims)))


def zeros(dims: Sequence[Dim], dtype: str, backend: Backend, *, feature_dim: Dim | None = None,
          like: Any = None) -> Tensor:  # fmt: skip
    """:return: zeros over ``dims``, on the device of the raw tensor ``like``"""
    raw = backend.full([dim_size(d, backend) for d in dims], 0.0, dtype, like=like)
    return Tensor(raw, dims, feature_dim=feature_dim, backend=backend)


def lengths_over(dim: Dim, batch_dims: Sequence[Dim], func: str, name: str) -> Tensor | None:
    """:return: the sizes of a padded ``dim`` (dims a subset of ``batch_dims``), or None if ``dim`` is not padded"""
    if not dim.is_padded():
        return None
    sizes = dim.dyn_size_ext
    extra = [d for d in sizes.dims if d not in batch_dims]
    if extra:
        raise ValueError(f"{func}: the sizes of {name} {dim} vary along {extra}, which the source does not have")
    return sizes


def train_flag(func: Any) -> bool:
    """:return: whether the run context trains for ``func`` (e.g. ``BatchNorm.__call__``): RETURNN's
    ``is_train_flag_enabled(func=...)`` where the run context has per-function flags, else its ``train_flag``"""
    ctx = get_run_ctx()
    enabled = getattr(ctx, "is_train_flag_enabled", None)
    return bool(enabled(func=func)) if enabled is not None else bool(ctx.train_flag)
