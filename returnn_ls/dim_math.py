"""Dim arithmetic as in RETURNN: ``time + 1``, ``2 * dim``, ``time // 2``, ``a + b``, ``time.ceildiv_right(2)``.

A derived dim remembers how it was made (:class:`DimOp`, ``dim.derived_from_op``). It is static when all operands
are (``Dim(7) + 1`` has ``dimension == 8``); otherwise its sizes are computed from the operands' sizes with tensor
ops on their backend and device, on access of ``dyn_size_ext``, and again whenever an operand got new sizes (a
``Dim(None)`` of ``extern_data`` gets them per batch). Dynamic sums and differences are clipped at 0, as RETURNN's.

Every result is cached on the dim whose method made it, by (operation, operand), so an expression written twice
gives the same Dim object: ``(time + 1) is (time + 1)``. The cache holds its dims weakly: a derived dim that nothing
refers to any more (no tensor, module or variable) is freed, with the operand it holds, and made anew when needed
(RETURNN instead clears a dim's cache of an operation after 5 operands).

As in RETURNN the order counts (``1 + time`` is another dim than ``time + 1``: a concatenation ``[one frame, time]``
is not ``[time, one frame]``), and RETURNN's simplifications apply: ``(a + b) - b`` is ``a``, ``(a * b) // b`` is
``a``, ``(t + 1) + 1`` is ``t + 2``, ``(t * 2) * 3`` is ``t * 6``, ``(t // 2) // 3`` is ``t // 6``, ``t + 0`` and
``t * 1`` are ``t``.
"""

from __future__ import annotations

import numbers
import re
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple, Union

if TYPE_CHECKING:
    from returnn_ls.dim import Dim
    from returnn_ls.tensor import Tensor

__all__ = ["DimOp", "derive", "derived_sizes"]

Operand = Union["Dim", int]

#: method -> (kind, whether the operand comes first); int subtraction is an addition of the negated int
_METHODS = {
    "add": ("add", False), "radd": ("add", True), "sub": ("sub", False), "sub_left": ("sub_left", False),
    "mul": ("mul", False), "rmul": ("mul", True), "floordiv": ("floordiv", False), "truediv": ("truediv", False),
    "truediv_left": ("truediv_left", False), "ceildiv": ("ceildiv", False), "ceildiv_left": ("ceildiv_left", False),
}  # fmt: skip
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "truediv": "/", "truediv_left": " /l ",
            "ceildiv": "/", "ceildiv_left": " /l "}  # fmt: skip
_DIVISIONS = ("floordiv", "truediv", "truediv_left", "ceildiv", "ceildiv_left")


class DimOp(NamedTuple):
    """How a derived dim was made: ``kind`` (``"add"``, ``"sub"``, ``"sub_left"``, ``"mul"``, ``"floordiv"``,
    ``"truediv"``, ``"truediv_left"``, ``"ceildiv"``, ``"ceildiv_left"``) of ``inputs`` (two Dims or ints, in
    the order of the expression; for ``sub_left`` and the ``_left`` divisions: the dim, then what is removed)."""

    kind: str
    inputs: tuple[Operand, Operand]


def _check_operand(method: str, other: Any) -> Operand:
    from returnn_ls.dim import Dim

    if isinstance(other, Dim):
        return other
    if not isinstance(other, numbers.Integral) or isinstance(other, bool):
        raise TypeError(f"Dim arithmetic ({method}): the operand must be an int or a Dim, got {type(other).__name__}")
    other = int(other)
    if method in ("mul", "rmul") and other < 0:
        raise ValueError(f"Dim arithmetic ({method}): the factor must be an int >= 0, got {other}")
    if method in _DIVISIONS and other < 1:
        raise ValueError(f"Dim arithmetic ({method}): the divisor must be an int >= 1, got {other}")
    return other


def _same(a: Operand, b: Operand) -> bool:
    """:return: whether two operands are the same dim or equal ints"""
    return a is b if not isinstance(a, int) or not isinstance(b, int) else a == b


def derive(dim: Dim, method: str, other: Any) -> Dim:
    """:return: the dim of ``dim <method> other`` (see the module doc), from the cache on ``dim`` if made before

    :param dim: the dim whose method is called
    :param method: a key of ``_METHODS``: ``"add"`` (``dim + other``), ``"radd"`` (``other + dim``), ``"sub"``,
        ``"sub_left"`` (``other`` removed from the left), ``"mul"``, ``"rmul"``, ``"floordiv"``, ``"truediv"``,
        ``"truediv_left"``, ``"ceildiv"``, ``"ceildiv_left"``
    :param other: an int or a Dim
    """
    other = _check_operand(method, other)
    if dim._math_cache is None:
        dim._math_cache = weakref.WeakValueDictionary()
    key = (method, other)
    out = dim._math_cache.get(key)
    if out is None:
        out = _simplified(dim, method, other) or _new(dim, method, other)
        dim._math_cache[key] = out
    return out


