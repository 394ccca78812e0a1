"""PyTorch kernel of the fused projection + label-smoothed CE: ``returnn_ls::linear_label_smoothed_cross_entropy``.

The ``[frames, K]`` logits never exist in full. The forward pass goes over chunks of frames: logits of the chunk
(one matmul), loss and softmax as in :mod:`frontend_backends.torch.losses`, and, when gradients are wanted, the
chunk's gradient ``G = softmax - q`` for an upstream gradient of 1, multiplied right away into the gradients of
``hidden`` (``G @ weight^T``), ``weight`` (``hidden^T @ G``, accumulated) and ``bias``: three matmuls per chunk,
as many as the unfused projection + CE. The backward pass scales them by the upstream gradient ``dl``: the
hidden gradient row by row (exact for any ``dl``); the weight and bias gradients by one factor when ``dl`` is
the same on all frames (``loss.sum()``, ``loss.mean()``), else they are recomputed chunk by chunk from the
saved per-frame ``logsumexp`` with ``dl`` folded into ``G`` (one matmul more per chunk). See
``frontend_backends.base.Backend.linear_label_smoothed_cross_entropy``.

On CUDA (:func:`_use_triton`) both passes take :mod:`frontend_backends.torch.linear_ce_cuda` instead: the same
chunks, with the loss and the logit gradient of each chunk from the Triton kernels, the logits in the input dtype,
and at most one host sync per backward call (none in the forward pass).
"""

from __future__ import annotations

import torch

from frontend_backends.torch.custom_ops import (
    NAMESPACE,
    compute_dtype,
    is_compiling,
    large_empty,
    register_buffer_autograd,
)
from frontend_backends.torch.losses import gradient_rows_in_place, loss_rows


