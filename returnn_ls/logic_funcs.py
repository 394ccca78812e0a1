"""Comparisons and logical operations, as in ``returnn.frontend``: ``compare`` (``compare_bc``), ``equal``,
``not_equal``, ``less``, ``less_equal``, ``greater``, ``greater_equal``, ``logical_and``, ``logical_or``,
``logical_not``, ``opt_logical_and``, ``opt_logical_or``, ``is_finite``, ``is_infinite``, ``is_neg_infinite``, and
``combine_bc``. Operands broadcast by dim identity (:mod:`returnn_ls.ops`); results are bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.math_funcs import _in_order
from returnn_ls.ops import binary, unary
from returnn_ls.tensor import Tensor

__all__ = ["combine_bc", "compare", "compare_bc", "equal", "greater", "greater_equal", "is_finite", "is_infinite",
           "is_neg_infinite", "less", "less_equal", "logical_and", "logical_not", "logical_or", "not_equal",
           "opt_logical_and", "opt_logical_or"]  # fmt: skip


#: RETURNN's names of the comparisons (``kind`` of :func:`compare`), by the backend op
_COMPARE_KINDS = {
    "==": "eq", "equal": "eq", "!=": "ne", "not_equal": "ne", "<": "lt", "less": "lt", "<=": "le", "less_equal": "le",
    ">": "gt", "greater": "gt", ">=": "ge", "greater_equal": "ge",
}  # fmt: skip


def compare(
    a: Any, kind: str, b: Any, *, allow_broadcast_all_sources: bool | None = None,
    dim_order: Sequence[Dim] | None = None,
) -> Tensor:  # fmt: skip
    """:return: bool ``a <kind> b``, broadcast by dims: dims of ``a``, then those only ``b`` has (or ``dim_order``
    first)

    :param kind: ``"=="``/``"equal"``, ``"!="``/``"not_equal"``, ``"<"``/``"less"``, ``"<="``/``"less_equal"``,
        ``">"``/``"greater"``, ``">="``/``"greater_equal"``
    :param allow_broadcast_all_sources: accepted for RETURNN's signature; a result with dims that neither operand
        has alone is always allowed here
    Example: ``other = rf.compare_bc(labels, "!=", rf.range_over_dim(vocab_dim))``
    """
    if kind not in _COMPARE_KINDS:
        raise ValueError(f"compare: kind must be one of {sorted(_COMPARE_KINDS)}, got {kind!r}")
    return _in_order(binary(_COMPARE_KINDS[kind], a, b), dim_order, "compare")


def compare_bc(a: Any, kind: str, b: Any, *, dim_order: Sequence[Dim] | None = None) -> Tensor:
    """:return: :func:`compare` with ``allow_broadcast_all_sources=True`` (RETURNN's ``compare_bc``)"""
    return compare(a, kind, b, allow_broadcast_all_sources=True, dim_order=dim_order)


def combine_bc(a: Any, kind: str, b: Any, *, dim_order: Sequence[Dim] | None = None) -> Tensor:
    """:return: ``rf.combine`` with ``allow_broadcast_all_sources=True`` (RETURNN's ``combine_bc``)"""
    from returnn_ls.tensor_funcs import combine

    return combine(a, kind, b, allow_broadcast_all_sources=True, dim_order=dim_order)


def logical_and(a: Tensor, b: Tensor) -> Tensor:
    """:return: ``a & b`` of bool tensors, broadcast by dims"""
    return binary("logical_and", _check_bool(a, "a", "logical_and"), _check_bool(b, "b", "logical_and"))


def logical_or(a: Tensor, b: Tensor) -> Tensor:
    """:return: ``a | b`` of bool tensors, broadcast by dims"""
    return binary("logical_or", _check_bool(a, "a", "logical_or"), _check_bool(b, "b", "logical_or"))


def logical_not(a: Tensor) -> Tensor:
    """:return: ``~a`` of a bool tensor. Example: ``other_rows = rf.logical_not(mask)``"""
    return unary("logical_not", _check_bool(a, "a", "logical_not"))


def _check_bool(x: Any, name: str, func: str) -> Any:
    if isinstance(x, bool) or (isinstance(x, Tensor) and x.dtype == "bool"):
        return x
    raise TypeError(f"{func}: {name} must be a bool Tensor or a bool, got {getattr(x, 'dtype', type(x).__name__)}")


def opt_logical_and(a: Tensor | bool, b: Tensor | bool) -> Tensor | bool:
    """:return: ``a & b`` where either may be a Python bool (then no op is added: ``True & b`` is ``b``)"""
    if isinstance(a, bool) or isinstance(b, bool):
        flag, other = (a, b) if isinstance(a, bool) else (b, a)
        return other if flag else False
    return logical_and(a, b)


def opt_logical_or(a: Tensor | bool, b: Tensor | bool) -> Tensor | bool:
    """:return: ``a | b`` where either may be a Python bool (then no op is added: ``False | b`` is ``b``)"""
    if isinstance(a, bool) or isinstance(b, bool):
        flag, other = (a, b) if isinstance(a, bool) else (b, a)
        return True if flag else other
    return logical_or(a, b)



def equal(a: Any, b: Any) -> Tensor:
    """:return: ``a == b`` (see :func:`compare`)"""
    return compare(a, "==", b)


def not_equal(a: Any, b: Any) -> Tensor:
    """:return: ``a != b`` (see :func:`compare`)"""
    return compare(a, "!=", b)


def less(a: Any, b: Any) -> Tensor:
    """:return: ``a < b`` (see :func:`compare`)"""
    return compare(a, "<", b)


def less_equal(a: Any, b: Any) -> Tensor:
    """:return: ``a <= b`` (see :func:`compare`)"""
    return compare(a, "<=", b)


def greater(a: Any, b: Any) -> Tensor:
    """:return: ``a > b`` (see :func:`compare`)"""
    return compare(a, ">", b)


def greater_equal(a: Any, b: Any) -> Tensor:
    """:return: ``a >= b`` (see :func:`compare`)"""
    return compare(a, ">=", b)


def _check_tensor(x: Any, func: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{func}: expected a Tensor, got {type(x).__name__}")
    return x


def is_finite(a: Tensor) -> Tensor:
    """:return: whether each entry is neither infinite nor NaN (integers: always True)"""
    a = _check_tensor(a, "is_finite")
    return binary("eq", a - a, 0)  # inf - inf and NaN - NaN are NaN; a finite entry gives 0


def is_infinite(a: Tensor) -> Tensor:
    """:return: whether each entry is ``inf`` or ``-inf``"""
    a = _check_tensor(a, "is_infinite")
    return binary("eq", unary("abs", a), float("inf")) if not a.dtype.startswith("int") else binary("ne", a, a)


def is_neg_infinite(a: Tensor) -> Tensor:
    """:return: whether each entry is ``-inf``. Example: ``empty = rf.is_neg_infinite(best_score)``"""
    a = _check_tensor(a, "is_neg_infinite")
    return binary("eq", a, float("-inf")) if not a.dtype.startswith("int") else binary("ne", a, a)
