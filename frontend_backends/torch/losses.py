"""PyTorch kernel of the fused label-smoothed cross entropy: the custom op ``returnn_ls::label_smoothed_cross_entropy``.

See ``frontend_backends.base.Backend.label_smoothed_cross_entropy`` for the maths. The forward pass writes
``p = softmax(z)`` into one buffer of the logits' size and computes the loss from per-frame scalars only:

    lse = z_y - log(p_y)                      (exact to rounding while p_y is a normal float; else logsumexp)
    L = on_y * (lse - z_y) + off_y * (V * lse - sum_k v_k z_k) + z_loss * lse**2

The backward pass turns the buffer into the gradient ``dl * (coef * p - off_y * v - on_y * onehot(y))``,
``coef = off_y * V + on_y + 2 * z_loss * lse``, in place: one pass over the buffer (with the scaling by the upstream
gradient ``dl`` folded in), and the frames outside ``mask`` zeroed row by row.
"""

from __future__ import annotations

import torch

from frontend_backends.torch.custom_ops import (
    NAMESPACE,
    compute_dtype,
    is_compiling,
    large_empty,
    no_gradient_buffer,
    register_buffer_autograd,
)

#: Rows are processed in chunks of about this many elements where temporaries are needed (half-precision
#: logits, or no gradient wanted); float32/float64 logits with a gradient are processed at once, into the buffer.
CHUNK_ELEMENTS = 1 << 23

#: Below this target probability ``log(p_y)`` may have lost precision (subnormal); such rows use ``logsumexp``.
_SMALLEST_TRUSTED_PROB = {torch.float32: 1e-30, torch.float64: 1e-300}


