"""``edit_distance`` (as ``returnn.frontend``): the Levenshtein distance of label sequences."""

from __future__ import annotations

from typing import Any

from frontend_backends import Backend
from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.ops import align, axes_of, cast, common_backend
from returnn_ls.tensor import Tensor

__all__ = ["edit_distance"]


def edit_distance(a: Tensor, a_spatial_dim: Dim, b: Tensor, b_spatial_dim: Dim, *, dtype: str = "int32") -> Tensor:
    """:return: per sequence, the number of insertions, deletions and substitutions (each costs 1) that turn the
    labels of ``a`` along ``a_spatial_dim`` into those of ``b`` along ``b_spatial_dim`` (only the frames inside each
    sequence's length count); dims: the other dims of ``a`` (which ``b`` must have too)

    :param a: integer labels, e.g. ``[batch, hyp_time]``
    :param a_spatial_dim: the dim of ``a`` along the sequence (dynamic: its sizes are the lengths)
    :param b: integer labels, e.g. ``[batch, ref_time]``
    :param b_spatial_dim: the dim of ``b`` along the sequence
    :param dtype: of the result, an integer dtype

    Example: ``errors = rf.edit_distance(hyp, hyp_dim, ref, ref_dim)`` and the word error rate is
    ``rf.reduce_sum(errors, axis=batch_dim) / rf.reduce_sum(ref_dim.get_size_tensor(), axis=batch_dim)``.
    """
    func = "edit_distance"
    for name, x, dim in (("a", a, a_spatial_dim), ("b", b, b_spatial_dim)):
        _validate.check_tensor(x, name, func)
        if not x.dtype.startswith(("int", "uint")):
            raise TypeError(f"{func}: {name} must hold integer labels, got dtype {x.dtype}")
        axes_of(x, dim, func)
    if not isinstance(dtype, str) or not dtype.startswith("int"):
        raise ValueError(f"{func}: dtype must be an integer dtype such as 'int32', got {dtype!r}")
    batch = tuple(d for d in a.dims if d is not a_spatial_dim)
    b_batch = [d for d in b.dims if d is not b_spatial_dim]
    if len(b_batch) != len(batch) or any(d not in batch for d in b_batch):
        raise ValueError(f"{func}: a and b must have the same dims besides their spatial dims, got {list(batch)} "
                         f"and {b_batch}")  # fmt: skip
    backend = common_backend(a, b)
    raw_a = align(a, batch + (a_spatial_dim,))
    batch_shape = [backend.axis_size(raw_a, i) for i in range(len(batch))]
    flat = [_flat(backend, raw, batch_shape) for raw in (raw_a, align(b, batch + (b_spatial_dim,)))]
    lens = [_lengths(backend, dim, x, batch, batch_shape, func) for x, dim in ((a, a_spatial_dim), (b, b_spatial_dim))]
    raw = backend.edit_distance(flat[0], lens[0], flat[1], lens[1])
    return cast(Tensor(backend.reshape(raw, batch_shape), batch, backend=backend), dtype)


def _flat(backend: Backend, raw: Any, batch_shape: list[Any]) -> Any:
    """:return: ``raw`` (the batch axes, then the time axis) as ``[N, T]``"""
    n = 1
    for size in batch_shape:
        n = n * size
    return backend.reshape(raw, [n, backend.axis_size(raw, len(batch_shape))])


def _lengths(backend: Backend, dim: Dim, x: Tensor, batch: tuple[Dim, ...], batch_shape: list[Any], func: str) -> Any:
    """:return: the length of each sequence of ``x`` along ``dim``, flat (``[N]``), on the device of ``x``"""
    if not dim.is_padded():
        size = backend.axis_size(x.raw_tensor, x.dims.index(dim))
        return backend.reshape(backend.full(batch_shape, size, "int32", like=x.raw_tensor), [-1])
    sizes = dim.dyn_size_ext
    extra = [d for d in sizes.dims if d not in batch]
    if extra:
        raise ValueError(f"{func}: the sizes of {dim} vary along {extra}, which are not dims of the sequences")
    raw = backend.to_device_of(backend.cast(align(sizes, batch), "int32"), x.raw_tensor)
    return backend.reshape(backend.broadcast_to(raw, batch_shape), [-1])
