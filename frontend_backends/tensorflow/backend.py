"""TensorFlow backend. Imports tensorflow at the top: this module is imported only once the backend is used.

Custom gradients use ``tf.custom_gradient``, so they work eagerly, inside ``tf.function`` and with XLA
(``jit_compile=True``), unlike ``gradient_override_map``, which is graph-mode only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from frontend_backends.base import Backend
from frontend_backends.tensorflow import gradients, linear_ce, losses, nn, sequences, tapes
from frontend_backends.tensorflow.array import TensorFlowArrayKernels

_UNARY = {
    "neg": tf.negative,
    "abs": tf.abs,
    "exp": tf.exp,
    "log": tf.math.log,
    "log1p": tf.math.log1p,
    "sqrt": tf.sqrt,
    "square": tf.square,
    "relu": tf.nn.relu,
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
    "logical_not": tf.logical_not,
    "sin": tf.sin,
    "cos": tf.cos,
    "expm1": tf.math.expm1,
    "rsqrt": tf.math.rsqrt,
    "reciprocal": tf.math.reciprocal,
    "ceil": tf.math.ceil,
    "floor": tf.math.floor,
    "round": tf.math.round,  # halves to even
}

_REDUCE = {
    "sum": tf.reduce_sum,
    "mean": tf.reduce_mean,
    "max": tf.reduce_max,
    "min": tf.reduce_min,
    "logsumexp": tf.reduce_logsumexp,
    "any": tf.reduce_any,
    "all": tf.reduce_all,
}


def _as_tensor(value: Any, like: Any) -> Any:
    """Convert a Python scalar to a tensor of ``like``'s dtype; tensors pass through."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value
    return tf.constant(value, dtype=like.dtype)


def _in_float32_if_bfloat16(fn, x, axis):
    """TensorFlow has no bfloat16 (log-)softmax kernel on CPU: compute those in float32, return bfloat16."""
    if x.dtype != tf.bfloat16:
        return fn(x, axis=axis)
    return tf.cast(fn(tf.cast(x, tf.float32), axis=axis), tf.bfloat16)


