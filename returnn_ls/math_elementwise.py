"""Elementwise maths under RETURNN's function names: the operators as functions (``add``, ``sub``, ``mul``,
``true_divide``, ``floor_divide``, ``ceil_divide``, ``mod``, ``pow``, ``neg``), the unary functions (``reciprocal``,
``expm1``, ``log1p``, ``safe_log``, ``sqrt``, ``rsqrt``, ``square``, ``sin``, ``cos``, ``ceil``, ``floor``,
``round``, ``identity``), ``gating`` and ``lerp``.

Binary functions take Tensors or numbers (at least one Tensor) and broadcast by dim identity, as the operators do.
Unary functions keep the dims, the feature dim and the dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.ops import binary, log, maximum, sigmoid, unary
from returnn_ls.tensor import Tensor

__all__ = [
    "add", "ceil", "ceil_divide", "cos", "expm1", "floor", "floor_divide", "gating", "identity", "lerp", "log1p",
    "mod", "mul", "neg", "pow", "reciprocal", "round", "rsqrt", "safe_log", "sin", "sqrt", "square", "sub",
    "true_divide",
]  # fmt: skip

#: ``safe_log``'s default ``eps`` per dtype: the smallest positive *normal* number (float16: its smallest positive
#: number, as RETURNN). RETURNN takes the smallest subnormal one for the others, which a CPU that flushes subnormal
#: numbers to zero (TensorFlow's) turns into 0, so that ``safe_log(0)`` would be ``-inf``; here it is finite on
#: every backend (float32: -87.3 instead of RETURNN's -103.3).
SAFE_LOG_EPS = {"float16": 6e-08, "bfloat16": 1.1755e-38, "float32": 1.1755e-38, "float64": 2.2251e-308}


def add(a: Any, b: Any) -> Tensor:
    """:return: ``a + b``"""
    return binary("add", a, b)


def sub(a: Any, b: Any) -> Tensor:
    """:return: ``a - b``"""
    return binary("sub", a, b)


def mul(a: Any, b: Any) -> Tensor:
    """:return: ``a * b``"""
    return binary("mul", a, b)


def true_divide(a: Any, b: Any) -> Tensor:
    """:return: ``a / b``"""
    return binary("truediv", a, b)


def floor_divide(a: Any, b: Any) -> Tensor:
    """:return: ``a // b``, rounded toward minus infinity (as Python)"""
    return binary("floordiv", a, b)


def ceil_divide(a: Any, b: Any) -> Tensor:
    """:return: ``a / b`` rounded toward plus infinity: ``-(-a // b)``. Example: frames after a stride-3
    downsampling, ``rf.ceil_divide(lengths, 3)``"""
    return neg(floor_divide(neg(a) if isinstance(a, Tensor) else -a, b))


def mod(a: Any, b: Any) -> Tensor:
    """:return: ``a % b`` with the sign of ``b`` (as Python)"""
    return binary("mod", a, b)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - RETURNN's name
    """:return: ``a ** b``"""
    return binary("pow", a, b)


def neg(a: Tensor) -> Tensor:
    """:return: ``-a``"""
    return unary("neg", a)


def identity(x: Tensor) -> Tensor:
    """:return: ``x`` itself (the default ``act_func`` of :func:`gating`)"""
    return x


def reciprocal(a: Tensor) -> Tensor:
    """:return: ``1 / a``"""
    return unary("reciprocal", a)


def expm1(a: Tensor) -> Tensor:
    """:return: ``exp(a) - 1``, accurate for small ``a``"""
    return unary("expm1", a)


def log1p(a: Tensor) -> Tensor:
    """:return: ``log(1 + a)``, accurate for small ``a``"""
    return unary("log1p", a)


def safe_log(a: Tensor, *, eps: float | None = None) -> Tensor:
    """:return: ``log(max(a, eps))``: finite where ``a`` is 0 (a probability that underflowed)

    :param eps: default: the smallest positive number of ``a``'s dtype (:data:`SAFE_LOG_EPS`)
    :raise TypeError: for a dtype that is not a float (without ``eps``)
    """
    _validate.check_tensor(a, "a", "safe_log")
    if eps is None:
        if a.dtype not in SAFE_LOG_EPS:
            raise TypeError(f"safe_log: a must have a float dtype ({', '.join(SAFE_LOG_EPS)}), got {a.dtype}")
        eps = SAFE_LOG_EPS[a.dtype]
    return log(maximum(a, eps))


def sqrt(a: Tensor) -> Tensor:
    """:return: the square root"""
    return unary("sqrt", a)


def rsqrt(a: Tensor) -> Tensor:
    """:return: ``1 / sqrt(a)``"""
    return unary("rsqrt", a)


def square(a: Tensor) -> Tensor:
    """:return: ``a * a``"""
    return unary("square", a)


def sin(a: Tensor) -> Tensor:
    """:return: the sine"""
    return unary("sin", a)


def cos(a: Tensor) -> Tensor:
    """:return: the cosine"""
    return unary("cos", a)


def ceil(a: Tensor) -> Tensor:
    """:return: the smallest integer value ``>= a`` (in ``a``'s dtype)"""
    return unary("ceil", a)


def floor(a: Tensor) -> Tensor:
    """:return: the largest integer value ``<= a`` (in ``a``'s dtype)"""
    return unary("floor", a)


def round(a: Tensor) -> Tensor:  # noqa: A001 - RETURNN's name
    """:return: ``a`` rounded to the nearest integer value, halves to even (as numpy, torch and TensorFlow)"""
    return unary("round", a)


def gating(
    x: Tensor, *, axis: Dim | None = None, gate_func: Callable[[Tensor], Tensor] = sigmoid,
    act_func: Callable[[Tensor], Tensor] = identity, out_dim: Dim | None = None,
) -> tuple[Tensor, Dim]:  # fmt: skip
    """Split ``axis`` into halves ``a``, ``b`` and return ``act_func(a) * gate_func(b)``, as in the gated linear
    unit (GLU: the defaults, sigmoid gate and identity activation).

    :param axis: a static dim of even size; default: ``x.feature_dim``
    :param out_dim: the dim of the result, half of ``axis`` (default: a new dim ``axis // 2``)
    :return: the gated tensor and its ``out_dim``
    :raise ValueError: without ``axis`` or feature dim, or for an odd or dynamic ``axis``
    """
    from returnn_ls.split_funcs import split

    _validate.check_tensor(x, "x", "gating")
    axis = axis if axis is not None else x.feature_dim
    if axis is None:
        raise ValueError(f"gating: x has no feature_dim; pass axis= (one of {list(x.dims)})")
    if axis.dimension is None or axis.dimension % 2:
        raise ValueError(f"gating: axis must be a static dim of even size, got {axis}")
    out_dim = out_dim if out_dim is not None else axis // 2
    a, b = split(x, axis=axis, out_dims=[out_dim, out_dim])
    return act_func(a) * gate_func(b), out_dim


def lerp(start: Any, end: Any, weight: Any, *, allow_broadcast_all_sources: bool = False) -> Tensor:
    """:return: ``start + weight * (end - start)`` (``weight`` a number or a Tensor), broadcast by dims

    :param allow_broadcast_all_sources: accepted for RETURNN's signature; broadcasting is always allowed here
    """
    del allow_broadcast_all_sources
    return add(start, mul(weight, sub(end, start)))


