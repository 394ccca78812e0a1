"""The mini backend's convolution, pooling and zoneout LSTM kernels in NumPy (see ``Backend.conv1d``, ``pool1d``,
``zoneout_lstm``): one filter tap (or frame) at a time, forward only."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["conv1d", "pool1d", "zoneout_lstm"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _pads(padding: Any, time: int, size: int, stride: int, dilation: int) -> tuple[int, int]:
    """:return: the frames ``(left, right)`` padded for ``padding`` (``"valid"``, ``"same"`` or a pair)"""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = max((-(-time // stride) - 1) * stride + (size - 1) * dilation + 1 - time, 0)
        return total // 2, total - total // 2
    return int(padding[0]), int(padding[1])


def _taps(flat: np.ndarray, size: int, stride: int, dilation: int) -> list[np.ndarray]:
    """:return: per tap ``k`` the frames ``t * stride + k * dilation`` of ``flat`` ``[N, T, C]``: ``[N, T', C]``"""
    out_len = max((flat.shape[1] - (size - 1) * dilation - 1) // stride + 1, 0)
    return [flat[:, k * dilation : k * dilation + (out_len - 1) * stride + 1 : stride][:, :out_len]
            for k in range(size)]  # fmt: skip


def conv1d(x: Any, filter: Any, bias: Any, padding: Any, stride: int, dilation: int, groups: int = 1) -> Any:  # noqa: A002
    """See ``Backend.conv1d``."""
    batch, width = x.shape[:-2], filter.shape[2]
    flat = x.reshape((-1,) + x.shape[-2:])
    flat = np.pad(flat, ((0, 0), _pads(padding, flat.shape[1], width, stride, dilation), (0, 0)))
    taps = _taps(flat, width, stride, dilation)
    in_part, out_part = flat.shape[2] // groups, filter.shape[0] // groups
    parts = []
    for g in range(groups):
        weights = filter[g * out_part : (g + 1) * out_part]
        part = sum(tap[..., g * in_part : (g + 1) * in_part] @ weights[:, :, k].T for k, tap in enumerate(taps))
        parts.append(np.asarray(part, np.result_type(x, filter)))
    out = np.concatenate(parts, axis=-1)
    out = out if bias is None else out + bias
    return out.reshape(batch + out.shape[1:])


def pool1d(x: Any, mode: str, pool_size: int, stride: int, dilation: int, padding: Any) -> Any:
    """See ``Backend.pool1d``: padding frames are NaN, left out of the maximum and the mean."""
    batch = x.shape[:-2]
    flat = x.reshape((-1,) + x.shape[-2:]).astype(np.float64)
    pads = _pads(padding, flat.shape[1], pool_size, stride, dilation)
    flat = np.pad(flat, ((0, 0), pads, (0, 0)), constant_values=np.nan)
    taps = np.stack(_taps(flat, pool_size, stride, dilation))  # [K, N, T', C]
    out = np.nanmax(taps, axis=0) if mode == "max" else np.nanmean(taps, axis=0)
    return out.astype(x.dtype).reshape(batch + out.shape[1:])


def zoneout_lstm(x, lengths, h0, c0, rec_weight, *, gate_order: str, forget_bias: float, cell_keep, output_keep,
                 zoneout_output: bool) -> tuple[Any, Any, Any]:  # fmt: skip
    """See ``Backend.zoneout_lstm``."""
    batch, time, size = x.shape[:-2], x.shape[-2], rec_weight.shape[1]
    flat = x.reshape((-1,) + x.shape[-2:])
    lens = np.full(len(flat), time) if lengths is None else np.broadcast_to(lengths, batch).reshape(-1)
    h, c = (np.zeros((len(flat), size), x.dtype) if s is None else
            np.broadcast_to(s, batch + (size,)).reshape(-1, size).astype(x.dtype) for s in (h0, c0))  # fmt: skip
    keeps = [np.broadcast_to(np.asarray(k, x.dtype), batch + (time, size)).reshape(-1, time, size)
             for k in (cell_keep, output_keep)]  # fmt: skip
    order = [gate_order.index(k) for k in "ijfo"]
    out = np.zeros(flat.shape[:2] + (size,), x.dtype)
    for t in range(time):
        parts = np.split(flat[:, t] + h @ rec_weight.T, 4, axis=-1)
        i, j, f, o = (parts[k] for k in order)
        c_new = _sigmoid(f + forget_bias) * c + _sigmoid(i) * np.tanh(j)
        h_new = _sigmoid(o) * np.tanh(c_new)
        c_next = keeps[0][:, t] * c_new + (1 - keeps[0][:, t]) * c
        h_next = keeps[1][:, t] * h_new + (1 - keeps[1][:, t]) * h
        active = (t < lens)[:, None]  # padding frames leave the state as it is
        out[:, t] = np.where(active, h_next if zoneout_output else h_new, 0)
        h, c = np.where(active, h_next, h), np.where(active, c_next, c)
    return out.reshape(batch + (time, size)), h.reshape(batch + (size,)), c.reshape(batch + (size,))
