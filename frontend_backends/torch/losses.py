"""PyTorch kernels of the fused label-smoothed cross entropy and the label-smoothed CTC loss.

Both compute the loss and its gradient together in the forward pass and keep only the gradient for the
backward pass, which scales it by the incoming per-frame (per-sequence) gradient in place. See
``frontend_backends.base.Backend.label_smoothed_cross_entropy`` and ``Backend.ctc_loss`` for the maths.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

#: Rows are processed in chunks of about this many elements where temporaries are needed (half-precision
#: logits, or no gradient wanted); float32/float64 logits with a gradient are processed at once, in place in the
#: gradient buffer.
CHUNK_ELEMENTS = 1 << 23


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _fused_rows(x, y, off, on, weight, z_loss: float, grad_out) -> torch.Tensor:
    """Loss of the rows ``x`` ``[n, K]``; writes ``coef * softmax - off*v - on*e_y`` into ``grad_out`` if given.

    Works on ``lp = log_softmax(x)`` (written into ``grad_out`` when the dtypes agree, so no temporary): the
    weighted sum ``sum_k v_k lp_k`` has no cancellation however large the logits are.
    """
    cdt = _compute_dtype(x)
    if grad_out is not None and grad_out.dtype == cdt:
        lp = torch.log_softmax(x, -1, out=grad_out)
    else:
        lp = torch.log_softmax(x, -1, dtype=cdt)
    lp_v = lp.sum(-1) if weight is None else lp @ weight
    lp_y = lp.gather(-1, y[:, None]).squeeze(-1)
    off_y, on_y = off[y], on[y]
    loss = -off_y * lp_v - on_y * lp_y
    if z_loss:
        lse = x.gather(-1, y[:, None]).squeeze(-1).to(cdt) - lp_y
        loss = loss + z_loss * lse.square()
    if grad_out is not None:
        coef = off_y * (float(x.shape[-1]) if weight is None else weight.sum()) + on_y
        if z_loss:
            coef = coef + 2.0 * z_loss * lse
        p = lp.exp_()
        if weight is None:
            torch.addcmul(-off_y[:, None], p, coef[:, None], out=p)
        else:
            p.mul_(coef[:, None]).addr_(off_y, weight, alpha=-1.0)
        p.scatter_add_(-1, y[:, None], -on_y[:, None])
        if p is not grad_out:
            grad_out.copy_(p)
    return loss


def _is_one(grad_output: torch.Tensor) -> bool:
    """:return: whether ``grad_output`` is a broadcast 1 (as from ``loss.sum().backward()``), checked cheaply"""
    if grad_output.device.type != "cpu" or any(grad_output.stride()) or grad_output.requires_grad:
        return False
    return bool(grad_output.reshape(-1)[:1].eq(1).all())


class _SavedGradFunction(torch.autograd.Function):
    """Base: ``forward`` stores the finished gradient on ``ctx.grad``; ``backward`` scales it in place.

    The buffer is handed to autograd (not copied), so a second backward through the same graph
    (``retain_graph=True``) is not supported and raises.
    """

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        grad = ctx.grad
        ctx.grad = None
        if grad is None:
            raise RuntimeError(f"{ctx.name}: backward can run only once per forward (no retain_graph)")
        if not _is_one(grad_output):
            grad.mul_(grad_output.reshape(grad_output.shape + (1,) * (grad.dim() - grad_output.dim())))
        return (grad,) + (None,) * ctx.num_other_inputs


class FusedLabelSmoothedCE(_SavedGradFunction):
    """``loss = -off_y * sum_k v_k lp_k - on_y * lp_y + z * lse**2`` over rows, without a dense target."""

    @staticmethod
    def forward(ctx, logits, targets, off, on, weight, z_loss, mask):  # noqa: D102
        shape = logits.shape
        x = logits.reshape(-1, shape[-1])
        y = targets.reshape(-1).long()
        n = x.shape[0]
        grad = torch.empty_like(x, memory_format=torch.contiguous_format) if ctx.needs_input_grad[0] else None
        loss = torch.empty(n, dtype=_compute_dtype(x))
        in_place = grad is not None and grad.dtype == _compute_dtype(x)  # no temporaries: one pass is fastest
        step = max(1, n) if in_place else max(1, CHUNK_ELEMENTS // max(1, shape[-1]))
        for start in range(0, n, step):
            rows = slice(start, start + step)
            loss[rows] = _fused_rows(x[rows], y[rows], off, on, weight, z_loss, None if grad is None else grad[rows])
        if mask is not None:
            valid = mask.expand(shape[:-1]).reshape(-1)
            loss.masked_fill_(~valid, 0.0)
            if grad is not None:
                grad.masked_fill_(~valid[:, None], 0.0)
        ctx.grad = None if grad is None else grad.view(shape)
        ctx.name, ctx.num_other_inputs = "label_smoothed_cross_entropy", 6
        return loss.view(shape[:-1])


def _smoothed_posterior_grad(lp, g, blank: int, smoothing: Any) -> torch.Tensor:
    """:return: ``exp(lp) - q'`` where ``q = exp(lp) - g`` is smoothed over the non-blank labels"""
    if isinstance(smoothing, float) and smoothing == 0.0:
        return g
    p = lp.exp()
    num_included = lp.shape[-1] - 1
    floor = smoothing / (num_included - 1)
    factor = 1.0 - num_included * floor
    q = p - g
    included_mass = q.sum(-1, keepdim=True) - q[..., blank : blank + 1]
    q_smooth = factor * q + floor * included_mass
    q_smooth[..., blank] = q[..., blank]
    return p - q_smooth


