"""Checkpoints ``<model>.001``, ``<model>.002``, ...: everything needed to continue training exactly.

A checkpoint is a zip file (uncompressed) with

- ``checkpoint.json``: format and version, the epoch and global step it ends, the backend, the parameter names,
  the optimizer's metadata, the learning-rate control state (every epoch's learning rate and scores), the
  metrics history, the seed (the data order and the random generators of an epoch are functions of the seed and
  the epoch), and the config file it came from;
- ``params/<i>.npy``: the parameters (numpy, backend-neutral), in the order of the names in the JSON;
- ``optimizer/<key>.npy``: the optimizer's state tensors (moments, step counts).

It is written atomically: into a temporary file in the same folder, ``fsync``, rename, ``fsync`` of the folder;
so a checkpoint either exists completely or not at all. Reading checks the zip's CRCs: a truncated or damaged
file is reported and the checkpoint before it is used.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FORMAT", "Checkpoint", "atomic_write", "checkpoint_path", "find_checkpoints", "load_latest",
           "save_checkpoint"]  # fmt: skip

FORMAT = "returnn_ls-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: its path, metadata (``checkpoint.json``), parameters and optimizer arrays."""

    path: str
    meta: dict[str, Any]
    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]

    @property
    def epoch(self) -> int:
        """:return: the last epoch this checkpoint completes"""
        return int(self.meta["epoch"])


def checkpoint_path(prefix: str, epoch: int) -> str:
    """:return: ``<prefix>.001`` for epoch 1 (RETURNN's naming)"""
    return f"{prefix}.{epoch:03d}"


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes | Callable[[Any], None]) -> None:
    """Write ``path`` atomically: a temporary file in the same folder, ``fsync``, rename, ``fsync`` of the folder.

    :param data: the bytes, or a function that writes into the open binary file
    """
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data) if isinstance(data, bytes) else data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(os.path.dirname(path))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_checkpoint(prefix: str, epoch: int, meta: dict[str, Any], params: dict[str, np.ndarray],
                    optimizer: dict[str, np.ndarray]) -> str:  # fmt: skip
    """Write the checkpoint of ``epoch`` to ``<prefix>.<epoch:03d>`` atomically; :return: its path

    Example: ``save_checkpoint("out/model", 3, {"backend": "torch"}, {"w": w}, {})`` writes ``out/model.003``.
    """
    path = checkpoint_path(prefix, epoch)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    names = list(params)
    meta = {"format": FORMAT, "version": VERSION, **meta, "epoch": epoch, "parameters": names,
            "optimizer_arrays": list(optimizer)}  # fmt: skip

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("checkpoint.json", json.dumps(meta, indent=1))
            for i, name in enumerate(names):
                z.writestr(f"params/{i}.npy", _npy(params[name]))
            for i, key in enumerate(optimizer):
                z.writestr(f"optimizer/{i}.npy", _npy(optimizer[key]))

    atomic_write(path, write)
    return path


def find_checkpoints(prefix: str) -> list[tuple[int, str]]:
    """:return: ``(epoch, path)`` of the files ``<prefix>.NNN``, newest first"""
    folder, base = os.path.split(prefix)
    if not os.path.isdir(folder or "."):
        return []
    pattern = re.compile(re.escape(base) + r"\.(\d{3,})$")
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in os.listdir(folder or ".") if (m := pattern.match(n))]
    return sorted(found, reverse=True)


def read_checkpoint(path: str) -> Checkpoint:
    """:return: the checkpoint in ``path``

    :raise ValueError: if it is truncated, damaged or not a checkpoint of this format
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                raise ValueError(f"member {bad} fails its CRC check")
            meta = json.loads(z.read("checkpoint.json"))
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ValueError(f"not a {FORMAT} version {VERSION} file")
            params = {n: np.load(io.BytesIO(z.read(f"params/{i}.npy"))) for i, n in enumerate(meta["parameters"])}
            opt = {k: np.load(io.BytesIO(z.read(f"optimizer/{i}.npy"))) for i, k in enumerate(meta["optimizer_arrays"])}
    except (zipfile.BadZipFile, OSError, KeyError, EOFError, json.JSONDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return Checkpoint(path, meta, params, opt)


def load_latest(prefix: str, warn: Callable[[str], None]) -> Checkpoint | None:
    """:return: the newest complete checkpoint at ``prefix`` (None if there is none); each damaged newer one is
    reported through ``warn`` and skipped

    Example: ``checkpoint = load_latest("out/model", print)``; then ``checkpoint.epoch``, ``checkpoint.params``
    """
    for _, path in find_checkpoints(prefix):
        try:
            return read_checkpoint(path)
        except ValueError as exc:
            warn(f"checkpoint {path} is incomplete or damaged ({exc}); using the one before it")
    return None
