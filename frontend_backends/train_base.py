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

__all__ = [
    "MAPPED_OPTIMIZERS", "NativeModel", "OptimizerSpec", "StepOptions", "StepResult", "Trainer", "get_trainer",
]  # fmt: skip

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


class NativeModel(ABC):
    """A model of the framework's own module class (``torch.nn.Module``) that an rf-style config's ``get_model``
    may return, seen through the methods the engine needs (see :meth:`Trainer.native_model`)."""

    @abstractmethod
    def parameters(self) -> dict[str, Any]:
        """:return: every parameter and buffer by name, as raw tensors (for checkpoints)"""

    @abstractmethod
    def trainable(self) -> list[tuple[str, Any]]:
        """:return: the trainable raw parameters with their names"""

    @abstractmethod
    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Set all of :meth:`parameters` from numpy ``arrays`` (names and shapes checked by the caller)."""

    @abstractmethod
    def set_train_flag(self, train: bool) -> None:
        """Switch between training and evaluation behaviour (dropout, batch norm)."""


class Trainer(ABC):
    """What the training loop needs from a framework: the abstract methods are the protocol, the others are
    hooks whose defaults fit a framework that runs steps eagerly on one worker."""

    name: str = ""
    #: The compiler that :meth:`train_step` and :meth:`eval_step` use when called with ``compiled=True``
    #: (e.g. ``"tf.function"``), named in messages; None: steps always run as they are (the engine passes False).
    compiles_step: str | None = None
    #: Whether optimizer classes outside :data:`MAPPED_OPTIMIZERS` are passed to the framework by name, with
    #: their own keyword arguments (``torch.optim.*``); else such a class is a config error.
    passthrough_optimizers: bool = False
    #: The RETURNN config key that turns on data-parallel training with this trainer (``"torch_distributed"``);
    #: None: this trainer has none.
    distributed_key: str | None = None
    #: The RETURNN config key of mixed-precision training with this trainer (``"torch_amp"``); None: none.
    mixed_precision_key: str | None = None
    #: The device the steps run on (see :meth:`resolve_device`), set by :meth:`set_device`.
    device: str = "cpu"

    # -- parameters and gradients (also used directly by tests) --------------------------------------------------

    @abstractmethod
    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """:return: trainable raw parameters (float32), copied from ``arrays``"""
        raise NotImplementedError

    @abstractmethod
    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        """:return: ``fn(variables)`` (a raw scalar) and its gradient w.r.t. each entry of ``variables`` (zeros if
        unused); the entries are the trainer's :meth:`variables` or any raw float tensors, which are watched"""
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

    # -- hooks: what differs between frameworks, asked by the engine instead of comparing backend names --------

    def set_input_signature(self, signature: dict[str, tuple[int | None, ...]]) -> None:  # noqa: B027 - a hook
        """Called once before the first step with the static shape of each input (None: varies between batches),
        for trainers that compile the step for all batch shapes at once. Default: ignored."""

    def optimizer_defaults(self, name: str) -> dict[str, float]:
        """:return: canonical options (see :data:`MAPPED_OPTIMIZERS`) that this framework's optimizer ``name``
        gets unless the config sets them (RETURNN's TF engine: ``epsilon`` 1e-16). Default: none."""
        return {}

    def init_distributed(self) -> tuple[int, int]:
        """Join the data-parallel workers started by the framework's launcher (:attr:`distributed_key` is set in
        the config); :return: ``(rank, world size)``. Afterwards :meth:`all_reduce_sum` and the steps sum over
        the workers."""
        raise ValueError(f"backend {self.name!r} has no data-parallel training")

    def finish_distributed(self) -> None:  # noqa: B027 - a hook
        """Wait for every worker and leave the group joined in :meth:`init_distributed`. Default: nothing."""

    def resolve_device(self, requested: str | None) -> str:
        """:return: the device to train on, ``"cpu"`` or ``"cuda:N"``, for RETURNN's ``device`` config value
        (``None``: the GPU when there is one, as RETURNN does; ``"cpu"``, ``"gpu"``, ``"cuda"``, ``"cuda:N"``).
        Default: a framework that trains on the CPU only.

        :raise ValueError: for a device that is not there or a value that names none
        """
        if requested in (None, "cpu"):
            return "cpu"
        raise ValueError(f"{requested!r}: the {self.name} backend trains on the CPU only; use 'cpu'")

    def set_device(self, device: str) -> None:
        """Run the steps on ``device`` (from :meth:`resolve_device`): their inputs go there."""
        self.device = device

    @contextmanager
    def device_scope(self) -> Iterator[None]:
        """Context in which new parameters and tensors are created on :attr:`device` (building the model)."""
        yield

    def set_mixed_precision(self, dtype: str) -> None:
        """Run the steps in mixed precision with ``dtype`` (``"bfloat16"``, ``"float16"``), the losses accumulating
        in float32 (the config key :attr:`mixed_precision_key`).

        :raise ValueError: if the trainer has no mixed precision or not with ``dtype``
        """
        raise ValueError(f"the {self.name} backend has no mixed-precision training")

    def native_model(self, model: Any) -> NativeModel | None:
        """:return: ``model`` seen as a :class:`NativeModel` if it is a model of the framework's own module
        class (an rf-style ``get_model`` may return one), else None. Default: None (the framework has none)."""
        return None


def get_trainer(name: str) -> Trainer:
    """:return: a new :class:`Trainer` of the registered backend ``name``"""
    import frontend_backends

    trainer = frontend_backends.backend_package(name).Trainer()
    trainer.name = name
    return trainer
