"""The ``optimizer`` config key: RETURNN's option names, checked, in one backend-neutral :class:`OptimizerSpec`.

The backend's trainer turns the spec into the framework's own optimizer (``torch.optim.*`` or
``keras.optimizers.*``); nothing is implemented by hand. What differs between frameworks comes from the trainer
(:meth:`~frontend_backends.train_base.Trainer.optimizer_defaults`, ``passthrough_optimizers``).
Accepted forms, as in RETURNN:

- ``optimizer = {"class": "adam", "epsilon": 1e-8, "weight_decay": 0.01}`` (the class name is case-insensitive);
- ``optimizer = "adam"``; the old style ``adam = True`` / ``nadam = True``;
- nothing: Adam (RETURNN's TF engine would use plain SGD and its torch engine stops with an error; Adam keeps
  this project's own configs working).

Option names of TensorFlow 1 (``beta1``, ``beta2``, ``decay`` of RMSProp), PyTorch (``betas``, ``eps``, ``alpha`` of
RMSprop) and Keras (``beta_1``, ``beta_2``, ``rho``) are all read. Defaults are the framework's, except
where the trainer says otherwise (TensorFlow: ``epsilon`` 1e-16, as RETURNN's TF engine sets it); the top-level
``optimizer_epsilon`` and ``momentum`` apply on both backends where the class has that option.
``weight_decay`` means what it means in ``torch.optim``: decoupled for ``adamw``, an L2 term added to the gradient
for the others (on TensorFlow too).
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from frontend_backends.train_base import MAPPED_OPTIMIZERS, OptimizerSpec, Trainer
from returnn_ls.training.config import Config
from returnn_ls.training.config_names import suggest

__all__ = ["OptimizerSpec", "optimizer_spec"]

#: Other names of the canonical options (TF1, torch and Keras spellings).
_ALIASES = {"eps": "epsilon", "beta_1": "beta1", "beta_2": "beta2", "alpha": "rho", "decay": "rho",
            "use_nesterov": "nesterov"}  # fmt: skip
_FLAGS = ("nesterov", "amsgrad", "centered")
#: Options of RETURNN's engines that only matter there (accepted, no effect here).
_IGNORED = ("use_locking",)


def _from_config(config: Config) -> tuple[Any, str]:
    """:return: the optimizer option as written (dict, str or None) and the config name it came from"""
    if config.get("optimizer") is not None:
        return config.get("optimizer"), "optimizer"
    for name in ("adam", "nadam"):
        if config.get(name):
            return {"class": name}, name
    return {"class": "adam"}, "optimizer"


def optimizer_spec(config: Config, trainer: Trainer) -> OptimizerSpec:
    """:return: the :class:`OptimizerSpec` of the config's optimizer for the backend of ``trainer``

    Example: ``optimizer_spec(load_config_text("optimizer = {'class': 'Adam', 'beta1': 0.8}"), get_trainer("torch"))``
    is ``OptimizerSpec("adam", {"beta1": 0.8}, ...)``.

    :raise ConfigError: for an unknown class or option or a bad value, naming ``optimizer`` and the option
    """
    opts, name = _from_config(config)
    if isinstance(opts, str):
        opts = {"class": opts}
    if not isinstance(opts, dict) or not isinstance(opts.get("class"), str):
        raise config.error(f"{name} must be a dict like {{'class': 'adam'}} or a class name, got {opts!r}", name)
    cls = opts["class"].lower()
    options: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for key, value in opts.items():
        if key == "class" or key in _IGNORED:
            continue
        if key in ("learning_rate", "lr"):
            raise config.error(f"{name}: set 'learning_rate' outside of the {name} dict (top-level)", name)
        _add_option(config, name, cls, key, value, options, passthrough)
    for top, option in (("optimizer_epsilon", "epsilon"), ("momentum", "momentum")):
        if config.get(top) is not None and option in MAPPED_OPTIMIZERS.get(cls, ()):
            options.setdefault(option, _number(config, top, top, config.get(top)))
    for option, value in trainer.optimizer_defaults(cls).items():
        options.setdefault(option, value)
    if cls not in MAPPED_OPTIMIZERS and not trainer.passthrough_optimizers:
        known = sorted(MAPPED_OPTIMIZERS)
        raise config.error(f"{name}: class {opts['class']!r} is not available on {trainer.name}; choose one of "
                           f"{known}{suggest(cls, known)}", name)  # fmt: skip
    return OptimizerSpec(cls, options, passthrough)


def _add_option(config: Config, name: str, cls: str, key: str, value: Any, options: dict, passthrough: dict) -> None:
    """Put one option of the ``optimizer`` dict into ``options`` (canonical names) or ``passthrough``."""
    if cls not in MAPPED_OPTIMIZERS:  # another class of the framework (torch.optim): its own keyword arguments
        passthrough["eps" if key == "epsilon" else key] = value
        return
    allowed = MAPPED_OPTIMIZERS[cls]
    if key == "betas":
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise config.error(f"{name}['betas'] must be a pair of numbers, got {value!r}", name)
        options["beta1"], options["beta2"] = (_number(config, name, "betas", v) for v in value)
        return
    canonical = _ALIASES.get(key, key)
    if canonical not in allowed:
        known = sorted(set(allowed) | {a for a, c in _ALIASES.items() if c in allowed})
        raise config.error(f"{name}: unknown option {key!r} for class {cls!r}; known: {known}"
                           f"{suggest(key, known)}", name)  # fmt: skip
    if canonical in _FLAGS:
        if not isinstance(value, bool):
            raise config.error(f"{name}[{key!r}] must be True or False, got {value!r}", name)
        options[canonical] = value
    else:
        options[canonical] = _number(config, name, key, value)


def _number(config: Config, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
        raise config.error(f"{name}[{key!r}] must be a number >= 0, got {value!r}", name)
    return float(value)
