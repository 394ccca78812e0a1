"""``Conv1d`` (as ``returnn.frontend.Conv1d``, same parameters): 1-D convolution over a spatial (time) dim; the
padding and output dims that pooling (:mod:`returnn_ls.nn.pool`) shares."""

from __future__ import annotations

import numbers

from returnn_ls.dim import Dim
from returnn_ls.nn import init
from returnn_ls.nn._utils import check_input, check_static_dim, param_dim, raw_param
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.ops import align, cast, common_backend, maximum, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = ["Conv1d"]

_PADDINGS = ("same", "valid")


class Conv1d(Module):
    """1-D convolution (cross-correlation, as in PyTorch and TensorFlow) over ``in_spatial_dim``.

    Parameters (RETURNN's names and layout): ``filter`` ``[out_dim, in_dim, filter_dim]`` (Glorot uniform with
    RETURNN's fans), ``bias`` ``[out_dim]`` (zeros). As RETURNN does, padding frames of the input are set to 0
    before the convolution, so a frame near a sequence's end sees zeros beyond it whatever the padding holds.

    :param in_dim: input features
    :param out_dim: output features (channels)
    :param filter_size: the filter width (an int, or a static Dim that becomes the filter's dim)
    :param padding: ``"same"``: ``ceil(T / strides)`` output frames of each sequence of ``T`` frames, zeros padded
        on both sides (one more on the right if odd; see ``use_consistent_same_padding``); ``"valid"``: no padding
    :param strides: the step between output frames (None: 1)
    :param dilation_rate: the step between filter taps (None: 1)
    :param groups: grouped convolution: ``in_dim`` and ``out_dim`` split into ``groups`` parts, output part ``g``
        computed from input part ``g`` only; the filter is then ``[out_dim, in_dim // groups, filter_dim]`` (None: 1)
    :param with_bias: whether there is a bias
    :param use_consistent_same_padding: for ``"same"`` with ``strides > 1``: True (default, RETURNN's behaviour
        since its behavior version 24, ``rf_use_consistent_same_padding``): ``(filter_size - 1) * dilation_rate``
        zero frames, half of them on the left, whatever the lengths, so a sequence's output depends only on its own
        frames; False: RETURNN's padding before version 24, TensorFlow's ``"SAME"`` for the padded length of the
        batch (the longest sequence), so the other sequences' outputs depend on it

    Example::

        conv = rf.Conv1d(in_dim, hidden_dim, 5, padding="same")
        y, out_spatial_dim = conv(x, in_spatial_dim=time_dim)  # out_spatial_dim is time_dim here (stride 1)
    """

    def __init__(
        self,
        in_dim: Dim,
        out_dim: Dim,
        filter_size: int | Dim,
        *,
        padding: str,
        strides: int | None = None,
        dilation_rate: int | None = None,
        groups: int | None = None,
        with_bias: bool = True,
        use_consistent_same_padding: bool = True,
    ):
        self.in_dim = check_static_dim(in_dim, "in_dim", "Conv1d")
        self.out_dim = check_static_dim(out_dim, "out_dim", "Conv1d")
        if isinstance(filter_size, Dim):
            filter_dim = check_static_dim(filter_size, "filter_size", "Conv1d")
        else:
            filter_dim = Dim(_positive_int(filter_size, "filter_size"), name="filter-dim0")
        self.filter_size = [filter_dim]
        if padding not in _PADDINGS:
            raise ValueError(f"Conv1d: padding must be one of {list(_PADDINGS)}, got {padding!r}")
        self.padding = padding
        self.strides = _positive_int(strides, "strides") if strides is not None else None
        self.dilation_rate = _positive_int(dilation_rate, "dilation_rate") if dilation_rate is not None else None
        if (self.strides or 1) > 1 and (self.dilation_rate or 1) > 1:
            raise ValueError("Conv1d: strides > 1 together with dilation_rate > 1 is not supported (TensorFlow has no"
                             " kernel for it); use one of them")  # fmt: skip
        self.groups = _groups(groups, in_dim, out_dim)
        filter_in_dim = param_dim(in_dim, out_dim) if (self.groups or 1) == 1 else _group_dim(in_dim, self.groups)
        self.filter = Parameter([out_dim, filter_in_dim, filter_dim], initial=init.Glorot())
        self.with_bias = with_bias
        self.bias = Parameter([out_dim], initial=0.0) if with_bias else None
        if not isinstance(use_consistent_same_padding, bool):
            raise TypeError("Conv1d: use_consistent_same_padding must be a bool, got "
                            f"{type(use_consistent_same_padding).__name__}")  # fmt: skip
        self.use_consistent_same_padding = use_consistent_same_padding

    def __call__(
        self, source: Tensor, *, in_spatial_dim: Dim, out_spatial_dim: Dim | None = None
    ) -> tuple[Tensor, Dim]:
        """:return: the output (dims: those of ``source`` without ``in_spatial_dim`` and ``in_dim``, then
        ``out_spatial_dim``, ``out_dim``) and ``out_spatial_dim`` (new unless given or ``in_spatial_dim`` itself
        for ``"same"`` with stride 1)"""
        check_input(source, "Conv1d", ("in_dim", self.in_dim), ("in_spatial_dim", in_spatial_dim))
        if out_spatial_dim is not None and not isinstance(out_spatial_dim, Dim):
            raise TypeError(f"Conv1d: out_spatial_dim must be a Dim or None, got {type(out_spatial_dim).__name__}")
        backend = common_backend(source, self.filter)
        if in_spatial_dim.is_padded():
            source = where(sequence_mask(in_spatial_dim, source), source, 0.0)
        batch = tuple(d for d in source.dims if d not in (in_spatial_dim, self.in_dim))
        bias = raw_param(self.bias, source) if self.bias is not None else None
        size, stride, dilation = self.filter_size[0].dimension, self.strides or 1, self.dilation_rate or 1
        padding = backend_padding(self.padding, size, stride, dilation, self.use_consistent_same_padding)
        raw = backend.conv1d(
            align(source, batch + (in_spatial_dim, self.in_dim)), raw_param(self.filter, source), bias,
            padding, stride, dilation, self.groups or 1,
        )  # fmt: skip
        if out_spatial_dim is None:
            out_spatial_dim = make_out_spatial_dim(in_spatial_dim, size, stride, dilation, self.padding, "conv")
        out = Tensor(raw, batch + (out_spatial_dim, self.out_dim), feature_dim=self.out_dim, backend=backend)
        return out, out_spatial_dim

    def __repr__(self) -> str:
        return f"<Conv1d {self.in_dim} -> {self.out_dim}, filter {self.filter_size[0].dimension}, {self.padding}>"


