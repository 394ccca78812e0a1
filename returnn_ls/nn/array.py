"""``pack_padded``, ``pad_packed``, ``concat``, ``concat_features``, ``reduce_argmax`` and ``reduce_argmin`` (as in
``returnn.frontend``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from frontend_backends import Backend
from returnn_ls import _validate
from returnn_ls.array_funcs import dim_length, expand_to
from returnn_ls.dim import Dim
from returnn_ls.ops import align, axes_of, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = ["concat", "concat_dim", "concat_features", "pack_padded", "pad_packed", "reduce_argmax", "reduce_argmin"]

#: the dim of each concatenation, by the dims concatenated (RETURNN's ``a + b`` is likewise always the same dim)
_CONCAT_DIMS: dict[tuple[Dim, ...], Dim] = {}


def pack_padded(
    source: Tensor, *, dims: Sequence[Dim], enforce_sorted: bool = False, out_dim: Dim | None = None
) -> tuple[Tensor, Dim]:
    """Keep only the frames inside the sequences: ``dims`` (e.g. ``[batch, time]``) become one dim of all valid
    frames, in row-major order of ``dims`` (the first dim is the major one).

    :param source: the input
    :param dims: dims of ``source`` to pack; a padded dim's sizes must vary only along dims in ``dims``
    :param enforce_sorted: not supported (as in RETURNN); must be False
    :param out_dim: the packed dim to use (e.g. the one of an earlier ``pack_padded`` of the same frames)
    :return: the packed tensor ``[out_dim, *other dims]`` and ``out_dim`` (its size: the number of frames)

    Example::

        logits_packed, pack_dim = rf.pack_padded(logits, dims=(batch_dim, time_dim), enforce_sorted=False)
        targets_packed, _ = rf.pack_padded(targets, dims=(batch_dim, time_dim), out_dim=pack_dim)
    """
    func = "pack_padded"
    _validate.check_tensor(source, "source", func)
    if enforce_sorted:
        raise ValueError(f"{func}: enforce_sorted=True is not supported (as in RETURNN); use enforce_sorted=False")
    if isinstance(dims, Dim) or not dims:
        raise TypeError(f"{func}: dims must be a non-empty sequence of Dims, e.g. (batch_dim, time_dim)")
    dims = tuple(axes_of(source, list(dims), func))
    if out_dim is not None and not isinstance(out_dim, Dim):
        raise TypeError(f"{func}: out_dim must be a Dim or None, got {type(out_dim).__name__}")
    if any(d not in dims for dim in dims if dim.is_padded() for d in dim.dyn_size_ext.dims):
        from returnn_ls.mask_funcs import masked_select  # sizes vary along other dims: a packed dim per entry

        return masked_select(source, mask=frames_mask(dims, source), dims=dims, out_dim=out_dim)
    rest = tuple(d for d in source.dims if d not in dims)
    raw = source.backend.masked_select(align(source, dims + rest), _frames_mask(source, dims, func))
    out_dim = _packed_dim(raw, source.backend, out_dim)
    feature = source.feature_dim if source.feature_dim in rest else None
    packed = Tensor(raw, (out_dim,) + rest, feature_dim=feature, sparse_dim=source.sparse_dim, backend=source.backend)
    return packed, out_dim


def frames_mask(dims: Sequence[Dim], like: Tensor) -> Tensor:
    """:return: bool Tensor over ``dims`` and the dims their sizes vary along, True at the frames inside the
    sequences of every dim of ``dims`` (lengths of ``like``)"""
    mask = None
    for dim in dims:
        if dim.is_padded():
            dim_mask = sequence_mask(dim, like)
            mask = dim_mask if mask is None else mask & dim_mask
    if mask is None:
        mask = sequence_mask(dims[0], like)
    for dim in dims:
        if dim not in mask.dims:
            mask = expand_to(mask, dim, len(mask.dims), dim_length(dim, like))
    return mask


def pad_packed(source: Tensor, *, in_dim: Dim, dims: Sequence[Dim]) -> Tensor:
    """The inverse of :func:`pack_padded`: the frames of ``source`` along ``in_dim`` go back into the sequences of
    ``dims`` (row-major, the first dim major); padding frames are 0.

    :param source: ``[in_dim, ...]``, e.g. from ``pack_padded(x, dims=dims)``
    :param in_dim: the packed dim of ``source``
    :param dims: the dims to unpack into, in the order given to :func:`pack_padded`
    :return: ``[dims..., other dims of source...]``
    Example: ``y = rf.pad_packed(y_packed, in_dim=pack_dim, dims=[batch_dim, time_dim])``
    """
    from returnn_ls.mask_funcs import masked_scatter

    func = "pad_packed"
    _validate.check_tensor(source, "source", func)
    axes_of(source, in_dim, func)
    if isinstance(dims, Dim) or not dims or not all(isinstance(d, Dim) for d in dims):
        raise TypeError(f"{func}: dims must be a non-empty sequence of Dims, e.g. (batch_dim, time_dim)")
    return masked_scatter(source, mask=frames_mask(dims, source), dims=dims, in_dim=in_dim)


def _frames_mask(source: Tensor, dims: tuple[Dim, ...], func: str) -> Any:
    """:return: raw bool mask over ``dims`` (size 1 where it does not vary), True at the frames to keep (the sizes
    of ``dims`` vary only along ``dims``)"""
    mask = None
    for dim in dims:
        if dim.is_padded():
            dim_mask = sequence_mask(dim, source)
            mask = dim_mask if mask is None else mask & dim_mask
    if mask is not None:
        return align(mask, dims)
    return source.backend.full([1] * len(dims), True, "bool", like=source.raw_tensor)


def _packed_dim(packed: Any, backend: Backend, out_dim: Dim | None) -> Dim:
    """:return: ``out_dim``, or a new dim, with the size of the packed tensor's first axis if it has no size yet"""
    if out_dim is not None and (out_dim.dimension is not None or out_dim.dyn_size_ext is not None):
        return out_dim
    size = backend.axis_size(packed, 0)
    size = backend.convert(size, "int32", like=packed) if isinstance(size, int) else backend.cast(size, "int32")
    size = Tensor(size, ())
    if out_dim is None:
        return Dim(size, name="packed")
    out_dim.dyn_size_ext = size
    return out_dim


