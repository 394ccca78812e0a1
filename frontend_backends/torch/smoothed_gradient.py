r"""PyTorch kernels of the fused gradient-smoothing path ``log_softmax -> scaled_gradient_ext -> cross entropy``.

See ``Backend.log_softmax_smoothed_gradient`` and ``Backend.log_softmax_smoothed_nll`` for the maths. With the
incoming gradient ``g`` of the log-probabilities ``lp = log_softmax(z)``, the smoothed gradient
``g' = g * scale + shift * S``, ``S = sum(|g| * w)`` and the log-softmax backward give

    dz = g' - exp(lp) * T,      T = sum(g') = sum(g * scale) + S * sum(shift)

over the class axis. :class:`LogSoftmaxSmoothedGradient` (any consumer, dense ``g``) builds ``g'`` and runs ATen's
log-softmax backward on it in place. :class:`LogSoftmaxSmoothedNLL` is the same when the consumer is
``-lp[target]``: then ``g = -dl * onehot(y)``, so ``S = |dl| * w_y``, ``T = -scale_y * dl + S * sum(shift)``, and
``dz = shift * S - exp(lp) * T - scale_y * dl * onehot(y)`` is one pass over ``lp`` (no dense ``g`` at all).
In eager mode both write their result in place into their one output buffer; under ``torch.compile`` they are
functional expressions that inductor fuses.
"""

from __future__ import annotations

from typing import Any

import torch

from frontend_backends.torch.custom_ops import is_compiling, large_empty


def _tensor_or_none(v: Any) -> torch.Tensor | None:
    return v if isinstance(v, torch.Tensor) else None


def _restore(saved: tuple, constants: list) -> list:
    return [t if c is None else c for t, c in zip(saved, constants)]


class LogSoftmaxSmoothedGradient(torch.autograd.Function):
    """``log_probs`` in the forward pass; the smoothed gradient, through the log-softmax, to ``logits``."""

    @staticmethod
    def forward(ctx, logits, log_probs, scale, shift, sum_weight, axis):  # noqa: D102
        values = (scale, shift, sum_weight)
        ctx.save_for_backward(log_probs, *map(_tensor_or_none, values))
        ctx.constants = [None] + [None if isinstance(v, torch.Tensor) else v for v in values]
        ctx.axis = axis
        return log_probs.view_as(log_probs)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        log_probs, scale, shift, sum_weight = _restore(ctx.saved_tensors, ctx.constants)
        axis = ctx.axis
        total_abs = _weighted_abs_sum(grad, axis, sum_weight)
        if is_compiling():
            smoothed = grad * scale + shift * total_abs
            out = smoothed - log_probs.exp() * smoothed.sum(axis, keepdim=True)
        else:
            smoothed = _smooth_in_new_buffer(grad, scale, shift, total_abs)
            out = torch.ops.aten._log_softmax_backward_data.out(  # in place: each row is summed before it is written
                smoothed, log_probs, axis, log_probs.dtype, out=smoothed
            )
        return out, None, None, None, None, None


def _weighted_abs_sum(grad, axis: int, sum_weight) -> torch.Tensor:
    """:return: ``sum(|grad| * sum_weight, axis, keepdim=True)`` (no temporary without ``sum_weight``)"""
    if sum_weight is None:
        return torch.linalg.vector_norm(grad, 1, dim=axis, keepdim=True)
    return (grad.abs() * sum_weight).sum(axis, keepdim=True)


def _smooth_in_new_buffer(grad, scale, shift, total_abs) -> torch.Tensor:
    """:return: ``grad * scale + shift * total_abs`` in one fresh buffer (``grad`` may be shared: never written)"""
    out = large_empty(grad.shape, grad.dtype, grad.device)
    if isinstance(shift, torch.Tensor) and torch.broadcast_shapes(shift.shape, total_abs.shape) != total_abs.shape:
        torch.mul(grad, scale, out=out)  # a per-label shift: add it in place rather than building a temporary
        return out.addcmul_(total_abs, shift)
    offset = total_abs * shift
    if isinstance(scale, torch.Tensor):
        return torch.addcmul(offset, grad, scale, out=out)
    return torch.add(offset, grad, alpha=scale, out=out)


class LogSoftmaxSmoothedNLL(torch.autograd.Function):
    """``-log_probs[..., targets]``; the gradient of the smoothed path goes to ``logits`` (class axis last)."""

    @staticmethod
    def forward(ctx, logits, log_probs, targets, scale, shift, sum_weight):  # noqa: D102
        values = (scale, shift, sum_weight)
        ctx.save_for_backward(log_probs, targets, *map(_tensor_or_none, values))
        ctx.constants = [None, None] + [None if isinstance(v, torch.Tensor) else v for v in values]
        return -log_probs.gather(-1, targets.long()[..., None]).squeeze(-1)

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: D102
        log_probs, targets, scale, shift, sum_weight = _restore(ctx.saved_tensors, ctx.constants)
        y = targets.long()[..., None]
        dl = grad_loss.to(log_probs.dtype)[..., None]
        scale_y = _at_targets(scale, y, log_probs)
        total_abs = dl.abs() * _at_targets(1.0 if sum_weight is None else sum_weight, y, log_probs)
        total = total_abs * _sum_over_classes(shift, log_probs.shape[-1]) - scale_y * dl
        at_y = scale_y * dl  # dz = shift * S - exp(lp) * T - scale_y * dl at the target
        if is_compiling():
            hit = torch.arange(log_probs.shape[-1], device=log_probs.device) == y
            out = shift * total_abs - log_probs.exp() * total - torch.where(hit, at_y, 0.0)
        else:
            out = _nll_gradient_in_place(log_probs, y, shift, total_abs, total, at_y)
        return out, None, None, None, None, None


def _at_targets(value, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    """:return: ``value`` (float, or a tensor broadcasting against ``like``) at the target labels ``y``, keepdim"""
    if not isinstance(value, torch.Tensor) or value.shape[-1] == 1:
        return value
    return value.expand(like.shape).gather(-1, y)


def _sum_over_classes(value, num_classes: int):
    """:return: the sum over the class axis of ``value`` broadcast to ``num_classes`` classes, keepdim"""
    if not isinstance(value, torch.Tensor) or value.shape[-1] == 1:
        return value * num_classes
    return value.sum(-1, keepdim=True)


def _nll_gradient_in_place(log_probs, y, shift, total_abs, total, at_y) -> torch.Tensor:
    """:return: ``shift * total_abs - exp(log_probs) * total - at_y * onehot(y)`` in one new buffer"""
    out = torch.exp(log_probs, out=large_empty(log_probs.shape, log_probs.dtype, log_probs.device))
    if isinstance(shift, torch.Tensor) and shift.shape[-1] != 1:
        out.mul_(-total).addcmul_(total_abs, shift)
    else:
        torch.addcmul(total_abs * shift, out, -total, out=out)
    return out.scatter_add_(-1, y, -at_y.expand(y.shape).to(out.dtype))
