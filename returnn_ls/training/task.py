"""What the engine trains: a model, its ``train_step``, and how its scores are named (:class:`Task`).

An rf-style config gives ``get_model(*, epoch, step, **_)`` (an ``rf.Module``, or a model of the framework's own
module class that the trainer knows, :meth:`~frontend_backends.train_base.Trainer.native_model`, such as a
``torch.nn.Module``) and ``train_step(*, model, extern_data, **_)``, which marks losses; :func:`rf_task` wraps
them. A network dict becomes the same kind of task (:mod:`returnn_ls.training.network_task`), so there is one
training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import frontend_backends
from frontend_backends.train_base import NativeModel, Trainer
from returnn_ls.nn import Module
from returnn_ls.training.config import Config

__all__ = ["Task", "rf_task"]


@dataclass
class Task:
    """A model with its train step, as the engine sees it.

    :param model: passed to ``train_step`` as ``model=``
    :param train_step: ``train_step(model=, extern_data=)``, marks the losses in the run context
    :param kind: ``"rf"`` (score names are the ``mark_as_loss`` names) or ``"network"`` (``score``/``error``)
    :param native: ``model`` seen through the trainer when it is the framework's own module, else None

    Example: ``Task(get_model(epoch=1, step=0), train_step)`` for an rf-style config (what :func:`rf_task` does)
    """

    model: Any
    train_step: Callable[..., None]
    kind: str = "rf"
    native: NativeModel | None = None

    def parameters(self) -> dict[str, Any]:
        """:return: every parameter (trainable or not) by name, as raw framework tensors (for checkpoints)"""
        if self.native is not None:
            return self.native.parameters()
        return {name: p.raw_tensor for name, p in self.model.named_parameters()}

    def trainable(self) -> list[tuple[str, Any]]:
        """:return: the trainable raw parameters with their names"""
        if self.native is not None:
            return self.native.trainable()
        return [(n, p.raw_tensor) for n, p in self.model.named_parameters() if p.trainable]

    def load(self, arrays: dict[str, np.ndarray], source: str) -> None:
        """Set the parameters from numpy ``arrays`` (all of :meth:`parameters`, same shapes).

        :raise ValueError: naming ``source`` if names or shapes differ
        """
        own = self.parameters()
        if set(arrays) != set(own):
            missing, extra = sorted(set(own) - set(arrays)), sorted(set(arrays) - set(own))
            raise ValueError(f"{source} does not fit the model: missing {missing}, unexpected {extra}")
        for name, value in own.items():
            if tuple(np.shape(arrays[name])) != tuple(value.shape):
                raise ValueError(f"{source}: {name} has shape {np.shape(arrays[name])}, the model {tuple(value.shape)}")
        if self.native is not None:
            self.native.load(arrays)
            return
        for name, p in self.model.named_parameters():
            p.backend.assign_parameter(p.raw_tensor, np.array(arrays[name], dtype=p.dtype))

    def set_train_flag(self, train: bool) -> None:
        """Switch the framework's own module between training and evaluation (dropout, batch norm)."""
        if self.native is not None:
            self.native.set_train_flag(train)

    def score_key(self, dataset: str, name: str) -> str:
        """:return: the name of a score in the learning-rate file: ``dev_score`` (network) / ``dev_loss_ce`` (rf)"""
        return f"{dataset}_{name}" if self.kind == "network" else f"{dataset}_loss_{name}"

    # hooks for network dicts (no-ops for rf-style configs)
    def extras(self, train: bool) -> dict[str, Any]:
        """:return: raw tensors the step returns besides the losses (called inside the step)"""
        return {}

    def host_scores(self, outputs: dict[str, np.ndarray], train: bool) -> dict[str, tuple[float, float]]:
        """:return: scores computed on the host from the step's outputs: ``name -> (sum, inverse norm)``"""
        return {}

    def start_dev(self) -> None:
        """Start collecting the dev metrics of an epoch."""

    def dev_metrics(self) -> dict[str, Any]:
        """:return: extra dev metrics of the epoch (network dicts: unsmoothed loss, ECE, reliability)"""
        return {}


def rf_task(config: Config, trainer: Trainer) -> Task:
    """:return: the task of an rf-style config: ``get_model(epoch=1, step=0)`` and its ``train_step``

    The caller seeds ``rf.set_random_seed`` and the framework before, so the initial parameters are reproducible.

    :raise ConfigError: if ``get_model``/``train_step`` are missing or ``get_model`` returns something else
    """
    get_model, train_step = config.get("get_model"), config.get("train_step")
    for name, value in (("get_model", get_model), ("train_step", train_step)):
        if not callable(value):
            raise config.error(f"an rf-style config needs a function {name}(...), got {value!r}", name)
    model = get_model(epoch=1, step=0)
    if isinstance(model, Module):
        return Task(model, train_step)
    native = trainer.native_model(model)
    if native is not None:
        return Task(model, train_step, native=native)
    kind = type(model).__qualname__
    for base in type(model).__mro__:
        owner = frontend_backends.backend_of_type(base)
        if owner is not None and owner != trainer.name:
            raise config.error(f"get_model returns a {kind} (a {base.__module__}.{base.__qualname__}), a model of the "
                               f"backend {owner!r}, but the backend is {trainer.name!r}; set backend = {owner!r}",
                               "get_model")  # fmt: skip
    raise config.error(f"get_model must return an rf.Module or a model of the {trainer.name!r} backend's own "
                       f"module class, got {kind}", "get_model")  # fmt: skip
