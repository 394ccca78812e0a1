"""Methods of :class:`returnn_ls.Dim` that model code from RETURNN uses: ``dyn_size``, ``declare_same_as``,
``copy_from``; the cache of ``get_mask``; sizes given as a raw framework scalar; the padded length in the
static-traceable mode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from frontend_backends import backend_name_of

if TYPE_CHECKING:
    from returnn_ls.dim import Dim
    from returnn_ls.tensor import Tensor

__all__ = ["DimExtraMixin", "raw_scalar_sizes"]


def raw_scalar_sizes(value: Any, name: str | None) -> Any:
    """:return: ``value`` as a scalar integer :class:`Tensor` if it is a raw framework tensor (``tf.shape(x)[0]``,
    also a symbolic one in a ``tf.function``; ``torch.tensor(5)``), else ``value`` unchanged"""
    from returnn_ls import _backend
    from returnn_ls.tensor import Tensor

    if backend_name_of(value) is None:
        return value
    backend = _backend.backend_for_raw(value)
    if not backend.is_tensor(value):
        return value
    if len(backend.shape(value)) != 0:
        raise ValueError(f"Dim {name!r}: a raw tensor as dimension must be a scalar (the size), got shape "
                         f"{list(backend.shape(value))}; wrap sizes per sequence as a Tensor with dims")  # fmt: skip
    return Tensor(value, (), backend=backend, name=f"{name}:size" if name else None)


class DimExtraMixin:
    """Mixed into :class:`returnn_ls.Dim`."""

    __slots__ = ()

    @property
    def dyn_size(self: Dim) -> Any:
        """:return: the raw tensor of :attr:`dyn_size_ext` (RETURNN's ``dyn_size``), None for a static dim or
        while the sizes are not known"""
        sizes = self.dyn_size_ext
        return None if sizes is None or self.dimension is not None else sizes.raw_tensor

    def declare_same_as(self: Dim, other: Dim) -> None:
        """Declare that this dim has the size of ``other`` (RETURNN's ``declare_same_as``): a static ``other``
        makes it static with that size; otherwise :attr:`dyn_size_ext` is ``other``'s sizes from now on (also when
        they change, e.g. for ``time * 2`` when ``time`` gets new sizes), until sizes are set on this dim.

        Unlike RETURNN, both stay different dims (dims are matched by identity here): a tensor over ``other`` is not
        a tensor over this dim; use :func:`returnn_ls.replace_dim` to rename an axis.

        :raise ValueError: if this dim is static with another size, or ``other`` is (or follows) this dim
        """
        from returnn_ls.dim import Dim

        if not isinstance(other, Dim):
            raise TypeError(f"declare_same_as: other must be a Dim, got {type(other).__name__}")
        dim: Dim | None = other
        while dim is not None:
            if dim is self:
                if other is self:
                    return
                raise ValueError(f"declare_same_as: {other} already follows the size of {self}")
            dim = dim._same_as
        if self.dimension is not None:
            if other.dimension != self.dimension:
                raise ValueError(f"declare_same_as: {self} is static; it cannot have the size of {other}")
            return
        if other.dimension is not None:
            self.dimension = self.capacity = other.dimension
            self._dyn_size_ext = None
            return
        self._same_as = other
        self._dyn_size_ext = None
        if self.capacity is None:
            self.capacity = other.capacity

    def copy_from(self: Dim, other: Dim) -> None:
        """Take the size of ``other`` (RETURNN's ``copy_from``): its static dimension or its current sizes (the
        same :class:`Tensor`), its capacity; this dim stays another dim. Masks of both come from one cache."""
        from returnn_ls.dim import Dim

        if not isinstance(other, Dim):
            raise TypeError(f"copy_from: other must be a Dim, got {type(other).__name__}")
        self.dimension, self.capacity = other.dimension, other.capacity
        self._dyn_size_ext = None if other.dimension is not None else other.dyn_size_ext
        self._same_as = None
        if other._shared_masks is None:
            other._shared_masks = {}
        self._shared_masks = other._shared_masks

    def _cached_mask(self: Dim) -> Tensor | None:
        """:return: the mask made before for the current sizes (eager mode only), else None"""
        sizes = self.dyn_size_ext
        cached = self._mask_cache
        if cached is not None and cached[0] is sizes and cached[1] is sizes.raw_tensor:
            return cached[2]
        if self.dimension is not None or sizes is None or not sizes.backend.is_concrete(sizes.raw_tensor):
            return None
        from returnn_ls.tensor import Tensor

        shared = (self._shared_masks or {}).get(self.capacity)
        if shared is not None and shared[0] is sizes and shared[1] is sizes.raw_tensor:
            mask = Tensor(shared[2], sizes.dims + (self,), backend=sizes.backend)
            self._mask_cache = (sizes, sizes.raw_tensor, mask)
            return mask
        return None

    def _cache_mask(self: Dim, mask: Tensor) -> Tensor:
        """Remember ``mask`` (from :func:`returnn_ls.sequence_mask`) for the current sizes; :return: it"""
        sizes = self.dyn_size_ext
        if self.dimension is None and sizes is not None and sizes.backend.is_concrete(sizes.raw_tensor):
            if mask.dims == sizes.dims + (self,):
                self._mask_cache = (sizes, sizes.raw_tensor, mask)
                if self._shared_masks is None:
                    self._shared_masks = {}
                self._shared_masks[self.capacity] = (sizes, sizes.raw_tensor, mask.raw_tensor)
        return mask

    def _traceable_capacity(self: Dim) -> int:
        """:return: in the static-traceable mode: the capacity of the dim this one is ``bounded_by`` (recursively)

        :raise ValueError: if there is none
        """
        dim, seen = self, []
        while dim is not None and all(dim is not s for s in seen):
            if dim.dimension is not None or dim.capacity is not None:
                return dim.dimension if dim.dimension is not None else dim.capacity
            seen.append(dim)
            dim = dim.bounded_by
        raise ValueError(f"get_dim_value: {self} has no (derivable) capacity; in the static-traceable mode "
                         "(rf.set_static_traceable_ctx) its padded length cannot be read from its sizes: declare "
                         "Dim(..., capacity=N) or bounded_by a dim with a capacity")  # fmt: skip
