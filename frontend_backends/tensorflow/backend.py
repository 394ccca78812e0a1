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
from frontend_backends.tensorflow import linear_ce, losses

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


#: Gradients with at least this many elements (static shape) are rescaled by one XLA-compiled kernel (``|g|``
#: fused into the reduction, multiply and add fused into one pass); below it compiling costs more than it saves.
XLA_MIN_ELEMENTS = 1 << 20


def _scaled_grad(dy, scale, shift, sum_axis, sum_weight):
    """:return: ``dy * scale + shift * sum(|dy| * sum_weight, sum_axis)`` (see ``Backend.scaled_gradient_ext``)"""
    if shift is None:
        return dy * scale
    if sum_axis is not None:
        absg = tf.abs(dy) if sum_weight is None else tf.abs(dy) * sum_weight
        shift = shift * tf.reduce_sum(absg, axis=sum_axis, keepdims=True)
    return dy * scale + shift


_scaled_grad_xla = tf.function(_scaled_grad, jit_compile=True, reduce_retracing=True)


def _scaled_gradient_ext(x, scale, shift, sum_axis, sum_weight):
    @tf.custom_gradient
    def op(x_, scale_, shift_, sum_weight_):
        def grad(dy):
            size = dy.shape.num_elements()
            fn = _scaled_grad_xla if size is not None and size >= XLA_MIN_ELEMENTS else _scaled_grad
            args = (shift_ if shift is not None else None, sum_axis, sum_weight_ if sum_weight is not None else None)
            return fn(dy, scale_, *args), None, None, None

        return tf.identity(x_), grad

    as_t = [_as_tensor(v if v is not None else 0.0, x) for v in (scale, shift, sum_weight)]
    return op(x, *as_t)


def _in_float32_if_bfloat16(fn, x, axis):
    """TensorFlow has no bfloat16 (log-)softmax kernel on CPU: compute those in float32, return bfloat16."""
    if x.dtype != tf.bfloat16:
        return fn(x, axis=axis)
    return tf.cast(fn(tf.cast(x, tf.float32), axis=axis), tf.bfloat16)


class TensorFlowBackend(Backend):
    """The TensorFlow backend."""

    name = "tensorflow"

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, (tf.Tensor, tf.Variable))

    def convert(self, value: Any, dtype: str | None = None) -> Any:
        if isinstance(value, (tf.Tensor, tf.Variable)):
            out = tf.identity(value)
        else:
            out = tf.constant(np.asarray(value))
        return out if dtype is None else tf.cast(out, dtype)

    def create_parameter(self, value: np.ndarray, trainable: bool) -> Any:
        return tf.Variable(np.array(value), trainable=trainable)

    def assign_parameter(self, param: Any, value: Any) -> None:
        param.assign(value)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x.numpy())

    def concrete_value(self, x: Any) -> np.ndarray | None:
        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
        return np.asarray(x.numpy())

    def dtype(self, x: Any) -> str:
        return x.dtype.name

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape.as_list())

    def axis_size(self, x: Any, axis: int) -> Any:
        static = x.shape[axis]
        return static if static is not None else tf.shape(x)[axis]

    def arange(self, n: Any, dtype: str) -> Any:
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
        return _in_float32_if_bfloat16(tf.nn.log_softmax, x, axis)

    def softmax(self, x: Any, axis: int) -> Any:
        return _in_float32_if_bfloat16(tf.nn.softmax, x, axis)

    def gather_last(self, x: Any, indices: Any) -> Any:
        return tf.gather(x, indices, batch_dims=len(indices.shape), axis=len(indices.shape))

    def matmul(self, a: Any, b: Any) -> Any:
        return tf.tensordot(a, b, axes=1)

    def stop_gradient(self, x: Any) -> Any:
        return tf.stop_gradient(x)

    def assert_none_in_graph(self, bad: Any, message: str) -> None:
        if not tf.executing_eagerly():  # XLA ignores the assertion (a no-op there)
            tf.debugging.assert_equal(tf.reduce_any(bad), False, message=message)

    def scaled_gradient_ext(self, x: Any, scale: Any, shift: Any, sum_axis: int | None, sum_weight: Any = None) -> Any:
        return _scaled_gradient_ext(x, scale, shift, sum_axis, sum_weight)

    def label_smoothed_cross_entropy(self, logits, targets, off, on, weight, z_loss, mask) -> Any:
        return losses.label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask)

    def ctc_loss(self, logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity) -> Any:
        return losses.ctc_loss(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity)

    def linear_label_smoothed_cross_entropy(self, hidden, weight, bias, targets, off, on, v, mask, chunk) -> Any:
        return linear_ce.linear_label_smoothed_cross_entropy(hidden, weight, bias, targets, off, on, v, mask, chunk)
