"""The array primitives of a backend: the kernels of ``rf.pad``, ``rf.slice``, ``rf.gather``, ``rf.top_k``,
``rf.cumsum``, ``rf.matmul``, ``rf.random_uniform`` and their kin.

Part of the backend protocol (:class:`frontend_backends.base.Backend` inherits :class:`ArrayKernels`), kept in its
own module as :mod:`frontend_backends.layer_kernels` is. The conventions of :mod:`frontend_backends.base` hold: raw
tensors and integer axes, no Dims; a primitive that creates a tensor takes ``like`` (the result goes to its
device). A *shape* is a sequence whose entries are ints or, where a size is only known at run time (inside a graph),
scalar int tensors. No primitive reads a tensor's value back to the host, except where a framework needs a Python
int for a shape (torch's ``full``, ``reshape``, ``topk``): then the size is read, which for Dim sizes (kept on the
host, as RETURNN keeps them) is no device synchronisation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

#: Names accepted by :meth:`ArrayKernels.random` as ``distribution``.
DISTRIBUTIONS = ("uniform", "normal")
#: Names accepted by :meth:`ArrayKernels.search_sorted` as ``side``.
SEARCH_SIDES = ("left", "right")
#: Names accepted by :meth:`ArrayKernels.scatter` as ``mode``.
SCATTER_MODES = ("sum", "max", "min")


class ArrayKernels(ABC):
    """The array primitives; a mixin of :class:`frontend_backends.base.Backend`, whose primitives (``full``,
    ``where``, ``binary``, ``arange``, ``axis_size``, ``shape``, ``to_device``) the default implementations use."""

    # -- creation ----------------------------------------------------------------------------------------------

    def full_on_device(self, shape: Sequence[Any], value: float, dtype: str, device: str) -> Any:
        """:return: like ``full(shape, value, dtype)``, on ``device`` (``"cpu"``, ``"cuda:0"``). Default: made on
        the default device, then moved there (one copy)."""
        return self.to_device(self.full(shape, value, dtype), device)

    def broadcast_to(self, x: Any, shape: Sequence[Any]) -> Any:
        """:return: ``x`` broadcast (numpy rules, equal rank) to ``shape``; may be a view. Default: through
        ``where`` with an all-true condition of ``shape``."""
        return self.where(self.full(shape, True, "bool", like=x), x, x)

    @abstractmethod
    def random(
        self, shape: Sequence[Any], distribution: str, dtype: str, a: float, b: float, generator: Any, like: Any = None
    ) -> Any:
        """Random numbers of ``shape`` and ``dtype`` drawn from ``generator`` (from ``random_generator``), on the
        device of ``like`` (None: the default device).

        ``distribution="uniform"``: in ``[a, b)`` (for an integer ``dtype``: the integers ``a <= n < b``);
        ``"normal"``: mean ``a``, standard deviation ``b``. The generator's state advances.
        """
        raise NotImplementedError

    # -- shape -------------------------------------------------------------------------------------------------

    @abstractmethod
    def reshape(self, x: Any, shape: Sequence[Any]) -> Any:
        """:return: ``x`` with the same entries in row-major order and the new ``shape`` (one entry may be -1)"""
        raise NotImplementedError

    def squeeze(self, x: Any, axis: int) -> Any:
        """:return: ``x`` without ``axis``, which has size 1. Default: :meth:`reshape`."""
        shape = [self.axis_size(x, i) for i in range(len(self.shape(x)))]
        return self.reshape(x, shape[:axis] + shape[axis + 1 :])

    @abstractmethod
    def slice(self, x: Any, axis: int, start: int | None, stop: int | None, step: int | None) -> Any:  # noqa: A003
        """:return: ``x[..., start:stop:step, ...]`` along ``axis``: Python's slice semantics (negative ``start``,
        ``stop`` count from the end, None: the whole range); ``step`` is None or an int > 0"""
        raise NotImplementedError

    @abstractmethod
    def pad(self, x: Any, pads: Sequence[tuple[Any, Any]], value: Any) -> Any:
        """:return: ``x`` with ``pads[i] = (left, right)`` entries of ``value`` added before and after axis ``i``
        (one pair per axis; ints >= 0 or scalar int tensors); ``value`` is a Python number or bool, in
        ``x``'s dtype in the result"""
        raise NotImplementedError

    # -- indexing ----------------------------------------------------------------------------------------------

    @abstractmethod
    def gather(self, x: Any, indices: Any, batch_axes: int) -> Any:
        """Batched gather along axis ``batch_axes`` of ``x`` (TensorFlow's ``gather(..., batch_dims=batch_axes)``).

        ``x`` is ``[*B, A, *F]``, ``indices`` int ``[*B, *I]`` with values in ``[0, A)``; the first
        ``batch_axes`` axes ``B`` of both have equal sizes. :return: ``[*B, *I, *F]`` with
        ``out[b, i, f] = x[b, indices[b, i], f]``. Differentiable w.r.t. ``x``.
        """
        raise NotImplementedError

    def flip(self, x: Any, axis: int) -> Any:
        """:return: ``x`` reversed along ``axis``. Default: :meth:`gather` at ``n-1, ..., 0``."""
        n = self.axis_size(x, axis)
        indices = self.binary("sub", n - 1, self.arange(n, "int64", like=x))
        perm = [axis] + [i for i in range(len(self.shape(x))) if i != axis]
        out = self.gather(self.transpose(x, perm), indices, 0)
        inverse = sorted(range(len(perm)), key=perm.__getitem__)
        return self.transpose(out, inverse)

    @abstractmethod
    def cumsum(self, x: Any, axis: int) -> Any:
        """:return: the inclusive cumulative sum along ``axis``, in ``x``'s dtype"""
        raise NotImplementedError

    @abstractmethod
    def top_k(self, x: Any, k: Any, sorted: bool) -> tuple[Any, Any]:  # noqa: A002
        """The ``k`` largest entries along the last axis of ``x`` (``k`` an int or a scalar int tensor).

        :return: ``(values, indices)``, both ``[..., k]``, ``indices`` int64; with ``sorted`` in descending order
            of the values (equal values among the chosen: the lower index first; which of several equal values at
            the ``k``-th place are chosen is the framework's choice), else in an order of the framework's choice
        """
        raise NotImplementedError

    def sort(self, x: Any, descending: bool) -> tuple[Any, Any]:
        """Stable sort along the last axis (equal values keep their order).

        :return: ``(values, indices)``, ``indices`` int64. Default: a NotImplementedError.
        """
        raise NotImplementedError(f"the {self.name} backend has no sort")

    @abstractmethod
    def search_sorted(self, sorted_seq: Any, values: Any, side: str, dtype: str) -> Any:
        """For each entry of ``values`` ``[*B, M]``, its insertion index into the row of ``sorted_seq`` ``[*B, N]``
        (ascending along the last axis; ``B`` of equal sizes): with ``side="left"`` the number of entries
        ``< value``, with ``"right"`` the number ``<= value``. :return: ``[*B, M]`` of ``dtype`` (int32 or int64)
        """
        raise NotImplementedError

    @abstractmethod
    def scatter(self, x: Any, indices: Any, size: Any, mode: str, fill_value: float | int) -> Any:
        """The inverse of a gather along the first axis: ``x`` is ``[N, *F]``, ``indices`` int ``[N]`` with values in
        ``[0, size)`` (``size`` an int or a scalar int tensor). :return: ``[size, *F]`` of ``x``'s dtype: row ``j`` is
        the sum (``mode="sum"``), maximum (``"max"``) or minimum (``"min"``) of the rows ``x[n]`` with
        ``indices[n] == j``, and ``fill_value`` where there is no such row. Differentiable w.r.t. ``x``."""
        raise NotImplementedError

    # -- math --------------------------------------------------------------------------------------------------

    @abstractmethod
    def einsum(self, equation: str, *operands: Any) -> Any:
        """:return: ``numpy.einsum(equation, *operands)`` (explicit ``->`` output; letters ``a-z``); differentiable"""
        raise NotImplementedError

    def clip(self, x: Any, lo: Any, hi: Any) -> Any:
        """:return: ``min(max(x, lo), hi)``; ``lo``, ``hi`` raw tensors of ``x``'s dtype and rank (broadcasting)
        or Python numbers or None (no bound). The gradient passes to ``x`` where ``lo <= x <= hi``.
        Default: ``binary`` maximum and minimum."""
        out = x if lo is None else self.binary("maximum", x, lo)
        return out if hi is None else self.binary("minimum", out, hi)

    def log_add_exp(self, a: Any, b: Any) -> Any:
        """:return: ``log(exp(a) + exp(b))`` computed stably (``-inf`` where both are ``-inf``); ``a``, ``b`` of
        equal rank, broadcasting. Default: ``max(a, b) + log1p(exp(-|a - b|))``."""
        diff = self.where(self.binary("eq", a, b), 0.0, self.binary("sub", a, b))
        tail = self.unary("log1p", self.unary("exp", self.unary("neg", self.unary("abs", diff))))
        return self.binary("add", self.binary("maximum", a, b), tail)
