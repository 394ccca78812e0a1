"""``returnn-ls train`` and ``compare``: a config in; checkpoints, ``metrics.json``, ``model.npz`` and plots out.

For network dicts, ``metrics.json`` keeps this project's comparison metrics beside RETURNN's scores:
``train_loss`` (the train ``score``, the objective as optimized), ``dev_loss`` (the dev loss with every
label-smoothing option set to 0, so that runs with different smoothing are comparable), ``dev_error_rate``,
``dev_ece`` and the last epoch's ``reliability`` bins.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from returnn_ls.training.config import Config
from returnn_ls.training.engine import Engine, NonFiniteLossError
from returnn_ls.training.outputs import OutputPathError, check_outputs
from returnn_ls.training.run_state import OutputWriteError, write_json
from returnn_ls.training.setup import build_setup

__all__ = ["NonFiniteLossError", "OutputPathError", "OutputWriteError", "save_model", "train", "write_json"]


def save_model(path: str, params: dict[str, np.ndarray]) -> None:
    """Save the parameters backend-neutrally as numpy arrays in ``path`` (``.npz``), atomically."""
    from returnn_ls.training.checkpoints import atomic_write

    atomic_write(path, lambda f: np.savez(f, **params))


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
    """Train ``config`` on ``backend``; write checkpoints at the ``model`` prefix (default ``out_dir/model``),
    ``metrics.json``, ``model.npz`` and plots into ``out_dir``. A rerun resumes after the last complete checkpoint.

    Example: ``train(load_config("demos/frame_ce_softmax.config"), backend="torch", out_dir="out")``

    :param epochs: overrides the config's ``num_epochs``
    :param init_model: a ``model.npz`` (from either backend) to start from (ignored when resuming)
    :param extra: more top-level entries for ``metrics.json`` (e.g. the smoothing value of a comparison)
    :return: the content of ``metrics.json``
    :raise ConfigError: for a bad config or bad data (:class:`OutputPathError`, a ConfigError, if ``out_dir``, the
        ``model`` prefix or the ``learning_rate_file`` cannot be written: checked before anything is built);
        :class:`NonFiniteLossError` when training stops on NaN/inf; :class:`OutputWriteError` (an OSError) when
        a checkpoint or another output cannot be written after an epoch (the previous checkpoint stays usable)
    """
    check_outputs(config, out_dir)
    setup = build_setup(config, backend, out_dir=out_dir, epochs=epochs)
    engine = Engine(setup, out_dir, progress=progress, log=log, extra=extra)
    engine.state.init_model = init_model
    metrics = engine.run()
    if setup.dist.is_main:
        params = {n: setup.trainer.to_numpy(v) for n, v in setup.task.parameters().items()}
        save_model(os.path.join(out_dir, "model.npz"), params)
        _plots(metrics, out_dir)
    setup.dist.finish()
    return metrics


def _plots(metrics: dict[str, Any], out_dir: str) -> None:
    from returnn_ls.training import plots

    if metrics["history"]:
        plots.learning_curves(metrics, os.path.join(out_dir, "learning_curves.png"))
    if metrics.get("reliability"):
        plots.reliability_diagram(metrics, os.path.join(out_dir, "reliability.png"))
