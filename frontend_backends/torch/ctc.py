"""PyTorch kernel of the label-smoothed CTC loss: the custom op ``returnn_ls::ctc_loss``.

See ``frontend_backends.base.Backend.ctc_loss`` for the maths. The forward pass runs ATen's CTC
(``aten::_ctc_loss``, the kernel behind ``F.ctc_loss``) and its backward (``aten::_ctc_loss_backward``) at once,
recovers the CTC posterior ``q = exp(lp) - g`` from that gradient ``g``, smooths it and keeps the result in one
buffer of the logits' size, which the backward pass scales by the upstream per-sequence gradient.
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


def smoothed_posterior(q: torch.Tensor, blank: int, smoothing: torch.Tensor) -> torch.Tensor:
    """:return: ``q`` smoothed over the labels other than ``blank`` (blank kept, total mass kept):
    ``q'_k = (1 - (K-1)*f) * q_k + f * sum_{j != blank} q_j``, ``f = smoothing / (K - 2)``"""
    num_labels = q.shape[-1]
    floor = smoothing.to(q.dtype) / (num_labels - 2)
    factor = 1.0 - (num_labels - 1) * floor
    q_blank = q[..., blank : blank + 1]
    included_mass = q.sum(-1, keepdim=True) - q_blank
    is_blank = torch.arange(num_labels, device=q.device) == blank
    return torch.where(is_blank, q_blank, factor * q + floor * included_mass)


def _fake_outputs(logits, with_grad: bool):
    grad = logits.new_empty(logits.shape) if with_grad else no_gradient_buffer(logits)
    return logits.new_empty(logits.shape[:-2], dtype=compute_dtype(logits)), grad


@torch.library.custom_op(f"{NAMESPACE}::ctc_loss", mutates_args=())
def _ctc(
    logits: torch.Tensor, targets: torch.Tensor, in_lens: torch.Tensor, tgt_lens: torch.Tensor, blank: int,
    normalized: bool, smoothing: torch.Tensor, zero_infinity: bool, with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:return: (loss ``[*B]``, the gradient for an upstream gradient of 1 ``[*B, T, K]`` or an empty tensor)"""
    shape = logits.shape
    x = logits.reshape(-1, *shape[-2:]).to(compute_dtype(logits))
    lp = x if normalized else x.log_softmax(-1)
    in_lens, tgt_lens = in_lens.reshape(-1).long(), tgt_lens.reshape(-1).long()
    labels = targets.reshape(x.shape[0], -1).long()
    time_major = lp.transpose(0, 1)
    nll, log_alpha = torch.ops.aten._ctc_loss.Tensor(time_major, labels, in_lens, tgt_lens, blank, False)
    finite = torch.isfinite(nll)
    grad = no_gradient_buffer(logits)
    if with_grad:
        g = torch.ops.aten._ctc_loss_backward.Tensor(
            torch.ones_like(nll), time_major, labels, in_lens, tgt_lens, nll, log_alpha, blank, False
        ).transpose(0, 1)
        frames = torch.arange(x.shape[1], device=x.device)[None, :] < in_lens[:, None]
        keep = (frames & finite[:, None])[..., None]
        grad = torch.where(keep, _gradient_of_input(lp, g, blank, normalized, smoothing), 0.0)
        grad = large_empty(shape, logits.dtype, logits.device).copy_(grad.view(shape))
    if zero_infinity:
        nll = torch.where(finite, nll, 0.0)
    return nll.view(shape[:-2]), grad


def _gradient_of_input(lp, g, blank: int, normalized: bool, smoothing) -> torch.Tensor:
    """:return: ``-q'`` (w.r.t. free log-probs) or ``exp(lp) - q'`` (w.r.t. logits), from ATen's ``g = exp(lp) - q``"""
    p = lp.exp()
    q = smoothed_posterior(p - g, blank, smoothing)  # exactly p - g for smoothing 0 (no branch: no device sync)
    return -q if normalized else p - q


@_ctc.register_fake
def _(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity, with_grad):
    return _fake_outputs(logits, with_grad)


def _scaled_gradient(buffers, grad_loss, inputs, outputs) -> tuple[torch.Tensor]:
    """:return: the stored gradient times the upstream per-sequence gradient (in place in eager mode)"""
    (grad,) = buffers
    dl = grad_loss.to(grad.dtype)[..., None, None]
    return (grad * dl if is_compiling() else grad.mul_(dl),)


register_buffer_autograd(_ctc, "ctc_loss", 9, (1,), _scaled_gradient)


def ctc_loss(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity):
    """See ``Backend.ctc_loss``."""
    with_grad = torch.is_grad_enabled() and logits.requires_grad
    if isinstance(smoothing, torch.Tensor):
        smoothing = smoothing.detach().to(logits.device)
    else:
        smoothing = torch.tensor(float(smoothing), device=logits.device)
    return _ctc(logits, targets, in_lens, tgt_lens, blank, normalized, smoothing, zero_infinity, with_grad)[0]
