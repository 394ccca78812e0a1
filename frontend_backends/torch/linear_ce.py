"""PyTorch kernel of the fused output projection + label-smoothed cross entropy (chunked over frames).

The ``[frames, K]`` logits never exist in full: the forward pass computes the logits of ``chunk`` frames at a
time, keeps only each frame's ``logsumexp`` (``lse``), and the backward pass recomputes the logits of each
chunk, turns them into the gradient ``dl * (softmax - q)`` in place and multiplies it into the gradients of
``hidden``, ``weight`` and ``bias``. See ``frontend_backends.base.Backend.linear_label_smoothed_cross_entropy``.
"""

from __future__ import annotations

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _logits(h, w, b) -> torch.Tensor:
    """:return: ``h @ w + b`` of one chunk, in the compute dtype"""
    z = h @ w if b is None else torch.addmm(b, h, w)
    return z.to(_compute_dtype(z))


def _chunk_loss(z, y, off_y, on_y, v, vsum):
    """:return: (loss, lse) of the logits ``z`` ``[n, K]``; ``z`` is overwritten"""
    m = z.amax(dim=-1, keepdim=True)
    z.sub_(m)  # t = z - max: the weighted sum of logits below has no cancellation for large offsets
    tv = z.sum(-1) if v is None else z @ v
    t_y = z.gather(-1, y[:, None]).squeeze(-1)
    lse0 = z.exp_().sum(-1).log()
    loss = on_y * (lse0 - t_y) + off_y * (vsum * lse0 - tv)
    return loss, lse0 + m.squeeze(-1)


def _chunk_grad(z, y, lse, dl, off_y, on_y, v, vsum) -> torch.Tensor:
    """:return: ``dl * (coef * softmax(z) - off_y * v - on_y * onehot(y))``, written into ``z``"""
    coef = (off_y * vsum + on_y) * dl
    z.sub_(lse[:, None]).exp_().mul_(coef[:, None])
    a = off_y * dl
    if v is None:
        z.sub_(a[:, None])
    else:
        z.addr_(a, v, alpha=-1.0)
    return z.scatter_add_(-1, y[:, None], -(on_y * dl)[:, None])


class LinearLabelSmoothedCE(torch.autograd.Function):
    """Per-frame loss of ``hidden @ weight + bias`` against smoothed targets; logits recomputed in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, off, on, v, mask, chunk):  # noqa: D102
        h = hidden.reshape(-1, hidden.shape[-1])
        y = targets.reshape(-1).long()
        off_y, on_y = off[y], on[y]
        vsum = float(weight.shape[-1]) if v is None else v.sum()
        loss = torch.empty(h.shape[0], dtype=_compute_dtype(h))
        lse = torch.empty_like(loss)
        for s in range(0, h.shape[0], chunk):
            z = _logits(h[s : s + chunk], weight, bias)
            loss[s : s + chunk], lse[s : s + chunk] = _chunk_loss(z, y[s : s + chunk], off_y[s : s + chunk],
                                                                  on_y[s : s + chunk], v, vsum)  # fmt: skip
        valid = None if mask is None else mask.expand(hidden.shape[:-1]).reshape(-1)
        if valid is not None:
            loss.masked_fill_(~valid, 0.0)
        ctx.save_for_backward(hidden, weight, bias, y, off_y, on_y, v, lse, valid)
        ctx.chunk, ctx.vsum = chunk, vsum
        return loss.view(hidden.shape[:-1])

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: D102
        hidden, weight, bias, y, off_y, on_y, v, lse, valid = ctx.saved_tensors
        h = hidden.reshape(-1, hidden.shape[-1])
        dl = grad_loss.reshape(-1).to(lse.dtype)
        if valid is not None:
            dl = dl.masked_fill(~valid, 0.0)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dh = torch.empty_like(h) if need_h else None
        dw = torch.zeros_like(weight, dtype=lse.dtype) if need_w else None
        db = torch.zeros(weight.shape[-1], dtype=lse.dtype) if need_b else None
        for s in range(0, h.shape[0], ctx.chunk):
            rows = slice(s, s + ctx.chunk)
            g = _chunk_grad(_logits(h[rows], weight, bias), y[rows], lse[rows], dl[rows], off_y[rows],
                            on_y[rows], v, ctx.vsum)  # fmt: skip
            if need_h:
                dh[rows] = g.to(weight.dtype) @ weight.T
            if need_w:
                dw.addmm_(h[rows].T.to(lse.dtype), g)
            if need_b:
                db += g.sum(0)
        dh = None if dh is None else dh.view(hidden.shape)
        dw = None if dw is None else dw.to(weight.dtype)
        db = None if db is None else db.to(bias.dtype)
        return dh, dw, db, None, None, None, None, None, None


def linear_label_smoothed_cross_entropy(hidden, weight, bias, targets, off, on, v, mask, chunk):
    """See ``Backend.linear_label_smoothed_cross_entropy``."""
    return LinearLabelSmoothedCE.apply(hidden, weight, bias, targets, off, on, v, mask, chunk)
