"""The mini backend's primitives, all in NumPy, forward only (see :class:`MiniBackend`).

NumPy has no autodiff, so every gradient op is its forward value: ``stop_gradient``, ``scaled_gradient_ext`` and
``log_softmax_smoothed_*`` are identities, the fused losses return their values only (the trainer differentiates
by finite differences, :mod:`_mini_backend.trainer`). Results are always arrays (never numpy scalars), and no
primitive writes into its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from _mini_backend import layers
from _mini_backend.array import MiniArrayKernels
from frontend_backends.base import BINARY_OPS, Backend

__all__ = ["MiniBackend", "generator_states", "np_dtype", "restore_generator_states"]

_DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64, "int32": np.int32,
           "int64": np.int64, "bool": np.bool_}  # fmt: skip
_SELU = (1.0507009873554804934193349852946, 1.6732632423543772848170429916717)
_erf = np.vectorize(math.erf, otypes=[np.float64])
_UNARY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt,
    "square": np.square, "relu": lambda x: np.maximum(x, x.dtype.type(0)), "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)), "logical_not": np.logical_not, "sin": np.sin, "cos": np.cos,
    "expm1": np.expm1, "rsqrt": lambda x: 1 / np.sqrt(x), "reciprocal": np.reciprocal, "ceil": np.ceil,
    "floor": np.floor, "round": np.round,
}  # fmt: skip
_ACTIVATIONS = {
    "gelu": lambda x, a: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "silu": lambda x, a: x * _UNARY["sigmoid"](x),
    "elu": lambda x, a: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x, a: _SELU[0] * np.where(x > 0, x, _SELU[1] * np.expm1(np.minimum(x, 0))),
    "softplus": lambda x, a: np.logaddexp(0.0, x),
    "log_sigmoid": lambda x, a: -np.logaddexp(0.0, -x),
    "leaky_relu": lambda x, a: np.where(x >= 0, x, a * x),
}
#: every generator :meth:`MiniBackend.random_generator` made, so that the trainer can replay a step's dropout masks
_GENERATORS: list[np.random.Generator] = []


def np_dtype(dtype: str) -> np.dtype:
    """:return: the numpy dtype of a protocol dtype string

    :raise TypeError: for ``"bfloat16"`` (numpy has none) and unknown names
    """
    if dtype == "bfloat16":
        raise TypeError("numpy_mini: numpy has no bfloat16; use float16, float32 or float64")
    if dtype not in _DTYPES:
        raise TypeError(f"numpy_mini: unknown dtype {dtype!r}; one of {sorted(_DTYPES)}")
    return np.dtype(_DTYPES[dtype])


def generator_states() -> list[tuple[np.random.Generator, dict]]:
    """:return: the state of every generator made by the backend (see :func:`restore_generator_states`)"""
    return [(g, g.bit_generator.state) for g in _GENERATORS]


def restore_generator_states(states: list[tuple[np.random.Generator, dict]]) -> None:
    """Put the generators back into the states :func:`generator_states` returned."""
    for generator, state in states:
        generator.bit_generator.state = state


def _compute(x: np.ndarray) -> np.ndarray:
    """:return: ``x`` in the dtype losses accumulate in: float64 for float64, else float32"""
    return x.astype(np.float64 if x.dtype == np.float64 else np.float32)


def _logsumexp(x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """:return: ``log(sum(exp(x)))`` over ``axes``, stably (rows of -inf give -inf)"""
    top = np.max(x, axis=axes, keepdims=True)
    top = np.where(np.isfinite(top), top, 0).astype(x.dtype)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - top), axis=axes, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axes)


def _fused_ce(logits, targets, off, on, weight, z_loss: float, mask) -> np.ndarray:
    """The forward value of ``Backend.label_smoothed_cross_entropy`` (its documented formula)."""
    z = _compute(np.asarray(logits))
    valid = np.ones(z.shape[:-1], bool) if mask is None else np.broadcast_to(mask, z.shape[:-1])
    y = np.where(valid, np.asarray(targets), 0).astype(np.int64)
    lse = _logsumexp(z, (-1,), False)
    z_y = np.take_along_axis(z, y[..., None], -1)[..., 0]
    big_v, zv = (z.shape[-1], z.sum(-1)) if weight is None else (np.sum(weight), z @ weight.astype(z.dtype))
    off_y, on_y = np.asarray(off)[y].astype(z.dtype), np.asarray(on)[y].astype(z.dtype)
    loss = on_y * (lse - z_y) + off_y * (big_v * lse - zv) + z_loss * np.square(lse)
    return np.where(valid, loss, 0).astype(z.dtype)


def _ctc_nll(lp: np.ndarray, labels: np.ndarray, blank: int) -> float:
    """:return: ``-log p(labels | lp)`` of one sequence (``lp`` ``[T, K]``): the alpha recursion in log space"""
    ext = np.full(2 * len(labels) + 1, blank, np.int64)
    ext[1::2] = labels
    skip = np.zeros(len(ext), bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    if len(lp) == 0:
        return 0.0 if len(labels) == 0 else math.inf
    alpha = np.full(len(ext), -np.inf)
    alpha[:2] = lp[0, ext[:2]]
    for t in range(1, len(lp)):
        prev1 = np.concatenate([[-np.inf], alpha[:-1]])
        prev2 = np.where(skip, np.concatenate([[-np.inf, -np.inf], alpha[:-2]]), -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + lp[t, ext]
    return float(-np.logaddexp.reduce(alpha[-2:]))


def _lstm_step(x_t, h, c, ff_weight, rec_weight, bias):
    """:return: ``(h, c)`` after one LSTM frame (gates ``i, f, g, o``)"""
    gates = x_t @ ff_weight.T + h @ rec_weight.T + (0.0 if bias is None else bias)
    i, f, g, o = np.split(gates, 4, axis=-1)
    sigmoid = _UNARY["sigmoid"]
    c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c_new), c_new


def _state(state, batch_shape: tuple[int, ...], size: int, dtype) -> np.ndarray:
    """:return: an initial LSTM state as ``[N, H]`` (zeros for None)"""
    if state is None:
        return np.zeros((int(np.prod(batch_shape, dtype=np.int64)), size), dtype)
    return np.broadcast_to(state, batch_shape + (size,)).reshape(-1, size).astype(dtype)


class MiniBackend(MiniArrayKernels, Backend):
    """The NumPy backend: forward values only (see the module docstring); numpy has no bfloat16 (a TypeError).

    Parameters (:meth:`create_parameter`) are kept in float64 whatever the initial value's dtype, so that the
    trainer's finite differences are accurate; the trainer feeds float inputs as float64 too.
    """

    # -- creation and inspection ---------------------------------------------------------------------------------

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def convert(self, value: Any, dtype: str | None = None, like: Any = None) -> Any:
        return np.array(value, dtype=None if dtype is None else np_dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x)

    def concrete_value(self, x: Any) -> np.ndarray | None:
        return np.array(x)

    def dtype(self, x: Any) -> str:
        name = np.asarray(x).dtype.name
        if name not in _DTYPES:
            raise TypeError(f"numpy_mini: unsupported dtype {name}; one of {sorted(_DTYPES)}")
        return name

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(int(n) for n in np.shape(x))

    def axis_size(self, x: Any, axis: int) -> Any:
        return int(np.shape(x)[axis])

    def arange(self, n: Any, dtype: str, like: Any = None) -> Any:
        return np.arange(int(n), dtype=np_dtype(dtype))

    def create_parameter(self, value: np.ndarray, trainable: bool) -> Any:
        value = np.asarray(value)
        return np.array(value, dtype=np.float64 if value.dtype.kind == "f" else value.dtype)

    def assign_parameter(self, param: Any, value: Any) -> None:
        param[...] = np.asarray(value)

    # -- shape, dtype, elementwise, reductions -------------------------------------------------------------------

    def cast(self, x: Any, dtype: str) -> Any:
        x, target = np.asarray(x), np_dtype(dtype)
        return x if x.dtype == target else x.astype(target)

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        return np.transpose(x, tuple(perm))

    def expand_dims(self, x: Any, axis: int) -> Any:
        return np.expand_dims(x, axis)

    def binary(self, op: str, a: Any, b: Any) -> Any:
        fn = {"maximum": np.maximum, "minimum": np.minimum}.get(op) or BINARY_OPS[op]
        return np.asarray(fn(a, b))

    def unary(self, op: str, x: Any) -> Any:
        return np.asarray(_UNARY[op](x))

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return np.asarray(np.where(cond, a, b))

    def reduce(self, op: str, x: Any, axes: Sequence[int], keepdims: bool = False) -> Any:
        axes = tuple(axes)
        if not axes:
            return x
        if op == "logsumexp":
            return _logsumexp(x, axes, keepdims)
        fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "any": np.any, "all": np.all}[op]
        return np.asarray(fn(x, axis=axes, keepdims=keepdims))

    def log_softmax(self, x: Any, axis: int) -> Any:
        return x - _logsumexp(x, (axis,), True)

    def softmax(self, x: Any, axis: int) -> Any:
        return np.exp(self.log_softmax(x, axis))

    def gather_last(self, x: Any, indices: Any) -> Any:
        return np.take_along_axis(x, np.asarray(indices, np.int64)[..., None], -1)[..., 0]

    def matmul(self, a: Any, b: Any) -> Any:
        return np.asarray(np.matmul(a, b))

    # -- gradients (identities: numpy has no autodiff) and fused losses (forward values) -------------------------

    def stop_gradient(self, x: Any) -> Any:
        return x

    def scaled_gradient_ext(self, x: Any, scale: Any, shift: Any, sum_axis: int | None, sum_weight: Any = None) -> Any:
        return x

    def log_softmax_smoothed_gradient(self, logits, log_probs, axis, scale, shift, sum_weight=None) -> Any:
        return log_probs

    def log_softmax_smoothed_nll(self, logits, log_probs, targets, scale, shift, sum_weight=None) -> Any:
        return -self.gather_last(log_probs, targets)

    def label_smoothed_cross_entropy(self, logits, targets, off, on, weight, z_loss, mask) -> Any:
        return _fused_ce(logits, targets, off, on, weight, float(z_loss), mask)

    def linear_label_smoothed_cross_entropy(self, hidden, weight, bias, targets, off, on, v, mask, chunk) -> Any:
        frames = hidden.shape[:-1]
        h, y = hidden.reshape(-1, hidden.shape[-1]), np.broadcast_to(targets, frames).reshape(-1)
        valid = np.ones(len(h), bool) if mask is None else np.broadcast_to(mask, frames).reshape(-1)
        parts = []
        for start in range(0, len(h), max(1, int(chunk))):  # the logits of at most `chunk` frames at a time
            rows = slice(start, start + max(1, int(chunk)))
            logits = h[rows] @ weight + (0.0 if bias is None else bias)
            parts.append(_fused_ce(logits, y[rows], off, on, v, 0.0, valid[rows]))
        dtype = np.float64 if np.result_type(hidden, weight) == np.float64 else np.float32
        return (np.concatenate(parts) if parts else np.zeros(0, dtype)).reshape(frames)

    def ctc_loss(self, logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity) -> Any:
        batch = logits.shape[:-2]
        x = _compute(logits.reshape((-1,) + logits.shape[-2:]))
        lp = x if normalized else self.log_softmax(x, 2)
        labels = targets.reshape(len(x), -1)
        in_lens, tgt_lens = (np.broadcast_to(n, batch).reshape(-1) for n in (in_lens, tgt_lens))
        nll = np.array([_ctc_nll(lp[n, : in_lens[n]].astype(np.float64), labels[n, : tgt_lens[n]], blank)
                        for n in range(len(x))])  # fmt: skip
        if zero_infinity:
            nll = np.where(np.isfinite(nll), nll, 0.0)
        return nll.astype(x.dtype).reshape(batch)

    # -- layer kernels -------------------------------------------------------------------------------------------

    def activation(self, x: Any, name: str, alpha: float = 0.0) -> Any:
        return np.asarray(_ACTIVATIONS[name](x, alpha)).astype(x.dtype)

    def embedding(self, weight: Any, indices: Any) -> Any:
        return np.take(weight, np.asarray(indices, np.int64), axis=0)

    def conv1d(self, x: Any, filter: Any, bias: Any, padding, stride: int, dilation: int, groups: int = 1) -> Any:  # noqa: A002
        return layers.conv1d(x, filter, bias, padding, stride, dilation, groups)

    def pool1d(self, x: Any, mode: str, pool_size: int, stride: int, dilation: int, padding) -> Any:
        return layers.pool1d(x, mode, pool_size, stride, dilation, padding)

    def zoneout_lstm(self, x, lengths, h0, c0, rec_weight, **options) -> tuple[Any, Any, Any]:
        return layers.zoneout_lstm(x, lengths, h0, c0, rec_weight, **options)

    def lstm(self, x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse) -> tuple[Any, Any, Any]:
        batch, time, size = x.shape[:-2], x.shape[-2], rec_weight.shape[1]
        flat = x.reshape((-1,) + x.shape[-2:])
        lens = np.full(len(flat), time) if lengths is None else np.broadcast_to(lengths, batch).reshape(-1)
        h, c = (_state(s, batch, size, x.dtype) for s in (h0, c0))
        out = np.zeros(flat.shape[:2] + (size,), x.dtype)
        for t in reversed(range(time)) if reverse else range(time):
            active = (t < lens)[:, None]  # padding frames leave the state as it is
            h_new, c_new = _lstm_step(flat[:, t], h, c, ff_weight, rec_weight, bias)
            h, c = np.where(active, h_new, h), np.where(active, c_new, c)
            out[:, t] = np.where(active, h_new, 0)
        return out.reshape(batch + (time, size)), h.reshape(batch + (size,)), c.reshape(batch + (size,))

    def random_generator(self, seed: int) -> Any:
        generator = np.random.default_rng(seed)
        _GENERATORS.append(generator)
        return generator

    def seed_generator(self, generator: Any, seed: int) -> None:
        generator.bit_generator.state = np.random.default_rng(seed).bit_generator.state

    def dropout(self, x: Any, drop_prob: float, broadcast_axes: Sequence[int], generator: Any) -> Any:
        keep = 1.0 - drop_prob
        shape = [1 if i in broadcast_axes else n for i, n in enumerate(x.shape)]
        mask = (generator.random(shape) < keep).astype(x.dtype)
        return (x * mask / keep).astype(x.dtype)

    def masked_select(self, x: Any, mask: Any) -> Any:
        mask = np.asarray(mask, bool)
        return x[np.broadcast_to(mask, x.shape[: mask.ndim])]

    def arg_reduce(self, op: str, x: Any, axis: int) -> Any:
        return np.asarray((np.argmax if op == "argmax" else np.argmin)(x, axis=axis), np.int64)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        shapes = [list(np.shape(x)) for x in xs]
        for shape in shapes:
            shape[axis] = 1
        target = list(np.broadcast_shapes(*map(tuple, shapes)))
        parts = [np.broadcast_to(x, target[:axis] + [np.shape(x)[axis]] + target[axis + 1 :]) for x in xs]
        return np.concatenate(parts, axis=axis)

    def full(self, shape: Sequence[Any], value: float, dtype: str, like: Any = None) -> Any:
        return np.full([int(n) for n in shape], value, dtype=np_dtype(dtype))
