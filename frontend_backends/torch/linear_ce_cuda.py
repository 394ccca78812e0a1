r"""CUDA path of the fused projection + label-smoothed CE (:mod:`frontend_backends.torch.linear_ce`): the loss and
the logit gradient of each chunk of frames come from the Triton kernels of
:mod:`frontend_backends.torch.triton_kernels`, the matmuls from torch.

Imported by :mod:`frontend_backends.torch.linear_ce` only when its ``_use_triton`` says so (CUDA tensors), as it
imports triton; the functions run on any device Triton can (the tests call them on CPU tensors under
``TRITON_INTERPRET=1``).

Per chunk of ``c`` frames (``c = min(chunk, N)``):

- one buffer ``Z`` ``[c, K]`` in the dtype of ``hidden`` (bfloat16 stays bfloat16), reused for every chunk:
  ``Z = h @ W + b`` (``torch.addmm``/``mm`` with ``out=``);
- :func:`triton_kernels.forward` reads ``Z`` once and writes the loss (float32) and ``lse`` (float32) of its rows;
- when a gradient is wanted, :func:`triton_kernels.ce_backward` with ``dl = 1`` overwrites ``Z`` in place with the
  logit gradient ``G = coef * softmax - off_y * v - on_y * onehot(y)`` (``G`` may alias the logits: each program
  owns one row, and reads each block of columns before it writes that block; no other element of the row is read
  afterwards), exactly 0 on masked rows;
- ``dh[rows] = G @ W^T``, ``dw += h^T @ G``, ``db += G.sum(0)``.

Precision: the gradient buffers ``dh``, ``dw``, ``db`` are float32 (as on the CPU path, and as the fake kernel
says): a bfloat16 ``G`` times a bfloat16 ``W`` or ``h`` is multiplied with float32 accumulation straight into the
float32 buffer (cuBLAS ``out_dtype=torch.float32``; on other devices, and on torch versions whose ``addmm`` cannot
add into a float32 tensor that way, through float32 copies of the operands), so ``dw`` does not round to bfloat16
once per chunk. What does round to the input dtype: the logits ``Z`` (as an
unfused bfloat16 projection would) and the logit gradient ``G``; the returned gradients are rounded once, at the
end, to the dtypes of ``hidden``, ``weight`` and ``bias``.

Host syncs: none in the forward pass. The backward pass scales ``dh`` by ``dl`` per row on the device and, when the
weight or bias gradient is wanted, reads ONE boolean from the device: whether ``dl`` is the same on all valid frames
(then ``dw``, ``db`` are multiplied by that value, a device scalar), else they are recomputed chunk by chunk with
``dl`` folded into ``G`` by the backward kernel (one matmul more per chunk).
"""

from __future__ import annotations

import torch

from frontend_backends.torch import triton_kernels
from frontend_backends.torch.custom_ops import large_empty


def _prepare(inputs) -> tuple:
    """:return: ``(h [N, H], W, b, y [N], coefficients, valid [N] or None, chunk, needs)`` from the op's inputs:
    weight and bias in the dtype of ``hidden``, labels int64 and mask contiguous, the kernels' coefficients"""
    hidden, weight, bias, targets, off, on, v, mask, chunk, needs = inputs
    h = hidden.reshape(-1, hidden.shape[-1])
    y = targets.reshape(-1).long().contiguous()
    valid = None if mask is None else mask.expand(hidden.shape[:-1]).reshape(-1).contiguous()
    v = None if v is None else v.contiguous()
    coefficients = (off.contiguous(), on.contiguous(), v, None if v is None else v.sum(dtype=torch.float32))
    b = None if bias is None else bias.to(h.dtype)
    return h, weight.to(h.dtype), b, y, coefficients, valid, chunk, needs


def _logits_buffer(h: torch.Tensor, chunk: int, num_labels: int) -> torch.Tensor:
    """:return: the chunk buffer ``[min(chunk, N), K]`` in the dtype of ``h``"""
    return large_empty((min(chunk, h.shape[0]), num_labels), h.dtype, h.device)


def _logits(h, w, b, buffer: torch.Tensor) -> torch.Tensor:
    """:return: ``h @ w + b`` of one chunk, written into the first rows of ``buffer``"""
    out = buffer[: h.shape[0]]
    return torch.mm(h, w, out=out) if b is None else torch.addmm(b, h, w, out=out)


#: Whether ``torch.addmm`` adds a half-precision product into a float32 tensor on CUDA (``out_dtype=torch.float32``
#: with a float32 ``self``; newer torch versions), per dtype: probed once per process, at the first CUDA call.
_HALF_INTO_FLOAT32: dict[torch.dtype, bool] = {}


def _adds_half_into_float32(out: torch.Tensor, a: torch.Tensor) -> bool:
    """:return: whether ``torch.addmm(out, a, b, out_dtype=float32, out=out)`` works for CUDA tensors ``out``
    (float32) and ``a`` (half precision): tried once on 1 x 1 tensors (an error is raised on the host; no sync)"""
    if a.dtype not in _HALF_INTO_FLOAT32:
        acc, x = (torch.zeros((1, 1), dtype=dt, device=out.device) for dt in (out.dtype, a.dtype))
        try:
            torch.addmm(acc, x, x, out_dtype=out.dtype, out=acc)
            _HALF_INTO_FLOAT32[a.dtype] = True
        except RuntimeError:
            _HALF_INTO_FLOAT32[a.dtype] = False
    return _HALF_INTO_FLOAT32[a.dtype]