def _logsumexp(x: torch.Tensor, y: torch.Tensor, x_y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """:return: ``logsumexp(x)`` per row (float64), from the softmax ``p`` (``x_y`` = the target logits)"""
    p_y = p.gather(-1, y[:, None]).squeeze(-1)
    lse = x_y.double() - torch.log(p_y).double()
    low = (p_y < _SMALLEST_TRUSTED_PROB[p.dtype]).nonzero().squeeze(-1)
    if low.numel():
        lse.index_copy_(0, low, torch.logsumexp(x.index_select(0, low).double(), -1))
    return lse


def loss_rows(x, y, off, on, weight, z_loss: float, probs_out):
    """:return: (loss, lse) of the rows ``x`` ``[n, K]``; writes ``softmax(x)`` into ``probs_out`` if given"""
    cdt = compute_dtype(x)
    if probs_out is not None and probs_out.dtype == cdt:
        p = torch.softmax(x, -1, out=probs_out)
    else:
        p = torch.softmax(x, -1, dtype=cdt)
    x_y = x.gather(-1, y[:, None]).squeeze(-1)
    lse = _logsumexp(x, y, x_y, p)
    if weight is None:  # a row sum does not depend on how many rows are summed at once (unlike a matvec)
        xv, vsum = x.sum(-1, dtype=cdt), float(x.shape[-1])
    else:
        xv, vsum = torch.mv(x.to(cdt), weight.to(cdt)), weight.double().sum()
    off_y, on_y = off[y].double(), on[y].double()
    loss = on_y * (lse - x_y.double()) + off_y * (vsum * lse - xv.double())
    if z_loss:
        loss = loss + z_loss * lse.square()
    if probs_out is not None and p is not probs_out:
        probs_out.copy_(p)
    return loss.to(cdt), lse.to(cdt)


def _outputs(logits, with_grad: bool, large: bool = False):
    """:return: the (loss, lse, softmax buffer) of the op, uninitialized; ``large``: the buffer from
    :func:`large_empty` (not for the fake kernel)"""
    cdt = compute_dtype(logits)
    probs = no_gradient_buffer(logits)
    if with_grad:
        probs = large_empty(logits.shape, logits.dtype, logits.device) if large else logits.new_empty(logits.shape)
    frames = logits.shape[:-1]
    return logits.new_empty(frames, dtype=cdt), logits.new_empty(frames, dtype=cdt), probs


@torch.library.custom_op(f"{NAMESPACE}::label_smoothed_cross_entropy", mutates_args=())
def _fused_ce(
    logits: torch.Tensor, targets: torch.Tensor, off: torch.Tensor, on: torch.Tensor, weight: torch.Tensor | None,
    z_loss: float, mask: torch.Tensor | None, with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """:return: (loss ``[*S]``, lse ``[*S]``, softmax ``[*S, K]`` if ``with_grad`` else an empty tensor)"""
    loss, lse, probs = _outputs(logits, with_grad, large=True)
    num_labels = logits.shape[-1]
    x, y = logits.reshape(-1, num_labels), targets.reshape(-1).long()
    flat = [t.view(-1) for t in (loss, lse)] + [probs.view(-1, num_labels) if with_grad else None]
    in_place = with_grad and probs.dtype == compute_dtype(x)
    step = max(1, x.shape[0] if in_place else CHUNK_ELEMENTS // max(1, num_labels))
    for start in range(0, x.shape[0], step):
        rows = slice(start, start + step)
        out = None if flat[2] is None else flat[2][rows]
        flat[0][rows], flat[1][rows] = loss_rows(x[rows], y[rows], off, on, weight, z_loss, out)
    if mask is not None:
        loss.masked_fill_(~mask.expand(loss.shape), 0.0)
    return loss, lse, probs


@_fused_ce.register_fake
def _(logits, targets, off, on, weight, z_loss, mask, with_grad):
    return _outputs(logits, with_grad)


def _gradient(buffers, grad_loss, inputs, outputs) -> tuple[torch.Tensor]:
    """:return: the gradient w.r.t. the logits, made from the softmax buffer in place: eagerly, and under
    ``torch.compile`` through the mutating op :func:`_fused_ce_backward_` (a functional backward would write a new
    buffer of the logits' size, which on the CPU costs its page faults: 3x the eager backward's time)"""
    (probs,) = buffers
    _, targets, off, on, weight, z_loss, mask, _ = inputs
    lse = outputs[0]
    dl = grad_loss.expand(lse.shape).reshape(-1).to(lse.dtype)
    if is_compiling():
        _fused_ce_backward_(probs, targets, off, on, weight, z_loss, mask, lse, dl)
    else:
        _gradient_in_place(probs, targets, off, on, weight, z_loss, mask, lse, dl)
    return (probs,)


def _gradient_in_place(probs, targets, off, on, weight, z_loss: float, mask, lse, dl) -> None:
    """Turn the softmax buffer ``probs`` into ``dl * (coef * p - off_y * v - on_y * onehot(y))`` in place"""
    num_labels = probs.shape[-1]
    y = targets.reshape(-1).long()
    cdt = lse.dtype
    off_y, on_y = off[y].to(cdt), on[y].to(cdt)
    coef = off_y * (float(num_labels) if weight is None else weight.to(cdt).sum()) + on_y
    if z_loss:
        coef = coef + 2.0 * z_loss * lse.reshape(-1)
    valid = None if mask is None else mask.expand(lse.shape).reshape(-1)
    gradient_rows_in_place(probs.view(-1, num_labels), y, coef * dl, off_y * dl, on_y * dl, weight, valid)


@torch.library.custom_op(f"{NAMESPACE}::label_smoothed_cross_entropy_backward_", mutates_args=("probs",))
def _fused_ce_backward_(
    probs: torch.Tensor, targets: torch.Tensor, off: torch.Tensor, on: torch.Tensor, weight: torch.Tensor | None,
    z_loss: float, mask: torch.Tensor | None, lse: torch.Tensor, dl: torch.Tensor,
) -> None:  # fmt: skip
    """The backward pass under ``torch.compile``: :func:`_gradient_in_place` as one opaque, mutating op"""
    _gradient_in_place(probs, targets, off, on, weight, z_loss, mask, lse, dl)


def gradient_rows_in_place(p, y, scale, shift, target_shift, weight, valid) -> torch.Tensor:
    """``p * scale - shift * v - target_shift * onehot(y)`` written into ``p``; invalid rows set to exactly 0"""
    eps = torch.finfo(scale.dtype).eps
    if weight is None and bool((scale - 1.0).abs().max() <= 4 * eps):  # e.g. loss.sum(): sum(q) = 1
        p.sub_(shift[:, None])
    elif weight is None:
        torch.addcmul(-shift[:, None], p, scale[:, None], out=p)
    else:
        p.mul_(scale[:, None]).addr_(shift, weight.to(p.dtype), alpha=-1.0)
    p.scatter_add_(-1, y[:, None], -target_shift[:, None].to(p.dtype))
    if valid is not None:
        p.index_fill_(0, (~valid).nonzero().squeeze(-1), 0.0)
    return p


register_buffer_autograd(_fused_ce, "label_smoothed_cross_entropy", 8, (2,), _gradient)


def label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask):
    """See ``Backend.label_smoothed_cross_entropy``. CUDA logits take the Triton kernels
    (:mod:`frontend_backends.torch.triton_ops`, imported only then) unless ``RETURNN_LS_TRITON=0``."""
    if logits.device.type == "cuda":
        from frontend_backends.torch import triton_ops

        if triton_ops.use_triton(logits):
            return triton_ops.label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask)
    with_grad = torch.is_grad_enabled() and logits.requires_grad
    return _fused_ce(logits, targets, off, on, weight, float(z_loss), mask, with_grad)[0]
