"""PyTorch trainer: leaf tensors with ``requires_grad``, ``torch.autograd.grad``, in-place updates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from frontend_backends.train_base import Trainer


class TorchTrainer(Trainer):
    """The :class:`Trainer` of the torch backend."""

    name = "torch"

    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: torch.tensor(np.asarray(v, dtype=np.float32), requires_grad=True) for k, v in arrays.items()}

    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        value = fn(variables)
        keys = list(variables)
        grads = torch.autograd.grad(value, [variables[k] for k in keys], allow_unused=True)
        out = {k: g if g is not None else torch.zeros_like(variables[k]) for k, g in zip(keys, grads)}
        return value.detach(), out

    def assign(self, variable: Any, value: Any) -> None:
        with torch.no_grad():
            variable.copy_(value)

    def zeros_like(self, variable: Any) -> Any:
        return torch.zeros_like(variable, requires_grad=False)

    def sqrt(self, x: Any) -> Any:
        return torch.sqrt(x)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    @contextmanager
    def no_grad(self) -> Iterator[None]:
        with torch.no_grad():
            yield
