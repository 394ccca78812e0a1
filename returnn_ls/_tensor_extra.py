"""Methods of :class:`returnn_ls.Tensor` that model code from RETURNN uses: ``dims_set``, ``copy_masked``,
``astype``, ``verify_out_shape``."""

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

    def astype(self: Tensor, dtype: str) -> Tensor:
        """:return: this tensor cast to ``dtype`` (:func:`returnn_ls.cast`; RETURNN's ``Tensor.astype``)"""
        from returnn_ls.ops import cast

        return cast(self, dtype)

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

    def copy_compatible_to_dims_raw(self: Tensor, dims: Sequence[Dim]) -> Any:
        """:return: the raw tensor with one axis per dim of ``dims``, in that order: size 1 for the dims this tensor
        does not have (it broadcasts against a tensor over ``dims``)

        :raise ValueError: if this tensor has a dim that ``dims`` does not
        """
        from returnn_ls.ops import align

        return align(self, tuple(dims))

    def copy_compatible_to(self: Tensor, data: Any, add_dims: bool = True, unbroadcast: bool = False,
                           check_sparse: bool = True, check_dtype: bool = True) -> Tensor:  # fmt: skip
        """:return: this tensor with the dims of ``data`` (a Tensor or a template with ``dims``) in their order, as
        RETURNN's: the dims this tensor does not have become new size-1 broadcast dims (``unbroadcast=True``: the
        dims of ``data`` themselves, the values repeated)

        :param add_dims: False: leave the missing dims out instead (only reorder)
        :param check_sparse: require the same ``sparse_dim`` as ``data``
        :param check_dtype: require the same dtype as ``data``
        :raise ValueError: if this tensor has a dim that ``data`` does not, or the checks fail
        """
        from returnn_ls.dim import Dim
        from returnn_ls.ops import align

        func = "copy_compatible_to"
        dims = tuple(getattr(data, "dims", None) or ())
        if not hasattr(data, "dims") or not all(isinstance(d, Dim) for d in dims):
            raise TypeError(f"{func}: data must be a Tensor (or have dims), got {type(data).__name__}")
        if check_dtype and getattr(data, "dtype", self.dtype) != self.dtype:
            raise ValueError(f"{func}: dtype {self.dtype} differs from that of data, {data.dtype} (check_dtype)")
        if check_sparse and getattr(data, "sparse_dim", None) is not self.sparse_dim:
            raise ValueError(f"{func}: sparse_dim {self.sparse_dim} differs from that of data (check_sparse)")
        if not add_dims:
            dims = tuple(d for d in dims if d in self.dims)
        raw = align(self, dims)
        if unbroadcast:
            shape = [self.backend.axis_size(raw, i) if d in self.dims else d.dimension if d.dimension is not None
                     else d.get_dim_value() for i, d in enumerate(dims)]  # fmt: skip
            out_dims = dims
            raw = self.backend.broadcast_to(raw, shape)
        else:
            out_dims = tuple(d if d in self.dims else Dim(1, name=f"{d.name}_bc" if d.name else None) for d in dims)
        out = self.copy_template(raw, out_dims)
        if out.feature_dim is not None and out.feature_dim not in out_dims:
            out.feature_dim = None
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
