"""The top-level config names ``returnn-ls`` reads, the RETURNN names it accepts quietly, and those it rejects.

Three tables, one place:

- :data:`KNOWN_NAMES`: names with a meaning here (RETURNN's meaning where RETURNN has the name), with defaults.
- :data:`IGNORED_NAMES` (and :data:`IGNORED_PREFIXES`): RETURNN names that change nothing here (logging,
  TensorFlow session options, memory logging, devices, debug switches, ...). A RETURNN config may set them; they
  are accepted without a warning and have no effect.
- :data:`UNSUPPORTED`: RETURNN names whose feature is not implemented here. Set to anything but their neutral
  value, they are an error that names them (a config is never trained differently from what it says).

Any other top-level name is the config's own helper (``demo_name``, a ``Dim``, a ``Model`` class, ...) and is
ignored, unless it is close to a known name (``num_epoch``): then a warning with "did you mean" is printed, once.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any

__all__ = ["IGNORED_NAMES", "IGNORED_PREFIXES", "KNOWN_NAMES", "UNSUPPORTED", "suggest", "warn_once"]

#: Names read by ``returnn-ls``, with their defaults (None: not set / required where the engine needs it).
KNOWN_NAMES: dict[str, Any] = {
    # backend and task
    "backend": None,
    "use_tensorflow": None,
    "task": "train",
    # data
    "extern_data": None,
    "num_inputs": None,
    "num_outputs": None,
    "train": None,
    "dev": None,
    "batching": None,
    "batch_size": 16,
    "max_seqs": None,
    "chunking": None,
    # model
    "network": None,
    "get_model": None,
    "train_step": None,
    "forward_step": None,
    "model_outputs": None,
    # optimization
    "num_epochs": 3,
    "optimizer": None,
    "adam": None,
    "nadam": None,
    "optimizer_epsilon": None,
    "momentum": None,
    "learning_rate": 1e-3,
    "learning_rates": None,
    "learning_rate_control": "constant",
    "learning_rate_decay": None,
    "newbob_learning_rate_decay": None,
    "learning_rate_growth": None,
    "newbob_learning_rate_growth": None,
    "newbob_relative_error_threshold": None,
    "newbob_relative_error_grow_threshold": None,
    "newbob_relative_error_div_by_old": None,
    "newbob_error_threshold": None,
    "newbob_multi_num_epochs": None,
    "newbob_multi_update_interval": None,
    "min_learning_rate": None,
    "learning_rate_control_error_measure": None,
    "learning_rate_control_relative_error_relative_lr": None,
    "learning_rate_control_min_num_epochs_per_new_lr": None,
    "learning_rate_file": None,
    "gradient_clip": None,
    "gradient_clip_global_norm": None,
    "stop_on_nonfinite_train_score": True,
    # outputs and reproducibility
    "model": None,
    "save_interval": 1,
    "seed": 0,
    "random_seed": None,
    "torch_distributed": None,
    # devices and precision (RETURNN's names)
    "device": None,
    "torch_amp": None,
}

#: RETURNN names that change nothing here; accepted without a warning (documented in docs/training.md).
IGNORED_NAMES: tuple[str, ...] = (
    "log",
    "log_verbosity",
    "log_file_level",
    "log_batch_size",
    "log_grad_norm",
    "tf_log_memory_usage",
    "torch_log_memory_usage",
    "tf_log_dir",
    "tf_session_opts",
    "multiprocessing",
    "use_tensorboard",
    "tensorboard_opts",
    "watch_memory",
    "cleanup_old_models",
    "behavior_version",
    "calculate_exp_loss",
    "torch_dataloader_opts",
    "use_spawn",
    "start_epoch",
    "update_batch_size",
    "store_metadata_mod_step",
    "use_learning_rate_control_always",
)
#: Name prefixes of RETURNN debug switches, accepted without a warning (``debug_add_check_numerics_ops``, ...).
IGNORED_PREFIXES: tuple[str, ...] = ("debug_",)

#: RETURNN names of features not implemented here: name -> (neutral values that are accepted, explanation).
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "eval": ((None,), "evaluation datasets besides 'dev' are not supported"),
    "eval_datasets": ((None, {}), "evaluation datasets besides 'dev' are not supported"),
    "pretrain": ((None, False, ""), "pretraining is not supported"),
    "accum_grad_multiple_step": ((None, 1), "gradient accumulation is not supported"),
    "dynamic_learning_rate": ((None,), "dynamic_learning_rate is not supported; use learning_rate_control"),
    "import_model_train_epoch1": ((None,), "importing a model is not supported; use --init-model"),
    "preload_from_files": ((None, {}), "preload_from_files is not supported; use --init-model"),
    "load": ((None,), "load is not supported; use --init-model"),
    "grad_noise": ((None, 0, 0.0), "gradient noise is not supported"),
    "gradient_noise": ((None, 0, 0.0), "gradient noise is not supported"),
    "gradient_nan_inf_filter": ((None, False), "use stop_on_nonfinite_train_score = False to skip such batches"),
    "max_seq_length": ((None, 0, -1), "filtering sequences by their length is not supported"),
    "target": ((None, "classes"), "the default target is 'classes'; name another one with the layer's 'target'"),
}

_warned: set[str] = set()


def suggest(name: str, known: Any, cutoff: float = 0.6) -> str:
    """:return: ``"; did you mean 'x'?"`` for the closest of ``known`` (similarity >= ``cutoff``), or ``""``

    Example: ``suggest("num_epoch", KNOWN_NAMES) == "; did you mean 'num_epochs'?"``
    """
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def warn_once(message: str) -> None:
    """Print ``returnn-ls: warning: <message>`` to stderr, the first time this message is seen in the process.

    Example: ``warn_once("c.config:2: unknown config name 'num_epoch' is ignored; did you mean 'num_epochs'?")``
    """
    if message in _warned:
        return
    _warned.add(message)
    print(f"returnn-ls: warning: {message}", file=sys.stderr)


def is_ignored(name: str) -> bool:
    """:return: whether ``name`` is a RETURNN name that changes nothing here (see :data:`IGNORED_NAMES`)"""
    return name in IGNORED_NAMES or name.startswith(IGNORED_PREFIXES)
