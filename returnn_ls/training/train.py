"""The training loop behind ``returnn-ls train`` and ``compare``: a config in, metrics, a model and plots out.

Everything framework-specific (trainable parameters, gradients, in-place updates) goes through the backend's
:class:`frontend_backends.train_base.Trainer`; this module only sees Tensors and numpy.

Losses: ``train_loss`` is the training objective as optimized (label smoothing included), averaged over the
epoch's batches. ``dev_loss`` is the same network's loss with every label-smoothing option set to 0 (plain
cross entropy or CTC), so that runs with different smoothing are comparable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

import returnn_ls as rf
from frontend_backends.train_base import Adam, Trainer, get_trainer
from returnn_ls.ops import align
from returnn_ls.training.config import Config, ConfigError
from returnn_ls.training.datasets import SyntheticDataset, make_dataset
from returnn_ls.training.metrics import MetricAccumulator
from returnn_ls.training.network import ExternData, Network, replace_smoothing

__all__ = ["Experiment", "build_experiment", "load_model", "save_model", "train", "write_json"]


@dataclass
class Experiment:
    """Everything built from a config on one backend."""

    config: Config
    backend: str
    extern: ExternData
    network: Network
    eval_network: Network
    train_data: SyntheticDataset
    dev_data: SyntheticDataset


def _positive(config: Config, name: str, kind: type) -> Any:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise config.error(f"{name} must be a positive {kind.__name__}, got {value!r}", name)
    return value


def build_experiment(config: Config, backend: str) -> Experiment:
    """Select ``backend`` and build extern data, network and datasets of ``config``.

    :raise ConfigError: for anything missing or invalid in the config
    """
    rf.select_backend(backend)
    for name in ("extern_data", "network", "train", "dev"):
        if config.get(name) is None:
            raise ConfigError(f"the config does not set {name!r} (see API.md section 4)", config.filename)
    for name, kind in (("num_epochs", int), ("batch_size", int), ("learning_rate", float)):
        _positive(config, name, kind)
    extern = ExternData(config.get("extern_data"), config)
    network = Network(config.get("network"), extern, config)
    eval_network = Network(replace_smoothing(config.get("network"), 0.0)[0], extern, config)
    data = {}
    for name in ("train", "dev"):
        try:
            data[name] = make_dataset(
                config.get(name), name=name, input_dim=extern.nodes["data"].dim.dimension, num_labels=extern.num_labels
            )
        except (TypeError, ValueError) as exc:
            raise config.error(str(exc), name) from None
    return Experiment(config, backend, extern, network, eval_network, data["train"], data["dev"])


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: into a temporary file, then renamed."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def save_model(path: str, trainer: Trainer, variables: dict[str, Any]) -> None:
    """Save the parameters backend-neutrally as numpy arrays in ``path`` (``.npz``), atomically."""
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **{k: trainer.to_numpy(v) for k, v in variables.items()})
    os.replace(tmp, path)


def load_model(path: str, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:return: the parameters in ``path``, checked against the names and shapes of ``expected``"""
    if not os.path.exists(path):
        raise ConfigError(f"--init-model file not found: {path!r}")
    try:
        with np.load(path) as f:
            loaded = {k: f[k].astype(np.float32) for k in f.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read model file {path!r}: {exc}") from None
    if set(loaded) != set(expected):
        raise ConfigError(f"model {path!r} has parameters {sorted(loaded)}, the network needs {sorted(expected)}")
    for key, value in expected.items():
        if loaded[key].shape != value.shape:
            raise ConfigError(f"model {path!r}: {key} has shape {loaded[key].shape}, the network needs {value.shape}")
    return loaded


def _train_epoch(exp: Experiment, trainer: Trainer, adam: Adam, variables: dict, epoch: int, progress: bool) -> float:
    batch_size, seed = exp.config.get("batch_size"), exp.config.get("seed")
    batches = exp.train_data.batches(batch_size, shuffle_seed=seed * 1000 + epoch)
    total, count = 0.0, 0
    bar = tqdm(batches, total=exp.train_data.num_batches(batch_size), desc=f"epoch {epoch}", leave=False,
               disable=None if progress else True, file=sys.stderr, unit="batch")  # fmt: skip
    for batch in bar:
        tensors = exp.extern.tensors(batch)
        value, grads = trainer.value_and_grad(lambda vs, t=tensors: exp.network(vs, t).loss.raw_tensor, variables)
        adam.step(grads)
        loss = float(trainer.to_numpy(value))
        if not np.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch}: the training loss is {loss}")
        total, count = total + loss * len(batch["data_len"]), count + len(batch["data_len"])
        bar.set_postfix(loss=f"{loss:.3f}")
    return total / count


