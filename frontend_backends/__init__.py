"""Framework backends of ``returnn_ls``: raw tensors and integer axes only.

This module is the one registry of backends. A backend is a package that exports three classes:

- ``Backend``, a subclass of :class:`frontend_backends.base.Backend` (the tensor primitives),
- ``Trainer``, a subclass of :class:`frontend_backends.train_base.Trainer` (one training step, optimizers),
- ``Bench`` (optional), a subclass of :class:`frontend_backends.bench_base.BenchKit` (the framework's side of
  ``returnn-ls bench``),

and one :class:`BackendInfo` here (:data:`_REGISTRY`), or one :func:`register_backend` call from outside this
repository. Everything else (the frontend, the engine, the benchmark, the tests' fixtures) asks the registry and
the backend's objects; nothing outside a backend's package compares backend names.

The backends are imported lazily: :func:`get_backend` imports a framework the first time its backend is asked
for, and :func:`backend_name_of` recognises a raw tensor by the module of its type without importing anything
(a tensor of a framework can only exist once that framework is imported).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from frontend_backends.base import Backend

__all__ = [
    "Backend", "BackendInfo", "available_backends", "backend_info", "backend_name_of", "backend_names",
    "backend_of_type", "backend_package", "bench_kit", "config_flag_backends", "get_backend", "register_backend",
    "unregister_backend",
]  # fmt: skip


@dataclass(frozen=True)
class BackendInfo:
    """What the registry knows of a backend before importing it.

    :param package: the importable package (or module) that exports ``Backend``, ``Trainer`` and optionally
        ``Bench``
    :param framework: the top-level package the backend needs installed (checked with ``importlib.util.find_spec``
        before importing ``package``)
    :param type_modules: the top-level modules whose types are this backend's raw tensors (``torch.Tensor`` lives
        in ``torch``); how :func:`backend_name_of` recognises a raw tensor without importing anything
    :param config_flags: RETURNN config names that select this backend when set to a true value
        (``use_tensorflow = True``)
    :param install: how to install the framework, for the message when it is missing
        (``pip install 'returnn-ls[torch]'``)
    """

    package: str
    framework: str
    type_modules: tuple[str, ...]
    config_flags: tuple[str, ...] = ()
    install: str = ""


#: The one registry of backends: name -> :class:`BackendInfo`. Adding a framework means one line here and one
#: package ``frontend_backends.<name>``; :func:`register_backend` adds one from outside this repository.
_REGISTRY: dict[str, BackendInfo] = {
    "torch": BackendInfo("frontend_backends.torch", "torch", ("torch",), install="pip install 'returnn-ls[torch]'"),
    "tensorflow": BackendInfo("frontend_backends.tensorflow", "tensorflow", ("tensorflow", "keras", "tf_keras"),
                              config_flags=("use_tensorflow",),
                              install="pip install 'returnn-ls[tensorflow]'"),  # fmt: skip
}

_instances: dict[str, Backend] = {}


def register_backend(name: str, info: BackendInfo, *, replace: bool = False) -> None:
    """Register a backend under ``name`` (see the module docstring for what ``info.package`` exports).

    Example (a package ``my_backend`` with ``Backend`` and ``Trainer`` classes for a framework ``myfw``)::

        register_backend("myfw", BackendInfo("my_backend", framework="myfw", type_modules=("myfw",)))
        returnn_ls.select_backend("myfw")

    :param replace: allow replacing a registered backend of that name (else that is a ValueError)
    :raise ValueError: for a name that is taken, or type modules that belong to another backend
    :raise TypeError: for arguments of the wrong type
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"register_backend: name must be an identifier str, got {name!r}")
    if not isinstance(info, BackendInfo):
        raise TypeError(f"register_backend: info must be a BackendInfo, got {type(info).__name__}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"register_backend: a backend {name!r} is registered already (pass replace=True)")
    taken = {m: n for n, i in _REGISTRY.items() if n != name for m in i.type_modules}
    clash = sorted(m for m in info.type_modules if m in taken)
    if clash:
        raise ValueError(f"register_backend: type modules {clash} belong to backend {taken[clash[0]]!r} already")
    _REGISTRY[name] = info
    _instances.pop(name, None)


def unregister_backend(name: str) -> None:
    """Remove the backend ``name`` from the registry (e.g. one a test registered); unknown names are ignored."""
    _REGISTRY.pop(name, None)
    _instances.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """:return: the registered backend names, the built-in ones first"""
    return tuple(_REGISTRY)


def backend_info(name: str) -> BackendInfo:
    """:return: the :class:`BackendInfo` of ``name``

    :raise ValueError: for an unknown name, listing the registered and installed ones
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"backend: unknown backend {name!r}; choose one of {list(_REGISTRY)} "
            f"(installed here: {available_backends()})"
        )
    return _REGISTRY[name]


def available_backends() -> list[str]:
    """:return: the backend names whose framework is installed"""
    return [name for name, info in _REGISTRY.items() if importlib.util.find_spec(info.framework) is not None]


def backend_package(name: str) -> Any:
    """:return: the package of the backend ``name`` (with ``Backend`` and ``Trainer``), imported on first use"""
    info = backend_info(name)
    try:
        return importlib.import_module(info.package)
    except ImportError as exc:
        raise ValueError(
            f"backend: {name!r} needs the {info.framework!r} package, which is not importable ({exc}); "
            f"installed backends: {available_backends()}" + (f"; install it: {info.install}" if info.install else "")
        ) from exc


def get_backend(name: str) -> Backend:
    """:return: the backend called ``name``, importing its framework on first use"""
    if name not in _instances:
        backend = backend_package(name).Backend()
        if not isinstance(backend, Backend):
            package = backend_info(name).package
            raise TypeError(f"backend {name!r}: {package}.Backend is not a subclass of frontend_backends.Backend")
        backend.name = name
        _instances[name] = backend
    return _instances[name]


def bench_kit(name: str) -> Any:
    """:return: a new ``Bench`` of the backend ``name`` (its side of ``returnn-ls bench``)

    :raise ValueError: if the backend has none
    """
    package = backend_package(name)
    if not hasattr(package, "Bench"):
        raise ValueError(f"bench: backend {name!r} has no benchmark cases ({backend_info(name).package}.Bench)")
    return package.Bench()


def backend_name_of(raw: Any) -> str | None:
    """:return: the backend name of a raw framework tensor, or None (numpy arrays, Python values)"""
    if isinstance(raw, (np.ndarray, np.generic, int, float, bool, list, tuple)):
        return None  # checked first so that torch.compile does not trace string methods on numpy's type
    return backend_of_type(type(raw))


def backend_of_type(cls: type) -> str | None:
    """:return: the backend whose type modules hold the class ``cls``, or None"""
    module = cls.__module__.split(".", 1)[0]
    for name, info in _REGISTRY.items():
        if module in info.type_modules:
            return name
    return None


def config_flag_backends() -> Sequence[tuple[str, str]]:
    """:return: ``(config name, backend name)`` for every config flag that selects a backend"""
    return [(flag, name) for name, info in _REGISTRY.items() for flag in info.config_flags]
