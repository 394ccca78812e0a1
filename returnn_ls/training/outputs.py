"""Checks, before training starts, that every output can be written: ``--out``, the ``model`` prefix and the
``learning_rate_file``. A path that cannot be written is reported at once (naming the key and the path) instead
of after the first epoch. Nothing is created by the check.
"""

from __future__ import annotations

import os

from returnn_ls.training.config import Config, ConfigError

__all__ = ["OutputPathError", "check_outputs", "unwritable_reason"]


class OutputPathError(ConfigError):
    """An output path cannot be written (the command line reports it as a usage error, exit code 2)."""


def _first_existing(path: str) -> tuple[str, list[str]]:
    """:return: the longest existing prefix of ``path`` (as a path) and the components below it still to create"""
    path = os.path.abspath(path)
    missing: list[str] = []
    while not os.path.lexists(path):
        path, tail = os.path.split(path)
        missing.insert(0, tail)
    return path, missing


def unwritable_reason(path: str, *, kind: str) -> str | None:
    """Why ``path`` cannot be written, or None if it can (as far as the file system tells without writing).

    :param path: a folder (``kind="folder"``) or a file (``kind="file"``) to be created or overwritten
    :param kind: ``"folder"`` or ``"file"``
    :return: a short reason (e.g. ``"/etc/passwd is a file, not a folder"``), or None
    """
    if kind not in ("folder", "file"):
        raise ValueError(f"unwritable_reason: kind must be 'folder' or 'file', got {kind!r}")
    existing, missing = _first_existing(path)
    if not missing:  # the path itself exists
        if kind == "folder" and not os.path.isdir(existing):
            return f"{existing} exists and is not a folder"
        if kind == "file" and os.path.isdir(existing):
            return f"{existing} is a folder"
        folder = existing if kind == "folder" else os.path.dirname(existing)
        if kind == "file" and not os.access(existing, os.W_OK):
            return f"{existing} is not writable"
    else:
        if not os.path.isdir(existing):
            return f"{existing} is a file, not a folder"
        folder = existing
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    return None


def check_outputs(config: Config, out_dir: str) -> None:
    """Check that ``out_dir`` (``--out``), the config's ``model`` prefix (default ``out_dir/model``) and its
    ``learning_rate_file`` can be written.

    :raise OutputPathError: naming the key (``--out``, ``model``, ``learning_rate_file``), the path and why
    """
    checks = [("--out", out_dir, "folder")]
    model = config.get("model")
    if isinstance(model, str) and model:  # other types are reported by the setup, with the config's line
        checks.append(("model", os.path.dirname(model) or ".", "folder"))
    lr_file = config.get("learning_rate_file")
    if isinstance(lr_file, str) and lr_file:
        checks.append(("learning_rate_file", lr_file, "file"))
    for key, path, kind in checks:
        reason = unwritable_reason(path, kind=kind)
        if reason is not None:
            shown = model if key == "model" else path
            message = f"{key} {shown!r} cannot be written: {reason}"
            if key == "--out":
                raise OutputPathError(message)
            raise OutputPathError(message, config.filename, config.line_of(key))
