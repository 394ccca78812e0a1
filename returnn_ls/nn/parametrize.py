"""Parametrizations of parameters (as ``returnn.frontend``, after PyTorch's ``torch.nn.utils.parametrize``):
``register_parametrization``, ``remove_parametrization``, ``is_parametrized``, and two made with them,
``weight_dropout`` and ``weight_noise``.

A parametrized parameter ``module.weight`` reads as ``parametrization(original)`` each time it is accessed, while
``module.named_parameters()`` still lists the original :class:`~returnn_ls.nn.Parameter` under its name (so the
optimizer and checkpoints see the same parameters). The module keeps its class: the original parameters and their
parametrizations live in ``module._parametrizations`` and :class:`~returnn_ls.nn.Module` resolves the name there.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.tensor import Tensor

__all__ = ["is_parametrized", "register_parametrization", "remove_parametrization", "weight_dropout",
           "weight_noise"]  # fmt: skip


def register_parametrization(module: Module, param_name: str, parametrization: Callable[[Tensor], Tensor], *,
                             keep_existing_param: bool = True) -> Module:  # fmt: skip
    """Make ``module.<param_name>`` read as ``parametrization(param)``; :return: ``module``.

    :param module: the module that has the parameter as an attribute
    :param param_name: the attribute name, e.g. ``"weight"``
    :param parametrization: a function of the original Parameter (e.g. ``functools.partial(rf.dropout,
        drop_prob=0.1)``); a Module here must have no parameters of its own
    :param keep_existing_param: must be True (RETURNN's False, a parametrization with parameters of its own that
        replaces the original one, is not supported)

    Example: ``rf.register_parametrization(linear, "weight", partial(rf.dropout, drop_prob=0.1))``
    """
    func = "register_parametrization"
    if not isinstance(module, Module):
        raise TypeError(f"{func}: module must be an rf.Module, got {type(module).__name__}")
    if not callable(parametrization):
        raise TypeError(f"{func}: parametrization must be callable, got {type(parametrization).__name__}")
    if keep_existing_param is not True:
        raise ValueError(f"{func}: only keep_existing_param=True is supported, got {keep_existing_param!r}")
    if isinstance(parametrization, Module) and any(True for _ in parametrization.parameters()):
        raise ValueError(f"{func}: parametrization {parametrization} must not have parameters of its own")
    if is_parametrized(module, param_name):
        raise ValueError(f"{func}: {type(module).__name__}.{param_name} is already parametrized")
    orig = vars(module).get(param_name)
    if not isinstance(orig, Parameter):
        raise TypeError(f"{func}: {type(module).__name__}.{param_name} must be an rf.Parameter, got "
                        f"{type(orig).__name__}")  # fmt: skip
    names = [k for k in vars(module) if k != "_parametrizations"]
    before = names[names.index(param_name) + 1] if names.index(param_name) + 1 < len(names) else None
    parametrized = vars(module).setdefault("_parametrizations", {})
    del vars(module)[param_name]
    parametrized[param_name] = (orig, parametrization, before)  # before: named_parameters keeps the order
    return module


def remove_parametrization(module: Module, param_name: str) -> Module:
    """Undo :func:`register_parametrization`: ``module.<param_name>`` is the original Parameter again;
    :return: ``module``"""
    if not is_parametrized(module, param_name):
        raise ValueError(f"remove_parametrization: {type(module).__name__}.{param_name} is not parametrized")
    parametrized = vars(module)["_parametrizations"]
    orig, _, before = parametrized.pop(param_name)
    if not parametrized:
        del vars(module)["_parametrizations"]
    items = list(vars(module).items())  # back at its old place (before the attribute that followed it)
    names = [k for k, _ in items]
    items.insert(names.index(before) if before in names else len(items), (param_name, orig))
    vars(module).clear()
    vars(module).update(items)
    return module


def is_parametrized(module: Module, param_name: str | None = None) -> bool:
    """:return: whether ``module`` has a parametrized parameter (``param_name``: whether that one is)"""
    parametrized = vars(module).get("_parametrizations") or {}
    return bool(parametrized) if param_name is None else param_name in parametrized


class WeightDropout:
    """The parametrization of :func:`weight_dropout`: dropout of the parameter while training."""

    def __init__(self, drop_prob: float):
        self.drop_prob = drop_prob

    def __call__(self, param: Tensor) -> Tensor:
        from returnn_ls.nn.dropout import dropout

        return dropout(param, self.drop_prob)


class WeightNoise:
    """The parametrization of :func:`weight_noise`: Gaussian noise added to the parameter while training."""

    def __init__(self, std: float):
        self.std = std

    def __call__(self, param: Tensor) -> Tensor:
        from returnn_ls.nn._utils import train_flag
        from returnn_ls.random_funcs import random_normal

        if not train_flag(WeightNoise.__call__):
            return param
        return param + random_normal(param.dims, dtype=param.dtype, stddev=self.std, device=param.device)


def weight_dropout(module: Module, param_name: str, *, drop_prob: float) -> Module:
    """Dropout on a parameter (DropConnect) while training: :func:`register_parametrization` with
    ``rf.dropout(param, drop_prob)``; :return: ``module``"""
    _check_prob(drop_prob, "drop_prob", "weight_dropout", upper=1.0)
    return register_parametrization(module, param_name, WeightDropout(drop_prob))


def weight_noise(module: Module, param_name: str, *, std: float) -> Module:
    """Gaussian noise with standard deviation ``std`` on a parameter while training (variational noise; RETURNN's
    TF layers' ``param_variational_noise``); :return: ``module``

    Example: ``rf.weight_noise(conv, "filter", std=0.075)``
    """
    _check_prob(std, "std", "weight_noise", upper=None)
    return register_parametrization(module, param_name, WeightNoise(std))


def _check_prob(value: object, name: str, func: str, upper: float | None) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0
    if not ok or (upper is not None and value >= upper):
        allowed = ">= 0" if upper is None else f"in [0, {upper})"
        raise ValueError(f"{func}: {name} must be a float {allowed}, got {value!r}")