def _sparse_targets(lo: Any, batch_dim: Any) -> np.ndarray:
    """:return: the loss layer's targets as class indices [B, T or L] (argmax of a dense target)"""
    target = lo.target
    if target.sparse_dim is not None:
        return target.numpy()
    time = next(d for d in target.dims if d is not batch_dim and d is not lo.vocab)
    return target.backend.to_numpy(align(target, (batch_dim, time, lo.vocab))).argmax(-1)


def evaluate(exp: Experiment, trainer: Trainer, variables: dict) -> dict:
    """:return: ``dev_loss`` (unsmoothed), ``dev_error_rate``, ``dev_ece`` and the ``reliability`` bins"""
    main = exp.eval_network.loss_layers()[0]
    acc, total, count = None, 0.0, 0
    with trainer.no_grad():
        for batch in exp.dev_data.batches(exp.config.get("batch_size")):
            tensors = exp.extern.tensors(batch)
            out = exp.eval_network(variables, tensors)
            lo = out.losses[main]
            batch_dim, time = tensors["data"].dims[:2]
            log_probs = lo.log_probs.backend.to_numpy(align(lo.log_probs, (batch_dim, time, lo.vocab)))
            acc = acc or MetricAccumulator(lo.frame_level)
            target_len = batch["data_len"] if lo.frame_level else batch["classes_len"]
            acc.add(log_probs, batch["data_len"], _sparse_targets(lo, batch_dim), target_len, lo.blank_index)
            total += float(out.loss.numpy()) * len(batch["data_len"])
            count += len(batch["data_len"])
    result = acc.result()
    return {"dev_loss": total / count, "dev_error_rate": result["error_rate"], "dev_ece": result["ece"],
            "reliability": result["reliability"], "frame_level": acc.frame_level}  # fmt: skip


def train(
    config: Config,
    *,
    backend: str,
    out_dir: str,
    epochs: int | None = None,
    init_model: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    extra: dict | None = None,
) -> dict:
    """Train ``config`` on ``backend``; write ``metrics.json``, ``model.npz`` and plots into ``out_dir``.

    :param epochs: overrides the config's ``num_epochs``
    :param init_model: a ``model.npz`` (from either backend) to start from
    :param extra: more top-level entries for ``metrics.json`` (e.g. the smoothing value of a comparison)
    :return: the content of ``metrics.json``
    """
    exp = build_experiment(config, backend)
    params = exp.network.init_params(config.get("seed"))
    if init_model:
        params = load_model(init_model, params)
    os.makedirs(out_dir, exist_ok=True)
    trainer = get_trainer(backend)
    variables = trainer.variables(params)
    adam = Adam(trainer, variables, config.get("learning_rate"))
    metrics = {"backend": backend, "config": config.filename, **(extra or {}), "history": []}
    num_epochs = epochs if epochs is not None else config.get("num_epochs")
    for epoch in range(1, num_epochs + 1):
        start = time.perf_counter()
        train_loss = _train_epoch(exp, trainer, adam, variables, epoch, progress)
        dev = evaluate(exp, trainer, variables)
        entry = {"epoch": epoch, "train_loss": train_loss, "dev_loss": dev["dev_loss"],
                 "dev_error_rate": dev["dev_error_rate"], "dev_ece": dev["dev_ece"],
                 "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
        metrics["history"].append(entry)
        metrics["error_rate"] = "frame" if dev["frame_level"] else "label"
        metrics["reliability"] = dev["reliability"]
        kind = metrics["error_rate"]
        log(f"epoch {epoch}/{num_epochs}  train_loss {train_loss:.4f}  dev_loss {dev['dev_loss']:.4f}  "
            f"dev_{kind}_error_rate {dev['dev_error_rate']:.3f}  dev_ece {dev['dev_ece']:.3f}  "
            f"({entry['seconds']:.1f}s)")  # fmt: skip
    save_model(os.path.join(out_dir, "model.npz"), trainer, variables)
    from returnn_ls.training import plots

    plots.learning_curves(metrics, os.path.join(out_dir, "learning_curves.png"))
    plots.reliability_diagram(metrics, os.path.join(out_dir, "reliability.png"))
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics
