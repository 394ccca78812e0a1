"""TensorFlow trainer: ``tf.Variable`` parameters, ``tf.GradientTape``, ``assign`` updates (eager mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from frontend_backends.train_base import Trainer


class TensorFlowTrainer(Trainer):
    """The :class:`Trainer` of the tensorflow backend."""

    name = "tensorflow"

    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: tf.Variable(np.asarray(v, dtype=np.float32), name=k.replace("/", "_")) for k, v in arrays.items()}

    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        keys = list(variables)
        with tf.GradientTape() as tape:
            value = fn(variables)
        grads = tape.gradient(value, [variables[k] for k in keys])
        out = {k: g if g is not None else tf.zeros_like(variables[k]) for k, g in zip(keys, grads)}
        return value, out

    def assign(self, variable: Any, value: Any) -> None:
        variable.assign(value)

    def zeros_like(self, variable: Any) -> Any:
        return tf.zeros_like(variable)

    def sqrt(self, x: Any) -> Any:
        return tf.sqrt(x)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x.numpy())
