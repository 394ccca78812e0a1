"""``Linear`` and ``Embedding`` (as ``returnn.frontend.Linear`` and ``Embedding``, same parameters)."""

from __future__ import annotations

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.nn import init
from returnn_ls.nn._utils import check_input, check_static_dim, param_dim, raw_param
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.ops import align, common_backend
from returnn_ls.tensor import Tensor

__all__ = ["Embedding", "Linear"]


class Linear(Module):
    """``source @ weight + bias`` over ``in_dim``.

    Parameters (RETURNN's names and layout): ``weight`` ``[in_dim, out_dim]`` (Glorot uniform), ``bias``
    ``[out_dim]`` (zeros).

    :param in_dim: the dim of the input features
    :param out_dim: the dim of the output features
    :param with_bias: whether there is a bias

    Example::

        linear = rf.Linear(in_dim, out_dim)
        y = linear(x)  # x has in_dim; y has the other dims of x and out_dim (its feature_dim)
    """

    def __init__(self, in_dim: Dim, out_dim: Dim, *, with_bias: bool = True):
        self.in_dim = check_static_dim(in_dim, "in_dim", "Linear")
        self.out_dim = check_static_dim(out_dim, "out_dim", "Linear")
        self.weight = Parameter([param_dim(in_dim, out_dim), out_dim], initial=init.Glorot())
        self.with_bias = with_bias
        self.bias = Parameter([out_dim], initial=0.0) if with_bias else None

    def __call__(self, source: Tensor) -> Tensor:
        check_input(source, "Linear", ("in_dim", self.in_dim))
        backend = common_backend(source, self.weight)
        others = tuple(d for d in source.dims if d is not self.in_dim)
        bias = raw_param(self.bias, source) if self.bias is not None else None
        raw = backend.linear(align(source, others + (self.in_dim,)), raw_param(self.weight, source), bias)
        return Tensor(raw, others + (self.out_dim,), feature_dim=self.out_dim, backend=backend)

    def __repr__(self) -> str:
        return f"<Linear {self.in_dim} -> {self.out_dim}>"


class Embedding(Module):
    """The row of ``weight`` of each class index: ``weight[source]``.

    Parameter (RETURNN's name and layout): ``weight`` ``[in_dim, out_dim]`` (Glorot uniform).

    :param in_dim: the dim of the classes: the ``sparse_dim`` of the input
    :param out_dim: the dim of the embedding

    Example::

        embed = rf.Embedding(vocab_dim, model_dim)
        y = embed(labels)  # labels: int Tensor with sparse_dim=vocab_dim; y: labels' dims + [model_dim]
    """

    def __init__(self, in_dim: Dim, out_dim: Dim):
        self.in_dim = check_static_dim(in_dim, "in_dim", "Embedding")
        self.out_dim = check_static_dim(out_dim, "out_dim", "Embedding")
        self.weight = Parameter([param_dim(in_dim, out_dim), out_dim], initial=init.Glorot())

    def __call__(self, source: Tensor) -> Tensor:
        _validate.check_tensor(source, "source", "Embedding")
        if source.sparse_dim is not self.in_dim:
            raise ValueError(
                f"Embedding: source {source} must be class indices with sparse_dim {self.in_dim} (the in_dim), "
                f"got sparse_dim {source.sparse_dim}"
            )
        _validate.check_labels_in_range(source, self.in_dim.dimension, "source", "Embedding")
        backend = common_backend(source, self.weight)
        raw = backend.embedding(self.weight.raw_tensor, source.raw_tensor)
        return Tensor(raw, source.dims + (self.out_dim,), feature_dim=self.out_dim, backend=backend)

    def __repr__(self) -> str:
        return f"<Embedding {self.in_dim} -> {self.out_dim}>"
