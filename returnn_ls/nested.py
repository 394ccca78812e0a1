"""Masked selection and scattering over nested structures (tuples, lists, dicts of Tensors and Dims), as RETURNN's
``rf.nested``: ``masked_select_nested`` packs every Tensor of a structure (e.g. a decoder state with its spatial dims)
along ``dims`` and gives the dynamic dims whose sizes vary along ``dims`` new packed dims (``dim_map``);
``masked_scatter_nested`` puts them back into a backup structure, merging each packed dim with the backup's dim into
one new dim whose sizes come from either side by the mask.

Example (update only the active hypotheses of a search state)::

    (sel_state, sel_dim), packed_dim, dim_map = rf.nested.masked_select_nested((state, hist_dim), mask=active,
                                                                               dims=[batch_dim, beam_dim])
    ... new_state = step(sel_state) ...
    state, hist_dim = rf.nested.masked_scatter_nested((new_state, sel_dim), (state, hist_dim), mask=active,
                                                      mask_cpu=active, dims=[batch_dim, beam_dim],
                                                      in_dim=packed_dim, masked_select_dim_map=dim_map)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from returnn_ls.array_funcs import expand_dim, expand_dims
from returnn_ls.dim import Dim
from returnn_ls.dim_funcs import replace_dim_v2
from returnn_ls.mask_funcs import masked_scatter, masked_select
from returnn_ls.slice_funcs import slice as slice_
from returnn_ls.tensor import Tensor

__all__ = ["masked_scatter_nested", "masked_select_nested"]

T = TypeVar("T")


def map_structure(fn: Callable[..., Any], *structures: Any) -> Any:
    """:return: ``fn`` applied to the leaves of ``structures`` (of the same nesting: tuples, lists, dicts), in the
    structure of the first"""
    first = structures[0]
    if isinstance(first, (list, tuple)):
        if any(not isinstance(s, (list, tuple)) or len(s) != len(first) for s in structures[1:]):
            raise ValueError(f"nested: structures differ: {[type(s).__name__ for s in structures]}")
        out = [map_structure(fn, *items) for items in zip(*structures)]
        return type(first)(*out) if hasattr(first, "_fields") else type(first)(out)
    if isinstance(first, dict):
        if any(not isinstance(s, dict) or set(s) != set(first) for s in structures[1:]):
            raise ValueError("nested: dicts with different keys")
        return type(first)((k, map_structure(fn, *(s[k] for s in structures))) for k in first)
    return fn(*structures)


def _extend_dim_name(name: str | None) -> str:
    """:return: ``name_1`` for ``name``, ``name_2`` for ``name_1``, ..."""
    match = re.match(r"^(.*)_(\d+)$", name or "dim")
    return f"{match.group(1)}_{int(match.group(2)) + 1}" if match else f"{name or 'dim'}_1"


def _varies_along(dim: Dim, dims: Sequence[Dim]) -> bool:
    return dim.dimension is None and dim.dyn_size_ext is not None and any(d in dim.dyn_size_ext.dims for d in dims)


def masked_select_nested(
    s: T, *, mask: Tensor, mask_cpu: Tensor | None = None, dims: Sequence[Dim], out_dim: Dim | None = None,
    dim_map: dict[Dim, Dim] | None = None,
) -> tuple[T, Dim, dict[Dim, Dim]]:  # fmt: skip
    """:func:`returnn_ls.masked_select` on every Tensor of the nested structure ``s`` (Tensors without any of
    ``dims`` stay as they are; those with some get the others broadcast first). A dynamic Dim in ``s`` whose sizes
    vary along ``dims`` becomes a new dim with the packed sizes, recorded in ``dim_map``; the Tensors of ``s`` with
    such a dim get the new one (their padding cut down to it).

    :param mask: bool, see :func:`returnn_ls.masked_select`
    :param mask_cpu: the mask to use for Tensors on the CPU (e.g. sizes), if the mask is elsewhere
    :param dims: the dims to pack, see :func:`returnn_ls.masked_select`
    :param out_dim: the packed dim (default: a new one)
    :param dim_map: a dict to record the new dims in (default: a new one)
    :return: the packed structure, ``out_dim`` and ``dim_map`` (old dim -> packed dim)
    """
    out_dim = Dim(None, name="packed_new_label") if out_dim is None else out_dim
    dim_map = {} if dim_map is None else dim_map
    size_mask = mask_cpu if mask_cpu is not None else mask

    def new_dim(dim: Dim) -> Dim:
        if dim not in dim_map:
            sizes = _select(dim.dyn_size_ext, size_mask, None, dims, out_dim, dim_map)
            dim_map[dim] = Dim(sizes, name=_extend_dim_name(dim.name))
        return dim_map[dim]

    def prepare(x: Any) -> None:
        if isinstance(x, Dim) and _varies_along(x, dims):
            new_dim(x)

    map_structure(prepare, s)

    def select(x: Any) -> Any:
        if isinstance(x, Dim):
            return dim_map[x] if _varies_along(x, dims) else x
        return _select(x, mask, mask_cpu, dims, out_dim, dim_map)

    return map_structure(select, s), out_dim, dim_map


def _select(x: Any, mask: Tensor, mask_cpu: Tensor | None, dims: Sequence[Dim], out_dim: Dim,
            dim_map: dict[Dim, Dim]) -> Any:  # fmt: skip
    if x is None:
        return None
    if not isinstance(x, Tensor):
        raise TypeError(f"masked_select_nested: the structure may hold Tensors, Dims and None, got {type(x).__name__}")
    if not any(d in x.dims for d in dims):
        return x
    if mask_cpu is not None and x.device == "cpu":
        mask = mask_cpu
    x = expand_dims(x, [d for d in dims if d not in x.dims])
    x, _ = masked_select(x, mask=mask, dims=dims, out_dim=out_dim)
    for d in x.dims:
        if d in dim_map:  # the packed sizes are at most the old ones: cut the padding down to them
            x, _ = slice_(x, axis=d, size=dim_map[d])
    return x


def masked_scatter_nested(
    s: T, backup: T, *, mask: Tensor, mask_cpu: Tensor | None, dims: Sequence[Dim], in_dim: Dim,
    masked_select_dim_map: dict[Dim, Dim], masked_scatter_dim_map: dict[Dim, Dim] | None = None,
) -> T:  # fmt: skip
    """The inverse of :func:`masked_select_nested`: the packed structure ``s`` (along ``in_dim``) is scattered into
    ``backup`` (the same structure, unpacked) where ``mask`` is True. A packed Dim of ``s`` and the Dim of ``backup``
    at the same place become one new dim whose sizes are the packed ones where ``mask`` is True and the backup's
    elsewhere (unless they are the same dim), recorded in ``masked_scatter_dim_map``.

    :param masked_select_dim_map: the ``dim_map`` of :func:`masked_select_nested` (old dim -> packed dim)
    :return: the structure of ``backup`` with the entries of ``s`` scattered in
    """
    reverse = {v: k for k, v in masked_select_dim_map.items()}
    merged = {} if masked_scatter_dim_map is None else masked_scatter_dim_map
    size_mask = mask_cpu if mask_cpu is not None else mask

    def merge(x: Any, y: Any) -> None:
        if not isinstance(x, Dim):
            return
        if not isinstance(y, Dim):
            raise TypeError(f"masked_scatter_nested: a Dim {x} in s faces {type(y).__name__} in backup")
        packed, x = x, reverse.get(x, x)
        if x is y:
            return
        if x in merged:
            if y not in merged:
                raise ValueError(f"masked_scatter_nested: {x} was merged, but not {y} of backup")
            return
        sizes = _scatter(packed.get_size_tensor(), y.get_size_tensor(), size_mask, None, dims, in_dim, reverse, merged)
        new = Dim(sizes, name=y.name)
        merged[x] = merged[packed] = merged[y] = new

    map_structure(merge, s, backup)

    def scatter(x: Any, y: Any) -> Any:
        if isinstance(x, Dim):
            x = reverse.get(x, x)
            return merged.get(x, x)
        return _scatter(x, y, mask, mask_cpu, dims, in_dim, reverse, merged)

    return map_structure(scatter, s, backup)


def _scatter(x: Any, backup: Any, mask: Tensor, mask_cpu: Tensor | None, dims: Sequence[Dim], in_dim: Dim,
             reverse: dict[Dim, Dim], merged: dict[Dim, Dim]) -> Any:  # fmt: skip
    if x is None:
        return None
    if not isinstance(x, Tensor) or not isinstance(backup, Tensor):
        raise TypeError(f"masked_scatter_nested: expected Tensors, got {type(x).__name__}, {type(backup).__name__}")
    if mask_cpu is not None and x.device == "cpu":
        mask = mask_cpu
    if in_dim not in x.dims:
        x = expand_dim(x, in_dim)
    for d in x.dims:
        if d in merged:  # a merged dim first: the packed x does not fit the unpacked dim
            x = replace_dim_v2(x, in_dim=d, out_dim=merged[d])
        elif d in reverse:
            x = replace_dim_v2(x, in_dim=d, out_dim=reverse[d], allow_shrink=False)
    for d in backup.dims:
        if d in merged:
            backup = replace_dim_v2(backup, in_dim=d, out_dim=merged[d])
    return masked_scatter(x, backup, mask=mask, dims=dims, in_dim=in_dim)
