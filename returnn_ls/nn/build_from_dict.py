"""``build_from_dict`` and ``build_dict`` (as ``returnn.frontend``): modules (or other objects) described by dicts
such as ``{"class": "rf.Linear", "out_dim": dim}``, which configs can store and compare."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import BuiltinFunctionType, FunctionType
from typing import Any

__all__ = ["build_dict", "build_from_dict"]


def _is_rf(module_name: str) -> bool:
    """:return: whether ``module_name`` means the rf namespace: ``rf`` (RETURNN's and our ``build_dict``) or one
    of RETURNN's own modules (``returnn.frontend.linear``), whose names are looked up in ``returnn_ls``"""
    return module_name == "rf" or module_name == "returnn.frontend" or module_name.startswith("returnn.frontend.")


def build_from_dict(d: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """Build a module (or other object) from a dict: ``d["class"]`` names the class (``"rf.Linear"``, or a module
    path ``"my_pkg.models.Encoder"``; RETURNN's ``returnn.frontend...`` paths mean the same name in ``returnn_ls``);
    the other entries are keyword arguments, with ``args``/``kwargs`` added.

    A function (``"rf.relu"``) is returned as it is, or as a ``functools.partial`` with the arguments.

    :return: ``cls(*args, **options, **kwargs)``

    Example::

        linear = rf.build_from_dict({"class": "rf.Linear", "with_bias": False}, in_dim, out_dim)
    """
    func = "build_from_dict"
    if not isinstance(d, dict):
        raise TypeError(f"{func}: d must be a dict, got {type(d).__name__}")
    if "class" not in d:
        raise ValueError(f"{func}: d has no 'class' entry: {d!r}")
    options = dict(d)
    cls = _get_cls(options.pop("class"), func)
    if isinstance(cls, (FunctionType, BuiltinFunctionType)):
        return functools.partial(cls, *args, **options, **kwargs) if (args or kwargs or options) else cls
    if not isinstance(cls, type):
        raise ValueError(f"{func}: 'class' {d['class']!r} names {cls!r}, not a class or a function")
    return cls(*args, **options, **kwargs)


def build_dict(cls: type | Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """:return: the dict that :func:`build_from_dict` builds ``cls(**kwargs)`` from: ``{"class": name, **kwargs}``,
    the name ``"rf.<name>"`` for what ``returnn_ls`` exports (as RETURNN writes it), else ``"<module>.<name>"``

    Example: ``rf.build_dict(rf.BatchNorm, use_mask=True) == {"class": "rf.BatchNorm", "use_mask": True}``
    """
    if not isinstance(cls, (type, FunctionType, BuiltinFunctionType)):
        raise TypeError(f"build_dict: cls must be a class or a function, got {cls!r}")
    return {"class": _get_cls_name(cls), **kwargs}


def _get_cls(name: Any, func: str) -> Any:
    """:return: the class or function that ``name`` (``"rf.X"`` or ``"package.module.X"``) names"""
    import returnn_ls

    if not isinstance(name, str) or "." not in name:
        raise ValueError(f"{func}: 'class' must be a dotted name such as 'rf.Linear', got {name!r}")
    module_name, attr = name.rsplit(".", 1)
    if _is_rf(module_name):
        if not hasattr(returnn_ls, attr):
            raise ValueError(f"{func}: 'class' {name!r}: returnn_ls has no {attr!r}")
        return getattr(returnn_ls, attr)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{func}: 'class' {name!r} cannot be imported: {exc}") from exc


def _get_cls_name(cls: type | Callable[..., Any]) -> str:
    import returnn_ls

    if getattr(returnn_ls, cls.__name__, None) is cls:
        return f"rf.{cls.__name__}"
    return f"{cls.__module__}.{cls.__name__}"
