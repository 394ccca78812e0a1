"""The backend protocol: every primitive the frontend needs, over raw tensors and integer axes.

A backend never sees a :class:`returnn_ls.Dim`. The frontend (``returnn_ls``) resolves every dim to an
integer axis, aligns operands so that they broadcast in the framework's positional sense, and then calls
exactly one primitive per raw operation. Adding a framework means subclassing :class:`Backend` and
implementing the abstract methods below; nothing else in the project changes.

Conventions for all primitives:

- ``x``, ``a``, ``b``, ``cond`` are raw framework tensors (``torch.Tensor``, ``tf.Tensor``); where noted,
  Python scalars are accepted too and take the dtype of the other operand.
- ``axis`` is a non-negative ``int``, ``axes`` a tuple of them.
- ``dtype`` is a string: ``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"``, ``"int32"``,
  ``"int64"`` or ``"bool"``.
- No primitive modifies its inputs.
- Devices: a primitive's result lives on the device of its tensor inputs. Primitives that create a tensor from
  Python or numpy values take ``like``, a raw tensor whose device the result gets; without one, the result goes
  to the framework's default device (torch: ``torch.get_default_device()``, which ``with torch.device("cuda"):``
  sets; TensorFlow places ops itself).
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from frontend_backends.array_kernels import ArrayKernels
from frontend_backends.gradient_kernels import GradientKernels
from frontend_backends.layer_kernels import LayerKernels

#: Binary operations shared by all backends: the frameworks implement Python's operators elementwise with
#: numpy-style broadcasting, so one table serves every backend.
BINARY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,  # rounds toward -inf (Python's, torch's and TensorFlow's)
    "mod": operator.mod,  # the sign of the divisor (Python's, torch.remainder, tf.math.floormod)
    "pow": operator.pow,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
    "logical_and": operator.and_,
    "logical_or": operator.or_,
}

#: Names accepted by :meth:`Backend.unary`.
UNARY_OPS = ("neg", "abs", "exp", "expm1", "log", "log1p", "sqrt", "rsqrt", "reciprocal", "square", "relu", "tanh",
             "sigmoid", "logical_not", "sin", "cos", "ceil", "floor", "round")

#: Names accepted by :meth:`Backend.reduce`.
REDUCE_OPS = ("sum", "mean", "max", "min", "logsumexp", "any", "all")


class Backend(ArrayKernels, LayerKernels, GradientKernels, ABC):
    """Base class of the backends: the abstract methods are the protocol, the others have slow-but-correct
    defaults built on them. The registry sets :attr:`name` to the registered name."""

    #: The name used by ``returnn_ls.select_backend``.
    name: str = ""
    #: Whether the framework also has a graph mode that builds ops instead of running them (TensorFlow 1's), into
    #: which RETURNN switches it when RETURNN's frontend first sees one of its tensors (see :meth:`in_graph_mode`).
    has_graph_mode: bool = False

    def in_graph_mode(self) -> bool:
        """:return: whether the program runs in the framework's graph mode now (default: never)"""
        return False

    def executing_eagerly(self) -> bool:
        """:return: whether ops run eagerly right now, i.e. not while a graph is traced (default: always)"""
        return True

    # -- creation and inspection ------------------------------------------------------------------------------

    @abstractmethod
    def is_tensor(self, x: Any) -> bool:
        """:return: whether ``x`` is a raw tensor (or variable) of this backend's framework"""
        raise NotImplementedError

    @abstractmethod
    def convert(self, value: Any, dtype: str | None = None, like: Any = None) -> Any:
        """Create a new raw tensor from a numpy array, Python scalar or nested list (always a copy).

        :param dtype: the dtype of the result; ``None`` keeps the numpy dtype of ``value``
        :param like: a raw tensor: the result goes to its device (see the module docstring)
        """
        raise NotImplementedError

    @abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """:return: a numpy copy of ``x`` (detached from any autograd graph); eager tensors only"""
        raise NotImplementedError

    @abstractmethod
    def concrete_value(self, x: Any) -> np.ndarray | None:
        """:return: the value of ``x`` as numpy if it can be read now without tracing or compiling, else None.

        Used for argument checks that are skipped inside ``tf.function`` and ``torch.compile``.
        """
        raise NotImplementedError

    def is_concrete(self, x: Any) -> bool:
        """:return: whether :meth:`concrete_value` of ``x`` would give its value (eager, not tracing), without
        reading it (which on an accelerator waits for the queued work); default: asks :meth:`concrete_value`"""
        return self.concrete_value(x) is not None

    @abstractmethod
    def dtype(self, x: Any) -> str:
        """:return: the dtype of ``x`` as a string (see the module docstring)"""
        raise NotImplementedError

    @abstractmethod
    def shape(self, x: Any) -> tuple[int | None, ...]:
        """:return: the static shape of ``x``; an entry is None where it is only known at run time"""
        raise NotImplementedError

    @abstractmethod
    def axis_size(self, x: Any, axis: int) -> Any:
        """:return: the size of ``x`` along ``axis``: an ``int``, or a scalar int tensor inside a graph"""
        raise NotImplementedError

    @abstractmethod
    def arange(self, n: Any, dtype: str, like: Any = None) -> Any:
        """:return: ``[0, 1, ..., n-1]`` on the device of ``like``; ``n`` is an ``int`` or a scalar int tensor"""
        raise NotImplementedError

    def to_device_of(self, x: Any, like: Any) -> Any:
        """:return: ``x`` on the device of ``like`` (``x`` itself if it is there; default: ``x``, for frameworks
        that place ops themselves)"""
        return x

    def to_device(self, x: Any, device: str) -> Any:
        """:return: ``x`` on ``device`` (``"cpu"``, ``"cuda:0"``; ``x`` itself if it is there; default: ``x``, for
        frameworks that place ops themselves)"""
        return x

    def device_name(self, x: Any) -> str | None:
        """:return: the device of the raw tensor ``x`` as a string (``"cpu"``, ``"cuda:0"``), None where it is not
        known (e.g. a symbolic tensor); default ``"cpu"``"""
        return "cpu"

    def move_parameter(self, param: Any, device: str) -> None:
        """Move ``param`` (from :meth:`create_parameter`) to ``device`` in place, keeping the object. Default: a
        ValueError (frameworks whose variables stay on the device they were created on)."""
        raise ValueError(f"the {self.name} backend cannot move a parameter; create it on {device!r} instead")

    @abstractmethod
    def create_parameter(self, value: np.ndarray, trainable: bool) -> Any:
        """:return: the framework's own parameter (``torch.nn.Parameter``, ``tf.Variable``) holding a copy of
        ``value``; optimizers update it when ``trainable``"""
        raise NotImplementedError

    @abstractmethod
    def assign_parameter(self, param: Any, value: Any) -> None:
        """Overwrite ``param`` (from :meth:`create_parameter`) in place with ``value`` (raw tensor or numpy of
        its shape), without recording a gradient."""
        raise NotImplementedError

    # -- shape and dtype ---------------------------------------------------------------------------------------

    @abstractmethod
    def cast(self, x: Any, dtype: str) -> Any:
        """:return: ``x`` converted to ``dtype`` (``x`` itself if it already has it)"""
        raise NotImplementedError

    @abstractmethod
    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        """:return: ``x`` with its axes permuted; axis ``i`` of the result is axis ``perm[i]`` of ``x``"""
        raise NotImplementedError

    @abstractmethod
    def expand_dims(self, x: Any, axis: int) -> Any:
        """:return: ``x`` with a new axis of size 1 inserted at position ``axis``"""
        raise NotImplementedError

    # -- elementwise -------------------------------------------------------------------------------------------

    def binary(self, op: str, a: Any, b: Any) -> Any:
        """Elementwise binary operation ``op`` (a key of :data:`BINARY_OPS`, ``"maximum"`` or ``"minimum"``).

        ``a`` and ``b`` have equal rank (or one is a Python scalar) and broadcast positionally.
        """
        return BINARY_OPS[op](a, b)

    @abstractmethod
    def unary(self, op: str, x: Any) -> Any:
        """Elementwise unary operation ``op``, one of :data:`UNARY_OPS`."""
        raise NotImplementedError

    @abstractmethod
    def where(self, cond: Any, a: Any, b: Any) -> Any:
        """:return: ``a`` where ``cond`` is true, else ``b``; the operands broadcast positionally"""
        raise NotImplementedError

    # -- reductions and softmax --------------------------------------------------------------------------------

    @abstractmethod
    def reduce(self, op: str, x: Any, axes: Sequence[int], keepdims: bool = False) -> Any:
        """Reduce ``x`` over ``axes`` with ``op``, one of :data:`REDUCE_OPS`."""
        raise NotImplementedError

    @abstractmethod
    def log_softmax(self, x: Any, axis: int) -> Any:
        """:return: ``x - logsumexp(x, axis)``, computed stably"""
        raise NotImplementedError

    @abstractmethod
    def softmax(self, x: Any, axis: int) -> Any:
        """:return: ``exp(log_softmax(x, axis))``, computed stably"""
        raise NotImplementedError

    @abstractmethod
    def gather_last(self, x: Any, indices: Any) -> Any:
        """:return: ``x[..., indices[...]]``: ``x`` has shape ``[*S, K]``, ``indices`` shape ``S``, result ``S``"""
        raise NotImplementedError

    @abstractmethod
    def matmul(self, a: Any, b: Any) -> Any:
        """:return: the matrix product over the last axis of ``a`` and the first axis of 2-D ``b``"""
        raise NotImplementedError

    def assert_none_in_graph(self, bad: Any, message: str) -> None:
        """Inside a graph the framework runs assertions in (TensorFlow's ``tf.function`` without XLA): make the
        graph raise an error with ``message`` at run time if any entry of the bool tensor ``bad`` is true.
        Elsewhere (eager mode, where the caller checks the values itself; XLA; ``torch.compile``) do nothing:
        this default."""
