"""Dims: named axes, matched by identity."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from returnn_ls.tensor import Tensor

__all__ = ["Dim", "batch_dim"]


class Dim:
    """A named axis. Two dims are the same dim only if they are the same object.

    A dim is *static* (``Dim(7, name="vocab")``: ``dimension == 7``) or *dynamic*: ``Dim(lens, name="time")``
    where ``lens`` is an integer :class:`Tensor` of sequence lengths over other dims (e.g. ``[batch]``); then
    ``dimension`` is None and ``dyn_size_ext`` holds ``lens``.

    ``Dim(None, name="time")`` is a dynamic dim whose sizes are not known yet, as in a RETURNN config's
    ``extern_data``: whoever has the data (the training loop, per batch) sets ``dyn_size_ext``. A dynamic dim
    whose sizes have no dims of their own (a scalar, like :data:`batch_dim`'s) has no padding.
    """

    __slots__ = ("name", "dimension", "dyn_size_ext")

    def __init__(self, dimension: int | Tensor | None, *, name: str | None = None):
        from returnn_ls.tensor import Tensor

        self.name = name
        self.dyn_size_ext: Tensor | None = None
        if dimension is None:
            self.dimension = None
        elif isinstance(dimension, Tensor):
            if not dimension.dtype.startswith("int") or dimension.sparse_dim is not None:
                raise TypeError(f"Dim {name!r}: dynamic sizes must be an integer Tensor without sparse_dim")
            self.dimension = None
            self.dyn_size_ext = dimension
            values = dimension.concrete_value()
            if values is not None and (values < 0).any():
                raise ValueError(f"Dim {name!r}: sizes must be >= 0, got {values.min()}")
        elif isinstance(dimension, numbers.Integral) and not isinstance(dimension, bool):
            if dimension < 0:
                raise ValueError(f"Dim {name!r}: dimension must be >= 0, got {dimension}")
            self.dimension = int(dimension)
        else:
            raise TypeError(
                f"Dim {name!r}: dimension must be an int >= 0, an integer Tensor of sizes or None, "
                f"got {type(dimension).__name__}"
            )

    def is_dynamic(self) -> bool:
        """:return: whether the size varies per sequence (``dimension is None``)"""
        return self.dimension is None

    def is_padded(self) -> bool:
        """:return: whether the size varies along other dims (sizes over e.g. ``[batch]``), so padding exists"""
        return self.dimension is None and self.dyn_size_ext is not None and len(self.dyn_size_ext.dims) > 0

    def get_mask(self) -> Tensor:
        """:return: bool Tensor over ``dyn_size_ext.dims + [self]``, True inside each sequence.

        For a static dim this is all True over ``[self]``. The length of ``self`` in the mask is the largest
        size.
        """
        from returnn_ls import ops

        return ops.sequence_mask(self)

    def __repr__(self) -> str:
        size = self.dimension if self.dimension is not None else "dynamic"
        return f"Dim({self.name!r}, {size})"


#: The batch dim of RETURNN configs (``from returnn_ls import batch_dim``): one global dynamic dim whose size the
#: training loop sets per batch.
batch_dim = Dim(None, name="batch")
