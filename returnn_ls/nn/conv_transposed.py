"""``TransposedConv1d`` and ``transposed_conv`` (as ``returnn.frontend``, same parameters): 1-D transposed
convolution (upsampling), on the backend's ``transposed_conv1d`` kernel; and the output-size rule
``make_transposed_conv_out_spatial_dims``."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.nn import init
from returnn_ls.nn._utils import check_input, check_static_dim, param_dim
from returnn_ls.nn.conv import _positive_int
from returnn_ls.nn.conv_funcs import _one, _per_dim
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.ops import align, common_backend, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = ["TransposedConv1d", "make_transposed_conv_out_spatial_dims", "transposed_conv"]


class TransposedConv1d(Module):
    """1-D transposed convolution ("deconvolution"): input frame ``t`` adds ``x_t @ filter[:, :, k]`` to output
    frame ``t * strides + k`` (PyTorch's ``conv_transpose1d``, TensorFlow's ``conv1d_transpose``).

    Parameters (RETURNN's names and layout): ``filter`` ``[in_dim, out_dim, filter_dim]`` (Glorot uniform),
    ``bias`` ``[out_dim]`` (zeros).

    :param in_dim: input features
    :param out_dim: output features
    :param filter_size: the filter width (an int, or a static Dim that becomes the filter's dim)
    :param padding: ``"valid"`` (``"same"`` is not supported, as in RETURNN's PyTorch backend)
    :param remove_padding: frames removed at the end of the output
    :param output_padding: frames added at the end of the output (``< strides``); None: RETURNN's (and Keras's)
        rule, ``T * strides + max(filter_size - strides, 0)`` output frames for ``T`` input frames
    :param strides: the upsampling factor; None: ``filter_size`` (RETURNN's default)
    :param with_bias: whether there is a bias

    Example::

        up = rf.TransposedConv1d(in_dim, out_dim, 4, strides=2, padding="valid")
        y, up_time_dim = up(x, in_spatial_dim=time_dim)  # 2 * T + 2 frames per sequence
    """

    def __init__(self, in_dim: Dim, out_dim: Dim, filter_size: int | Dim, *, padding: str, remove_padding: int = 0,
                 output_padding: int | None = None, strides: int | None = None, with_bias: bool = True):  # fmt: skip
        func = "TransposedConv1d"
        self.in_dim = check_static_dim(in_dim, "in_dim", func)
        self.out_dim = check_static_dim(out_dim, "out_dim", func)
        if isinstance(filter_size, Dim):
            filter_dim = check_static_dim(filter_size, "filter_size", func)
        else:
            filter_dim = Dim(_positive_int(filter_size, "filter_size", func), name="filter-dim0")
        self.filter_size = [filter_dim]
        self.padding = _check_padding(padding, func)
        self.remove_padding = _non_negative(remove_padding, "remove_padding", func)
        self.output_padding = _non_negative(output_padding, "output_padding", func) if output_padding is not None \
            else None  # fmt: skip
        self.strides = _positive_int(strides, "strides", func) if strides is not None else None
        self.filter = Parameter([param_dim(in_dim, out_dim), out_dim, filter_dim], initial=init.Glorot())
        self.with_bias = with_bias
        self.bias = Parameter([out_dim], initial=0.0) if with_bias else None

    def __call__(self, source: Tensor, *, in_spatial_dim: Dim, out_spatial_dim: Dim | None = None
                 ) -> tuple[Tensor, Dim]:  # fmt: skip
        """:return: the output (``in_spatial_dim`` and ``in_dim`` replaced by ``out_spatial_dim``, ``out_dim``) and
        ``out_spatial_dim`` (new unless given)"""
        check_input(source, "TransposedConv1d", ("in_dim", self.in_dim), ("in_spatial_dim", in_spatial_dim))
        filter_in = self.filter.dims[0]
        source_in = source if filter_in is self.in_dim else _rename(source, self.in_dim, filter_in)
        out, (out_spatial_dim,) = transposed_conv(
            source_in, in_dim=filter_in, out_dim=self.out_dim, in_spatial_dims=[in_spatial_dim],
            out_spatial_dims=[out_spatial_dim] if out_spatial_dim is not None else None, filter=self.filter,
            filter_size=self.filter_size, padding=self.padding, remove_padding=self.remove_padding,
            output_padding=self.output_padding, strides=self.strides, bias=self.bias,
        )  # fmt: skip
        return out, out_spatial_dim

    def __repr__(self) -> str:
        return f"<TransposedConv1d {self.in_dim} -> {self.out_dim}, filter {self.filter_size[0].dimension}>"


def transposed_conv(
    source: Tensor,
    *,
    in_dim: Dim,
    out_dim: Dim,
    in_spatial_dims: Sequence[Dim],
    out_spatial_dims: Sequence[Dim] | None = None,
    filter: Tensor,  # noqa: A002 (RETURNN's name)
    filter_size: Sequence[Dim],
    padding: str,
    remove_padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int | None] | None = None,
    strides: int | Sequence[int] | None = None,
    bias: Tensor | None = None,
    use_mask: bool | None = None,
) -> tuple[Tensor, Sequence[Dim]]:
    """1-D transposed convolution of ``source`` with a given ``filter`` (see :class:`TransposedConv1d`).

    :param filter: ``[in_dim, out_dim, filter_size[0]]`` in any order
    :param use_mask: set the padding frames of the input to 0 first (default True)
    :return: ``[*batch, out_spatial_dim, out_dim]`` and ``[out_spatial_dim]``; other arguments as
        :class:`TransposedConv1d` (``in_spatial_dims``, ``filter_size``: lists of one Dim)
    """
    func = "transposed_conv"
    _validate.check_tensor(source, "source", func)
    _validate.check_float(source, "source", func)
    (spatial,) = _one(in_spatial_dims, "in_spatial_dims", func)
    (filter_dim,) = _one(filter_size, "filter_size", func)
    for name, dim in (("in_dim", in_dim), ("in_spatial_dims[0]", spatial)):
        if not isinstance(dim, Dim) or dim not in source.dims:
            raise ValueError(f"{func}: {name} {dim!r} is not a dim of source {source}")
    if not isinstance(filter, Tensor) or set(map(id, filter.dims)) != {id(in_dim), id(out_dim), id(filter_dim)}:
        raise ValueError(f"{func}: filter must be a Tensor with the dims in_dim, out_dim and filter_size[0]")
    _check_padding(padding, func)
    size = filter_dim.dimension
    (stride,) = _per_dim(strides if strides is not None else size, 1, "strides", func)
    stride = _positive_int(stride, "strides", func)
    (extra,) = _per_dim(output_padding, 1, "output_padding", func)
    (removed,) = _per_dim(remove_padding, 1, "remove_padding", func)
    removed = _non_negative(removed, "remove_padding", func)
    if extra is None:  # RETURNN's output size: T * stride + max(size - stride, 0)
        extra = max(stride - size, 0)
    elif not 0 <= _non_negative(extra, "output_padding", func) < stride:
        raise ValueError(f"{func}: output_padding must be in [0, strides={stride}), got {extra}")
    if (use_mask is None or use_mask) and spatial.is_padded():
        source = where(sequence_mask(spatial, source), source, 0.0)
    backend = common_backend(source, filter, *([bias] if bias is not None else []))
    batch = tuple(d for d in source.dims if d not in (spatial, in_dim))
    raw = backend.transposed_conv1d(
        align(source, batch + (spatial, in_dim)), align(filter, (in_dim, out_dim, filter_dim)),
        align(bias, (out_dim,)) if bias is not None else None, stride, 0, extra,
    )  # fmt: skip
    if removed:
        raw = backend.slice(raw, len(batch), 0, -removed, None)
    if out_spatial_dims is None:
        out_spatial_dims = make_transposed_conv_out_spatial_dims(
            [spatial], filter_size=size, padding=padding, strides=stride, output_padding=output_padding)
        if removed:
            out_spatial_dims = [out_spatial_dims[0] - removed]
    (out_spatial,) = _one(out_spatial_dims, "out_spatial_dims", func)
    return Tensor(raw, batch + (out_spatial, out_dim), feature_dim=out_dim, backend=backend), [out_spatial]


def make_transposed_conv_out_spatial_dims(
    in_spatial_dims: Sequence[Dim],
    *,
    filter_size: Sequence[int | Dim] | int | Dim,
    padding: str | Sequence[str],
    output_padding: Sequence[int | None] | int | None = None,
    strides: Sequence[int | None] | int | None = None,
    dilation_rate: Sequence[int] | int = 1,
    description_prefix: str | None = None,
) -> list[Dim]:
    """:return: the output spatial dims of a transposed convolution (RETURNN's rule, from Keras): for ``T`` input
    frames, ``T * strides + max(filter_size - strides, 0)`` frames (``"valid"``, ``output_padding`` None), else
    ``(T - 1) * strides + filter_size + output_padding``; ``strides`` None means ``filter_size``. Dynamic sizes
    are computed per sequence."""
    func = "make_transposed_conv_out_spatial_dims"
    if isinstance(in_spatial_dims, Dim) or not all(isinstance(d, Dim) for d in in_spatial_dims):
        raise TypeError(f"{func}: in_spatial_dims must be a sequence of Dims, got {in_spatial_dims!r}")
    nd = len(in_spatial_dims)
    out = []
    for i, (dim, size, pad, extra, stride, dilation) in enumerate(zip(
            in_spatial_dims, _per_dim(filter_size, nd, "filter_size", func), _per_dim(padding, nd, "padding", func),
            _per_dim(output_padding, nd, "output_padding", func), _per_dim(strides, nd, "strides", func),
            _per_dim(dilation_rate, nd, "dilation_rate", func))):  # fmt: skip
        _check_padding(pad, func)
        size = _positive_int(size.dimension if isinstance(size, Dim) else size, "filter_size", func)
        taps = (size - 1) * _positive_int(dilation, "dilation_rate", func) + 1
        stride = _positive_int(stride, "strides", func) if stride is not None else size
        delta = max(taps - stride, 0) if extra is None else taps - stride + _non_negative(extra, "output_padding", func)
        new = dim * stride if stride != 1 else dim
        new = new + delta if delta > 0 else new - (-delta) if delta < 0 else new
        if description_prefix and new is not dim:
            new.name = f"{description_prefix}:spatial{i}"
        out.append(new)
    return out


def _check_padding(padding: object, func: str) -> str:
    if padding != "valid":
        raise ValueError(f"{func}: padding must be 'valid' (the only one supported, as in RETURNN's PyTorch "
                         f"backend), got {padding!r}")  # fmt: skip
    return padding


def _non_negative(value: object, name: str, func: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{func}: {name} must be an int >= 0, got {value!r}")
    return int(value)


def _rename(source: Tensor, old: Dim, new: Dim) -> Tensor:
    """:return: ``source`` with the dim ``old`` called ``new`` (same data)"""
    dims = tuple(new if d is old else d for d in source.dims)
    feature = new if source.feature_dim is old else source.feature_dim
    return Tensor(source.raw_tensor, dims, feature_dim=feature, backend=source.backend)