def backend_padding(padding: str, size: int, stride: int, dilation: int, consistent: bool) -> str | tuple[int, int]:
    """:return: the ``padding`` argument of ``Backend.conv1d``/``pool1d``: ``"same"`` with ``stride > 1`` and
    ``consistent`` becomes ``(left, right)``, ``(size - 1) * dilation`` frames with one more on the right if odd
    (RETURNN's consistent same padding: independent of the padded length, so of the other sequences)"""
    if padding == "same" and stride > 1 and consistent:
        total = (size - 1) * dilation
        return total // 2, total - total // 2
    return padding


def make_out_spatial_dim(in_spatial_dim: Dim, size: int, stride: int, dilation: int, padding: str, what: str) -> Dim:
    """:return: the spatial dim of a convolution or pooling: ``in_spatial_dim`` itself where it keeps every frame
    (``"same"`` with stride 1, or a window of 1 with stride 1, as RETURNN), else a new dim, static or with sizes
    computed from the input's sizes (``what`` names it)"""
    if stride == 1 and (padding == "same" or size == 1):
        return in_spatial_dim
    taps = (size - 1) * dilation + 1
    name = f"{in_spatial_dim.name}-{what}" if in_spatial_dim.name else what
    if in_spatial_dim.dimension is not None:
        return Dim(conv_out_length(in_spatial_dim.dimension, taps, stride, padding), name=name)
    sizes = in_spatial_dim.dyn_size_ext
    if sizes is None:
        return Dim(None, name=name)
    return Dim(conv_out_length(sizes, taps, stride, padding), name=name)


def conv_out_length(length: int | Tensor, taps: int, stride: int, padding: str) -> int | Tensor:
    """:return: the number of output frames of a convolution over ``length`` frames (an int or int Tensor):
    ``ceil(length / stride)`` for ``"same"``, ``max(floor((length - taps) / stride) + 1, 0)`` for ``"valid"``;
    ``taps = (filter_size - 1) * dilation_rate + 1``"""
    numerator = length + (stride - 1) if padding == "same" else length - taps + stride
    if isinstance(length, int):
        return max(numerator // stride, 0)
    # non-negative integer quotients: truediv then truncation (a cast) is floor; negative ones are clipped to 0
    return maximum(cast(cast(numerator, "float64") / stride, length.dtype), 0)


def _positive_int(value: object, name: str, func: str = "Conv1d") -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{func}: {name} must be an int >= 1, got {value!r}")
    return int(value)


def _group_dim(in_dim: Dim, groups: int) -> Dim:
    """:return: the filter's input dim of a grouped convolution, of size ``in_dim // groups`` (RETURNN's name)"""
    return Dim(in_dim.dimension // groups, name=f"{in_dim.name}//{groups}" if in_dim.name else None)


def _groups(groups: object, in_dim: Dim, out_dim: Dim) -> int | None:
    """:return: ``groups`` (None or an int >= 1 that divides both dims), else raise"""
    if groups is None:
        return None
    groups = _positive_int(groups, "groups")
    for name, dim in (("in_dim", in_dim), ("out_dim", out_dim)):
        if dim.dimension % groups:
            raise ValueError(f"Conv1d: {name} {dim} is not divisible by groups={groups}")
    return groups
