"""``LayerNorm`` (as ``returnn.frontend.LayerNorm``, same parameters)."""

from __future__ import annotations

from collections.abc import Sequence

from returnn_ls.dim import Dim
from returnn_ls.nn._utils import check_input, check_static_dim, raw_param
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.ops import align, common_backend
from returnn_ls.tensor import Tensor

__all__ = ["LayerNorm"]


class LayerNorm(Module):
    """Layer normalization (Ba et al. 2016) over ``in_dim`` (the feature dim, or several dims):
    ``(x - mean) / sqrt(var + eps) * scale + bias``, with the biased variance.

    Parameters (RETURNN's names): ``scale`` ``[in_dim]`` (ones), ``bias`` ``[in_dim]`` (zeros). One fused
    framework op (``torch.nn.functional.layer_norm``; ``tf.nn.moments`` + ``tf.nn.batch_normalization``).

    :param in_dim: the dim (or dims) to normalize over
    :param eps: added to the variance
    :param with_bias: whether there is a bias

    Example::

        norm = rf.LayerNorm(model_dim)
        y = norm(x)
    """

    def __init__(self, in_dim: Dim | Sequence[Dim], *, eps: float = 1e-6, with_bias: bool = True):
        dims = [in_dim] if isinstance(in_dim, Dim) else list(in_dim)
        if not dims:
            raise ValueError("LayerNorm: in_dim must be a Dim or a non-empty sequence of Dims")
        for dim in dims:
            check_static_dim(dim, "in_dim", "LayerNorm")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            raise ValueError(f"LayerNorm: eps must be a float >= 0, got {eps!r}")
        self.in_dim = in_dim
        self.eps = float(eps)
        self.scale = Parameter(dims, initial=1.0)
        self.bias = Parameter(dims, initial=0.0) if with_bias else None

    def __call__(self, x: Tensor) -> Tensor:
        in_dims = self.scale.dims
        check_input(x, "LayerNorm", *(("in_dim", d) for d in in_dims))
        backend = common_backend(x, self.scale)
        others = tuple(d for d in x.dims if d not in in_dims)
        bias = raw_param(self.bias, x) if self.bias is not None else None
        raw = backend.layer_norm(align(x, others + in_dims), raw_param(self.scale, x), bias, len(in_dims), self.eps)
        return x.copy_template(raw, others + in_dims)

    def __repr__(self) -> str:
        return f"<LayerNorm {self.in_dim}>"
