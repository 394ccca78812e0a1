"""``pool1d`` and ``max_pool1d`` (as ``returnn.frontend``): max or average over windows of a spatial dim."""

from __future__ import annotations

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.nn.conv import _positive_int, backend_padding, make_out_spatial_dim
from returnn_ls.ops import align, cast, sequence_mask, where
from returnn_ls.tensor import Tensor

__all__ = ["max_pool1d", "pool1d"]

_MODES = ("max", "avg")
_PADDINGS = ("same", "valid")


def pool1d(
    source: Tensor,
    *,
    mode: str,
    pool_size: int,
    padding: str = "valid",
    dilation_rate: int = 1,
    strides: int | None = None,
    in_spatial_dim: Dim,
    out_spatial_dim: Dim | None = None,
    use_consistent_same_padding: bool = True,
) -> tuple[Tensor, Dim]:
    """Pool windows of ``pool_size`` frames of ``in_spatial_dim``: their maximum (``mode="max"``) or mean
    (``"avg"``). Each sequence is pooled over its own frames only: frames after its end (and padding) are never
    the maximum and are not counted in the mean, and the output's padding frames are 0.

    :param source: float Tensor with ``in_spatial_dim``; every other dim is pooled independently
    :param mode: ``"max"`` or ``"avg"``
    :param pool_size: the window
    :param padding: ``"valid"`` (windows inside the sequence) or ``"same"`` (``ceil(T / strides)`` output frames)
    :param dilation_rate: the step between the frames of a window (only for ``"max"``, as RETURNN)
    :param strides: the step between windows; None: ``pool_size`` (unlike a convolution, as RETURNN)
    :param in_spatial_dim: the dim to pool
    :param out_spatial_dim: the output's spatial dim (default: new, sizes computed per sequence, or
        ``in_spatial_dim`` itself for ``"same"`` with stride 1)
    :param use_consistent_same_padding: as :class:`~returnn_ls.nn.conv.Conv1d` (not in RETURNN's signature; its
        config option ``rf_use_consistent_same_padding``): True, padding independent of the other sequences
    :return: the output (``in_spatial_dim`` replaced by ``out_spatial_dim``) and ``out_spatial_dim``

    Example::

        y, pooled_dim = rf.pool1d(x, mode="avg", pool_size=3, strides=2, padding="same", in_spatial_dim=time_dim)
    """
    func = "pool1d"
    _validate.check_tensor(source, "source", func)
    _validate.check_float(source, "source", func)
    size, stride, dilation = _check_args(mode, pool_size, padding, dilation_rate, strides, func)
    if not isinstance(in_spatial_dim, Dim) or in_spatial_dim not in source.dims:
        raise ValueError(f"{func}: in_spatial_dim {in_spatial_dim!r} is not one of the source's dims {source.dims}")
    if out_spatial_dim is not None and not isinstance(out_spatial_dim, Dim):
        raise TypeError(f"{func}: out_spatial_dim must be a Dim or None, got {type(out_spatial_dim).__name__}")
    if not isinstance(use_consistent_same_padding, bool):
        raise TypeError(f"{func}: use_consistent_same_padding must be a bool")
    raw_padding = backend_padding(padding, size, stride, dilation, use_consistent_same_padding)
    args = (mode, size, stride, dilation, raw_padding)
    mask = sequence_mask(in_spatial_dim, source) if in_spatial_dim.is_padded() else None
    if mode == "max" and mask is not None:
        source = where(mask, source, float("-inf"))
    elif mask is not None:
        source = where(mask, source, 0.0)
    if out_spatial_dim is None:
        out_spatial_dim = make_out_spatial_dim(in_spatial_dim, size, stride, dilation, padding, "pool")
    out = _pool(source, in_spatial_dim, out_spatial_dim, args)
    if mode == "avg" and mask is not None:  # the mean over the frames inside the sequence
        count = _pool(cast(mask, source.dtype), in_spatial_dim, out_spatial_dim, args)
        out = out / where(count > 0.0, count, 1.0)
    if out_spatial_dim.is_padded():
        out = where(sequence_mask(out_spatial_dim, out), out, 0.0)
    return out, out_spatial_dim


def max_pool1d(
    source: Tensor,
    *,
    pool_size: int,
    padding: str = "valid",
    dilation_rate: int = 1,
    strides: int | None = None,
    in_spatial_dim: Dim,
    out_spatial_dim: Dim | None = None,
    use_consistent_same_padding: bool = True,
) -> tuple[Tensor, Dim]:
    """:func:`pool1d` with ``mode="max"``.

    Example: ``y, pooled_dim = rf.max_pool1d(x, pool_size=2, in_spatial_dim=time_dim)  # strides 2``
    """
    return pool1d(source, mode="max", pool_size=pool_size, padding=padding, dilation_rate=dilation_rate,
                  strides=strides, in_spatial_dim=in_spatial_dim, out_spatial_dim=out_spatial_dim,
                  use_consistent_same_padding=use_consistent_same_padding)  # fmt: skip


def _check_args(mode: str, pool_size: int, padding: str, dilation_rate: int, strides: int | None,
                func: str) -> tuple[int, int, int]:
    """:return: ``(pool_size, stride, dilation)`` as ints after checking them"""
    if mode not in _MODES:
        raise ValueError(f"{func}: mode must be one of {list(_MODES)}, got {mode!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"{func}: padding must be one of {list(_PADDINGS)}, got {padding!r}")
    size = _positive_int(pool_size, "pool_size", func)
    dilation = _positive_int(dilation_rate, "dilation_rate", func)
    stride = _positive_int(strides, "strides", func) if strides is not None else size
    if mode == "avg" and dilation > 1:
        raise ValueError(f"{func}: dilation_rate > 1 is only supported for mode='max' (as RETURNN)")
    return size, stride, dilation


def _pool(source: Tensor, spatial: Dim, out_spatial: Dim, args: tuple) -> Tensor:
    """:return: ``Backend.pool1d`` of ``source`` over ``spatial``: its channel axis is the feature dim, else the last
    other dim (a size-1 axis if there is none), the other dims are batch dims"""
    others = tuple(d for d in source.dims if d is not spatial)
    channel = source.feature_dim if source.feature_dim in others else (others[-1] if others else None)
    batch = tuple(d for d in others if d is not channel)
    backend = source.backend
    raw = align(source, batch + (spatial,) + ((channel,) if channel is not None else ()))
    if channel is None:
        raw = backend.expand_dims(raw, len(batch) + 1)
    out = backend.pool1d(raw, *args)
    if channel is None:
        return Tensor(backend.reduce("sum", out, [len(batch) + 1]), batch + (out_spatial,), backend=backend)
    return Tensor(out, batch + (out_spatial, channel), feature_dim=source.feature_dim, backend=backend)