def _use_triton(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    """:return: whether the op runs through :mod:`frontend_backends.torch.linear_ce_cuda`: ``hidden`` a tensor the
    Triton kernels take (:func:`frontend_backends.torch.triton_ops.use_triton`: CUDA, not float64, triton installed,
    not switched off) and ``weight`` not float64. Imports ``triton_ops`` only for CUDA tensors."""
    if hidden.device.type != "cuda":
        return False
    from frontend_backends.torch import triton_ops

    return triton_ops.use_triton(hidden) and weight.dtype != torch.float64


def _cuda():
    """:return: the module :mod:`frontend_backends.torch.linear_ce_cuda` (imported at the first call: it imports
    triton)"""
    from frontend_backends.torch import linear_ce_cuda

    return linear_ce_cuda


def _logits(h, w, b, out: torch.Tensor | None) -> torch.Tensor:
    """:return: ``h @ w + b`` of one chunk, in the compute dtype; written into ``out`` (a buffer reused for every
    chunk, so that no chunk allocates and page-faults a fresh buffer) where the dtypes allow"""
    if out is None or out.dtype != h.dtype:
        z = h @ w if b is None else torch.addmm(b, h, w)
        return z.to(compute_dtype(z))
    out = out[: h.shape[0]]
    return torch.mm(h, w, out=out) if b is None else torch.addmm(b, h, w, out=out)


def _chunk_buffer(h: torch.Tensor, chunk: int, num_labels: int) -> torch.Tensor:
    """:return: a buffer for the values of ``chunk`` frames over the labels, in the compute dtype"""
    return large_empty((min(chunk, h.shape[0]), num_labels), compute_dtype(h), h.device)


def _coefficients(y, off, on, v, num_labels: int, cdt):
    """:return: per-frame ``(coef, off_y, on_y)`` with ``coef = off_y * V + on_y`` (the mass of the target)"""
    off_y, on_y = off[y].to(cdt), on[y].to(cdt)
    return off_y * (float(num_labels) if v is None else v.to(cdt).sum()) + on_y, off_y, on_y


def _empty_grads(hidden, weight, bias, needs, fake: bool = False):
    """:return: the (hidden, weight, bias) gradient buffers, zero, in the compute dtype; empty where not needed
    (``fake``: for the fake kernel, without huge pages).

    The weight's gradient has the weight's strides: for a weight stored ``[K, H]`` and passed transposed, the
    gradient that reaches the parameter is then contiguous, and autograd keeps it instead of copying it.
    """
    cdt = compute_dtype(hidden)
    if fake:
        weight_grad = torch.empty_like(weight, dtype=cdt)  # preserves the strides
    elif weight.dim() == 2 and weight.stride(0) == 1 and weight.stride(1) == weight.shape[0]:  # transposed
        weight_grad = large_empty(weight.shape[::-1], cdt, weight.device).T.zero_()
    else:
        weight_grad = large_empty(weight.shape, cdt, weight.device).zero_()
    grads = [
        hidden.new_zeros(hidden.reshape(-1, hidden.shape[-1]).shape, dtype=cdt),
        weight_grad,
        weight.new_zeros(weight.shape[-1:], dtype=cdt),
    ]
    return [g if need else hidden.new_empty((0,), dtype=cdt) for g, need in zip(grads, needs)]


@torch.library.custom_op(f"{NAMESPACE}::linear_label_smoothed_cross_entropy", mutates_args=())
def _linear_ce(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, off: torch.Tensor,
    on: torch.Tensor, v: torch.Tensor | None, mask: torch.Tensor | None, chunk: int, needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """:return: loss ``[*S]``, lse ``[N]``, and the gradients of hidden ``[N, H]``, weight, bias for ``dl = 1``"""
    h, y = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1).long()
    cdt, num_labels = compute_dtype(h), weight.shape[-1]
    valid = None if mask is None else mask.expand(hidden.shape[:-1]).reshape(-1)
    loss, lse = h.new_empty(h.shape[0], dtype=cdt), h.new_empty(h.shape[0], dtype=cdt)
    dh, dw, db = _empty_grads(hidden, weight, bias, needs)
    if _use_triton(hidden, weight):
        _cuda().forward((hidden, weight, bias, targets, off, on, v, mask, chunk, needs), loss, lse, (dh, dw, db))
        return loss.view(hidden.shape[:-1]), lse, dh, dw, db
    logits = _chunk_buffer(h, chunk, num_labels)
    probs = _chunk_buffer(h, chunk, num_labels) if any(needs) else None
    for s in range(0, h.shape[0], chunk):
        rows = slice(s, s + chunk)
        p = None if probs is None else probs[: h[rows].shape[0]]
        loss[rows], lse[rows] = loss_rows(_logits(h[rows], weight, bias, logits), y[rows], off, on, v, 0.0, p)
        if p is not None:
            coef, off_y, on_y = _coefficients(y[rows], off, on, v, num_labels, cdt)
            g = gradient_rows_in_place(p, y[rows], coef, off_y, on_y, v, None if valid is None else valid[rows])
            _accumulate(g, h[rows], weight, needs, dh[rows] if needs[0] else None, dw, db)
    if valid is not None:
        loss.masked_fill_(~valid, 0.0)
    return loss.view(hidden.shape[:-1]), lse, dh, dw, db


def _accumulate(g, h, weight, needs, dh_rows, dw, db) -> None:
    """Multiply the chunk's logit gradient ``g`` into the gradients of hidden (rows), weight and bias."""
    if needs[0]:
        torch.mm(g, weight.T.to(g.dtype), out=dh_rows)
    if needs[1]:
        dw.addmm_(h.T.to(g.dtype), g)
    if needs[2]:
        db.add_(g.sum(0))


@_linear_ce.register_fake
def _(hidden, weight, bias, targets, off, on, v, mask, chunk, needs):
    cdt, frames = compute_dtype(hidden), hidden.reshape(-1, hidden.shape[-1]).shape[0]
    return (hidden.new_empty(hidden.shape[:-1], dtype=cdt), hidden.new_empty((frames,), dtype=cdt),
            *_empty_grads(hidden, weight, bias, needs, fake=True))  # fmt: skip


def _finish(inputs, lse, dl, grads) -> None:
    """Scale the gradients ``grads`` of hidden, weight and bias (made for ``dl = 1``) in place by the upstream
    per-frame gradient ``dl``"""
    hidden, needs, mask = inputs[0], inputs[-1], inputs[7]
    if _use_triton(hidden, inputs[1]):
        _cuda().finish(inputs, lse, dl, grads)
        return
    valid = None if mask is None else mask.expand(hidden.shape[:-1]).reshape(-1)
    dh, dw, db = grads
    if needs[0]:
        dh.mul_(dl[:, None])
    scale = _common_value(dl, valid)
    if scale is not None:
        for grad, need in zip((dw, db), needs[1:]):
            if need:
                grad.mul_(scale)
    elif needs[1] or needs[2]:
        _recompute(inputs, lse, dl, valid, dw, db)


def _common_value(dl: torch.Tensor, valid: torch.Tensor | None) -> float | None:
    """:return: the value of ``dl`` if it is the same on every frame inside ``valid``, else None"""
    values = dl if valid is None else dl[valid]
    if not values.numel():
        return 0.0
    first = values[0]
    return float(first) if bool((values == first).all()) else None


def _recompute(inputs, lse, dl, valid, dw, db) -> None:
    """Overwrite the weight and bias gradients ``dw``, ``db`` with those for the per-frame ``dl``, from the logits
    recomputed per chunk"""
    hidden, weight, bias, targets, off, on, v, _, chunk, needs = inputs
    h, y = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1).long()
    for grad, need in zip((dw, db), needs[1:]):
        if need:
            grad.zero_()
    logits = _chunk_buffer(h, chunk, weight.shape[-1])
    for s in range(0, h.shape[0], chunk):
        rows = slice(s, s + chunk)
        p = _logits(h[rows], weight, bias, logits).sub_(lse[rows, None]).exp_()
        coef, off_y, on_y = _coefficients(y[rows], off, on, v, weight.shape[-1], lse.dtype)
        d = dl[rows]
        g = gradient_rows_in_place(p, y[rows], coef * d, off_y * d, on_y * d, v, None if valid is None else valid[rows])
        _accumulate(g, h[rows], weight, (False,) + tuple(needs[1:]), None, dw, db)


