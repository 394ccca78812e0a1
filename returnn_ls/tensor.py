"""Tensor: a raw framework tensor plus the dims that name its axes."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from frontend_backends import Backend, backend_name_of
from returnn_ls import _backend
from returnn_ls._tensor_extra import TensorExtraMixin
from returnn_ls.dim import Dim

__all__ = ["Tensor", "convert_to_tensor"]


class Tensor(TensorExtraMixin):
    """A raw tensor whose axes are named by :class:`Dim` objects.

    Operators (``+ - * / // % ** < <= > >= == != & | ~``, unary ``-`` and ``abs``) broadcast by dim identity:
    the result has the dims of the left operand followed by the dims only the right one has.
    Use :func:`convert_to_tensor` to create one from user data.
    """

    __slots__ = ("raw_tensor", "dims", "dtype", "feature_dim", "sparse_dim", "backend", "log_softmax_of",
                 "smoothed_log_softmax_of", "name")  # fmt: skip
    __hash__ = object.__hash__

    def __init__(
        self,
        raw_tensor: Any,
        dims: Sequence[Dim],
        *,
        feature_dim: Dim | None = None,
        sparse_dim: Dim | None = None,
        backend: Backend | None = None,
        name: str | None = None,
    ):
        self.backend = backend or _backend.backend_for_raw(raw_tensor)
        self.name = name  # for messages (RETURNN's Tensor.name); kept by copy_template
        self.raw_tensor = raw_tensor
        self.dims = tuple(dims)
        self.dtype = self.backend.dtype(raw_tensor)
        self.feature_dim = feature_dim
        self.sparse_dim = sparse_dim
        #: for the output of :func:`returnn_ls.log_softmax`: its input logits (same dims, same order) and the axis,
        #: so that :func:`returnn_ls.label_smoothed_log_prob_gradient` can fuse its backward with the log-softmax's
        self.log_softmax_of: tuple[Tensor, Dim] | None = None
        #: for the output of a smoothed-gradient op on such a log-softmax: what :func:`returnn_ls.cross_entropy`
        #: needs to fuse the gather with it (see ``returnn_ls.gradient.SmoothedLogSoftmax``)
        self.smoothed_log_softmax_of: Any = None

    @property
    def backend_name(self) -> str:
        """:return: ``"torch"`` or ``"tensorflow"``"""
        return self.backend.name

    @property
    def device(self) -> str | None:
        """:return: the device of the raw tensor (``"cpu"``, ``"cuda:0"``; TensorFlow: ``"cpu"``, ``"gpu:0"``), as
        RETURNN's; None where it is not known (a symbolic tensor); pass it as ``device=`` to create tensors there"""
        return self.backend.device_name(self.raw_tensor)

    def copy_transpose(self, perm: Sequence[Dim]) -> Tensor:
        """:return: the same data with its axes in the order ``perm`` (a permutation of ``dims``)"""
        perm = tuple(perm)
        if len(perm) != len(self.dims) or set(map(id, perm)) != set(map(id, self.dims)):
            raise ValueError(f"copy_transpose: perm {list(perm)} must be a permutation of dims {list(self.dims)}")
        axes = [self.dims.index(d) for d in perm]
        raw = self.raw_tensor if axes == sorted(axes) else self.backend.transpose(self.raw_tensor, axes)
        return self.copy_template(raw, perm)

    def copy_template(self, raw_tensor: Any, dims: Sequence[Dim] | None = None) -> Tensor:
        """:return: a new Tensor with ``raw_tensor`` and this tensor's dims, feature and sparse dim"""
        return Tensor(
            raw_tensor,
            self.dims if dims is None else dims,
            feature_dim=self.feature_dim,
            sparse_dim=self.sparse_dim,
            backend=self.backend,
            name=self.name,
        )

    def concrete_value(self) -> np.ndarray | None:
        """:return: the value as numpy when it can be read now (eager mode, not compiling), else None"""
        return self.backend.concrete_value(self.raw_tensor)

    def numpy(self) -> np.ndarray:
        """:return: a numpy copy of the value (eager mode only)"""
        return self.backend.to_numpy(self.raw_tensor)

    def __repr__(self) -> str:
        extra = f", sparse_dim={self.sparse_dim}" if self.sparse_dim else ""
        return f"Tensor({list(self.dims)}, {self.dtype!r}, {self.backend.name}{extra})"

    def mark_as_loss(
        self,
        name: str,
        *,
        scale: float = 1.0,
        as_error: bool = False,
        use_normalized_loss: bool = False,
        use_flatten_frames: bool = True,
        custom_inv_norm_factor: Tensor | None = None,
    ) -> None:
        """Mark this tensor as a loss of the current ``train_step``: see :meth:`returnn_ls.RunCtx.mark_as_loss`.

        Example: ``frame_error.mark_as_loss("fer", as_error=True)``
        """
        from returnn_ls.run_ctx import get_run_ctx

        get_run_ctx().mark_as_loss(
            self, name, scale=scale, as_error=as_error, use_normalized_loss=use_normalized_loss,
            use_flatten_frames=use_flatten_frames, custom_inv_norm_factor=custom_inv_norm_factor,
        )  # fmt: skip

    def mark_as_output(self, name: str, *, shape: Sequence[Dim] | None = None) -> None:
        """Mark this tensor as the output ``name`` of the current ``forward_step`` (dims in the order ``shape``)."""
        from returnn_ls.run_ctx import get_run_ctx

        get_run_ctx().mark_as_output(self, name, dims=shape)

    def mark_as_default_output(self, *, shape: Sequence[Dim] | None = None) -> None:
        """``mark_as_output("output", shape=shape)``"""
        self.mark_as_output("output", shape=shape)

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a Tensor is ambiguous; compare explicitly or use .numpy()")

    # Operators: see returnn_ls.ops.binary.
    def _bin(self, op: str, other: Any, reverse: bool = False) -> Tensor:
        from returnn_ls.ops import binary

        return binary(op, other, self) if reverse else binary(op, self, other)

    def __add__(self, o):  # noqa: D105
        return self._bin("add", o)

    def __radd__(self, o):  # noqa: D105
        return self._bin("add", o, True)

    def __sub__(self, o):  # noqa: D105
        return self._bin("sub", o)

    def __rsub__(self, o):  # noqa: D105
        return self._bin("sub", o, True)

    def __mul__(self, o):  # noqa: D105
        return self._bin("mul", o)

    def __rmul__(self, o):  # noqa: D105
        return self._bin("mul", o, True)

    def __truediv__(self, o):  # noqa: D105
        return self._bin("truediv", o)

    def __rtruediv__(self, o):  # noqa: D105
        return self._bin("truediv", o, True)

    def __floordiv__(self, o):  # noqa: D105
        return self._bin("floordiv", o)

    def __rfloordiv__(self, o):  # noqa: D105
        return self._bin("floordiv", o, True)

    def __mod__(self, o):  # noqa: D105
        return self._bin("mod", o)

    def __rmod__(self, o):  # noqa: D105
        return self._bin("mod", o, True)

    def __pow__(self, o):  # noqa: D105
        return self._bin("pow", o)

    def __lt__(self, o):  # noqa: D105
        return self._bin("lt", o)

    def __le__(self, o):  # noqa: D105
        return self._bin("le", o)

    def __gt__(self, o):  # noqa: D105
        return self._bin("gt", o)

    def __ge__(self, o):  # noqa: D105
        return self._bin("ge", o)

    def __eq__(self, o):  # noqa: D105
        return self._bin("eq", o)

    def __ne__(self, o):  # noqa: D105
        return self._bin("ne", o)

    def __and__(self, o):  # noqa: D105
        return self._bin("logical_and", o)

    def __rand__(self, o):  # noqa: D105
        return self._bin("logical_and", o, True)

    def __or__(self, o):  # noqa: D105
        return self._bin("logical_or", o)

    def __ror__(self, o):  # noqa: D105
        return self._bin("logical_or", o, True)

    def __neg__(self):  # noqa: D105
        from returnn_ls.ops import unary

        return unary("neg", self)

    def __abs__(self):  # noqa: D105
        from returnn_ls.ops import unary

        return unary("abs", self)

    def __invert__(self):  # noqa: D105
        from returnn_ls.ops import unary

        return unary("logical_not", self)


def _check_dims(raw: Any, backend: Backend, dims: tuple[Dim, ...]) -> None:
    if not all(isinstance(d, Dim) for d in dims):
        raise TypeError(f"convert_to_tensor: dims must be a sequence of Dim, got {list(dims)}")
    if len(set(map(id, dims))) != len(dims):
        raise ValueError(f"convert_to_tensor: dims must be distinct, got {list(dims)}")
    shape = backend.shape(raw)
    if len(shape) != len(dims):
        raise ValueError(f"convert_to_tensor: value has shape {list(shape)}, which does not match dims {list(dims)}")
    for size, dim in zip(shape, dims):
        if dim.dimension is not None and size is not None and size != dim.dimension:
            raise ValueError(
                f"convert_to_tensor: value has shape {list(shape)}, which does not match dims {list(dims)} "
                f"({dim} has size {dim.dimension}, the value {size})"
            )


def _to_raw(value: Any, dtype: str | None) -> tuple[Any, Backend]:
    """:return: a raw tensor of ``value`` and its backend; numpy and Python values go to the selected backend"""
    if backend_name_of(value) is not None:
        backend = _backend.backend_for_raw(value)
        if not backend.is_tensor(value):  # e.g. a Keras variable
            value = backend.convert(value)
        return (value if dtype is None else backend.cast(value, dtype)), backend
    backend = _backend.selected_backend()
    if dtype is None and not isinstance(value, np.ndarray):
        value = np.asarray(value)
        dtype = {"f": "float32", "i": "int64", "u": "int64", "b": "bool"}.get(value.dtype.kind)
    return backend.convert(value, dtype), backend


def convert_to_tensor(
    value: Any,
    *,
    dims: Sequence[Dim] = (),
    dtype: str | None = None,
    sparse_dim: Dim | None = None,
    feature_dim: Dim | None = None,
    name: str | None = None,
) -> Tensor:
    """Wrap a raw tensor, numpy array or Python value as a :class:`Tensor`.

    :param value: a ``torch.Tensor``/``tf.Tensor`` (kept on its backend, not copied), a numpy array (copied
        to the selected backend, dtype kept) or Python number/list (float32, int64 or bool)
    :param dims: one :class:`Dim` per axis of ``value``, in order
    :param dtype: cast to this dtype
    :param sparse_dim: for integer class indices: the dim of the classes
    :param feature_dim: the dim that holds features/labels (one of ``dims``)
    :param name: stored as ``Tensor.name`` (for messages; as RETURNN's ``name``)
    """
    if isinstance(value, Tensor):
        return value
    dims = tuple(dims)
    raw, backend = _to_raw(value, dtype)
    _check_dims(raw, backend, dims)
    value_dtype = backend.dtype(raw)
    if sparse_dim is not None:
        if not isinstance(sparse_dim, Dim):
            raise TypeError(f"convert_to_tensor: sparse_dim must be a Dim, got {type(sparse_dim).__name__}")
        if not value_dtype.startswith("int"):
            raise TypeError(f"convert_to_tensor: sparse_dim needs integer class indices, got dtype {value_dtype}")
    if feature_dim is not None and feature_dim not in dims:
        raise ValueError(f"convert_to_tensor: feature_dim {feature_dim} is not one of dims {list(dims)}")
    return Tensor(raw, dims, feature_dim=feature_dim, sparse_dim=sparse_dim, backend=backend, name=name)


def is_scalar(value: Any) -> bool:
    """:return: whether ``value`` is a Python or numpy number (not a Tensor)"""
    return isinstance(value, (numbers.Number, np.number, np.bool_))
