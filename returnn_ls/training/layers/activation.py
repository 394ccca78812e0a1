"""The ``activation`` option of the ``linear`` and ``conv`` layers: RETURNN's names (TensorFlow's ``tf.nn``
function names) mapped onto this library's functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.tensor import Tensor
from returnn_ls.training.config_names import suggest
from returnn_ls.training.layers.base import LayerError

__all__ = ["ACTIVATIONS", "activation_kind", "apply_activation", "check_activation"]

#: names that mean no activation (``"linear"`` is this project's own name for it)
_IDENTITY = (None, "linear", "identity", "none")
_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": rf.relu,
    "tanh": rf.tanh,
    "sigmoid": rf.sigmoid,
    "elu": rf.elu,
    "selu": rf.selu,
    "gelu": rf.gelu,  # tf.nn.gelu's default: exact, with erf
    "swish": rf.swish,
    "silu": rf.silu,
    "softplus": rf.softplus,
    "leaky_relu": rf.leaky_relu,  # slope 0.2, as tf.nn.leaky_relu
    "log_sigmoid": rf.log_sigmoid,
    "exp": rf.exp,
    "log": rf.log,
    "abs": rf.abs,
}
#: every accepted ``activation`` value
ACTIVATIONS = (*(a for a in _IDENTITY if a), *_FUNCTIONS, "softmax", "log_softmax")


def check_activation(name: Any) -> None:
    """:raise LayerError: if ``name`` is not an accepted activation (the message lists them)

    Example: ``check_activation(layer.opts["activation"])``
    """
    if name not in _IDENTITY and name not in ACTIVATIONS:
        raise LayerError(f"unknown activation {name!r}; known: {list(ACTIVATIONS)}{suggest(name, ACTIVATIONS)}")


def activation_kind(name: str | None) -> str:
    """:return: the kind of a layer output with this activation: ``"logits"`` (none), ``"probs"``, ``"log-probs"``
    or ``"dense"``

    Example: ``activation_kind("softmax") == "probs"``
    """
    if name in _IDENTITY:
        return "logits"
    return {"softmax": "probs", "log_softmax": "log-probs"}.get(name, "dense")


def apply_activation(x: Tensor, name: str | None, axis: Dim) -> Tensor:
    """:return: ``name`` applied to ``x`` (``softmax`` / ``log_softmax`` over ``axis``)

    Example: ``y = apply_activation(linear(x), "relu", out_dim)``
    """
    if name in _IDENTITY:
        return x
    if name == "softmax":
        return rf.softmax(x, axis=axis)
    if name == "log_softmax":
        return rf.log_softmax(x, axis=axis)
    return _FUNCTIONS[name](x)
