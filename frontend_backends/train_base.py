"""The training protocol of the backends: one training step, the framework's own optimizers, RNG and state.

Like :mod:`frontend_backends.base`, this sees raw tensors only, never Dims. The engine (in ``returnn_ls``) hands
a trainer a *step function* ``fn(inputs) -> (total_loss, outputs)`` over raw tensors; the trainer takes the
gradient of ``total_loss`` with respect to the parameters, clips it, and lets the framework's optimizer
(``torch.optim.*``, ``keras.optimizers.*``) update the parameters, unless the loss or the gradient is not
finite. A backend's trainer is found with :func:`get_trainer`, which imports the framework on first use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MAPPED_OPTIMIZERS", "OptimizerSpec", "StepOptions", "StepResult", "Trainer", "get_trainer"]

#: The optimizer classes both backends provide, with the options they take (canonical names, see
#: ``returnn_ls.training.optimizer``). Each backend maps them onto its framework's class and argument names.
MAPPED_OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "nesterov", "weight_decay", "dampening"),
    "adam": ("beta1", "beta2", "epsilon", "weight_decay", "amsgrad"),
    "adamw": ("beta1", "beta2", "epsilon", "weight_decay", "amsgrad"),
    "nadam": ("beta1", "beta2", "epsilon", "weight_decay"),
    "adamax": ("beta1", "beta2", "epsilon", "weight_decay"),
    "rmsprop": ("rho", "epsilon", "momentum", "centered", "weight_decay"),
    "adagrad": ("epsilon", "initial_accumulator_value", "weight_decay"),
    "adadelta": ("rho", "epsilon", "weight_decay"),
}


@dataclass
class OptimizerSpec:
    """A framework-neutral optimizer: the lower-case class name, options by canonical name, and (torch only, for
    ``torch.optim`` classes outside :data:`MAPPED_OPTIMIZERS`) keyword arguments passed through unchanged."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    passthrough: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOptions:
    """What a training step does besides the gradient: RETURNN's ``gradient_clip`` (clip each gradient entry to
    ``[-v, v]``, 0: off) and ``gradient_clip_global_norm`` (rescale all gradients to this global norm, 0: off)."""

    clip_value: float = 0.0
    clip_global_norm: float = 0.0


@dataclass
class StepResult:
    """The outputs of a step as numpy, and whether it was finite (then, in training, the update was applied)."""

    outputs: dict[str, np.ndarray]
    finite: bool
    grad_norm: float | None = None


class Trainer(ABC):
    """What the training loop needs from a framework. Subclasses implement every method."""

    name: str = ""

    # -- parameters and gradients (also used directly by tests) --------------------------------------------------

    @abstractmethod
    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """:return: trainable raw parameters (float32), copied from ``arrays``"""
        raise NotImplementedError

    @abstractmethod
    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        """:return: ``fn(variables)`` (a raw scalar) and its gradient w.r.t. each variable (zeros if unused)"""
        raise NotImplementedError

    @abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """:return: a numpy copy of a raw tensor or variable"""
        raise NotImplementedError

    @abstractmethod
    def assign(self, variable: Any, value: np.ndarray) -> None:
        """Overwrite ``variable`` in place with the numpy array ``value`` (no gradient recorded)."""
        raise NotImplementedError

    @contextmanager
    def no_grad(self) -> Iterator[None]:
        """Context in which no gradient is recorded (evaluation)."""
        yield

    # -- the engine's step ---------------------------------------------------------------------------------------

    @abstractmethod
    def seed(self, seed: int) -> None:
        """Seed the framework's random generators (dropout etc.), e.g. once per epoch."""
        raise NotImplementedError

    def limit_threads(self, num_params: int) -> None:  # noqa: B027 - an optional hook
        """Set the framework's thread count for training a model of ``num_params`` parameters (default: leave it)."""

    @abstractmethod
    def create_optimizer(self, params: list[Any], spec: OptimizerSpec, learning_rate: float) -> Any:
        """:return: the framework's optimizer of ``spec`` over the raw parameters ``params``

        :raise ValueError: for an option the framework's class does not take
        """
        raise NotImplementedError

    @abstractmethod
    def set_learning_rate(self, optimizer: Any, learning_rate: float) -> None:
        """Set the learning rate of ``optimizer`` (e.g. at the start of an epoch)."""
        raise NotImplementedError

    @abstractmethod
    def train_step(self, fn: Callable, inputs: dict[str, np.ndarray], params: list[Any], optimizer: Any,
                   options: StepOptions, compiled: bool) -> StepResult:  # fmt: skip
        """Run ``fn`` on ``inputs``, differentiate its total loss, clip, and update the parameters if finite.

        :param fn: ``fn(raw_inputs) -> (total_loss, outputs)`` over raw tensors
        :param compiled: run ``fn`` compiled (``tf.function``; no effect on torch)
        """
        raise NotImplementedError

    @abstractmethod
    def eval_step(self, fn: Callable, inputs: dict[str, np.ndarray], compiled: bool) -> StepResult:
        """Run ``fn`` on ``inputs`` without gradients; ``finite`` says whether its total loss is finite."""
        raise NotImplementedError

    @abstractmethod
    def optimizer_state(self, optimizer: Any, params: list[Any]) -> tuple[dict, dict[str, np.ndarray]]:
        """:return: the optimizer's state as JSON-able metadata and numpy arrays (for a checkpoint)"""
        raise NotImplementedError

    @abstractmethod
    def load_optimizer_state(self, optimizer: Any, params: list[Any], meta: dict, arrays: dict[str, Any]) -> None:
        """Restore what :meth:`optimizer_state` returned (same class, same parameters)."""
        raise NotImplementedError

    def all_reduce_sum(self, raw: Any) -> Any:
        """:return: ``raw`` summed over the data-parallel workers (itself with one worker)"""
        return raw


def get_trainer(name: str) -> Trainer:
    """:return: the :class:`Trainer` of the backend ``name`` (``"torch"`` or ``"tensorflow"``)"""
    import frontend_backends

    return frontend_backends.backend_package(name).Trainer()
