"""Creating tensors and changing their dims, as in ``returnn.frontend``: ``full``, ``zeros``, ``ones``, ``zeros_like``,
``ones_like``, ``expand_dim``, ``expand_dims``, ``squeeze``, ``reshape``, ``stack``.

The length of a dim in a new tensor is its static size, else its capacity, else its largest size (RETURNN's
``Dim.get_dim_value``). A tensor made from dims alone (no tensor input) goes to the framework's default device, or to
``device`` when given, as in RETURNN; everything else takes the device of its inputs.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from frontend_backends import Backend
from frontend_backends.common import result_dtype
from returnn_ls import _backend, _validate
from returnn_ls.dim import Dim
from returnn_ls.ops import align, axes_of, cast, common_backend
from returnn_ls.tensor import Tensor

__all__ = ["constant", "expand_dim", "expand_dims", "fill", "full", "ones", "ones_like", "reshape", "squeeze",
           "stack", "unstack", "zeros", "zeros_like"]  # fmt: skip

_DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool")


def dim_length(dim: Dim, like: Tensor | None = None) -> Any:
    """:return: the padded length of ``dim``: its axis length in ``like`` if it has it, else ``dim.get_dim_value()``
    (an int, or a raw scalar tensor)"""
    if like is not None and dim in like.dims:
        return like.backend.axis_size(like.raw_tensor, like.dims.index(dim))
    if dim.dimension is None and dim.capacity is None and dim.dyn_size_ext is None:
        raise ValueError(f"the sizes of {dim} are not known yet (set its dyn_size_ext)")
    return dim.get_dim_value()


def dim_of_size(size: int | Tensor, name: str) -> Dim:
    """:return: a dim of ``size``; Tensor sizes are set without reading them (no device synchronisation)"""
    if isinstance(size, int):
        return Dim(size, name=name)
    dim = Dim(None, name=name)
    dim.dyn_size_ext = cast(size, "int32")
    return dim


def _check_dims(dims: Any, func: str, name: str = "dims") -> tuple[Dim, ...]:
    if isinstance(dims, Dim) or not isinstance(dims, Sequence) or not all(isinstance(d, Dim) for d in dims):
        raise TypeError(f"{func}: {name} must be a sequence of Dims, got {dims!r}")
    if len(set(map(id, dims))) != len(dims):
        raise ValueError(f"{func}: {name} has a dim twice: {list(dims)}")
    return tuple(dims)


def _default_dtype(fill_value: Any, func: str) -> str:
    """:return: RETURNN's dtype for a fill value: bool, int32, float32 or the Tensor's"""
    if isinstance(fill_value, Tensor):
        return fill_value.dtype
    if isinstance(fill_value, (bool, numbers.Integral, numbers.Real)):
        return "bool" if isinstance(fill_value, bool) else "int32" if isinstance(fill_value, numbers.Integral) \
            else "float32"  # fmt: skip
    raise TypeError(f"{func}: fill_value must be a number, a bool or a scalar Tensor, got {type(fill_value).__name__}")


def full(
    *, dims: Sequence[Dim], fill_value: Any, dtype: str | None = None, device: str | None = None,
    sparse_dim: Dim | None = None, feature_dim: Dim | None = None,
) -> Tensor:  # fmt: skip
    """:return: a tensor over ``dims`` filled with ``fill_value`` (a number, a bool or a scalar Tensor).

    :param dtype: default: ``"bool"``, ``"int32"`` or ``"float32"`` for a bool, int or float ``fill_value``, the
        Tensor's dtype for a Tensor
    :param device: e.g. ``"cuda:0"``; default: the device of a Tensor ``fill_value``, else the default device
    Example: ``mask = rf.full(dims=[batch_dim, time_dim], fill_value=True)``
    """
    func = "full"
    dims = _check_dims(dims, func)
    dtype = dtype or _default_dtype(fill_value, func)
    if dtype not in _DTYPES:
        raise ValueError(f"{func}: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    if sparse_dim is not None and not dtype.startswith("int"):
        raise TypeError(f"{func}: sparse_dim needs an integer dtype, got {dtype!r}")
    if feature_dim is not None and feature_dim not in dims:
        raise ValueError(f"{func}: feature_dim {feature_dim} is not one of dims {list(dims)}")
    shape = [dim_length(d) for d in dims]
    if isinstance(fill_value, Tensor):
        if fill_value.dims:
            raise ValueError(f"{func}: fill_value must be a scalar Tensor, got {fill_value}")
        backend = fill_value.backend
        value = backend.cast(fill_value.raw_tensor, dtype)
        raw = backend.broadcast_to(backend.reshape(value, [1] * len(dims)), shape)
        raw = raw if device is None else backend.to_device(raw, device)
    else:
        _default_dtype(fill_value, func)
        kind = bool if dtype == "bool" else int if dtype.startswith("int") else float
        fill_value, backend = kind(fill_value), _backend.selected_backend()
        raw = backend.full(shape, fill_value, dtype) if device is None else \
            backend.full_on_device(shape, fill_value, dtype, device)  # fmt: skip
    return Tensor(raw, dims, sparse_dim=sparse_dim, feature_dim=feature_dim, backend=backend)


#: RETURNN's alias of :func:`full` (for TensorFlow users)
fill = full


def constant(
    fill_value: Any, *, dims: Sequence[Dim], dtype: str | None = None, device: str | None = None,
    sparse_dim: Dim | None = None, feature_dim: Dim | None = None,
) -> Tensor:  # fmt: skip
    """:return: :func:`full` with ``fill_value`` given first (RETURNN's ``rf.constant``). Example:
    ``half = rf.constant(0.5, dims=())``"""
    return full(dims=dims, fill_value=fill_value, dtype=dtype, device=device, sparse_dim=sparse_dim,
                feature_dim=feature_dim)  # fmt: skip


def zeros(
    dims: Sequence[Dim], *, dtype: str | None = None, device: str | None = None, sparse_dim: Dim | None = None,
    feature_dim: Dim | None = None,
) -> Tensor:  # fmt: skip
    """:return: zeros over ``dims`` (``dtype`` default float32). Example: ``rf.zeros([batch_dim, hidden_dim])``"""
    return full(dims=dims, fill_value=0, dtype=dtype or "float32", device=device, sparse_dim=sparse_dim,
                feature_dim=feature_dim)  # fmt: skip


def ones(
    dims: Sequence[Dim], *, dtype: str | None = None, device: str | None = None, sparse_dim: Dim | None = None,
    feature_dim: Dim | None = None,
) -> Tensor:  # fmt: skip
    """:return: ones over ``dims`` (``dtype`` default float32). Example: ``rf.ones([vocab_dim])``"""
    return full(dims=dims, fill_value=1, dtype=dtype or "float32", device=device, sparse_dim=sparse_dim,
                feature_dim=feature_dim)  # fmt: skip


def _like(other: Tensor, value: int, func: str) -> Tensor:
    _validate.check_tensor(other, "other", func)
    shape = [other.backend.axis_size(other.raw_tensor, i) for i in range(len(other.dims))]
    raw = other.backend.full(shape, value, other.dtype, like=other.raw_tensor)
    return other.copy_template(raw)


def zeros_like(other: Tensor) -> Tensor:
    """:return: zeros with the dims, dtype, sparse and feature dim and device of ``other``"""
    return _like(other, 0, "zeros_like")


def ones_like(other: Tensor) -> Tensor:
    """:return: ones with the dims, dtype, sparse and feature dim and device of ``other``"""
    return _like(other, 1, "ones_like")


def _expand_position(source: Tensor, dim: Dim) -> int:
    """:return: where :func:`expand_dim` puts ``dim`` (RETURNN's choice): a dynamic dim after the last dynamic dim,
    a static one before the feature dim, else at the end"""
    if dim.dimension is None:
        dynamic = [i for i, d in enumerate(source.dims) if d.dimension is None]
        return dynamic[-1] + 1 if dynamic else len(source.dims)
    if source.feature_dim is not None and source.feature_dim in source.dims:
        return source.dims.index(source.feature_dim)
    return len(source.dims)


def expand_dim(source: Tensor, dim: Dim) -> Tensor:
    """:return: ``source`` repeated along the new dim ``dim`` (a broadcast view where the framework has one).
    Never needed for broadcasting (dims broadcast by identity); for e.g. a concatenation. Example:
    ``frames = rf.expand_dim(bos_frame, one_dim)``"""
    func = "expand_dim"
    _validate.check_tensor(source, "source", func)
    if not isinstance(dim, Dim):
        raise TypeError(f"{func}: dim must be a Dim, got {type(dim).__name__}")
    if dim in source.dims:
        raise ValueError(f"{func}: source {source} has dim {dim} already")
    return expand_to(source, dim, _expand_position(source, dim), dim_length(dim))


def expand_to(source: Tensor, dim: Dim, axis: int, length: Any) -> Tensor:
    """:return: ``source`` with the new dim ``dim`` of ``length`` (int or raw scalar) inserted at ``axis``"""
    backend = source.backend
    raw = backend.expand_dims(source.raw_tensor, axis)
    if not (isinstance(length, int) and length == 1):
        shape = [backend.axis_size(raw, i) for i in range(len(source.dims) + 1)]
        raw = backend.broadcast_to(raw, shape[:axis] + [length] + shape[axis + 1 :])
    return source.copy_template(raw, source.dims[:axis] + (dim,) + source.dims[axis:])


def expand_dims(source: Tensor, dims: Sequence[Dim]) -> Tensor:
    """:return: :func:`expand_dim` for each of ``dims`` in turn"""
    for dim in _check_dims(dims, "expand_dims"):
        source = expand_dim(source, dim)
    return source


def squeeze(source: Tensor, axis: Dim) -> Tensor:
    """:return: ``source`` without ``axis``, a dim of size 1. Example: ``y = rf.squeeze(x, axis=one_dim)``"""
    func = "squeeze"
    _validate.check_tensor(source, "source", func)
    axes_of(source, axis, func)
    if axis.dimension != 1:
        raise ValueError(f"{func}: axis must be a static dim of size 1, got {axis}")
    index = source.dims.index(axis)
    out = source.copy_template(source.backend.squeeze(source.raw_tensor, index), source.dims[:index] +
                               source.dims[index + 1 :])  # fmt: skip
    out.feature_dim = None if source.feature_dim is axis else source.feature_dim
    return out


def reshape(source: Tensor, in_dims: Sequence[Dim], out_dims: Sequence[Dim]) -> Tensor:
    """Reshape the entries of ``in_dims`` (row-major, in the given order) into ``out_dims``, which take the place of
    the first of ``in_dims``; the other dims stay. (:func:`returnn_ls.masked_select` and friends use it to merge dims.)

    Example: ``y = rf.reshape(x, in_dims=[heads_dim, head_feat_dim], out_dims=[model_dim])``
    """
    func = "reshape"
    _validate.check_tensor(source, "source", func)
    in_dims, out_dims = _check_dims(in_dims, func, "in_dims"), _check_dims(out_dims, func, "out_dims")
    if not in_dims:
        raise ValueError(f"{func}: in_dims must name at least one dim of source")
    axes_of(source, list(in_dims), func)
    rest = [d for d in source.dims if d not in in_dims]
    if any(d in rest for d in out_dims):
        raise ValueError(f"{func}: out_dims {list(out_dims)} must not be dims of source other than in_dims")
    sizes = [d.dimension for d in in_dims + out_dims]
    if None not in sizes and _prod(sizes[: len(in_dims)]) != _prod(sizes[len(in_dims) :]):
        raise ValueError(f"{func}: in_dims {list(in_dims)} and out_dims {list(out_dims)} differ in total size")
    return reshape_to(source, in_dims, out_dims, [dim_length(d) for d in out_dims])


def reshape_to(source: Tensor, in_dims: Sequence[Dim], out_dims: Sequence[Dim], lengths: Sequence[Any]) -> Tensor:
    """:func:`reshape` with the lengths of ``out_dims`` given (ints or raw scalars); no checks"""
    rest = [d for d in source.dims if d not in in_dims]
    position = min(source.dims.index(d) for d in in_dims)
    order = rest[:position] + list(in_dims) + rest[position:]
    raw = align(source, order)
    backend = source.backend
    shape = [backend.axis_size(raw, order.index(d)) for d in rest]
    shape = shape[:position] + list(lengths) + shape[position:]
    dims = rest[:position] + list(out_dims) + rest[position:]
    feature = source.feature_dim if source.feature_dim in rest else None
    return Tensor(backend.reshape(raw, shape), dims, feature_dim=feature, sparse_dim=source.sparse_dim,
                  backend=backend)  # fmt: skip


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def stack(sources: Sequence[Tensor], *, out_dim: Dim | None = None) -> tuple[Tensor, Dim]:
    """Stack tensors with the same dims along a new first dim ``out_dim`` (default: a new static dim; a dynamic one
    must have the padded length ``len(sources)``, e.g. the concatenation of two dims of the frames stacked).

    :return: the result ``[out_dim, *sources[0].dims]`` and ``out_dim``
    Example: ``both, pair_dim = rf.stack([mean, variance])``
    """
    func = "stack"
    if isinstance(sources, Tensor) or not isinstance(sources, Sequence) or not sources:
        raise ValueError(f"{func}: sources must be a non-empty sequence of Tensors")
    for i, src in enumerate(sources):
        _validate.check_tensor(src, f"sources[{i}]", func)
        if set(map(id, src.dims)) != set(map(id, sources[0].dims)):
            raise ValueError(f"{func}: sources[{i}] has dims {list(src.dims)}, sources[0] {list(sources[0].dims)}")
    if out_dim is None:
        out_dim = Dim(len(sources), name="stack")
    elif not isinstance(out_dim, Dim) or not _stackable(out_dim, len(sources)):
        raise ValueError(f"{func}: out_dim must be a Dim of (padded) size {len(sources)}, got {out_dim!r}")
    backend: Backend = common_backend(*sources)
    dtype = result_dtype(*(s.dtype for s in sources))
    dims = sources[0].dims
    raws = [backend.expand_dims(align(cast(s, dtype) if s.dtype != dtype else s, dims), 0) for s in sources]
    return Tensor(backend.concat(raws, 0), (out_dim,) + dims, sparse_dim=sources[0].sparse_dim, backend=backend), \
        out_dim  # fmt: skip


def _stackable(out_dim: Dim, count: int) -> bool:
    """:return: whether ``out_dim`` (static, or dynamic with a padded length of ``count``) can hold ``count``
    stacked tensors"""
    if out_dim.dimension is not None:
        return out_dim.dimension == count
    if out_dim.dyn_size_ext is None:
        return False
    length = dim_length(out_dim)
    if not isinstance(length, int):  # a raw scalar: compared where its value is known (not while tracing)
        value = out_dim.dyn_size_ext.backend.concrete_value(length)
        length = int(value) if value is not None else count
    return length == count


def unstack(source: Tensor, *, axis: Dim) -> tuple[Tensor, ...]:
    """:return: the entries of ``source`` along the static ``axis``, one Tensor each, without ``axis`` (the inverse
    of :func:`stack`). Example: ``mean, variance = rf.unstack(both, axis=pair_dim)``"""
    func = "unstack"
    _validate.check_tensor(source, "source", func)
    axes_of(source, axis, func)
    if axis.dimension is None:
        raise ValueError(f"{func}: axis must be a static dim, got {axis}")
    index, backend = source.dims.index(axis), source.backend
    dims = source.dims[:index] + source.dims[index + 1 :]
    feature = None if source.feature_dim is axis else source.feature_dim
    return tuple(Tensor(backend.squeeze(backend.slice(source.raw_tensor, index, i, i + 1, None), index), dims,
                        feature_dim=feature, sparse_dim=source.sparse_dim, backend=backend)
                 for i in range(axis.dimension))  # fmt: skip
