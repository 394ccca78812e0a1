"""The ``torch.optim`` side of the torch trainer: optimizer classes by name and their keyword arguments."""

from __future__ import annotations

from typing import Any

import torch

from frontend_backends.train_base import OptimizerSpec

__all__ = ["optimizer_class", "torch_kwargs"]

#: canonical option -> torch keyword, per class where it differs
_RENAME = {"epsilon": "eps", "rho": "rho"}
_CLASSES = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "nadam": torch.optim.NAdam,
    "adamax": torch.optim.Adamax,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
}


def torch_kwargs(spec: OptimizerSpec) -> dict[str, Any]:
    """:return: the keyword arguments of the torch class for the canonical options of ``spec``"""
    opts = dict(spec.options)
    kwargs: dict[str, Any] = {}
    if "beta1" in opts or "beta2" in opts:
        kwargs["betas"] = (opts.pop("beta1", 0.9), opts.pop("beta2", 0.999))
    if "rho" in opts and spec.name == "rmsprop":
        kwargs["alpha"] = opts.pop("rho")
    for key, value in opts.items():
        kwargs[_RENAME.get(key, key)] = value
    return kwargs


def optimizer_class(name: str) -> type:
    """:return: the ``torch.optim`` class of the lower-case ``name`` (the mapped ones, or any other by name)"""
    if name in _CLASSES:
        return _CLASSES[name]
    found = {k.lower(): v for k, v in vars(torch.optim).items() if isinstance(v, type)}
    found = {k: v for k, v in found.items() if issubclass(v, torch.optim.Optimizer)}
    if name not in found:
        raise ValueError(f"optimizer: unknown class {name!r}; torch.optim has {sorted(found)}")
    return found[name]
