"""``Parameter``: a :class:`Tensor` whose raw tensor is the framework's own parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from returnn_ls import _backend
from returnn_ls.dim import Dim
from returnn_ls.nn import init as _init
from returnn_ls.tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A (trainable) parameter: ``torch.nn.Parameter`` on torch, ``tf.Variable`` on TensorFlow.

    The initial value is computed in numpy (see :mod:`returnn_ls.nn.init`), so a model built in the same order from
    the same seed has the same parameters on both backends. It is created on the selected backend.

    :param dims: static dims
    :param dtype: a float dtype, or an integer/bool dtype (such a parameter is never trainable, e.g. a counter)
    :param initial: a :class:`~returnn_ls.nn.init.ParamInit`, a number, or a numpy array of the dims' sizes
        (default: Glorot uniform for two or more dims, zeros otherwise)
    :param trainable: whether optimizers update it (None: True, False for an ``auxiliary`` one or an integer
        dtype, as RETURNN)
    :param auxiliary: a parameter with an update of its own, not the optimizer's (e.g. the running statistics of
        :class:`~returnn_ls.nn.normalization.BatchNorm`), as RETURNN's flag

    As in RETURNN, assigning ``initial`` after creation re-initialises the value::

        self.weight = rf.Parameter([in_dim, out_dim])
        self.weight.initial = rf.init.Glorot()
    """

    __slots__ = ("trainable", "auxiliary", "_initial")

    def __init__(
        self,
        dims: Sequence[Dim],
        dtype: str = "float32",
        *,
        initial: Any = None,
        trainable: bool | None = None,
        auxiliary: bool = False,
    ):
        dims = tuple(dims)
        if not all(isinstance(d, Dim) and d.dimension is not None for d in dims):
            raise ValueError(f"Parameter: dims must be static Dims, got {list(dims)}")
        value = _initial_value(dims, dtype, initial)
        is_float = dtype.startswith(("float", "bfloat"))
        if trainable and not is_float:
            raise ValueError(f"Parameter: a parameter of dtype {dtype} cannot be trainable (only float dtypes)")
        trainable = (not auxiliary and is_float) if trainable is None else trainable
        backend = _backend.selected_backend()
        super().__init__(backend.create_parameter(value, trainable), dims, backend=backend)
        self.trainable = trainable
        self.auxiliary = auxiliary
        self._initial = initial

    @property
    def initial(self) -> Any:
        """The initialiser or initial value given (None: the default)."""
        return self._initial

    @initial.setter
    def initial(self, initial: Any) -> None:
        self.assign(_initial_value(self.dims, self.dtype, initial))
        self._initial = initial

    def assign(self, value: Any) -> None:
        """Overwrite the value in place (no gradient recorded): a Tensor with the same dims, or numpy/a number."""
        if isinstance(value, Tensor):
            value = value.copy_transpose(self.dims).raw_tensor
        else:
            value = np.array(np.broadcast_to(np.asarray(value, dtype=self.dtype), [d.dimension for d in self.dims]))
        self.backend.assign_parameter(self.raw_tensor, value)

    def assign_add(self, value: Any) -> None:
        """Add ``value`` (as :meth:`assign` takes it) to the value in place (no gradient recorded)."""
        if isinstance(value, Tensor):
            value = value.copy_transpose(self.dims).raw_tensor
        else:
            value = self.backend.convert(np.broadcast_to(np.asarray(value, dtype=self.dtype), self.backend.shape(
                self.raw_tensor)), self.dtype, like=self.raw_tensor)  # fmt: skip
        current = self.backend.stop_gradient(self.raw_tensor)
        self.backend.assign_parameter(self.raw_tensor, self.backend.binary("add", current, value))

    def __repr__(self) -> str:
        return f"Parameter({list(self.dims)}, {self.dtype!r}, {self.backend.name})"


def _initial_value(dims: tuple[Dim, ...], dtype: str, initial: Any) -> np.ndarray:
    shape = [d.dimension for d in dims]
    if initial is None:
        initial = _init.Glorot() if len(dims) >= 2 else _init.Zeros()
    if isinstance(initial, _init.ParamInit):
        return initial(dims, dtype)
    value = np.asarray(initial, dtype=dtype)
    if value.shape not in ((), tuple(shape)):
        raise ValueError(f"Parameter: initial value of shape {value.shape} does not match dims {list(dims)}")
    return np.broadcast_to(value, shape).copy()
