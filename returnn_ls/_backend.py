"""Which backend an operation runs on.

The backend of an operation is the backend of its input tensors. :func:`select_backend` only decides where
tensors created from Python or numpy values live. Without a selection the environment variable
``RETURNN_LS_BACKEND`` is used.
"""

from __future__ import annotations

import os
from typing import Any

import frontend_backends
from frontend_backends import Backend
from frontend_backends.common import ENV_VAR

__all__ = ["get_backend_name", "select_backend", "select_backend_tf", "select_backend_torch"]

_selected: str | None = None


def select_backend(name: str) -> None:
    """Select the backend for tensors created from Python or numpy values.

    :param name: a registered backend name (``frontend_backends.backend_names()``): ``"torch"``, ``"tensorflow"``
    """
    global _selected
    if not isinstance(name, str):
        raise TypeError(f"select_backend: name must be a str, one of {list(frontend_backends.backend_names())}")
    frontend_backends.get_backend(name)  # validates the name and imports the framework
    _selected = name


def select_backend_torch() -> None:
    """Select the PyTorch backend."""
    select_backend("torch")


def select_backend_tf() -> None:
    """Select the TensorFlow backend."""
    select_backend("tensorflow")


def get_backend_name() -> str:
    """:return: the selected backend name (e.g. ``"torch"`` or ``"tensorflow"``)"""
    if _selected is not None:
        return _selected
    env = os.environ.get(ENV_VAR)
    if env:
        select_backend(env)
        return env
    raise ValueError(
        f"no backend selected: call returnn_ls.select_backend() with one of "
        f"{list(frontend_backends.backend_names())}, or set {ENV_VAR}"
    )


def selected_backend() -> Backend:
    """:return: the backend object of :func:`get_backend_name`"""
    return frontend_backends.get_backend(get_backend_name())


def backend_for_raw(raw: Any) -> Backend:
    """:return: the backend owning ``raw``, or the selected backend for numpy and Python values"""
    name = frontend_backends.backend_name_of(raw)
    return frontend_backends.get_backend(name) if name else selected_backend()