def _simplified(dim: Dim, method: str, other: Operand) -> Dim | None:
    """:return: an existing (or simpler) dim that equals ``dim <method> other``, or None (RETURNN's rules)"""
    neutral = 0 if method in ("add", "radd", "sub", "sub_left") else 1
    if _same(other, neutral):
        return dim
    if isinstance(other, int) and method in ("sub", "sub_left"):
        return derive(dim, "add" if method == "sub" else "radd", -other)
    op = dim.derived_from_op
    if op is None:
        return None
    (a, b), kind = op.inputs, op.kind
    undo = {"sub": ("add", b, a), "sub_left": ("add", a, b), "add": ("sub", b, a), "floordiv": ("mul", b, a),
            "truediv": ("mul", b, a), "ceildiv": ("mul", b, a), "truediv_left": ("mul", a, b),
            "ceildiv_left": ("mul", a, b)}.get(method)  # fmt: skip
    if undo is not None and kind == undo[0] and _same(other, undo[1]):
        return undo[2]
    if isinstance(other, int):
        fold = {"add": ("add", b, a, b + other if isinstance(b, int) else 0),
                "radd": ("add", a, b, a + other if isinstance(a, int) else 0),
                "mul": ("mul", b, a, b * other if isinstance(b, int) else 0),
                "rmul": ("mul", a, b, a * other if isinstance(a, int) else 0)}.get(method)  # fmt: skip
        if fold is None and method in _DIVISIONS:
            fold = (method, b, a, b * other if isinstance(b, int) else 0)
        if fold is not None and kind == fold[0] and isinstance(fold[1], int):
            return derive(fold[2], method, fold[3])
    return None


def _new(dim: Dim, method: str, other: Operand) -> Dim:
    """:return: a new derived dim for ``dim <method> other``"""
    from returnn_ls.dim import Dim

    kind, operand_first = _METHODS[method]
    inputs = (other, dim) if operand_first else (dim, other)
    name = _name(kind, *inputs)
    values = [x if isinstance(x, int) else x.dimension for x in inputs]
    value = None
    if all(v is not None for v in values):
        value = _size(kind, *values)
        if value < 0:
            raise ValueError(f"Dim arithmetic: {name} would have the dimension {value}, but dims are >= 0")
    out = Dim(value, name=name)
    out.derived_from_op = DimOp(kind, inputs)
    return out


def _operand_name(x: Operand) -> str:
    if isinstance(x, int):
        return str(x)
    name = x.name if x.name is not None else (str(x.dimension) if x.dimension is not None else "?")
    return f"({name})" if re.search(r"[+\-/ ]", name) else name


def _name(kind: str, a: Operand, b: Operand) -> str:
    """:return: a readable name: ``time+1``, ``time-1``, ``2*time``, ``(time+1)//2``, ``ceil(time/2)``"""
    if kind == "add" and isinstance(b, int) and b < 0:
        return f"{_operand_name(a)}-{-b}"
    if kind == "sub_left":
        return f"-{_operand_name(b)}+{_operand_name(a)}"
    text = f"{_operand_name(a)}{_SYMBOLS[kind]}{_operand_name(b)}"
    return f"ceil({text})" if kind.startswith("ceildiv") else text


def _size(kind: str, a: Any, b: Any) -> Any:
    """:return: the size (int or int Tensor) of ``kind`` of the operands' sizes ``a`` and ``b``"""
    from returnn_ls.ops import maximum
    from returnn_ls.tensor import Tensor

    if kind in ("add", "sub", "sub_left"):
        out = a + b if kind == "add" else a - b
        return maximum(out, 0) if isinstance(out, Tensor) else out
    if kind == "mul":
        return a * b
    if kind.startswith("ceildiv"):
        return -((-a) // b)
    return a // b


def derived_sizes(dim: Dim) -> Tensor | None:
    """:return: the sizes of a dynamic derived ``dim`` computed from its operands' current sizes (cached while
    those are the same objects), or None while an operand's sizes are not known"""
    from returnn_ls.tensor import Tensor

    values, sources = [], []
    for x in dim.derived_from_op.inputs:
        if not isinstance(x, int) and x.dimension is None:
            x = x.dyn_size_ext
            if x is None:
                return None
            sources.append(x)
        values.append(x if isinstance(x, (int, Tensor)) else x.dimension)
    cached = dim._sizes_cache
    if cached is not None and len(cached[0]) == len(sources) and all(s is c for s, c in zip(sources, cached[0])):
        return cached[1]
    sizes = _size(dim.derived_from_op.kind, *values)
    dim._sizes_cache = (tuple(sources), sizes)
    return sizes
