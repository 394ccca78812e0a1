"""The training protocol of the backends: trainable parameters, gradients, and one Adam implementation.

Like :mod:`frontend_backends.base`, this sees raw tensors only (parameter dicts ``name -> raw tensor``), never
Dims. A backend's trainer is found with :func:`get_trainer`, which imports the framework on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["Adam", "Trainer", "get_trainer"]

_REGISTRY = {
    "torch": ("frontend_backends.torch.trainer", "TorchTrainer"),
    "tensorflow": ("frontend_backends.tensorflow.trainer", "TensorFlowTrainer"),
}


class Trainer:
    """What a training loop needs from a framework. Subclasses implement every method."""

    name: str = ""

    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """:return: trainable raw parameters (float32), copied from ``arrays``"""
        raise NotImplementedError

    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        """:return: ``fn(variables)`` (a raw scalar) and its gradient w.r.t. each variable (zeros if unused)"""
        raise NotImplementedError

    def assign(self, variable: Any, value: Any) -> None:
        """Overwrite the value of ``variable`` in place with the raw tensor ``value`` (no gradient recorded)."""
        raise NotImplementedError

    def zeros_like(self, variable: Any) -> Any:
        """:return: a new raw (non-trainable) tensor of zeros shaped like ``variable``"""
        raise NotImplementedError

    def sqrt(self, x: Any) -> Any:
        """:return: elementwise square root of the raw tensor ``x``"""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> np.ndarray:
        """:return: a numpy copy of a raw tensor or variable"""
        raise NotImplementedError

    @contextmanager
    def no_grad(self) -> Iterator[None]:
        """Context in which no gradient is recorded (evaluation)."""
        yield


class Adam:
    """Adam (Kingma & Ba, 2015), written once over raw tensor arithmetic so every backend takes the same step.

    :param trainer: the backend's :class:`Trainer`
    :param variables: the trainable parameters it updates
    :param learning_rate: the step size
    """

    def __init__(self, trainer: Trainer, variables: dict[str, Any], learning_rate: float,
                 beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):  # fmt: skip
        self.trainer, self.variables, self.lr = trainer, variables, learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.m = {k: trainer.zeros_like(v) for k, v in variables.items()}
        self.v = {k: trainer.zeros_like(v) for k, v in variables.items()}
        self.steps = 0

    def step(self, grads: dict[str, Any]) -> None:
        """Apply one update with ``grads`` (name -> raw gradient)."""
        self.steps += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * (1 - b2**self.steps) ** 0.5 / (1 - b1**self.steps)
        with self.trainer.no_grad():
            for key, var in self.variables.items():
                g = grads[key]
                self.m[key] = self.m[key] * b1 + g * (1 - b1)
                self.v[key] = self.v[key] * b2 + g * g * (1 - b2)
                update = self.m[key] / (self.trainer.sqrt(self.v[key]) + self.epsilon) * lr_t
                self.trainer.assign(var, var - update)


def get_trainer(name: str) -> Trainer:
    """:return: the :class:`Trainer` of the backend ``name`` (``"torch"`` or ``"tensorflow"``)"""
    import frontend_backends

    return frontend_backends.backend_package(name).Trainer()
