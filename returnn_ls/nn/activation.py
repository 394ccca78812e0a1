"""Activation functions (``relu``, ``tanh``, ``sigmoid``, ``softmax`` and ``log_softmax`` are in ``ops``).

Each is one framework op (``torch.nn.functional``, ``tf.nn``) on the raw tensor; dims, feature and sparse dim are
kept.
"""

from __future__ import annotations

from returnn_ls import _validate
from returnn_ls.tensor import Tensor

__all__ = ["elu", "gelu", "leaky_relu", "log_sigmoid", "relu_square", "selu", "silu", "softplus", "swish"]


def _activation(a: Tensor, name: str, alpha: float = 0.0) -> Tensor:
    _validate.check_tensor(a, "a", name)
    _validate.check_float(a, "a", name)
    return a.copy_template(a.backend.activation(a.raw_tensor, name, alpha))


def gelu(a: Tensor) -> Tensor:
    """Gaussian error linear unit ``x * Phi(x)``, exact (with erf, not the tanh approximation), as RETURNN.

    Example: ``y = rf.gelu(rf.Linear(in_dim, hidden_dim)(x))``
    """
    return _activation(a, "gelu")


def silu(a: Tensor) -> Tensor:
    """SiLU / swish: ``x * sigmoid(x)``. Example: ``y = rf.silu(x)``"""
    return _activation(a, "silu")


#: Alias of :func:`silu`, as in RETURNN.
swish = silu


def elu(a: Tensor) -> Tensor:
    """``x`` for ``x > 0``, else ``exp(x) - 1``. Example: ``y = rf.elu(x)``"""
    return _activation(a, "elu")


def selu(a: Tensor) -> Tensor:
    """Scaled ELU (Klambauer et al. 2017), with the constants of PyTorch and TensorFlow. Example: ``rf.selu(x)``"""
    return _activation(a, "selu")


def softplus(a: Tensor) -> Tensor:
    """``log(1 + exp(x))``, computed stably. Example: ``y = rf.softplus(x)``"""
    return _activation(a, "softplus")


def log_sigmoid(a: Tensor) -> Tensor:
    """``log(sigmoid(x))``, computed stably. Example: ``y = rf.log_sigmoid(x)``"""
    return _activation(a, "log_sigmoid")


def leaky_relu(a: Tensor, *, alpha: float = 0.2) -> Tensor:
    """``x`` for ``x >= 0``, else ``alpha * x`` (default ``alpha`` as ``tf.nn.leaky_relu`` and RETURNN's
    ``"leaky_relu"`` activation). Example: ``y = rf.leaky_relu(x, alpha=0.01)``
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"leaky_relu: alpha must be a float, got {type(alpha).__name__}")
    return _activation(a, "leaky_relu", float(alpha))


def relu_square(a: Tensor) -> Tensor:
    """``relu(x) ** 2``, as RETURNN. Example: ``y = rf.relu_square(x)``"""
    _validate.check_tensor(a, "a", "relu_square")
    relu = a.backend.unary("relu", a.raw_tensor)
    return a.copy_template(a.backend.unary("square", relu))
