"""PyTorch backend. Imports torch at the top: this module is imported only once the backend is used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from frontend_backends.base import Backend
from frontend_backends.torch import ctc, custom_ops, linear_ce, losses, nn, sequences, smoothed_gradient
from frontend_backends.torch.array import TorchArrayKernels

_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}

_UNARY = {
    "neg": torch.neg,
    "abs": torch.abs,
    "exp": torch.exp,
    "log": torch.log,
    "log1p": torch.log1p,
    "sqrt": torch.sqrt,
    "square": torch.square,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "logical_not": torch.logical_not,
    "sin": torch.sin,
    "cos": torch.cos,
    "expm1": torch.expm1,
    "rsqrt": torch.rsqrt,
    "reciprocal": torch.reciprocal,
    "ceil": torch.ceil,
    "floor": torch.floor,
    "round": torch.round,  # halves to even
}


def _scalar_like(value: Any, like: Any) -> Any:
    """:return: the Python number ``value`` as a 0-d tensor on ``like``'s device, in ``like``'s dtype where that
    keeps its value's kind (a float64 tensor gets a float64 scalar: 0.1 stays 0.1, not float32's 0.100000001)"""
    keep = like.is_floating_point() or not isinstance(value, float)
    return torch.tensor(value, dtype=like.dtype if keep and like.dtype != torch.bool else None, device=like.device)


def _is_compiling() -> bool:
    return custom_ops.is_compiling()


class _ScaledGradientExt(torch.autograd.Function):
    """Identity forward; the backward pass rescales and shifts the gradient (see ``Backend.scaled_gradient_ext``).

    Tensor-valued ``scale``, ``shift`` and ``sum_weight`` go through ``save_for_backward``; float values
    are kept on ``ctx``.
    """

    @staticmethod
    def forward(ctx, x, scale, shift, sum_axis, sum_weight):  # noqa: D102
        tensors = [v if isinstance(v, torch.Tensor) else None for v in (scale, shift, sum_weight)]
        ctx.save_for_backward(*tensors)
        ctx.consts = [None if isinstance(v, torch.Tensor) else v for v in (scale, shift, sum_weight)]
        ctx.sum_axis = sum_axis
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        scale, shift, sum_weight = (
            saved if saved is not None else const for saved, const in zip(ctx.saved_tensors, ctx.consts)
        )
        return _scaled_grad(grad, scale, shift, ctx.sum_axis, sum_weight), None, None, None, None


def _scaled_grad(grad, scale, shift, sum_axis, sum_weight) -> torch.Tensor:
    """:return: ``grad * scale + shift * sum(|grad| * sum_weight, sum_axis)`` in one fresh buffer.

    One reduction (``|grad|`` is summed without a temporary when there is no ``sum_weight``) and one fused
    multiply-add that writes the result; ``grad`` itself is never modified (autograd may share it).
    """
    if shift is None:
        return grad if isinstance(scale, float) and scale == 1.0 else grad * scale
    if sum_axis is not None:
        if sum_weight is None:
            total = torch.linalg.vector_norm(grad, 1, dim=sum_axis, keepdim=True)
        else:
            total = grad.abs().mul_(sum_weight).sum(dim=sum_axis, keepdim=True)
        if isinstance(shift, float) or torch.broadcast_shapes(shift.shape, total.shape) == total.shape:
            shift = total * shift
        else:  # e.g. a per-label shift: add it in place rather than building a full-size temporary
            return (grad * scale).addcmul_(total, shift)
    if not isinstance(shift, torch.Tensor):
        shift = torch.tensor(shift, dtype=grad.dtype, device=grad.device)
    if isinstance(scale, torch.Tensor):
        return torch.addcmul(shift, grad, scale)
    return torch.add(shift, grad, alpha=scale)


class TorchBackend(TorchArrayKernels, Backend):
    """The PyTorch backend."""

    name = "torch"

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def convert(self, value: Any, dtype: str | None = None, like: Any = None) -> Any:
        device = like.device if like is not None else None
        if isinstance(value, torch.Tensor):
            out = value.clone() if device is None else value.to(device, copy=True)
        else:  # a fresh copy (torch.tensor would warn under torch.compile); None: the default device
            out = torch.as_tensor(np.array(value), device=device)
        return out if dtype is None else out.to(_DTYPES[dtype])

    def to_device_of(self, x: Any, like: Any) -> Any:
        return x if x.device == like.device else x.to(like.device, non_blocking=True)

    def to_device(self, x: Any, device: str) -> Any:
        return x if x.device == torch.device(device) else x.to(device)  # blocking: safe also from a GPU

    def device_name(self, x: Any) -> str:
        return str(x.device)

    def edit_distance(self, a: Any, a_lens: Any, b: Any, b_lens: Any) -> Any:
        return sequences.edit_distance(a, a_lens, b, b_lens)

    def set_requires_gradient(self, x: Any) -> None:
        if not x.requires_grad:
            x.requires_grad_(True)

    def gradient(self, y: Any, x: Any) -> Any:
        if not x.requires_grad:
            raise ValueError("gradient: x does not require a gradient: call set_requires_gradient(x) before "
                             "computing y from x")  # fmt: skip
        (grad,) = torch.autograd.grad(y, x, create_graph=True, allow_unused=True)
        return torch.zeros_like(x) if grad is None else grad

    def create_parameter(self, value: np.ndarray, trainable: bool) -> Any:
        value = torch.tensor(np.array(value), device=None)  # the default device: with torch.device(...) sets it
        return torch.nn.Parameter(value, requires_grad=trainable and (value.is_floating_point() or value.is_complex()))

    def move_parameter(self, param: Any, device: str) -> None:
        with torch.no_grad():
            param.data = param.data.to(device)

    def assign_parameter(self, param: Any, value: Any) -> None:
        with torch.no_grad():
            param.copy_(value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value)))

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def is_concrete(self, x: Any) -> bool:
        return not _is_compiling()

    def concrete_value(self, x: Any) -> np.ndarray | None:
        if _is_compiling():
            return None
        return x.detach().cpu().numpy()

    def dtype(self, x: Any) -> str:
        return str(x.dtype).rsplit(".", 1)[-1]

    def shape(self, x: Any) -> tuple[int | None, ...]:
        return tuple(x.shape)

    def axis_size(self, x: Any, axis: int) -> Any:
        return x.shape[axis]

    def arange(self, n: Any, dtype: str, like: Any = None) -> Any:
        return torch.arange(n, dtype=_DTYPES[dtype], device=like.device if like is not None else None)

    def cast(self, x: Any, dtype: str) -> Any:
        return x.to(_DTYPES[dtype])

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        return x.permute(*perm)

    def expand_dims(self, x: Any, axis: int) -> Any:
        return x.unsqueeze(axis)

    def binary(self, op: str, a: Any, b: Any) -> Any:
        if op in ("maximum", "minimum"):
            fn = torch.maximum if op == "maximum" else torch.minimum
            like = a if isinstance(a, torch.Tensor) else b
            a, b = (v if isinstance(v, torch.Tensor) else _scalar_like(v, like) for v in (a, b))
            return fn(a, b)
        return super().binary(op, a, b)

    def unary(self, op: str, x: Any) -> Any:
        return _UNARY[op](x)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return torch.where(cond, a, b)

    def reduce(self, op: str, x: Any, axes: Sequence[int], keepdims: bool = False) -> Any:
        axes = tuple(axes)
        if not axes:
            return x
        if op in ("max", "min"):
            return torch.amax(x, dim=axes, keepdim=keepdims) if op == "max" else torch.amin(x, axes, keepdims)
        if op in ("any", "all"):
            fn = torch.any if op == "any" else torch.all
            for axis in sorted(axes, reverse=True):
                x = fn(x, dim=axis, keepdim=keepdims)
            return x
        fn = {"sum": torch.sum, "mean": torch.mean, "logsumexp": torch.logsumexp}[op]
        return fn(x, dim=axes, keepdim=keepdims)

    def log_softmax(self, x: Any, axis: int) -> Any:
        return torch.log_softmax(x, dim=axis)

    def softmax(self, x: Any, axis: int) -> Any:
        return torch.softmax(x, dim=axis)

    def gather_last(self, x: Any, indices: Any) -> Any:
        return x.gather(-1, indices.long().unsqueeze(-1)).squeeze(-1)

    def matmul(self, a: Any, b: Any) -> Any:
        return torch.matmul(a, b)

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def scaled_gradient_ext(self, x: Any, scale: Any, shift: Any, sum_axis: int | None, sum_weight: Any = None) -> Any:
        return _ScaledGradientExt.apply(x, scale, shift, sum_axis, sum_weight)

    def log_softmax_smoothed_gradient(
        self, logits: Any, log_probs: Any, axis: int, scale: Any, shift: Any, sum_weight: Any = None
    ) -> Any:
        shift = 0.0 if shift is None else shift
        return smoothed_gradient.LogSoftmaxSmoothedGradient.apply(
            logits, log_probs.detach(), scale, shift, sum_weight, axis
        )

    def log_softmax_smoothed_nll(
        self, logits: Any, log_probs: Any, targets: Any, scale: Any, shift: Any, sum_weight: Any = None
    ) -> Any:
        shift = 0.0 if shift is None else shift
        if logits.device.type == "cuda":  # the Triton kernels (imported only for CUDA tensors) where they apply
            from frontend_backends.torch import triton_ops

            if triton_ops.use_triton(logits) and triton_ops.supports_factors(logits, scale, shift, sum_weight):
                return triton_ops.log_softmax_smoothed_nll(logits, targets, scale, shift, sum_weight)
        return smoothed_gradient.LogSoftmaxSmoothedNLL.apply(
            logits, log_probs.detach(), targets, scale, shift, sum_weight
        )

    def label_smoothed_cross_entropy(self, logits, targets, off, on, weight, z_loss, mask) -> Any:
        return losses.label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask)

    def ctc_loss(self, logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity) -> Any:
        return ctc.ctc_loss(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity)

    def linear_label_smoothed_cross_entropy(self, hidden, weight, bias, targets, off, on, v, mask, chunk) -> Any:
        return linear_ce.linear_label_smoothed_cross_entropy(hidden, weight, bias, targets, off, on, v, mask, chunk)

    # -- layers (frontend_backends.torch.nn) --------------------------------------------------------------------

    def activation(self, x: Any, name: str, alpha: float = 0.0) -> Any:
        return nn.activation(x, name, alpha)

    def linear(self, x: Any, weight: Any, bias: Any) -> Any:
        return nn.linear(x, weight, bias)

    def embedding(self, weight: Any, indices: Any) -> Any:
        return nn.embedding(weight, indices)

    def layer_norm(self, x: Any, scale: Any, bias: Any, num_axes: int, eps: float) -> Any:
        return nn.layer_norm(x, scale, bias, num_axes, eps)

    def conv1d(self, x: Any, filter: Any, bias: Any, padding, stride: int, dilation: int, groups: int = 1) -> Any:  # noqa: A002
        return nn.conv1d(x, filter, bias, padding, stride, dilation, groups)

    def pool1d(self, x: Any, mode: str, pool_size: int, stride: int, dilation: int, padding) -> Any:
        return nn.pool1d(x, mode, pool_size, stride, dilation, padding)

    def lstm(self, x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse) -> tuple[Any, Any, Any]:
        return nn.lstm(x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse)

    def zoneout_lstm(self, x, lengths, h0, c0, rec_weight, **options) -> tuple[Any, Any, Any]:
        return nn.zoneout_lstm(x, lengths, h0, c0, rec_weight, **options)

    def random_generator(self, seed: int) -> Any:
        return torch.Generator().manual_seed(seed)

    def seed_generator(self, generator: Any, seed: int) -> None:
        generator.manual_seed(seed)

    def dropout(self, x: Any, drop_prob: float, broadcast_axes: Sequence[int], generator: Any) -> Any:
        return nn.dropout(x, drop_prob, broadcast_axes, generator)

    def masked_select(self, x: Any, mask: Any) -> Any:
        return nn.masked_select(x, mask)

    def arg_reduce(self, op: str, x: Any, axis: int) -> Any:
        return (torch.argmax if op == "argmax" else torch.argmin)(x, dim=axis)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return nn.concat(xs, axis)

    def full(self, shape: Sequence[Any], value: float, dtype: str, like: Any = None) -> Any:
        device = like.device if like is not None else None
        return torch.full([int(n) for n in shape], value, dtype=_DTYPES[dtype], device=device)
