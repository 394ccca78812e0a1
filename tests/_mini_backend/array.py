"""The mini backend's array primitives in NumPy (see :class:`frontend_backends.array_kernels.ArrayKernels`), mixed
into :class:`_mini_backend.backend.MiniBackend`: forward only, results are arrays (never numpy scalars)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MiniArrayKernels"]


def _dtype(dtype: str) -> np.dtype:
    from _mini_backend.backend import np_dtype

    return np_dtype(dtype)


class MiniArrayKernels:
    """The NumPy implementations of the array primitives (docstrings: ``ArrayKernels``)."""

    def full_on_device(self, shape: Sequence[Any], value: float, dtype: str, device: str) -> Any:
        return np.full([int(n) for n in shape], value, dtype=_dtype(dtype))

    def broadcast_to(self, x: Any, shape: Sequence[Any]) -> Any:
        return np.array(np.broadcast_to(x, tuple(int(n) for n in shape)))

    def random(self, shape, distribution: str, dtype: str, a: float, b: float, generator, like=None) -> Any:
        shape, target = tuple(int(n) for n in shape), _dtype(dtype)
        if distribution == "uniform" and target.kind == "i":
            return np.asarray(generator.integers(int(a), int(b), size=shape), dtype=target)
        if distribution == "uniform":
            return np.asarray(generator.random(shape) * (b - a) + a, dtype=target)
        return np.asarray(generator.normal(a, b, size=shape), dtype=target)

    def reshape(self, x: Any, shape: Sequence[Any]) -> Any:
        return np.reshape(x, tuple(int(n) for n in shape))

    def slice(self, x: Any, axis: int, start, stop, step) -> Any:  # noqa: A003
        return np.array(x[(slice(None),) * axis + (slice(start, stop, step),)])

    def pad(self, x: Any, pads: Sequence[tuple[Any, Any]], value: Any) -> Any:
        widths = [(int(left), int(right)) for left, right in pads]
        return np.pad(x, widths, constant_values=np.asarray(value).astype(x.dtype))

    def gather(self, x: Any, indices: Any, batch_axes: int) -> Any:
        batch, size, feature = x.shape[:batch_axes], x.shape[batch_axes], x.shape[batch_axes + 1 :]
        inner = indices.shape[batch_axes:]
        n, m = (int(np.prod(shape, dtype=np.int64)) for shape in (batch, inner))
        index = np.asarray(indices, np.int64).reshape(n, m) + (np.arange(n) * size)[:, None]
        out = x.reshape((n * size,) + feature)[index.reshape(-1)]
        return out.reshape(batch + inner + feature)

    def cumsum(self, x: Any, axis: int) -> Any:
        return np.cumsum(x, axis=axis, dtype=x.dtype)

    def top_k(self, x: Any, k: Any, sorted: bool) -> tuple[Any, Any]:  # noqa: A002
        order = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")[..., : int(k)]
        return np.take_along_axis(x, order, -1), order.astype(np.int64)

    def search_sorted(self, sorted_seq: Any, values: Any, side: str, dtype: str) -> Any:
        rows, cols = sorted_seq.reshape(-1, sorted_seq.shape[-1]), values.reshape(-1, values.shape[-1])
        out = np.stack([np.searchsorted(r, c, side=side) for r, c in zip(rows, cols)]) if len(rows) else cols
        return np.asarray(out, _dtype(dtype)).reshape(values.shape)

    def scatter(self, x: Any, indices: Any, size: Any, mode: str, fill_value: float | int) -> Any:
        index = np.asarray(indices, np.int64)
        low, high = (-np.inf, np.inf) if x.dtype.kind == "f" else (np.iinfo(x.dtype).min, np.iinfo(x.dtype).max)
        start = {"sum": 0, "max": low, "min": high}[mode]  # every reduction keeps it
        out = np.full((int(size),) + x.shape[1:], start, x.dtype)
        {"sum": np.add, "max": np.maximum, "min": np.minimum}[mode].at(out, index, x)
        hit = np.zeros(int(size), bool)
        hit[index] = True
        return np.where(hit.reshape((-1,) + (1,) * (x.ndim - 1)), out, np.asarray(fill_value).astype(x.dtype))

    def einsum(self, equation: str, *operands: Any) -> Any:
        return np.asarray(np.einsum(equation, *operands))

    def log_add_exp(self, a: Any, b: Any) -> Any:
        return np.asarray(np.logaddexp(a, b))
