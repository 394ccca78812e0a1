"""``conv`` (the functional form of :class:`~returnn_ls.nn.conv.Conv1d`, as ``returnn.frontend.conv``) and
``make_conv_out_spatial_dims``: 1-D only (one spatial dim), on the backend's ``conv1d`` kernel."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.nn.conv import _positive_int, backend_padding, make_out_spatial_dim
from returnn_ls.ops import align, common_backend, maximum, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = ["calc_conv_out_length", "conv", "make_conv_out_spatial_dims"]


def conv(
    source: Tensor,
    *,
    in_dim: Dim,
    out_dim: Dim,
    in_spatial_dims: Sequence[Dim],
    out_spatial_dims: Sequence[Dim] | None = None,
    filter: Tensor,  # noqa: A002 (RETURNN's name)
    filter_size: Sequence[Dim],
    padding: str | int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    dilation_rate: int | Sequence[int] | None = None,
    groups: int | None = None,
    bias: Tensor | None = None,
    use_mask: bool | None = None,
) -> tuple[Tensor, Sequence[Dim]]:
    """1-D convolution (cross-correlation) of ``source`` with a given ``filter``; as :class:`Conv1d` does it.

    :param source: float Tensor with ``in_dim`` and the spatial dim; all other dims are batch dims
    :param in_dim: the input channels
    :param out_dim: the output channels
    :param in_spatial_dims: ``[time_dim]`` (one dim: only 1-D convolutions are supported)
    :param out_spatial_dims: ``[out_time_dim]`` to use; default: computed (:func:`make_conv_out_spatial_dims`)
    :param filter: ``[filter_size[0], filter_in, out_dim]`` in any order, ``filter_in`` being ``in_dim`` (or a dim
        of size ``in_dim / groups`` for a grouped convolution)
    :param filter_size: ``[filter_dim]``, the filter's spatial dim
    :param padding: ``"same"`` (``ceil(T / strides)`` frames; with ``strides > 1`` RETURNN's consistent same
        padding, independent of the other sequences), ``"valid"``, or an int: that many zero frames on each side
    :param strides: the step between output frames (default 1)
    :param dilation_rate: the step between filter taps (default 1)
    :param groups: grouped convolution (default 1)
    :param bias: ``[out_dim]`` or None
    :param use_mask: set the padding frames of the input to 0 first (default True, RETURNN's since behaviour
        version 23)
    :return: ``[*batch, out_spatial_dim, out_dim]`` and ``[out_spatial_dim]``

    Example::

        y, (out_time,) = rf.conv(x, filter=w, in_dim=in_dim, out_dim=out_dim, in_spatial_dims=[time_dim],
                                 filter_size=[w_dim], padding="same", strides=2)
    """
    func = "conv"
    _validate.check_tensor(source, "source", func)
    _validate.check_float(source, "source", func)
    (spatial,) = _one(in_spatial_dims, "in_spatial_dims", func)
    (filter_dim,) = _one(filter_size, "filter_size", func)
    for name, dim in (("in_dim", in_dim), ("in_spatial_dims[0]", spatial)):
        if not isinstance(dim, Dim) or dim not in source.dims:
            raise ValueError(f"{func}: {name} {dim!r} is not a dim of source {source}")
    if not isinstance(filter, Tensor) or out_dim not in filter.dims or filter_dim not in filter.dims:
        raise ValueError(f"{func}: filter must be a Tensor with out_dim {out_dim} and filter_size {filter_dim}")
    filter_in = [d for d in filter.dims if d is not out_dim and d is not filter_dim]
    if len(filter_in) != 1:
        raise ValueError(f"{func}: filter {filter} must have exactly 3 dims: out_dim, filter_size and the input")
    stride, dilation = (_single(v, name, func) for v, name in ((strides, "strides"), (dilation_rate, "dilation_rate")))
    num_groups = _positive_int(groups, "groups", func) if groups is not None else 1
    if filter_in[0].dimension * num_groups != in_dim.dimension:
        raise ValueError(f"{func}: the filter's input dim {filter_in[0]} times groups={num_groups} must be {in_dim}")
    size = filter_dim.dimension
    raw_padding = _padding(padding, size, stride, dilation, func)
    if (use_mask is None or use_mask) and spatial.is_padded():
        source = where(sequence_mask(spatial, source), source, 0.0)
    backend = common_backend(source, filter, *([bias] if bias is not None else []))
    batch = tuple(d for d in source.dims if d not in (spatial, in_dim))
    raw = backend.conv1d(
        align(source, batch + (spatial, in_dim)), align(filter, (out_dim, filter_in[0], filter_dim)),
        align(bias, (out_dim,)) if bias is not None else None, raw_padding, stride, dilation, num_groups,
    )  # fmt: skip
    if out_spatial_dims is None:
        out_spatial_dims = make_conv_out_spatial_dims([spatial], filter_size=size, padding=padding, strides=stride,
                                                      dilation_rate=dilation)  # fmt: skip
    (out_spatial,) = _one(out_spatial_dims, "out_spatial_dims", func)
    out = Tensor(raw, batch + (out_spatial, out_dim), feature_dim=out_dim, backend=backend)
    return out, [out_spatial]


def make_conv_out_spatial_dims(
    in_spatial_dims: Sequence[Dim],
    *,
    filter_size: Sequence[int | Dim] | int | Dim,
    padding: str | int | Sequence[int],
    strides: Sequence[int] | int = 1,
    dilation_rate: Sequence[int] | int = 1,
    description_prefix: str | None = None,
) -> list[Dim]:
    """:return: the output spatial dims of a convolution or pooling (one per input dim): the input dim itself
    where it keeps every frame (``"same"`` with stride 1), else a new dim: ``ceil(T / strides)`` frames for
    ``"same"``, ``max(ceil((T + 2*padding - (filter_size - 1) * dilation_rate) / strides), 0)`` for ``"valid"``
    (``padding=0``) or an int ``padding``; dynamic sizes are computed per sequence

    :param description_prefix: names the new dims ``"{prefix}:spatial{i}"``
    """
    func = "make_conv_out_spatial_dims"
    if isinstance(in_spatial_dims, Dim) or not all(isinstance(d, Dim) for d in in_spatial_dims):
        raise TypeError(f"{func}: in_spatial_dims must be a sequence of Dims, got {in_spatial_dims!r}")
    nd = len(in_spatial_dims)
    sizes = [s.dimension if isinstance(s, Dim) else s for s in _per_dim(filter_size, nd, "filter_size", func)]
    paddings = _per_dim(padding, nd, "padding", func)
    out = []
    for i, (dim, size, stride, dilation, pad) in enumerate(zip(
            in_spatial_dims, sizes, _per_dim(strides, nd, "strides", func),
            _per_dim(dilation_rate, nd, "dilation_rate", func), paddings)):  # fmt: skip
        size, stride, dilation = (_positive_int(v, n, func) for v, n in ((size, "filter_size"), (stride, "strides"),
                                                                         (dilation, "dilation_rate")))  # fmt: skip
        if isinstance(pad, str) and pad.lower() in ("same", "valid"):
            new = make_out_spatial_dim(dim, size, stride, dilation, pad.lower(), "conv")
        elif isinstance(pad, numbers.Integral) and not isinstance(pad, bool) and pad >= 0:  # "valid" over p+T+p
            new = make_out_spatial_dim(dim + 2 * int(pad) if pad else dim, size, stride, dilation, "valid", "conv")
        else:
            raise ValueError(f"{func}: padding must be 'same', 'valid' or an int >= 0, got {pad!r}")
        if description_prefix and new is not dim:
            new.name = f"{description_prefix}:spatial{i}"
        out.append(new)
    return out


def calc_conv_out_length(in_length: Any, *, filter_size: int | Dim, stride: int, padding: str | int,
                         dilation_rate: int = 1, name: str | None = None) -> Any:  # fmt: skip
    """:return: the output length of a convolution or pooling over ``in_length``: an int, a Tensor of lengths
    (per entry), or a Dim (then :func:`make_conv_out_spatial_dims`' dim, named ``name`` if new); ``"same"``:
    ``ceil(T / stride)``, ``"valid"`` or an int padding ``p``: ``ceil(max(T + 2p - (filter_size - 1) *
    dilation_rate, 0) / stride)``"""
    if isinstance(in_length, Dim):
        (out,) = make_conv_out_spatial_dims([in_length], filter_size=filter_size, padding=padding, strides=stride,
                                            dilation_rate=dilation_rate)  # fmt: skip
        if name and out is not in_length:
            out.name = name
        return out
    size = filter_size.dimension if isinstance(filter_size, Dim) else filter_size
    pad = padding.lower() if isinstance(padding, str) else padding
    if pad == "same":
        valid = in_length
    elif pad == "valid" or (isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0):
        extra = 2 * pad if isinstance(pad, int) else 0
        valid = in_length + extra - (size - 1) * dilation_rate
        valid = max(valid, 0) if isinstance(valid, int) else maximum(valid, 0)
    else:
        raise ValueError(f"calc_conv_out_length: padding must be 'same', 'valid' or an int >= 0, got {padding!r}")
    return -(-valid // stride)


def _one(dims: Sequence[Dim], name: str, func: str) -> Sequence[Dim]:
    if isinstance(dims, Dim) or len(dims) != 1:
        raise ValueError(f"{func}: {name} must be a list of one Dim (only 1-D convolutions are supported), "
                         f"got {dims!r}")  # fmt: skip
    return dims


def _single(value: int | Sequence[int] | None, name: str, func: str) -> int:
    """:return: ``value`` (None: 1; a sequence of one int: that int) as an int >= 1"""
    if value is None:
        return 1
    if isinstance(value, Sequence):
        if len(value) != 1:
            raise ValueError(f"{func}: {name} must be an int or a list of one int, got {value!r}")
        value = value[0]
    return _positive_int(value, name, func)


def _per_dim(value, nd: int, name: str, func: str) -> list:
    """:return: ``value`` once per spatial dim (a scalar repeated, or a sequence of ``nd`` entries)"""
    if isinstance(value, (str, Dim)) or not isinstance(value, Sequence):
        return [value] * nd
    if len(value) != nd:
        raise ValueError(f"{func}: {name} must have one entry per spatial dim ({nd}), got {value!r}")
    return list(value)


def _padding(padding: str | int | Sequence[int], size: int, stride: int, dilation: int,
             func: str) -> str | tuple[int, int]:  # fmt: skip
    """:return: the ``padding`` argument of ``Backend.conv1d``"""
    if isinstance(padding, Sequence) and not isinstance(padding, str):
        if len(padding) != 1:
            raise ValueError(f"{func}: padding must be 'same', 'valid', an int or a list of one int, got {padding!r}")
        padding = padding[0]
    if isinstance(padding, str) and padding.lower() in ("same", "valid"):
        return backend_padding(padding.lower(), size, stride, dilation, True)
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool) and padding >= 0:
        return int(padding), int(padding)
    raise ValueError(f"{func}: padding must be 'same', 'valid' or an int >= 0, got {padding!r}")
