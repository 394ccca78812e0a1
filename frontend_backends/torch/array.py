"""The array primitives on PyTorch (see :class:`frontend_backends.array_kernels.ArrayKernels`), mixed into
:class:`frontend_backends.torch.backend.TorchBackend`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["TorchArrayKernels"]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
           "int32": torch.int32, "int64": torch.int64, "bool": torch.bool}  # fmt: skip


def _ints(shape: Sequence[Any]) -> list[int]:
    """:return: ``shape`` as Python ints (torch wants ints; a scalar size tensor is read, see the module doc of
    :mod:`frontend_backends.array_kernels`)"""
    return [int(n) for n in shape]


def _draw(shape: list[int], distribution: str, dtype: torch.dtype, a: float, b: float, generator) -> torch.Tensor:
    """:return: the random numbers, on the generator's device"""
    device = generator.device
    if distribution == "uniform" and not dtype.is_floating_point:
        return torch.randint(int(a), int(b), shape, generator=generator, dtype=dtype, device=device)
    if distribution == "uniform":
        return torch.rand(shape, generator=generator, dtype=dtype, device=device) * (b - a) + a
    return torch.randn(shape, generator=generator, dtype=dtype, device=device) * b + a


class TorchArrayKernels:
    """The PyTorch implementations of the array primitives (docstrings: ``ArrayKernels``)."""

    def full_on_device(self, shape: Sequence[Any], value: float, dtype: str, device: str) -> Any:
        return torch.full(_ints(shape), value, dtype=_DTYPES[dtype], device=device)

    def broadcast_to(self, x: Any, shape: Sequence[Any]) -> Any:
        return x.expand(_ints(shape))

    def random(self, shape, distribution: str, dtype: str, a: float, b: float, generator, like=None) -> Any:
        out = _draw(_ints(shape), distribution, _DTYPES[dtype], a, b, generator)
        device = like.device if like is not None else torch.get_default_device()
        return out if out.device == device else out.to(device)  # a CPU generator cannot fill a CUDA tensor

    def reshape(self, x: Any, shape: Sequence[Any]) -> Any:
        return x.reshape(_ints(shape))

    def squeeze(self, x: Any, axis: int) -> Any:
        return x.squeeze(axis)

    def slice(self, x: Any, axis: int, start, stop, step) -> Any:  # noqa: A003
        return x[(slice(None),) * axis + (slice(start, stop, step),)]

    def pad(self, x: Any, pads: Sequence[tuple[Any, Any]], value: Any) -> Any:
        flat = [int(n) for pair in reversed(list(pads)) for n in pair]  # F.pad: the last axis first
        if not any(flat):
            return x
        return F.pad(x, flat, mode="constant", value=value)

    def gather(self, x: Any, indices: Any, batch_axes: int) -> Any:
        batch, size, feature = x.shape[:batch_axes], x.shape[batch_axes], x.shape[batch_axes + 1 :]
        inner = indices.shape[batch_axes:]
        n, m = math.prod(batch), math.prod(inner)
        index = indices.reshape(n, m).to(x.device, torch.int64, non_blocking=True)
        if batch_axes:  # one flat gather: row b of the index looks into rows [b * size, (b+1) * size) of x
            index = index + (torch.arange(n, device=x.device) * size)[:, None]
        out = x.reshape((n * size,) + tuple(feature)).index_select(0, index.reshape(-1))
        return out.reshape(tuple(batch) + tuple(inner) + tuple(feature))

    def flip(self, x: Any, axis: int) -> Any:
        return torch.flip(x, [axis])

    def cumsum(self, x: Any, axis: int) -> Any:
        return torch.cumsum(x, dim=axis, dtype=x.dtype)

    def top_k(self, x: Any, k: Any, sorted: bool) -> tuple[Any, Any]:  # noqa: A002
        values, indices = torch.topk(x, int(k), dim=-1, largest=True, sorted=sorted)
        if sorted and values.shape[-1] > 1:  # torch.topk orders equal values arbitrarily: the lower index first
            by_index = torch.argsort(indices, dim=-1)
            values, indices = values.gather(-1, by_index), indices.gather(-1, by_index)
            order = torch.sort(values, dim=-1, descending=True, stable=True).indices
            values, indices = values.gather(-1, order), indices.gather(-1, order)
        return values, indices

    def sort(self, x: Any, descending: bool) -> tuple[Any, Any]:
        values, indices = torch.sort(x, dim=-1, descending=descending, stable=True)
        return values, indices

    def search_sorted(self, sorted_seq: Any, values: Any, side: str, dtype: str) -> Any:
        out = torch.searchsorted(sorted_seq.contiguous(), values.contiguous(), side=side, out_int32=dtype == "int32")
        return out

    def scatter(self, x: Any, indices: Any, size: Any, mode: str, fill_value: float | int) -> Any:
        index = indices.to(x.device, torch.int64)
        out = torch.zeros((int(size),) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
        if mode == "sum":
            out = out.index_add(0, index, x)
        else:
            wide = index.reshape((-1,) + (1,) * (x.dim() - 1)).expand(x.shape)
            out = out.scatter_reduce(0, wide, x, "amax" if mode == "max" else "amin", include_self=False)
        hit = torch.zeros(int(size), dtype=torch.bool, device=x.device).index_fill(0, index, True)
        fill = torch.full((), fill_value, dtype=x.dtype, device=x.device)
        return torch.where(hit.reshape((-1,) + (1,) * (x.dim() - 1)), out, fill)

    def einsum(self, equation: str, *operands: Any) -> Any:
        return torch.einsum(equation, *operands)

    def clip(self, x: Any, lo: Any, hi: Any) -> Any:
        if isinstance(lo, torch.Tensor) != isinstance(hi, torch.Tensor) and lo is not None and hi is not None:
            lo, hi = (v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=x.dtype, device=x.device)
                      for v in (lo, hi))  # fmt: skip  - torch.clamp takes two numbers or two tensors
        return torch.clamp(x, lo, hi)

    def log_add_exp(self, a: Any, b: Any) -> Any:
        return torch.logaddexp(a, b)
