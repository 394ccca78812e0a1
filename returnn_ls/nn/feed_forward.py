"""The building blocks shared by the Transformer and Conformer modules (as RETURNN's, same parameter names): the
feed-forward blocks ``FeedForward`` and ``FeedForwardGated``, and how a module option given as a class, a dict or a
module becomes a module (``make_norm``, ``build_part``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.nn._att_utils import copy_module, split
from returnn_ls.nn.activation import swish
from returnn_ls.nn.build_from_dict import build_from_dict
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.linear import Linear
from returnn_ls.nn.module import Module
from returnn_ls.ops import relu
from returnn_ls.tensor import Tensor

__all__ = ["FeedForward", "FeedForwardGated", "build_part", "make_norm"]


def make_norm(norm: Any, out_dim: Dim) -> Callable[[Tensor], Tensor]:
    """:return: ``norm(out_dim)`` for a class, built from a dict, a copy of a module, or the callable itself"""
    if isinstance(norm, type):
        norm = norm(out_dim)
    elif isinstance(norm, dict):
        norm = build_from_dict(norm, out_dim)
    elif isinstance(norm, Module):
        norm = copy_module(norm)
    if not callable(norm):
        raise TypeError(f"make_norm: norm must be a class, a dict, a module or a callable, got {norm!r}")
    return norm


def build_part(spec: Any, default: type, func: str, name: str, **kwargs: Any) -> Any:
    """:return: ``default(**kwargs)`` for None, ``spec(**kwargs)`` for a class, built from a dict (its own entries
    win), or a copy of a module"""
    if spec is None:
        return default(**kwargs)
    if isinstance(spec, type):
        return spec(**kwargs)
    if isinstance(spec, dict):
        return build_from_dict(spec, **{k: v for k, v in kwargs.items() if k not in spec})
    if isinstance(spec, Module):
        return copy_module(spec)
    raise TypeError(f"{func}: {name} must be None, a class, a dict or a module, got {spec!r}")


def _activation(activation: Any, default: Callable, func: str) -> Callable:
    if activation is None:
        return default
    if isinstance(activation, dict):
        return build_from_dict(activation)
    if not callable(activation):
        raise TypeError(f"{func}: activation must be callable or a dict, got {activation!r}")
    return activation


def _ff_dim(ff_dim: Dim | int | None, default: Callable[[], Dim]) -> Dim:
    if ff_dim is None:
        return default()
    if isinstance(ff_dim, int) and not isinstance(ff_dim, bool):
        return Dim(ff_dim, name="transformer-ff-dim")
    if not isinstance(ff_dim, Dim):
        raise TypeError(f"FeedForward: ff_dim must be a Dim, an int or None, got {ff_dim!r}")
    return ff_dim

class FeedForward(Module):
    """``linear_out(dropout(activation(linear_ff(x))))``, the Transformer's position-wise block.

    :param out_dim: input and output features
    :param ff_dim: the hidden features (default ``4 * out_dim``)
    :param dropout: on the hidden activations
    :param activation: default ReLU
    :param with_bias: biases in both linear layers
    """

    def __init__(self, out_dim: Dim, *, ff_dim: Dim | int | None = None, dropout: float = 0.1,
                 activation: Any = None, with_bias: bool = True):  # fmt: skip
        self.out_dim = out_dim
        self.dropout = dropout
        self.activation = _activation(activation, self._default_activation(), type(self).__name__)
        ff_dim = _ff_dim(ff_dim, lambda: out_dim * 4)
        self.linear_ff = Linear(out_dim, ff_dim, with_bias=with_bias)
        self.linear_out = Linear(ff_dim, out_dim, with_bias=with_bias)

    @staticmethod
    def _default_activation() -> Callable:
        return relu

    def __call__(self, inp: Tensor) -> Tensor:
        hidden = self.activation(self.linear_ff(inp))
        return self.linear_out(dropout(hidden, self.dropout))


class FeedForwardGated(Module):
    """``linear_out(dropout(activation(a) * gate_activation(b)))`` with ``a, b`` the halves of ``linear_ff(x)``
    (SwiGLU with the defaults, as in Llama). ``ff_dim`` defaults to ``4 * 2/3 * out_dim`` rounded up to 256s.
    """

    def __init__(self, out_dim: Dim, *, ff_dim: Dim | int | None = None, dropout: float = 0.1,
                 activation: Any = None, gate_activation: Any = None, with_bias: bool = False):  # fmt: skip
        self.out_dim = out_dim
        self.dropout = dropout
        self.activation = _activation(activation, swish, "FeedForwardGated")
        self.gate_activation = _activation(gate_activation, lambda x: x, "FeedForwardGated")
        ff_dim = _ff_dim(ff_dim, lambda: Dim(-(-(out_dim.dimension * 8 // 3) // 256) * 256, name="transformer-ff-dim"))
        self.linear_ff = Linear(out_dim, 2 * ff_dim, with_bias=with_bias)
        self.linear_out = Linear(ff_dim, out_dim, with_bias=with_bias)

    def __call__(self, inp: Tensor) -> Tensor:
        a, b = split(self.linear_ff(inp), self.linear_ff.out_dim, [self.linear_out.in_dim] * 2)
        return self.linear_out(dropout(self.activation(a) * self.gate_activation(b), self.dropout))
