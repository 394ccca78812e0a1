"""Dims: named axes, matched by identity."""

from __future__ import annotations

import numbers
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from returnn_ls import dim_math, static_traceable
from returnn_ls._dim_extra import DimExtraMixin, raw_scalar_sizes

if TYPE_CHECKING:
    from returnn_ls.tensor import Tensor

__all__ = ["Dim", "batch_dim", "single_step_dim"]


class Dim(DimExtraMixin):
    """A named axis. Two dims are the same dim only if they are the same object.

    A dim is *static* (``Dim(7, name="vocab")``: ``dimension == 7``) or *dynamic*: ``Dim(lens, name="time")``
    where ``lens`` is an integer :class:`Tensor` of sequence lengths over other dims (e.g. ``[batch]``); then
    ``dimension`` is None and ``dyn_size_ext`` holds ``lens``.

    ``Dim(None, name="time")`` is a dynamic dim whose sizes are not known yet, as in a RETURNN config's
    ``extern_data``: whoever has the data (the training loop, per batch) sets ``dyn_size_ext``. A dynamic dim
    whose sizes have no dims of their own (a scalar, like :data:`batch_dim`'s) has no padding.

    Arithmetic (``time + 1``, ``2 * dim``, ``time // 2``, ``a + b``, ``a - b``, ``a * b``, ...) gives derived dims
    (see :mod:`returnn_ls.dim_math`): static from static operands, else with sizes computed from the operands'
    sizes; the same expression gives the same Dim object, so ``target_dim + 1`` written twice names one axis.

    :param dimension: the static size (int >= 0), the sizes (an integer Tensor) or None (sizes set later). A raw
        framework integer scalar (``tf.shape(x)[0]`` in a ``tf.function``, ``torch.tensor(n)``) or a scalar Tensor
        gives a dynamic dim with one size for all (no padding), which works unchanged when traced or compiled:
        ``Dim(tf.shape(x)[0], name="time")``
    :param name: for messages and ``repr``
    :param capacity: as RETURNN's: a static upper bound of the sizes of a dynamic dim, the padded length of
        buffers that :meth:`get_dim_value` (and :func:`returnn_ls.range_over_dim` without ``like``) then give;
        for a static dim it can only be its dimension (the default)
    :param bounded_by: as RETURNN's: a dim whose sizes this dim's never exceed; stored (``bounded_by``), only
        informative here (in RETURNN it gives a capacity for static-shape tracing)
    """

    __slots__ = ("name", "dimension", "capacity", "bounded_by", "derived_from_op", "_dyn_size_ext", "_math_cache",
                 "_sizes_cache", "_same_as", "_mask_cache", "_shared_masks", "__weakref__")  # fmt: skip

    def __init__(self, dimension: int | Tensor | None, *, name: str | None = None, capacity: int | None = None,
                 bounded_by: Dim | None = None):  # fmt: skip
        self.name = name
        self._dyn_size_ext: Tensor | None = None
        #: for a derived dim (``time + 1``): how it was made (see :class:`returnn_ls.dim_math.DimOp`), else None
        self.derived_from_op: dim_math.DimOp | None = None
        self._math_cache: MutableMapping | None = None  # (method, operand) -> derived dim, see dim_math.derive
        self._sizes_cache: tuple | None = None  # (operands' sizes, derived sizes), see dim_math.derived_sizes
        self._same_as: Dim | None = None  # see declare_same_as
        self._mask_cache: tuple | None = None  # (sizes, raw sizes, mask), see get_mask
        self._shared_masks: dict | None = None  # capacity -> (sizes, raw sizes, raw mask), shared by copy_from
        self.dimension = self._init_dimension(dimension, name)
        self.capacity = self._check_capacity(capacity)
        if bounded_by is not None and not isinstance(bounded_by, Dim):
            raise TypeError(f"Dim {name!r}: bounded_by must be a Dim or None, got {type(bounded_by).__name__}")
        self.bounded_by = bounded_by

    def _init_dimension(self, dimension: Any, name: str | None) -> int | None:
        """:return: the static dimension; sets the sizes of a dynamic one"""
        from returnn_ls.tensor import Tensor

        if dimension is None:
            return None
        dimension = raw_scalar_sizes(dimension, name)
        if isinstance(dimension, Tensor):
            if not dimension.dtype.startswith("int"):
                raise TypeError(f"Dim {name!r}: dynamic sizes must be an integer Tensor, got dtype {dimension.dtype}")
            if dimension.sparse_dim is not None:  # as RETURNN: allowed (e.g. a max of indices); sizes are not indices
                dimension = dimension.copy_template(dimension.raw_tensor)
                dimension.sparse_dim = None
            self._dyn_size_ext = dimension
            values = dimension.concrete_value()
            if values is not None and (values < 0).any():
                raise ValueError(f"Dim {name!r}: sizes must be >= 0, got {values.min()}")
            return None
        if isinstance(dimension, numbers.Integral) and not isinstance(dimension, bool):
            if dimension < 0:
                raise ValueError(f"Dim {name!r}: dimension must be >= 0, got {dimension}")
            return int(dimension)
        raise TypeError(
            f"Dim {name!r}: dimension must be an int >= 0, an integer Tensor of sizes or None, "
            f"got {type(dimension).__name__}"
        )

    def _check_capacity(self, capacity: Any) -> int | None:
        if capacity is None:
            return self.dimension
        if not isinstance(capacity, numbers.Integral) or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"Dim {self.name!r}: capacity must be an int >= 0 or None, got {capacity!r}")
        if self.dimension is not None and capacity != self.dimension:
            raise ValueError(f"Dim {self.name!r}: the capacity of a static dim must be its dimension "
                             f"{self.dimension} (padded static dims are not supported), got {capacity}")  # fmt: skip
        return int(capacity)

    @property
    def dyn_size_ext(self) -> Tensor | None:
        """The sizes of a dynamic dim (an integer Tensor over e.g. ``[batch]``), None for a static dim or while
        not known. A derived dim (``time + 1``) computes them from its operands' current sizes unless set."""
        if self._dyn_size_ext is None and self.dimension is None:
            if self._same_as is not None:
                return self._same_as.dyn_size_ext
            if self.derived_from_op is not None:
                return dim_math.derived_sizes(self)
        return self._dyn_size_ext

    @dyn_size_ext.setter
    def dyn_size_ext(self, sizes: Tensor | None) -> None:
        self._dyn_size_ext = sizes

    @property
    def size(self) -> int | None:
        """:return: the static size (RETURNN's ``Dim.size``), None for a dynamic dim: the same as ``dimension``"""
        return self.dimension

    def is_dynamic(self) -> bool:
        """:return: whether the size varies per sequence (``dimension is None``)"""
        return self.dimension is None

    def is_static(self) -> bool:
        """:return: whether the dim has a static size (``dimension is not None``)"""
        return self.dimension is not None

    def is_padded(self) -> bool:
        """:return: whether the size varies along other dims (sizes over e.g. ``[batch]``), so padding exists"""
        return self.dimension is None and self.dyn_size_ext is not None and len(self.dyn_size_ext.dims) > 0

    def need_masking(self) -> bool:
        """:return: as RETURNN's: whether frames beyond the sizes can exist (a dynamic dim with a capacity, sizes
        over other dims, or sizes not known yet, except the batch dim's)"""
        if self.dimension is not None:
            return False
        if self.capacity is not None or self.is_padded():
            return True
        return self.dyn_size_ext is None and self is not batch_dim

    def get_mask(self) -> Tensor:
        """:return: bool Tensor over ``dyn_size_ext.dims + [self]``, True inside each sequence.

        For a static dim this is all True over ``[self]``. The length of ``self`` in the mask is the largest
        size. In eager mode the mask is made once per sizes (the same Tensor again, as RETURNN's cache).
        """
        from returnn_ls import ops

        cached = self._cached_mask()
        return cached if cached is not None else self._cache_mask(ops.sequence_mask(self))

    def get_size_tensor(self, *, device: str | None = None) -> Tensor:
        """:return: the sizes (``dyn_size_ext``) of a dynamic dim, a scalar int32 Tensor of a static dim's size

        :param device: move the result there (``"cpu"``, ``"cuda:0"``); None: the sizes where they are, a static
            size on the framework's default device (RETURNN: the CPU)
        """
        from returnn_ls import _backend
        from returnn_ls.tensor import Tensor

        if self.dimension is not None:
            backend = _backend.selected_backend()
            sizes = Tensor(backend.convert(self.dimension, "int32"), (), backend=backend, name=f"{self.name}:size")
        else:
            sizes = self.dyn_size_ext
            if sizes is None:
                raise ValueError(f"get_size_tensor: the sizes of {self} are not known yet (set its dyn_size_ext)")
        if device is None:
            return sizes
        return sizes.copy_template(sizes.backend.to_device(sizes.raw_tensor, device))

    def get_size_tensor_or_int(self, *, device: str | None = None) -> Tensor | int:
        """:return: ``dimension`` of a static dim, else :meth:`get_size_tensor`"""
        return self.dimension if self.dimension is not None else self.get_size_tensor(device=device)

    def get_dim_value_tensor(self) -> Tensor | int:
        """:return: the padded length of this axis: the capacity if declared, the static size, or the largest of
        the sizes (a scalar Tensor, padding not masked, as RETURNN's). In the static-traceable mode
        (:func:`returnn_ls.set_static_traceable_ctx`) never the sizes: the capacity, else that of the dim it is
        ``bounded_by`` (else a ValueError)."""
        from returnn_ls.tensor import Tensor

        if self.dimension is not None or self.capacity is not None:
            return self.dimension if self.dimension is not None else self.capacity
        if static_traceable.is_static_traceable():
            return self._traceable_capacity()
        sizes = self.dyn_size_ext
        if sizes is None:
            raise ValueError(f"get_dim_value: the sizes of {self} are not known yet (set its dyn_size_ext)")
        if not sizes.dims:
            return sizes
        raw = sizes.backend.reduce("max", sizes.raw_tensor, tuple(range(len(sizes.dims))))
        return Tensor(raw, (), backend=sizes.backend)

    def get_dim_value(self) -> Any:
        """:return: :meth:`get_dim_value_tensor` as an int or a raw scalar tensor"""
        value = self.get_dim_value_tensor()
        return value if isinstance(value, int) else value.raw_tensor

    def copy(self, same_as_self: bool = True, description: str | None = None) -> Dim:
        """:return: with ``same_as_self=False``: a new dim named ``description`` with this dim's size (static or
        the current sizes) and capacity; with ``same_as_self=True``: this dim itself (RETURNN makes a different
        object that compares equal; here dims are matched by identity)"""
        if same_as_self:
            if description is not None and description != self.name:
                raise ValueError(f"Dim.copy: a copy with same_as_self=True is the dim {self} itself, so it cannot "
                                 f"get another description ({description!r}); use same_as_self=False")  # fmt: skip
            return self
        if description is None:
            raise ValueError(f"Dim.copy: same_as_self=False needs a description for the new dim (copy of {self})")
        sizes = self.dimension if self.dimension is not None else self.dyn_size_ext
        return Dim(sizes, name=description, capacity=self.capacity)

    # Arithmetic: see returnn_ls.dim_math.
    def __add__(self, other: Dim | int) -> Dim:
        return dim_math.derive(self, "add", other)

    def __radd__(self, other: int) -> Dim:
        return dim_math.derive(self, "radd", other)

    def __sub__(self, other: Dim | int) -> Dim:
        return dim_math.derive(self, "sub", other)

    def sub_right(self, other: Dim | int) -> Dim:
        """:return: ``self - other``, ``other`` removed from the right (e.g. of ``x + other``)"""
        return dim_math.derive(self, "sub", other)

    def sub_left(self, other: Dim | int) -> Dim:
        """:return: ``self - other``, ``other`` removed from the left (e.g. of ``other + x``)"""
        return dim_math.derive(self, "sub_left", other)

    def __mul__(self, other: Dim | int) -> Dim:
        return dim_math.derive(self, "mul", other)

    def __rmul__(self, other: int) -> Dim:
        return dim_math.derive(self, "rmul", other)

    def __floordiv__(self, other: Dim | int) -> Dim:
        return dim_math.derive(self, "floordiv", other)

    def __truediv__(self, other: Dim | int) -> Dim:
        return dim_math.derive(self, "truediv", other)

    def div_right(self, other: Dim | int) -> Dim:
        """:return: ``self / other`` for ``self == x * other`` (sizes: floor division): ``x``"""
        return dim_math.derive(self, "truediv", other)

    def div_left(self, other: Dim | int) -> Dim:
        """:return: ``self / other`` for ``self == other * x`` (sizes: floor division): ``x``"""
        return dim_math.derive(self, "truediv_left", other)

    def ceildiv_right(self, other: Dim | int) -> Dim:
        """:return: ``ceil(self / other)`` (e.g. the frames of a strided convolution)"""
        return dim_math.derive(self, "ceildiv", other)

    def ceildiv_left(self, other: Dim | int) -> Dim:
        """:return: ``ceil(self / other)``, ``other`` the left factor (e.g. a dim split into ``other`` groups)"""
        return dim_math.derive(self, "ceildiv_left", other)

    def __repr__(self) -> str:
        size = self.dimension if self.dimension is not None else "dynamic"
        return f"Dim({self.name!r}, {size})"


#: The batch dim of RETURNN configs (``from returnn_ls import batch_dim``): one global dynamic dim whose size the
#: training loop sets per batch.
batch_dim = Dim(None, name="batch")

#: The spatial dim of one decoding step (RETURNN's ``single_step_dim``): passed as ``spatial_dim`` to a recurrent
#: module's call, it runs one step on a state instead of a whole sequence.
single_step_dim = Dim(1, name="single-step")
