"""Helpers of the TensorFlow kernels: XLA-compiled kernels for large inputs, the compute dtype.

Why XLA: TensorFlow runs each op of a graph as its own kernel, and every op with a result of the logits' size
writes a fresh buffer of that size (``[frames, labels]`` floats, 160 MB at 4096 x 10,000). A loss written as
a handful of elementwise ops therefore costs a handful of full passes and buffers, also inside ``tf.function``.
The same function compiled by XLA (``tf.function(jit_compile=True)``) becomes a few fused loops that read the
logits and write only the result. Compiling costs time once per input shape, so small inputs run op by op.
Inside an outer ``jit_compile=True`` function a kernel runs as plain ops, which XLA compiles with the outer ones.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import tensorflow as tf

try:  # whether a graph is compiled by XLA as a whole (inside ``tf.function(jit_compile=True)``); no public API
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _in_xla_context
except ImportError:  # pragma: no cover  (then nested compiled kernels run as such: correct, more memory once)

    def _in_xla_context(graph: Any) -> bool:
        return False


#: Inputs with at least this many elements run XLA-compiled; below it compiling costs more than it saves. An
#: input whose size is unknown while tracing (a ``tf.function`` with a dynamic batch) counts as large.
XLA_MIN_ELEMENTS = 1 << 20


def compute_dtype(x: tf.Tensor) -> tf.DType:
    """:return: the dtype losses of ``x`` are accumulated in: float64 for float64, else float32"""
    return tf.float64 if x.dtype == tf.float64 else tf.float32


def is_large(size: int | None) -> bool:
    """:return: whether ``size`` elements (None: unknown) are enough to compile (:data:`XLA_MIN_ELEMENTS`)"""
    return size is None or size >= XLA_MIN_ELEMENTS


def in_xla_context() -> bool:
    """:return: whether the ops being created are compiled by an enclosing ``tf.function(jit_compile=True)``.

    A compiled kernel called there must run as plain ops: XLA then fuses them into the enclosing computation. Called
    as a nested compiled function instead, its first run takes an extra buffer of its inputs' size.
    """
    return not tf.executing_eagerly() and _in_xla_context(tf.compat.v1.get_default_graph())


#: Per graph being built under XLA: log-probabilities -> the softmax whose ``exp(x - max)`` XLA materialises anyway.
_SOFTMAX_OF: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def remember_softmax(log_probs: tf.Tensor, softmax: tf.Tensor) -> None:
    """Record (under XLA) that ``softmax`` is ``exp(log_probs)``, for :func:`remembered_softmax`."""
    if in_xla_context():
        _SOFTMAX_OF.setdefault(tf.compat.v1.get_default_graph(), {})[log_probs.ref()] = softmax


def remembered_softmax(log_probs: tf.Tensor) -> tf.Tensor | None:
    """:return: the softmax recorded for ``log_probs`` in the graph being built (XLA only), else None.

    XLA keeps ``exp(x - max)`` of a log-softmax as a buffer (its sum needs it); reading it back in a backward pass
    is cheaper than a second ``exp`` over all logits.
    """
    if not in_xla_context():
        return None
    return _SOFTMAX_OF.get(tf.compat.v1.get_default_graph(), {}).get(log_probs.ref())


def _size_of_first(x: tf.Tensor, *_: Any) -> int | None:
    return x.shape.num_elements()


class Kernel:
    """A function of tensors, run XLA-compiled for large inputs (:func:`is_large`), else op by op.

    The compiled version is ``tf.function(fn, jit_compile=True, reduce_retracing=True)``: it is traced again
    only for new dtypes or non-tensor arguments, and XLA compiles it once per concrete input shape.
    ``size`` maps the arguments to the number of elements that decides (default: those of the first one).

    Example::

        @Kernel
        def scale_rows(x, s):
            return x * s[:, None]

        y = scale_rows(tf.ones([4096, 1000]), tf.ones([4096]))  # compiled: 4M elements
    """

    def __init__(self, fn: Callable[..., Any], size: Callable[..., int | None] = _size_of_first):
        self.fn = fn
        self.size = size
        self.compiled = tf.function(fn, jit_compile=True, reduce_retracing=True)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any) -> Any:
        compile_here = is_large(self.size(*args)) and not in_xla_context()
        return (self.compiled if compile_here else self.fn)(*args)