class SmoothedCTC(_SavedGradFunction):
    """CTC loss ``[*B]`` of logits ``[*B, T, K]``; gradient ``softmax - q'`` (see ``Backend.ctc_loss``)."""

    @staticmethod
    def forward(ctx, logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity):  # noqa: D102
        shape = logits.shape
        x = logits.detach().reshape(-1, *shape[-2:]).to(_compute_dtype(logits))
        in_lens = in_lens.reshape(-1).long()
        needs_grad = ctx.needs_input_grad[0]
        with torch.set_grad_enabled(needs_grad):
            lp = (x if normalized else x.log_softmax(-1)).detach().requires_grad_(needs_grad)
            nll = F.ctc_loss(
                lp.transpose(0, 1), targets.reshape(x.shape[0], -1).long(), in_lens, tgt_lens.reshape(-1).long(),
                blank=blank, reduction="none", zero_infinity=False,
            )  # fmt: skip
        finite = torch.isfinite(nll)
        ctx.name, ctx.num_other_inputs, ctx.grad = "ctc_loss", 7, None
        if needs_grad:
            ctx.grad = _ctc_grad(lp, nll, finite, in_lens, blank, smoothing).to(logits.dtype).view(shape)
        if zero_infinity:
            nll = torch.where(finite, nll, 0.0)
        return nll.detach().view(shape[:-2])


def _ctc_grad(lp, nll, finite, in_lens, blank, smoothing) -> torch.Tensor:
    """:return: the smoothed gradient ``[B, T, K]``, zero on padding frames and on impossible sequences"""
    with torch.enable_grad():
        (g,) = torch.autograd.grad(nll.sum(), lp)
    frames = torch.arange(lp.shape[1])[None, :] < in_lens[:, None]
    keep = (frames & finite[:, None])[..., None]
    return torch.where(keep, _smoothed_posterior_grad(lp.detach(), g, blank, smoothing), 0.0)


# Both kernels run eagerly under torch.compile (one graph break each): their forward computes the gradient with
# in-place writes (and, for CTC, a nested autograd call), which dynamo cannot trace into one graph.
@torch.compiler.disable
def label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask):
    """See ``Backend.label_smoothed_cross_entropy``."""
    return FusedLabelSmoothedCE.apply(logits, targets, off, on, weight, z_loss, mask)


@torch.compiler.disable
def ctc_loss(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity):
    """See ``Backend.ctc_loss``."""
    return SmoothedCTC.apply(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity)
