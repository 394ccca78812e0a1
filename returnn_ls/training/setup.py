"""Everything the engine needs, built from a config: data, model and train step, optimizer, learning-rate control.

The order makes training reproducible: the backend is selected, the seed (``seed``, or RETURNN's
``random_seed``) is given to ``rf.set_random_seed``, the framework and numpy, and only then is the model built.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

import returnn_ls as rf
from frontend_backends.train_base import StepOptions, Trainer, get_trainer
from returnn_ls.training.config import Config, ConfigError
from returnn_ls.training.data import batch_options, make_dataset
from returnn_ls.training.distributed import Distributed, setup_distributed
from returnn_ls.training.extern_data import ExternData, extern_data_spec
from returnn_ls.training.lr_control import LearningRateControl, lr_control_from_config
from returnn_ls.training.optimizer import optimizer_spec
from returnn_ls.training.task import Task, rf_task

__all__ = ["Setup", "build_setup", "seed_everything"]


@dataclass
class Setup:
    """A config, ready to train."""

    config: Config
    backend: str
    device: str
    trainer: Trainer
    dist: Distributed
    extern: ExternData
    train_data: Any
    dev_data: Any
    task: Task
    params: list[tuple[str, Any]]
    optimizer: Any
    lr_control: LearningRateControl
    step_options: StepOptions
    batching: dict[str, Any]
    num_epochs: int
    seed: int
    model_prefix: str
    save_interval: int
    lr_file: str | None
    stop_on_nonfinite: bool


def _check(config: Config, name: str, kind: type, *, minimum: float = 0.0, strict: bool = True) -> Any:
    value = config.get(name)
    numeric = (Real,) if kind is float else (int,)
    bad = isinstance(value, bool) or not isinstance(value, numeric) or value < minimum or (strict and value == minimum)
    if bad:
        what = f"{'>' if strict else '>='} {minimum:g}"
        raise config.error(f"{name} must be {'a number' if kind is float else 'an int'} {what}, got {value!r}", name)
    return value


def seed_everything(seed: int, trainer: Trainer) -> None:
    """Seed Python's and numpy's global generators, ``rf.set_random_seed`` and the framework's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    rf.set_random_seed(seed)
    trainer.seed(seed)


def _place(config: Config, trainer: Trainer) -> str:
    """Resolve RETURNN's ``device`` (and ``torch_amp``, the trainer's mixed-precision key) for ``trainer``;
    :return: the device"""
    try:
        trainer.set_device(trainer.resolve_device(config.get("device")))
    except ValueError as exc:
        raise config.error(f"device: {exc}", "device") from None
    for key in ("torch_amp",):
        value = config.get(key)
        if value is None:
            continue
        if key != trainer.mixed_precision_key:
            raise config.error(f"{key} is not supported by the backend {trainer.name!r}", key)
        dtype = value.get("dtype") if isinstance(value, dict) and set(value) <= {"dtype"} else value
        try:
            trainer.set_mixed_precision(dtype)
        except ValueError as exc:
            raise config.error(f"{key}: {exc} (or a dict {{'dtype': ...}})", key) from None
    return trainer.device


def _task(config: Config, extern: ExternData, trainer: Trainer) -> Task:
    if config.get("network") is not None:
        from returnn_ls.training.network_task import network_task

        return network_task(config, extern)
    if config.get("get_model") is not None or config.get("train_step") is not None:
        return rf_task(config, trainer)
    raise ConfigError("the config sets neither 'network' (a network dict) nor 'get_model' and 'train_step'",
                      config.filename)  # fmt: skip


def build_setup(config: Config, backend: str, *, out_dir: str, epochs: int | None = None) -> Setup:
    """:return: the :class:`Setup` of ``config`` on ``backend`` (``epochs`` overrides ``num_epochs``)

    :raise ConfigError: for anything missing or invalid, naming the config key
    """
    rf.select_backend(backend)
    trainer = get_trainer(backend)
    _place(config, trainer)
    dist = setup_distributed(config, trainer)  # may set the worker's own GPU
    seed = config.get("random_seed") if config.get("random_seed") is not None else config.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise config.error(f"seed must be an int >= 0, got {seed!r}", "seed")
    num_epochs = epochs if epochs is not None else _check(config, "num_epochs", int)
    learning_rate = _check(config, "learning_rate", float, strict=False)
    spec = extern_data_spec(config)
    train_data = make_dataset(config, "train", spec)
    dev_data = make_dataset(config, "dev", spec) if config.get("dev") is not None else None
    extern = ExternData(spec, config, data_keys=train_data.keys)
    seed_everything(seed, trainer)
    with trainer.device_scope():
        task = _task(config, extern, trainer)
    params = task.trainable()
    if not params:
        raise config.error(
            "the model has no trainable parameters", "network" if task.kind == "network" else "get_model"
        )
    trainer.limit_threads(sum(int(np.prod(tuple(p.shape))) for _, p in params))
    try:
        optimizer = trainer.create_optimizer([p for _, p in params], optimizer_spec(config, trainer), learning_rate)
    except ValueError as exc:
        raise config.error(str(exc), "optimizer") from None
    clip = StepOptions(_check(config, "gradient_clip", float, strict=False) if config.get("gradient_clip") else 0.0,
                       _check(config, "gradient_clip_global_norm", float, strict=False)
                       if config.get("gradient_clip_global_norm") else 0.0)  # fmt: skip
    model = config.get("model") or os.path.join(out_dir, "model")
    if not isinstance(model, str):
        raise config.error(f"model must be a path prefix (str), got {model!r}", "model")
    return Setup(
        config, backend, trainer.device, trainer, dist, extern, train_data, dev_data, task, params, optimizer,
        lr_control_from_config(config), clip, batch_options(config), num_epochs, seed, model,
        _check(config, "save_interval", int), config.get("learning_rate_file"),
        bool(config.get("stop_on_nonfinite_train_score")),
    )  # fmt: skip
