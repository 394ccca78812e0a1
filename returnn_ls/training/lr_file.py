"""RETURNN's ``learning_rate_file``: per epoch the learning rate and the scores, as a Python-like text.

The format (what RETURNN writes and reads)::

    {
    1: EpochData(learningRate=0.01, error={
    'dev_error': 0.13,
    'dev_score': 0.21,
    'train_score': 0.32,
    }),
    }

RETURNN reads such a file with ``eval``; here it is parsed with :mod:`ast` (only dicts, numbers, strings,
``EpochData(...)``, ``nan``/``inf`` and ``np.float64(...)``-style calls are accepted), so a file is never executed.
Files are written atomically (temporary file, ``fsync``, rename).
"""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpochData", "read_lr_file", "write_lr_file"]


@dataclass
class EpochData:
    """The learning rate of an epoch and its scores (``error``, RETURNN's name), e.g. ``{"dev_score": 0.2}``."""

    learning_rate: float
    error: dict[str, Any] = field(default_factory=dict)


def _repr(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


def format_lr_file(epoch_data: dict[int, EpochData]) -> str:
    """:return: the text of a ``learning_rate_file`` for ``epoch_data`` (RETURNN's layout)"""
    lines = ["{"]
    for epoch in sorted(epoch_data):
        data = epoch_data[epoch]
        lines.append(f"{epoch}: EpochData(learningRate={_repr(float(data.learning_rate))}, error={{")
        lines += [f"{key!r}: {_repr(data.error[key])}," for key in sorted(data.error)]
        lines.append("}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_lr_file(path: str, epoch_data: dict[int, EpochData]) -> None:
    """Write ``epoch_data`` to ``path`` atomically (the folder is created if needed).

    Example: ``write_lr_file("out/lr.txt", {1: EpochData(0.01, {"dev_score": 0.2})})``; RETURNN reads it.
    """
    from returnn_ls.training.checkpoints import atomic_write

    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    atomic_write(path, format_lr_file(epoch_data).encode("utf-8"))


def _value(node: ast.AST, path: str) -> Any:
    """:return: the value of an expression node of a learning-rate file"""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _value(node.operand, path)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return float(node.id)
    if isinstance(node, ast.Dict):
        return {_value(k, path): _value(v, path) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(v, path) for v in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "EpochData":
        kwargs = {k.arg: _value(k.value, path) for k in node.keywords}
        lr = kwargs.get("learningRate", kwargs.get("learning_rate"))
        error = kwargs.get("error") or {}
        error = error if isinstance(error, dict) else {"old_format_score": error}
        error = {k: v for k, v in error.items() if not str(k).startswith(":meta:")}  # RETURNN's extra information
        return EpochData(float(lr), error)
    func = node.func if isinstance(node, ast.Call) else None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy"):
        if len(node.args) == 1 and not node.keywords:
            return _value(node.args[0], path)  # np.float64(0.1) and the like
    raise ValueError(f"learning_rate_file {path!r}: unexpected expression at line {getattr(node, 'lineno', '?')}")


def read_lr_file(path: str) -> dict[int, EpochData]:
    """:return: the epoch data of the ``learning_rate_file`` ``path`` (written by RETURNN or by this module)

    Example: ``read_lr_file("out/lr.txt")[1].learning_rate``

    :raise ValueError: if the file is not in RETURNN's format
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(
            f"learning_rate_file {path!r} is not in RETURNN's format: {exc.msg} (line {exc.lineno})"
        ) from None
    data = _value(tree.body, path)
    if not isinstance(data, dict) or not all(isinstance(v, EpochData) for v in data.values()):
        raise ValueError(f"learning_rate_file {path!r}: expected {{epoch: EpochData(...), ...}}")
    return {int(k): v for k, v in data.items()}
