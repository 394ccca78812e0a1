"""``GroupNorm`` (RETURNN's: statistics per position over the channels of a group) and ``GroupNormSpatial`` (the
standard one, ``torch.nn.GroupNorm``'s: over the channels of a group and the spatial dims), with RETURNN's
parameters ``scale`` (1) and ``bias`` (0) over ``in_dim``."""

from __future__ import annotations

from collections.abc import Sequence

from returnn_ls.dim import Dim
from returnn_ls.nn._utils import check_input, check_static_dim
from returnn_ls.nn.module import Module
from returnn_ls.nn.normalization import moments
from returnn_ls.nn.parameter import Parameter
from returnn_ls.ops import cast, unary
from returnn_ls.split_funcs import merge_dims, split_dims
from returnn_ls.tensor import Tensor

__all__ = ["GroupNorm", "GroupNormSpatial"]


class GroupNorm(Module):
    """Group normalization as RETURNN defines it: ``in_dim`` split into ``num_groups`` groups, each normalized with
    the mean and (biased) variance over its channels, separately at every position (not pooled over time; that is
    :class:`GroupNormSpatial`), then ``* scale + bias``.

    :param in_dim: the channel dim, a static dim divisible by ``num_groups``
    :param num_groups: an int or a Dim
    :param eps: added to the variance

    Example: ``norm = rf.GroupNorm(channels, num_groups=4); y = norm(x)``
    """

    def __init__(self, in_dim: Dim, *, num_groups: int | Dim, eps: float = 1e-6):
        check_static_dim(in_dim, "in_dim", type(self).__name__)
        groups = num_groups.dimension if isinstance(num_groups, Dim) else num_groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or in_dim.dimension % groups:
            raise ValueError(f"{type(self).__name__}: num_groups must divide {in_dim}, got {num_groups!r}")
        self.in_dim = in_dim
        self.num_groups = num_groups if isinstance(num_groups, Dim) else Dim(groups, name="groups")
        self.in_group_dim = in_dim.ceildiv_left(groups)
        self.eps = float(eps)
        self.scale = Parameter([in_dim], initial=1.0)
        self.bias = Parameter([in_dim], initial=0.0)

    def _normalized(self, x: Tensor, over: Sequence[Dim]) -> Tensor:
        check_input(x, type(self).__name__, ("in_dim", self.in_dim))
        grouped = split_dims(x, axis=self.in_dim, dims=[self.num_groups, self.in_group_dim])
        mean, variance = moments(grouped, axis=[self.in_group_dim, *over])
        normed = (cast(grouped, mean.dtype) - mean) * unary("rsqrt", variance + self.eps)
        normed, _ = merge_dims(normed, dims=[self.num_groups, self.in_group_dim], out_dim=self.in_dim)
        out = normed * self.scale + self.bias
        return cast(out, x.dtype) if out.dtype != x.dtype else out

    def __call__(self, x: Tensor) -> Tensor:
        return self._normalized(x, [])


class GroupNormSpatial(GroupNorm):
    """Standard group normalization (``torch.nn.GroupNorm``): each group normalized over its channels and the
    ``spatial_dim`` (one or several; the padding of dynamic dims left out), per batch entry.

    Example: ``norm = rf.GroupNormSpatial(channels, num_groups=1); y = norm(x, spatial_dim=time_dim)``
    """

    def __call__(self, x: Tensor, *, spatial_dim: Dim | Sequence[Dim]) -> Tensor:  # type: ignore[override]
        return self._normalized(x, [spatial_dim] if isinstance(spatial_dim, Dim) else list(spatial_dim))
