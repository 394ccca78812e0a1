"""Gradients on demand in eager TensorFlow (``set_requires_gradient`` then ``gradient``, as RETURNN's frontend).

Eager TensorFlow differentiates only what a ``tf.GradientTape`` recorded, so :meth:`Tapes.watch` opens a persistent
tape that watches ``x`` and records every op from then on. :meth:`Tapes.gradient` closes it (it stops recording),
then takes the gradient: while an outer tape records (a training step's), the gradient's own ops are recorded there,
so it can be differentiated again. A tape is used for one gradient; at most :attr:`Tapes.max_open` stay open (the
oldest is closed first). Inside a ``tf.function`` no tape is needed: ``tf.gradients`` differentiates the graph.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["GRADIENT_TAPES", "Tapes"]


class Tapes:
    """The open tapes, by the tensor each watches."""

    max_open = 16

    def __init__(self):
        self._open: dict[Any, tf.GradientTape] = {}

    def watch(self, x: Any) -> None:
        """Start recording the ops that use ``x`` (eager mode; in a graph there is nothing to do)."""
        if not tf.executing_eagerly() or x.ref() in self._open:
            return
        while len(self._open) >= self.max_open:
            self._close(next(iter(self._open)))
        tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
        tape.__enter__()
        tape.watch(x)
        self._open[x.ref()] = tape

    def _close(self, key: Any) -> tf.GradientTape:
        tape = self._open.pop(key)
        tape.__exit__(None, None, None)
        return tape

    def gradient(self, y: Any, x: Any) -> Any:
        """:return: d ``y`` / d ``x`` (zeros where ``y`` does not depend on ``x``)"""
        if not tf.executing_eagerly():
            (grad,) = tf.gradients(y, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return grad
        if x.ref() not in self._open:
            raise ValueError("gradient: x is not watched: call set_requires_gradient(x) before computing y from x "
                             "(eager TensorFlow records a gradient only from then on; once per gradient)")  # fmt: skip
        tape = self._close(x.ref())
        grad = tape.gradient(y, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.convert_to_tensor(grad)  # an IndexedSlices after a gather


#: The tapes of the TensorFlow backend.
GRADIENT_TAPES = Tapes()