def _matmul(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, accumulate: bool) -> None:
    """``out = a @ b`` (``out += a @ b`` if ``accumulate``) with the products summed in the dtype of ``out``
    (float32) whatever the dtype of ``a`` and ``b``: on CUDA half precision goes to cuBLAS with
    ``out_dtype=torch.float32`` (tensor cores, float32 accumulator); elsewhere (the interpreter tests), and for the
    accumulation where torch cannot add into a float32 ``out`` that way, the operands are copied to float32"""
    if a.dtype != out.dtype and out.device.type == "cuda":
        if not accumulate:
            torch.mm(a, b, out_dtype=out.dtype, out=out)
            return
        if _adds_half_into_float32(out, a):
            torch.addmm(out, a, b, out_dtype=out.dtype, out=out)
            return
    a, b = a.to(out.dtype), b.to(out.dtype)
    if accumulate:
        out.addmm_(a, b)
    else:
        torch.mm(a, b, out=out)


def _accumulate(g, h, w, needs, dh_rows, dw, db) -> None:
    """Multiply the chunk's logit gradient ``g`` into the gradients of hidden (rows), weight and bias."""
    if needs[0]:
        _matmul(dh_rows, g, w.T, accumulate=False)
    if needs[1]:
        _matmul(dw, h.T, g, accumulate=True)
    if needs[2]:
        db.add_(g.sum(0, dtype=db.dtype))


def forward(inputs, loss: torch.Tensor, lse: torch.Tensor, grads) -> None:
    """The forward pass: write each frame's loss into ``loss`` ``[N]`` (0 on masked frames) and its logsumexp into
    ``lse`` ``[N]`` (float32), and, where ``needs`` says so, the gradients for ``dl = 1`` into ``grads``.

    :param inputs: the op's ``(hidden, weight, bias, targets, off, on, v, mask, chunk, needs)``
    :param grads: the zeroed float32 buffers ``(dh [N, H], dw, db)`` (empty where not needed)
    """
    h, w, b, y, coefficients, valid, chunk, needs = _prepare(inputs)
    dh, dw, db = grads
    buffer = _logits_buffer(h, chunk, w.shape[-1])
    ones = torch.ones((buffer.shape[0],), dtype=torch.float32, device=h.device) if any(needs) else None
    for s in range(0, h.shape[0], chunk):
        rows = slice(s, s + chunk)
        z = _logits(h[rows], w, b, buffer)
        mask = None if valid is None else valid[rows]
        triton_kernels.forward(z, y[rows], coefficients, 0.0, mask, loss[rows], lse[rows])
        if ones is not None:
            triton_kernels.ce_backward(z, y[rows], coefficients, 0.0, mask, lse[rows], ones[: z.shape[0]], z)
            _accumulate(z, h[rows], w, needs, dh[rows] if needs[0] else None, dw, db)


def uniform_value(dl: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:return: device scalars ``(same, value)``: whether ``dl`` ``[N]`` (N > 0) is the same on every frame inside
    ``valid``, and that value (``dl`` at the first valid frame; 0 when no frame is valid). No host sync."""
    if valid is None:
        first = dl[0]
        return (dl == first).all(), first
    first_valid = valid.to(torch.uint8).argmax().reshape(1)  # argmax gives the first of equal maxima
    first = dl.index_select(0, first_valid).squeeze(0)  # not dl[index]: a 0-dim index tensor is read on the host
    same = ((dl == first) | ~valid).all()
    return same, torch.where(valid.any(), first, torch.zeros_like(first))


def finish(inputs, lse: torch.Tensor, dl: torch.Tensor, grads) -> None:
    """The backward pass: scale the gradients ``grads = (dh, dw, db)`` made for ``dl = 1`` in place by the per-frame
    upstream gradient ``dl`` ``[N]`` (float32). At most one host sync (see the module docstring)."""
    needs = inputs[-1]
    dh, dw, db = grads
    if needs[0]:
        dh.mul_(dl[:, None])
    if not (needs[1] or needs[2]) or dl.numel() == 0:
        return
    mask, hidden = inputs[7], inputs[0]
    valid = None if mask is None else mask.expand(hidden.shape[:-1]).reshape(-1)
    same, value = uniform_value(dl, valid)
    if same.item():  # the one host sync of the call
        for grad, need in zip((dw, db), needs[1:]):
            if need:
                grad.mul_(value)
    else:
        _recompute(inputs, lse, dl, dw, db)


def _recompute(inputs, lse, dl, dw, db) -> None:
    """Overwrite ``dw``, ``db`` with the gradients for the per-frame ``dl``: per chunk the logits again, turned into
    ``dl * G`` in place by the backward kernel"""
    h, w, b, y, coefficients, valid, chunk, needs = _prepare(inputs)
    for grad, need in zip((dw, db), needs[1:]):
        if need:
            grad.zero_()
    dl = dl.contiguous()
    buffer = _logits_buffer(h, chunk, w.shape[-1])
    for s in range(0, h.shape[0], chunk):
        rows = slice(s, s + chunk)
        z = _logits(h[rows], w, b, buffer)
        mask = None if valid is None else valid[rows]
        triton_kernels.ce_backward(z, y[rows], coefficients, 0.0, mask, lse[rows], dl[rows], z)
        _accumulate(z, h[rows], w, (False,) + tuple(needs[1:]), None, dw, db)
