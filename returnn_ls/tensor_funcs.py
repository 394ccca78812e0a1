"""``copy``, ``combine`` and ``is_backend_raw_tensor_dim_tag_independent`` (as ``returnn.frontend``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.math_funcs import _in_order, log_add_exp, squared_difference
from returnn_ls.ops import binary
from returnn_ls.tensor import Tensor

__all__ = ["combine", "copy", "is_backend_raw_tensor_dim_tag_independent"]

#: RETURNN's ``kind`` names of :func:`combine`: the operator symbols and the names of the elementwise ops
_KINDS = {
    "+": "add", "-": "sub", "*": "mul", "/": "truediv", "//": "floordiv", "%": "mod", "**": "pow",
    "max": "maximum", "min": "minimum",
}  # fmt: skip
_OPS = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "maximum", "minimum", "logical_and", "logical_or")
_FUNCS = {"squared_difference": squared_difference, "logaddexp": log_add_exp}


def copy(tensor: Tensor) -> Tensor:
    """:return: a copy of ``tensor`` (a new raw tensor; gradients flow through it): the value of a
    :class:`returnn_ls.Parameter` at this point, unchanged by later ``assign`` calls (as RETURNN's)"""
    _validate.check_tensor(tensor, "tensor", "copy")
    return tensor.copy_template(tensor.backend.convert(tensor.raw_tensor))


def combine(
    a: Any, kind: str, b: Any, *, allow_broadcast_all_sources: bool | None = None,
    dim_order: Sequence[Dim] | None = None,
) -> Tensor:  # fmt: skip
    """Elementwise ``a <kind> b``, broadcast by dims (as RETURNN's ``rf.combine``).

    :param a: a Tensor or a number
    :param kind: ``"add"``/``"+"``, ``"sub"``/``"-"``, ``"mul"``/``"*"``, ``"truediv"``/``"/"``,
        ``"floordiv"``/``"//"``, ``"mod"``/``"%"``, ``"pow"``/``"**"``, ``"maximum"``/``"max"``,
        ``"minimum"``/``"min"``, ``"logical_and"``, ``"logical_or"``, ``"squared_difference"``, ``"logaddexp"``
    :param b: a Tensor or a number
    :param allow_broadcast_all_sources: accepted for RETURNN's signature; a result with dims that neither operand
        has alone is always allowed here
    :param dim_order: these dims first in the result, in this order (those the result has); then the others
    :return: dims of ``a``, then those only ``b`` has (or ``dim_order``)

    Example: ``rf.build_from_dict({"class": "rf.combine", "kind": "+"})(x, b=y)`` is ``x + y``.
    """
    if not isinstance(kind, str) or (_KINDS.get(kind, kind) not in _OPS and kind not in _FUNCS):
        raise ValueError(f"combine: kind must be one of {sorted([*_KINDS, *_OPS, *_FUNCS])}, got {kind!r}")
    if allow_broadcast_all_sources is not None and not isinstance(allow_broadcast_all_sources, bool):
        raise TypeError(
            f"combine: allow_broadcast_all_sources must be a bool or None, got {allow_broadcast_all_sources!r}"
        )
    out = _FUNCS[kind](a, b) if kind in _FUNCS else binary(_KINDS.get(kind, kind), a, b)
    return _in_order(out, dim_order, "combine")


def is_backend_raw_tensor_dim_tag_independent() -> bool:
    """:return: True: a raw tensor here never refers to a :class:`Dim` (the backends see raw tensors and integer
    axes only), so one raw tensor can serve tensors of different dims, as RETURNN's PyTorch backend"""
    return True
