"""The array primitives on TensorFlow (see :class:`frontend_backends.array_kernels.ArrayKernels`), mixed into
:class:`frontend_backends.tensorflow.backend.TensorFlowBackend`. TensorFlow places each op itself, so ``like`` and
``device`` only matter where a tensor is made from Python values (``tf.device`` for ``full_on_device``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

__all__ = ["TensorFlowArrayKernels"]


def _shape(shape: Sequence[Any]) -> Any:
    """:return: ``shape`` as an int32 vector (entries may be scalar tensors inside a graph)"""
    return tf.stack([tf.cast(n, tf.int32) for n in shape]) if len(shape) else tf.zeros([0], tf.int32)


class TensorFlowArrayKernels:
    """The TensorFlow implementations of the array primitives (docstrings: ``ArrayKernels``)."""

    def full_on_device(self, shape: Sequence[Any], value: float, dtype: str, device: str) -> Any:
        with tf.device(device):
            return tf.fill(_shape(shape), tf.constant(value, dtype=dtype))

    def broadcast_to(self, x: Any, shape: Sequence[Any]) -> Any:
        return tf.broadcast_to(x, _shape(shape))

    def random(self, shape, distribution: str, dtype: str, a: float, b: float, generator, like=None) -> Any:
        if distribution == "uniform" and dtype.startswith("int"):
            return generator.uniform(_shape(shape), minval=int(a), maxval=int(b), dtype=dtype)
        if distribution == "uniform":
            return generator.uniform(_shape(shape), minval=a, maxval=b, dtype=dtype)
        return generator.normal(_shape(shape), mean=a, stddev=b, dtype=dtype)

    def reshape(self, x: Any, shape: Sequence[Any]) -> Any:
        return tf.reshape(x, _shape(shape))

    def squeeze(self, x: Any, axis: int) -> Any:
        return tf.squeeze(x, [axis])

    def slice(self, x: Any, axis: int, start, stop, step) -> Any:  # noqa: A003
        return x[(slice(None),) * axis + (slice(start, stop, step),)]

    def pad(self, x: Any, pads: Sequence[tuple[Any, Any]], value: Any) -> Any:
        paddings = tf.stack([tf.stack([tf.cast(left, tf.int32), tf.cast(right, tf.int32)]) for left, right in pads])
        return tf.pad(x, paddings, constant_values=tf.constant(value, dtype=x.dtype))

    def gather(self, x: Any, indices: Any, batch_axes: int) -> Any:
        return tf.gather(x, indices, axis=batch_axes, batch_dims=batch_axes)

    def flip(self, x: Any, axis: int) -> Any:
        return tf.reverse(x, [axis])

    def cumsum(self, x: Any, axis: int) -> Any:
        return tf.cumsum(x, axis=axis)

    def top_k(self, x: Any, k: Any, sorted: bool) -> tuple[Any, Any]:  # noqa: A002
        values, indices = tf.math.top_k(x, k=k if isinstance(k, int) else tf.cast(k, tf.int32), sorted=sorted)
        return values, tf.cast(indices, tf.int64)

    def sort(self, x: Any, descending: bool) -> tuple[Any, Any]:
        indices = tf.argsort(x, axis=-1, direction="DESCENDING" if descending else "ASCENDING", stable=True)
        return tf.gather(x, indices, batch_dims=len(x.shape) - 1), tf.cast(indices, tf.int64)

    def search_sorted(self, sorted_seq: Any, values: Any, side: str, dtype: str) -> Any:
        return tf.searchsorted(sorted_seq, values, side=side, out_type=dtype)

    def scatter(self, x: Any, indices: Any, size: Any, mode: str, fill_value: float | int) -> Any:
        segment = {"sum": tf.math.unsorted_segment_sum, "max": tf.math.unsorted_segment_max,
                   "min": tf.math.unsorted_segment_min}[mode]  # fmt: skip
        size = tf.cast(size, tf.int32) if tf.is_tensor(size) else int(size)
        out = segment(x, indices, size)
        hit = tf.math.unsorted_segment_max(tf.ones_like(indices, tf.int32), indices, size) > 0  # empty: int32 min
        hit = tf.reshape(hit, tf.concat([[-1], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
        return tf.where(hit, out, tf.constant(fill_value, dtype=x.dtype))

    def einsum(self, equation: str, *operands: Any) -> Any:
        return tf.einsum(equation, *operands)

    def log_add_exp(self, a: Any, b: Any) -> Any:
        """As a log-sum-exp over the pair: stable, and the gradient splits evenly where ``a == b``."""
        shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
        return tf.reduce_logsumexp(tf.stack([tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)]), axis=0)
