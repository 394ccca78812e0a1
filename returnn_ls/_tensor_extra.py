"""Methods of :class:`returnn_ls.Tensor` that model code from RETURNN uses: ``dims_set``, ``copy_masked``,
``verify_out_shape``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from returnn_ls.dim import Dim
    from returnn_ls.tensor import Tensor

__all__ = ["TensorExtraMixin"]


def _names(dims: Any) -> str:
    return "{" + ", ".join(map(repr, dims)) + "}"


class TensorExtraMixin:
    """Mixed into :class:`returnn_ls.Tensor`."""

    __slots__ = ()

    @property
    def dims_set(self: Tensor) -> set[Dim]:
        """:return: the dims as a set (dims hash by identity)"""
        return set(self.dims)

    def copy_masked(self: Tensor, mask_value: Any, *, dims: Sequence[Dim] | None = None) -> Tensor:
        """:return: this tensor with ``mask_value`` on the padding frames of its padded dims (as RETURNN's)

        :param mask_value: a number or a Tensor (broadcast by dims)
        :param dims: the dims whose padding to mask (default: all); a dim is masked only if it is padded and its
            sizes vary only along dims of this tensor
        """
        from returnn_ls.ops import axes_of, sequence_mask, where

        axes = list(self.dims) if dims is None else axes_of(self, list(dims), "copy_masked")
        if len(set(map(id, axes))) != len(axes):
            raise ValueError(f"copy_masked: dims must be distinct, got {list(axes)}")
        mask = None
        for dim in axes:
            if dim.is_padded() and all(d in self.dims for d in dim.dyn_size_ext.dims):
                dim_mask = sequence_mask(dim, self)
                mask = dim_mask if mask is None else mask & dim_mask
        if mask is None:
            return self.copy_template(self.raw_tensor)
        out = where(mask, self, mask_value)
        out = out.copy_transpose(self.dims + tuple(d for d in out.dims if d not in self.dims))
        out.feature_dim, out.name = self.feature_dim, self.name
        out.sparse_dim = self.sparse_dim if out.dtype.startswith("int") else None
        return out

    def verify_out_shape(self: Tensor, out_shape: set[Dim] | Sequence[Dim], allow_missing_implicit_dims: bool = False
                         ) -> None:  # fmt: skip
        """Check that the dims are ``out_shape`` (order ignored), as RETURNN's ``verify_out_shape``.

        :param out_shape: a set of Dims (an empty list or tuple is also accepted): every dim of this tensor; it
            may also name the implicit dims (``sparse_dim``, the dims of a dim's sizes), which may also be left out
        :param allow_missing_implicit_dims: accepted for RETURNN's signature; implicit dims may always be left out
        :raise TypeError: if ``out_shape`` is not a set (and not empty) or holds something else than Dims
        :raise ValueError: naming the actual and expected dims if they differ
        """
        from returnn_ls.dim import Dim

        if not out_shape:
            out_shape = set()
        if not isinstance(out_shape, (set, frozenset)):
            raise TypeError(f"verify_out_shape: out_shape must be a set of Dims, got {type(out_shape).__name__}")
        for dim in out_shape:
            if not isinstance(dim, Dim):
                raise TypeError(f"verify_out_shape: out_shape must hold Dims, got {type(dim).__name__}")
        implicit = {self.sparse_dim} if self.sparse_dim is not None else set()
        for dim in self.dims:
            implicit.update(dim.dyn_size_ext.dims if dim.dimension is None and dim.dyn_size_ext is not None else ())
        missing = [d for d in self.dims if d not in out_shape]
        unknown = [d for d in out_shape if d not in self.dims and d not in implicit]
        if missing or unknown:
            problems = [f"missing in out_shape: {_names(missing)}"] if missing else []
            problems += [f"not dims of the tensor: {_names(unknown)}"] if unknown else []
            raise ValueError(f"verify_out_shape: {self} has dims {_names(self.dims)}, out_shape is "
                             f"{_names(out_shape)}; " + "; ".join(problems))  # fmt: skip
