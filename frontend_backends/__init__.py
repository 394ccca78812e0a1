"""Framework backends of ``returnn_ls``: raw tensors and integer axes only.

The backends are imported lazily: :func:`get_backend` imports a framework the first time its backend is
asked for, and :func:`backend_name_of` recognises a raw tensor by the module of its type without importing
anything (a tensor of a framework can only exist once that framework is imported).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np

from frontend_backends.base import Backend

__all__ = ["BACKEND_NAMES", "Backend", "available_backends", "backend_name_of", "backend_package", "get_backend"]

#: The one registry of backends: name -> (the framework package it needs, the top-level modules of its raw
#: tensor types). The backend lives in the package ``frontend_backends.<name>``, which exports ``Backend`` and
#: ``Trainer``; it is imported only when the backend is first used.
_REGISTRY = {
    "torch": ("torch", ("torch",)),
    "tensorflow": ("tensorflow", ("tensorflow", "keras", "tf_keras")),
}
BACKEND_NAMES = tuple(_REGISTRY)

#: Top-level module of a raw tensor's type -> backend name.
_TYPE_MODULES = {module: name for name, (_, modules) in _REGISTRY.items() for module in modules}

_instances: dict[str, Backend] = {}


def available_backends() -> list[str]:
    """:return: the backend names whose framework is installed"""
    return [name for name, (pkg, _) in _REGISTRY.items() if importlib.util.find_spec(pkg) is not None]


def backend_package(name: str) -> Any:
    """:return: the package ``frontend_backends.<name>`` (with ``Backend`` and ``Trainer``), imported on first use"""
    if name not in _REGISTRY:
        raise ValueError(
            f"backend: unknown backend {name!r}; choose one of {list(BACKEND_NAMES)} "
            f"(installed here: {available_backends()})"
        )
    try:
        return importlib.import_module(f"frontend_backends.{name}")
    except ImportError as exc:
        raise ValueError(
            f"backend: {name!r} needs the {_REGISTRY[name][0]!r} package, which is not importable ({exc}); "
            f"installed backends: {available_backends()}"
        ) from exc


def get_backend(name: str) -> Backend:
    """:return: the backend called ``name``, importing its framework on first use"""
    if name not in _instances:
        _instances[name] = backend_package(name).Backend()
    return _instances[name]


def backend_name_of(raw: Any) -> str | None:
    """:return: the backend name of a raw framework tensor, or None (numpy arrays, Python values)"""
    if isinstance(raw, (np.ndarray, np.generic, int, float, bool, list, tuple)):
        return None  # checked first so that torch.compile does not trace string methods on numpy's type
    module = type(raw).__module__.split(".", 1)[0]
    return _TYPE_MODULES.get(module)
