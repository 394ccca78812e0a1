r"""Triton kernels of the fused label-smoothed cross entropy and of the fused gradient-smoothing path.

Imports triton at the top: this module is imported only once a CUDA tensor reaches
:mod:`frontend_backends.torch.triton_ops` (or by the tests, which run the kernels on CPU tensors under
``TRITON_INTERPRET=1``; that variable must be set before this module is imported).

Every kernel runs one program per row (frame) of the logits ``z`` ``[N, K]`` and walks over the ``K`` columns in
chunks of ``BLOCK``, accumulating in float32 whatever the dtype of the logits:

- :func:`_forward_kernel` reads the row once: an online logsumexp (per chunk the running maximum ``m`` is updated
  and the per-lane sums of ``exp(z - m)`` rescaled), and, for the smoothed loss, the per-lane sums of ``v_k z_k``.
  It writes ``lse`` (float32) and the loss::

      L = on_y * (lse - z_y) + off_y * (V * lse - sum_k v_k z_k) + z_loss * lse**2,    V = sum_k v_k

  (``L = lse - z_y`` without smoothing), 0 on masked rows.
- :func:`_ce_backward_kernel` reads the row again and writes the gradient (dtype of the logits)
  ``dz = dl * ((off_y * V + on_y + 2 * z_loss * lse) * exp(z - lse) - off_y * v - on_y * onehot(y))``,
  exactly 0 on masked rows.
- :func:`_nll_backward_kernel` writes the gradient of ``-log_softmax(z)[y]`` through the smoothed gradient
  (``Backend.log_softmax_smoothed_nll``): ``dz = shift * S - exp(z - lse) * T - scale_y * dl * onehot(y)``,
  ``S = |dl| * sum_weight_y``, ``T = -scale_y * dl + S * sum(shift)``.

Row offsets are 64-bit (``row.to(tl.int64) * stride``): 8192 x 128,256 logits have more than 2**31 elements.
A label outside ``[0, K)`` on a frame that is not masked gives NaN (loss and gradient), as the torch kernels
under ``torch.compile``; on masked frames the label is never read.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

#: The largest chunk of columns one program handles per step (a power of two); tests lower it to cover many chunks.
#: With ``num_warps = BLOCK / 256`` each thread holds 8 columns (one 16-byte load of bf16): on sm_90 the forward
#: kernel then needs 60 registers at 4096 x 16 warps (106 at 8192 x 16), so two programs fit on an SM.
MAX_BLOCK = 4096


def launch_config(num_cols: int) -> tuple[int, int]:
    """:return: (``BLOCK``, ``num_warps``) for rows of ``num_cols`` columns"""
    block = min(MAX_BLOCK, triton.next_power_of_2(max(num_cols, 16)))
    return block, min(16, max(4, block // 256))


@triton.jit
def _row_target(y_ptr, mask_ptr, row, n_cols, HAS_MASK: tl.constexpr):
    """:return: (keep: the row is not masked, y: its label clamped into ``[0, K)``, bad: kept with a bad label)"""
    keep = row >= 0
    if HAS_MASK:
        keep = tl.load(mask_ptr + row) != 0
    y = tl.load(y_ptr + row)
    bad_label = (y < 0) | (y >= n_cols)
    return keep, tl.where(bad_label, 0, y).to(tl.int32), keep & bad_label


@triton.jit
def _factor(ptr, stride, value, idx, mask, IS_TENSOR: tl.constexpr):
    """:return: the per-label factor at ``idx`` (float32): loaded from ``ptr`` (``stride`` 0 or 1), else ``value``"""
    out = value
    if IS_TENSOR:
        out = tl.load(ptr + idx * stride, mask=mask, other=0.0).to(tl.float32)
    return out


@triton.jit
def _forward_kernel(
    x_ptr, x_stride, y_ptr, off_ptr, on_ptr, w_ptr, vsum_ptr, vsum, mask_ptr, loss_ptr, lse_ptr, n_cols, z_loss,
    SMOOTH: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    x_row = x_ptr + row.to(tl.int64) * x_stride
    keep, y, bad = _row_target(y_ptr, mask_ptr, row, n_cols, HAS_MASK)
    offs = tl.arange(0, BLOCK)
    n_read = tl.where(keep, n_cols, 0)  # masked rows read nothing: zeros, so that no NaN arises on them
    pad = tl.where(keep, float("-inf"), 0.0)
    m = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), axis=0)
    sum_exp = tl.zeros([BLOCK], tl.float32)
    sum_vz = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + offs
        inside = cols < n_cols
        z = tl.load(x_row + cols, mask=cols < n_read, other=pad).to(tl.float32)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # all -inf so far: keep the sums at 0, not NaN
        sum_exp = sum_exp * tl.exp(m - ref) + tl.exp(z - ref)
        m = m_new
        if SMOOTH:
            sum_vz += _factor(w_ptr, 1, 1.0, cols, inside, HAS_WEIGHT) * tl.where(inside, z, 0.0)
    lse = m + tl.log(tl.sum(sum_exp, axis=0))
    loss = lse - tl.load(x_row + y, mask=keep, other=0.0).to(tl.float32)
    if SMOOTH:
        v_total = _factor(vsum_ptr, 0, vsum, 0, keep, HAS_WEIGHT)
        off_y = tl.load(off_ptr + y).to(tl.float32)
        on_y = tl.load(on_ptr + y).to(tl.float32)
        loss = on_y * loss + off_y * (v_total * lse - tl.sum(sum_vz, axis=0)) + z_loss * lse * lse
    loss = tl.where(bad, float("nan"), tl.where(keep, loss, 0.0))
    tl.store(loss_ptr + row, loss.to(loss_ptr.dtype.element_ty))
    tl.store(lse_ptr + row, tl.where(keep, lse, 0.0))


@triton.jit
def _ce_backward_kernel(
    x_ptr, x_stride, y_ptr, off_ptr, on_ptr, w_ptr, vsum_ptr, vsum, mask_ptr, lse_ptr, dl_ptr, g_ptr, n_cols, z_loss,
    HAS_WEIGHT: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    x_row = x_ptr + row.to(tl.int64) * x_stride
    g_row = g_ptr + row.to(tl.int64) * n_cols
    keep, y, bad = _row_target(y_ptr, mask_ptr, row, n_cols, HAS_MASK)
    dl = tl.load(dl_ptr + row).to(tl.float32)
    lse = tl.load(lse_ptr + row)
    off_y = tl.load(off_ptr + y).to(tl.float32)
    on_y = tl.load(on_ptr + y).to(tl.float32)
    v_total = _factor(vsum_ptr, 0, vsum, 0, keep, HAS_WEIGHT)
    coef = dl * (off_y * v_total + on_y + 2.0 * z_loss * lse)
    shift = dl * off_y
    at_y = dl * on_y
    offs = tl.arange(0, BLOCK)
    n_read = tl.where(keep, n_cols, 0)  # masked rows read nothing
    for start in range(0, n_cols, BLOCK):
        cols = start + offs
        inside = cols < n_cols
        z = tl.load(x_row + cols, mask=cols < n_read, other=0.0).to(tl.float32)
        v = _factor(w_ptr, 1, 1.0, cols, inside, HAS_WEIGHT)
        g = coef * tl.exp(z - lse) - shift * v - tl.where(cols == y, at_y, 0.0)
        g = tl.where(bad, float("nan"), tl.where(keep, g, 0.0))
        tl.store(g_row + cols, g.to(g_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _nll_backward_kernel(
    x_ptr, x_stride, y_ptr, lse_ptr, dl_ptr, g_ptr, n_cols, scale_ptr, scale_stride, scale, shift_ptr, shift_stride,
    shift, sw_ptr, sw_stride, shift_sum_ptr, shift_sum,
    SCALE_T: tl.constexpr, SHIFT_T: tl.constexpr, SW_T: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    x_row = x_ptr + row.to(tl.int64) * x_stride
    g_row = g_ptr + row.to(tl.int64) * n_cols
    keep, y, bad = _row_target(y_ptr, y_ptr, row, n_cols, False)
    dl = tl.load(dl_ptr + row).to(tl.float32)
    lse = tl.load(lse_ptr + row)
    at_y = _factor(scale_ptr, scale_stride, scale, y, keep, SCALE_T) * dl
    total_abs = tl.abs(dl) * _factor(sw_ptr, sw_stride, 1.0, y, keep, SW_T)
    total = total_abs * _factor(shift_sum_ptr, 0, shift_sum, 0, keep, SHIFT_T) - at_y
    offs = tl.arange(0, BLOCK)
    for start in range(0, n_cols, BLOCK):
        cols = start + offs
        inside = cols < n_cols
        z = tl.load(x_row + cols, mask=inside, other=0.0).to(tl.float32)
        shift_k = _factor(shift_ptr, shift_stride, shift, cols, inside, SHIFT_T)
        g = shift_k * total_abs - tl.exp(z - lse) * total - tl.where(cols == y, at_y, 0.0)
        g = tl.where(bad, float("nan"), g)
        tl.store(g_row + cols, g.to(g_ptr.dtype.element_ty), mask=inside)


def _device_of(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """:return: a context in which Triton launches on the GPU of ``x`` (it launches on the current device)"""
    return torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()


def forward(x, y, coefficients, z_loss: float, mask, loss: torch.Tensor, lse: torch.Tensor) -> None:
    """Run :func:`_forward_kernel`: write each row's loss into ``loss`` and its logsumexp into ``lse``.

    :param x: logits ``[N, K]`` with unit column stride
    :param y: int labels ``[N]``, contiguous
    :param coefficients: ``(off, on, weight, vsum)`` of the smoothed loss (``weight`` and ``vsum`` = ``sum(weight)``
        a tensor or None), or None for the plain ``lse - z_y``
    :param mask: bool ``[N]`` (contiguous) or None
    :param loss: ``[N]`` output, contiguous, any float dtype
    :param lse: ``[N]`` float32 output
    """
    if x.shape[0] == 0:
        return
    off, on, weight, vsum = coefficients if coefficients is not None else (lse, lse, None, None)
    block, warps = launch_config(x.shape[1])
    with _device_of(x):
        _forward_kernel[(x.shape[0],)](
            x, x.stride(0), y, off, on, lse if weight is None else weight, lse if vsum is None else vsum,
            float(x.shape[1]), lse if mask is None else mask, loss, lse, x.shape[1], float(z_loss),
            SMOOTH=coefficients is not None, HAS_WEIGHT=weight is not None, HAS_MASK=mask is not None,
            BLOCK=block, num_warps=warps,
        )  # fmt: skip


def ce_backward(x, y, coefficients, z_loss: float, mask, lse, dl, grad: torch.Tensor) -> None:
    """Run :func:`_ce_backward_kernel`: write the gradient of the smoothed loss into ``grad``.

    :param coefficients: ``(off, on, weight, vsum)`` as in :func:`forward`
    :param lse: float32 ``[N]`` from :func:`forward`
    :param dl: the upstream gradient ``[N]``, contiguous
    :param grad: ``[N, K]`` output, contiguous
    """
    if x.shape[0] == 0:
        return
    off, on, weight, vsum = coefficients
    block, warps = launch_config(x.shape[1])
    with _device_of(x):
        _ce_backward_kernel[(x.shape[0],)](
            x, x.stride(0), y, off, on, lse if weight is None else weight, lse if vsum is None else vsum,
            float(x.shape[1]), lse if mask is None else mask, lse, dl, grad, x.shape[1], float(z_loss),
            HAS_WEIGHT=weight is not None, HAS_MASK=mask is not None, BLOCK=block, num_warps=warps,
        )  # fmt: skip


def nll_backward(x, y, lse, dl, factors, grad: torch.Tensor) -> None:
    """Run :func:`_nll_backward_kernel`: write the gradient of the smoothed ``-log_softmax(x)[y]`` into ``grad``.

    :param factors: ``((scale, scale_value), (shift, shift_value), sum_weight, shift_sum)``: each of scale, shift,
        sum_weight a 1-D tensor of 1 or ``K`` entries or None (then the float value; 1 for sum_weight);
        ``shift_sum`` the float32 scalar tensor ``sum_k shift_k`` when shift is a tensor
    """
    if x.shape[0] == 0:
        return
    (scale, scale_value), (shift, shift_value), sum_weight, shift_sum = factors
    block, warps = launch_config(x.shape[1])

    def ptr(t: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        return (lse, 0) if t is None else (t, 0 if t.numel() == 1 else 1)

    with _device_of(x):
        _nll_backward_kernel[(x.shape[0],)](
            x, x.stride(0), y, lse, dl, grad, x.shape[1], *ptr(scale), float(scale_value), *ptr(shift),
            float(shift_value), *ptr(sum_weight), lse if shift_sum is None else shift_sum,
            float(shift_value) * x.shape[1],
            SCALE_T=scale is not None, SHIFT_T=shift is not None, SW_T=sum_weight is not None,
            BLOCK=block, num_warps=warps,
        )  # fmt: skip