def _arg_reduce(op: str, source: Tensor, axis: Dim | Sequence[Dim], use_mask: bool) -> Tensor:
    func = f"reduce_{op}"
    _validate.check_tensor(source, "source", func)
    axes = axes_of(source, axis, func)
    if len(axes) != 1:
        raise ValueError(f"{func}: axis must be one Dim, got {len(axes)} dims")
    (axis,) = axes
    if use_mask and axis.is_padded():
        if source.dtype.startswith("int"):
            fill = -(2**31) if op == "argmax" else 2**31 - 1
        else:
            fill = float("-inf") if op == "argmax" else float("inf")
        source = where(sequence_mask(axis, source), source, fill)
    raw = source.backend.arg_reduce(op, source.raw_tensor, source.dims.index(axis))
    return Tensor(raw, tuple(d for d in source.dims if d is not axis), sparse_dim=axis, backend=source.backend)


def reduce_argmax(source: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: the index (int64, ``sparse_dim=axis``) of the first maximum along ``axis``; padding frames of a
    dynamic ``axis`` are ignored when ``use_mask``

    Example: ``best = rf.reduce_argmax(logits, axis=out_dim)``
    """
    return _arg_reduce("argmax", source, axis, use_mask)


def reduce_argmin(source: Tensor, *, axis: Dim | Sequence[Dim], use_mask: bool = True) -> Tensor:
    """:return: the index (int64, ``sparse_dim=axis``) of the first minimum along ``axis`` (see
    :func:`reduce_argmax`). Example: ``nearest = rf.reduce_argmin(distances, axis=codebook_dim)``
    """
    return _arg_reduce("argmin", source, axis, use_mask)


def concat_dim(*dims: Dim) -> Dim:
    """:return: the dim that :func:`concat` and :func:`concat_features` give when concatenating along ``dims``, in
    this order: the same Dim object for the same dims, so that a module after a concatenation can be built first

    Example::

        self.output = rf.Linear(rf.concat_dim(lstm_dim, lstm_dim), out_dim)  # RETURNN: lstm_dim + lstm_dim
        ...
        y = self.output(rf.concat_features(forward_out, backward_out))
    """
    for i, dim in enumerate(dims):
        if not isinstance(dim, Dim) or dim.dimension is None:
            raise TypeError(f"concat_dim: dims[{i}] must be a static Dim, got {dim!r}")
    if not dims:
        raise ValueError("concat_dim: give at least one dim")
    if dims not in _CONCAT_DIMS:
        _CONCAT_DIMS[dims] = Dim(sum(d.dimension for d in dims), name="+".join(str(d.name) for d in dims))
    return _CONCAT_DIMS[dims]


def concat(
    *sources: tuple[Tensor, Dim], allow_broadcast: bool = False, out_dim: Dim | None = None,
    handle_dynamic_dims: bool | None = None,
) -> tuple[Tensor, Dim]:  # fmt: skip
    """Concatenate ``(tensor, dim)`` pairs along their dims into one new dim of the summed size.

    :param sources: pairs of a tensor and the dim of it to concatenate along
    :param allow_broadcast: whether the tensors may have different other dims (each is broadcast to all of them)
    :param out_dim: the concatenated dim to use (its size must be the sum); default: ``concat_dim`` of static dims,
        ``dim_1 + dim_2 + ...`` (Dim arithmetic) with a dynamic one
    :param handle_dynamic_dims: for dynamic dims (see :func:`returnn_ls.mask_funcs.concat_dynamic`): default True
        when a dim before the last has padding: each sequence's frames are joined without the padding in between
    :return: the result, with ``out_dim`` at the place of the first source's dim, and ``out_dim``

    Example: ``y, y_dim = rf.concat((a, a_dim), (b, b_dim))``
    """
    func = "concat"
    if any(isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], Dim) and pair[1].dimension is None
           for pair in sources):  # fmt: skip
        from returnn_ls.mask_funcs import concat_dynamic

        return concat_dynamic(*sources, allow_broadcast=allow_broadcast, out_dim=out_dim,
                              handle_dynamic_dims=handle_dynamic_dims)  # fmt: skip
    backend, others = _check_concat(sources, allow_broadcast, func)
    total = sum(dim.dimension for _, dim in sources)
    if out_dim is None:
        out_dim = concat_dim(*(dim for _, dim in sources))
    elif not isinstance(out_dim, Dim) or out_dim.dimension != total:
        raise ValueError(f"{func}: out_dim must be a Dim of size {total} (the sum), got {out_dim!r}")
    first_src, first_dim = sources[0]
    position = first_src.dims.index(first_dim)
    order = others[:position] + [out_dim] + others[position:]
    raws = [align(src, [dim if d is out_dim else d for d in order]) for src, dim in sources]
    out = Tensor(backend.concat(raws, position), order, backend=backend)
    if all(src.feature_dim is dim for src, dim in sources):
        out.feature_dim = out_dim
    return out, out_dim


def _check_concat(sources: tuple, allow_broadcast: bool, func: str) -> tuple[Backend, list[Dim]]:
    """:return: the backend of ``sources`` and their other dims (first appearance order), after checking them
    (:func:`returnn_ls.mask_funcs.check_concat_sources`) and that the concatenated dims are static"""
    from returnn_ls.mask_funcs import check_concat_sources

    backend, others = check_concat_sources(sources, allow_broadcast, func)
    for i, (_, dim) in enumerate(sources):
        if dim.dimension is None:
            raise ValueError(f"{func}: sources[{i}] dim {dim} is dynamic; only static dims can be concatenated")
    return backend, others


def concat_features(*sources: Tensor, allow_broadcast: bool = False) -> Tensor:
    """:return: ``sources`` concatenated along their ``feature_dim``\\ s into a new feature dim (see :func:`concat`)

    Example: ``x = rf.concat_features(forward_out, backward_out)``
    """
    pairs = []
    for i, src in enumerate(sources):
        _validate.check_tensor(src, f"sources[{i}]", "concat_features")
        if src.feature_dim is None:
            raise ValueError(f"concat_features: sources[{i}] {src} has no feature_dim")
        pairs.append((src, src.feature_dim))
    return concat(*pairs, allow_broadcast=allow_broadcast)[0]