@torch.library.custom_op(f"{NAMESPACE}::linear_label_smoothed_cross_entropy_backward_", mutates_args=("dh", "dw", "db"))
def _linear_ce_backward_(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, off: torch.Tensor,
    on: torch.Tensor, v: torch.Tensor | None, mask: torch.Tensor | None, chunk: int, needs: list[bool],
    lse: torch.Tensor, dl: torch.Tensor, dh: torch.Tensor, dw: torch.Tensor, db: torch.Tensor,
) -> None:  # fmt: skip
    """The backward pass under ``torch.compile`` (a graph cannot branch on ``dl``): scales the buffers ``dh``,
    ``dw``, ``db`` made in the forward pass in place, as the eager backward does (a functional op would have to
    return new gradients, and a second buffer of the weight's size would exist)"""
    _finish((hidden, weight, bias, targets, off, on, v, mask, chunk, needs), lse, dl, (dh, dw, db))


def _gradients(buffers, grad_loss, inputs, outputs):
    """:return: the gradients of hidden, weight and bias for the upstream per-frame gradient ``grad_loss``"""
    hidden, weight, bias, needs = inputs[0], inputs[1], inputs[2], inputs[-1]
    lse = outputs[0]
    dl = grad_loss.reshape(-1).to(lse.dtype)
    if is_compiling():  # one op of the graph; it mutates the buffers, as the eager call below does
        _linear_ce_backward_(*inputs, lse, dl, *buffers)
    else:
        _finish(inputs, lse, dl, buffers)
    dh, dw, db = buffers
    grads = (dh.to(hidden.dtype).view(hidden.shape), dw.to(weight.dtype), None if bias is None else db.to(bias.dtype))
    return tuple(g if need else None for g, need in zip(grads, needs))


register_buffer_autograd(_linear_ce, "linear_label_smoothed_cross_entropy", 10, (2, 3, 4), _gradients)


def linear_label_smoothed_cross_entropy(hidden, weight, bias, targets, off, on, v, mask, chunk):
    """See ``Backend.linear_label_smoothed_cross_entropy``."""
    grad_mode = torch.is_grad_enabled()
    needs = [grad_mode and x is not None and x.requires_grad for x in (hidden, weight, bias)]
    return _linear_ce(hidden, weight, bias, targets, off, on, v, mask, chunk, needs)[0]