class TensorFlowBackend(TensorFlowArrayKernels, Backend):
    """The TensorFlow backend."""

    name = "tensorflow"
    has_graph_mode = True

    def in_graph_mode(self) -> bool:
        return not tf.compat.v1.executing_eagerly_outside_functions()

    def executing_eagerly(self) -> bool:
        return tf.executing_eagerly()

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, (tf.Tensor, tf.Variable))

    def convert(self, value: Any, dtype: str | None = None, like: Any = None) -> Any:
        if isinstance(value, (tf.Tensor, tf.Variable)):
            out = tf.identity(value)
        else:
            out = tf.constant(np.asarray(value))
        return out if dtype is None else tf.cast(out, dtype)

    def device_name(self, x: Any) -> str | None:
        # "/job:localhost/replica:0/task:0/device:GPU:1" -> "gpu:1" (a name tf.device takes); "" in a graph -> None
        kind, _, index = x.device.rpartition("device:")[2].partition(":")
        if not kind:
            return None
        return "cpu" if kind == "CPU" else f"{kind.lower()}:{index or 0}"

    def edit_distance(self, a: Any, a_lens: Any, b: Any, b_lens: Any) -> Any:
        return sequences.edit_distance(a, a_lens, b, b_lens)

    def set_requires_gradient(self, x: Any) -> None:
        tapes.GRADIENT_TAPES.watch(x)

    def gradient(self, y: Any, x: Any) -> Any:
        return tapes.GRADIENT_TAPES.gradient(y, x)

    def move_parameter(self, param: Any, device: str) -> None:
        raise ValueError(f"a tf.Variable stays on the device it was created on ({param.device}): build the model "
                         f"inside tf.device(...) for {device!r}")  # fmt: skip

    def create_parameter(self, value: np.ndarray, trainable: bool) -> Any:
        return tf.Variable(np.array(value), trainable=trainable)

    def assign_parameter(self, param: Any, value: Any) -> None:
        param.assign(value)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x.numpy())

    def is_concrete(self, x: Any) -> bool:
        return tf.executing_eagerly() and hasattr(x, "numpy")

    def concrete_value(self, x: Any) -> np.ndarray | None:
        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
        return np.asarray(x.numpy())

    def dtype(self, x: Any) -> str:
        return x.dtype.name

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape.as_list())

    def axis_size(self, x: Any, axis: int) -> Any:
        static = x.shape.as_list()[axis]  # as_list: ints also under tf.compat.v1 (v1 TensorShape)
        return static if static is not None else tf.shape(x)[axis]

    def arange(self, n: Any, dtype: str, like: Any = None) -> Any:
        return tf.range(tf.cast(n, dtype), dtype=dtype)

    def cast(self, x: Any, dtype: str) -> Any:
        return x if x.dtype.name == dtype else tf.cast(x, dtype)

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        return tf.transpose(x, perm)

    def expand_dims(self, x: Any, axis: int) -> Any:
        return tf.expand_dims(x, axis)

    def binary(self, op: str, a: Any, b: Any) -> Any:
        if op in ("maximum", "minimum"):
            fn = tf.maximum if op == "maximum" else tf.minimum
            return fn(a, b)
        if op in ("eq", "ne"):
            fn = tf.equal if op == "eq" else tf.not_equal
            return fn(a, b)
        return super().binary(op, a, b)

    def unary(self, op: str, x: Any) -> Any:
        return _UNARY[op](x)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        if not isinstance(a, (tf.Tensor, tf.Variable)):
            a = _as_tensor(a, b)
        if not isinstance(b, (tf.Tensor, tf.Variable)):
            b = _as_tensor(b, a)
        return tf.where(cond, a, b)

    def reduce(self, op: str, x: Any, axes: Sequence[int], keepdims: bool = False) -> Any:
        axes = list(axes)
        if not axes:
            return x
        return _REDUCE[op](x, axis=axes, keepdims=keepdims)

    def log_softmax(self, x: Any, axis: int) -> Any:
        return _in_float32_if_bfloat16(gradients.log_softmax, x, axis)

    def softmax(self, x: Any, axis: int) -> Any:
        return _in_float32_if_bfloat16(tf.nn.softmax, x, axis)

    def gather_last(self, x: Any, indices: Any) -> Any:
        return gradients.gather_last(x, indices)

    def matmul(self, a: Any, b: Any) -> Any:
        return tf.tensordot(a, b, axes=1)

    def stop_gradient(self, x: Any) -> Any:
        return tf.stop_gradient(x)

    def assert_none_in_graph(self, bad: Any, message: str) -> None:
        if not tf.executing_eagerly():  # XLA ignores the assertion (a no-op there)
            tf.debugging.assert_equal(tf.reduce_any(bad), False, message=message)

    def scaled_gradient_ext(self, x: Any, scale: Any, shift: Any, sum_axis: int | None, sum_weight: Any = None) -> Any:
        return gradients.scaled_gradient_ext(x, scale, shift, sum_axis, sum_weight)

    def log_softmax_smoothed_gradient(
        self, logits: Any, log_probs: Any, axis: int, scale: Any, shift: Any, sum_weight: Any = None
    ) -> Any:
        return gradients.log_softmax_smoothed_gradient(logits, log_probs, axis, scale, shift, sum_weight)

    def log_softmax_smoothed_nll(
        self, logits: Any, log_probs: Any, targets: Any, scale: Any, shift: Any, sum_weight: Any = None
    ) -> Any:
        return gradients.log_softmax_smoothed_nll(logits, log_probs, targets, scale, shift, sum_weight)

    def label_smoothed_cross_entropy(self, logits, targets, off, on, weight, z_loss, mask) -> Any:
        return losses.label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask)

    def ctc_loss(self, logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity) -> Any:
        return losses.ctc_loss(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity)

    def linear_label_smoothed_cross_entropy(self, hidden, weight, bias, targets, off, on, v, mask, chunk) -> Any:
        return linear_ce.linear_label_smoothed_cross_entropy(hidden, weight, bias, targets, off, on, v, mask, chunk)

    # -- layers (frontend_backends.tensorflow.nn) ---------------------------------------------------------------

    def activation(self, x: Any, name: str, alpha: float = 0.0) -> Any:
        return nn.activation(x, name, alpha)

    def linear(self, x: Any, weight: Any, bias: Any) -> Any:
        return nn.linear(x, weight, bias)

    def embedding(self, weight: Any, indices: Any) -> Any:
        return tf.gather(weight, indices)

    def layer_norm(self, x: Any, scale: Any, bias: Any, num_axes: int, eps: float) -> Any:
        return nn.layer_norm(x, scale, bias, num_axes, eps)

    def conv1d(self, x: Any, filter: Any, bias: Any, padding, stride: int, dilation: int, groups: int = 1) -> Any:  # noqa: A002
        return nn.conv1d(x, filter, bias, padding, stride, dilation, groups)

    def pool1d(self, x: Any, mode: str, pool_size: int, stride: int, dilation: int, padding) -> Any:
        return nn.pool1d(x, mode, pool_size, stride, dilation, padding)

    def lstm(self, x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse) -> tuple[Any, Any, Any]:
        return nn.lstm(x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse)

    def zoneout_lstm(self, x, lengths, h0, c0, rec_weight, **options) -> tuple[Any, Any, Any]:
        return nn.zoneout_lstm(x, lengths, h0, c0, rec_weight, **options)

    def random_generator(self, seed: int) -> Any:
        return nn.random_generator(seed)

    def seed_generator(self, generator: Any, seed: int) -> None:
        generator.reset_from_seed(seed)

    def dropout(self, x: Any, drop_prob: float, broadcast_axes: Sequence[int], generator: Any) -> Any:
        return nn.dropout(x, drop_prob, broadcast_axes, generator)

    def masked_select(self, x: Any, mask: Any) -> Any:
        return nn.masked_select(x, mask)

    def arg_reduce(self, op: str, x: Any, axis: int) -> Any:
        return (tf.argmax if op == "argmax" else tf.argmin)(x, axis=axis, output_type=tf.int64)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return nn.concat(xs, axis)

    def full(self, shape: Sequence[Any], value: float, dtype: str, like: Any = None) -> Any:
        dims = tf.stack([tf.cast(n, tf.int32) for n in shape]) if len(shape) else tf.zeros([0], tf.int32)  # rank 0
        return tf.fill(dims, tf.constant(value, dtype=dtype))
