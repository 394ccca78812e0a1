r"""The Triton kernels (:mod:`frontend_backends.torch.triton_kernels`) as ``torch.library`` custom ops.

On CUDA tensors the torch backend runs one Triton pass per direction instead of several torch ops (and without the
host syncs of the CPU kernels):

- ``returnn_ls::triton_label_smoothed_cross_entropy``: see ``Backend.label_smoothed_cross_entropy``. The forward
  pass reads the logits once and keeps only the per-frame ``lse`` (float32); the backward pass
  (``..._backward``, an op of its own, so that ``torch.compile(fullgraph=True)`` sees one opaque node per
  direction) reads the logits again and writes their gradient ``dl * (coef * softmax - off_y * v - on_y *
  onehot(y))``. No buffer of the logits' size lives between the two passes.
- ``returnn_ls::triton_log_softmax_smoothed_nll``: see ``Backend.log_softmax_smoothed_nll``: ``lse - z_y`` forward;
  backward ``shift * S - softmax * T - scale_y * dl * onehot(y)`` from the logits and ``lse``.

:func:`use_triton` decides; the ops themselves run on any device Triton can (the tests run them on CPU tensors under
``TRITON_INTERPRET=1``). Environment variable ``RETURNN_LS_TRITON``: ``"0"`` switches the Triton kernels off (the
torch kernels run on CUDA too); anything else or unset: on. Float64 logits always take the torch kernels (their
results are float64; these kernels accumulate in float32). This module imports triton only when an op runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

import torch

from frontend_backends.torch.custom_ops import NAMESPACE

#: The environment variable that switches the Triton kernels off when set to ``"0"``.
ENV_VAR = "RETURNN_LS_TRITON"


#: Whether triton is installed (looked up once, at the first CUDA tensor: this module is imported then).
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def use_triton(logits: torch.Tensor) -> bool:
    """:return: whether the Triton kernels take ``logits``: a CUDA tensor of float16/bfloat16/float32, triton
    installed, and ``RETURNN_LS_TRITON`` not ``"0"``; never for CPU tensors. Traceable by ``torch.compile``
    (no graph break: the environment variable is read when the graph is made)"""
    if logits.device.type != "cuda" or logits.dtype == torch.float64 or os.environ.get(ENV_VAR, "1") == "0":
        return False
    return _TRITON_INSTALLED


def _kernels() -> Any:
    """:return: the module :mod:`frontend_backends.torch.triton_kernels` (imports triton on the first call)"""
    return importlib.import_module("frontend_backends.torch.triton_kernels")


def _rows(logits: torch.Tensor) -> torch.Tensor:
    """:return: ``logits`` as ``[N, K]`` rows with unit column stride (a copy only if a view cannot be)"""
    x = logits.reshape(-1, logits.shape[-1])
    if logits.dtype == torch.float64:
        raise TypeError("the Triton kernels accumulate in float32; float64 logits take the torch kernels")
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def _flat(x: torch.Tensor | None, frames: torch.Size) -> torch.Tensor | None:
    """:return: ``x`` (broadcastable to ``frames``) as a contiguous ``[N]`` tensor, or None"""
    return None if x is None else x.expand(frames).reshape(-1).contiguous()


def _coefficients(off, on, weight) -> tuple:
    """:return: ``(off, on, weight, V)`` for the kernels: contiguous, ``V = sum(weight)`` (float32, None without)"""
    weight = None if weight is None else weight.contiguous()
    vsum = None if weight is None else weight.sum(dtype=torch.float32)
    return off.contiguous(), on.contiguous(), weight, vsum


@torch.library.custom_op(f"{NAMESPACE}::triton_label_smoothed_cross_entropy", mutates_args=())
def _ce(
    logits: torch.Tensor, targets: torch.Tensor, off: torch.Tensor, on: torch.Tensor, weight: torch.Tensor | None,
    z_loss: float, mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:return: (loss ``[*S]`` float32, lse ``[N]`` float32)"""
    frames = logits.shape[:-1]
    loss, lse = _ce_outputs(logits)
    _kernels().forward(_rows(logits), _flat(targets, frames), _coefficients(off, on, weight), z_loss,
                       _flat(mask, frames), loss, lse)  # fmt: skip
    return loss, lse


def _ce_outputs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:return: the uninitialized (loss ``[*S]``, lse ``[N]``) of the fused CE, float32, on the logits' device"""
    frames = logits.shape[:-1]
    loss = torch.empty(frames, dtype=torch.float32, device=logits.device)
    return loss, torch.empty((loss.numel(),), dtype=torch.float32, device=logits.device)


@_ce.register_fake
def _(logits, targets, off, on, weight, z_loss, mask):
    return _ce_outputs(logits)


@torch.library.custom_op(f"{NAMESPACE}::triton_label_smoothed_cross_entropy_backward", mutates_args=())
def _ce_backward(
    grad_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, off: torch.Tensor, on: torch.Tensor,
    weight: torch.Tensor | None, z_loss: float, mask: torch.Tensor | None, lse: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """:return: the gradient w.r.t. ``logits`` for the upstream per-frame gradient ``grad_loss`` (dtype of logits)"""
    frames = logits.shape[:-1]
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    rows = _rows(logits), _flat(targets, frames)
    _kernels().ce_backward(*rows, _coefficients(off, on, weight), z_loss, _flat(mask, frames), lse,
                           _flat(grad_loss, frames), grad.view(-1, logits.shape[-1]))  # fmt: skip
    return grad


@_ce_backward.register_fake
def _(grad_loss, logits, targets, off, on, weight, z_loss, mask, lse):
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


def _ce_setup_context(ctx, inputs, output) -> None:
    logits, targets, off, on, weight, z_loss, mask = inputs
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(logits, targets, off, on, weight, mask, output[1])
    ctx.z_loss = z_loss


def _ce_gradient(ctx, grad_loss, _grad_lse) -> tuple:
    if grad_loss is None:
        return (None,) * 7
    logits, targets, off, on, weight, mask, lse = ctx.saved_tensors
    grad = _ce_backward(grad_loss, logits, targets, off, on, weight, ctx.z_loss, mask, lse)
    return grad, None, None, None, None, None, None


_ce.register_autograd(_ce_gradient, setup_context=_ce_setup_context)


def label_smoothed_cross_entropy(logits, targets, off, on, weight, z_loss, mask) -> torch.Tensor:
    """See ``Backend.label_smoothed_cross_entropy`` (float16/bfloat16/float32 logits).

    :return: the loss ``[*S]``, float32
    """
    return _ce(logits, targets, off, on, weight, float(z_loss), mask)[0]


def supports_factors(logits: torch.Tensor, *factors: Any) -> bool:
    """:return: whether each of ``factors`` (scale, shift, sum_weight of the smoothed NLL) is a float, None, or a
    tensor of one value or one per label (size-1 frame axes): the forms :func:`log_softmax_smoothed_nll` takes"""
    for f in factors:
        if isinstance(f, torch.Tensor) and (
            f.dim() > logits.dim() or any(n != 1 for n in f.shape[:-1]) or f.numel() not in (1, logits.shape[-1])
        ):
            return False
    return True


def _split(value: Any) -> tuple[torch.Tensor | None, float]:
    """:return: ``(value, 0.0)`` for a tensor, else ``(None, float(value))``"""
    return (value, 0.0) if isinstance(value, torch.Tensor) else (None, float(value))


@torch.library.custom_op(f"{NAMESPACE}::triton_log_softmax_smoothed_nll", mutates_args=())
def _nll(
    logits: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor | None, scale_value: float,
    shift: torch.Tensor | None, shift_value: float, sum_weight: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:return: (``-log_softmax(logits)[targets]`` ``[*S]`` in the logits' dtype, lse ``[N]`` float32); the factors
    are used by the backward pass only"""
    loss, lse = _nll_outputs(logits)
    _kernels().forward(_rows(logits), _flat(targets, logits.shape[:-1]), None, 0.0, None, loss, lse)
    return loss, lse


def _nll_outputs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:return: the uninitialized (loss ``[*S]`` in the logits' dtype, lse ``[N]`` float32)"""
    loss = torch.empty(logits.shape[:-1], dtype=logits.dtype, device=logits.device)
    return loss, torch.empty((loss.numel(),), dtype=torch.float32, device=logits.device)


@_nll.register_fake
def _(logits, targets, scale, scale_value, shift, shift_value, sum_weight):
    return _nll_outputs(logits)


@torch.library.custom_op(f"{NAMESPACE}::triton_log_softmax_smoothed_nll_backward", mutates_args=())
def _nll_backward(
    grad_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor,
    scale: torch.Tensor | None, scale_value: float, shift: torch.Tensor | None, shift_value: float,
    sum_weight: torch.Tensor | None,
) -> torch.Tensor:  # fmt: skip
    """:return: the gradient w.r.t. ``logits`` of the smoothed path for the upstream gradient ``grad_loss``"""
    frames, num_labels = logits.shape[:-1], logits.shape[-1]
    scale, shift, sum_weight = (None if f is None else f.reshape(-1).contiguous() for f in (scale, shift, sum_weight))
    shift_sum = None
    if shift is not None:  # sum_k shift_k over the K labels (a single value stands for all of them)
        shift_sum = shift.sum(dtype=torch.float32) * (num_labels if shift.numel() == 1 else 1)
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    factors = ((scale, scale_value), (shift, shift_value), sum_weight, shift_sum)
    _kernels().nll_backward(_rows(logits), _flat(targets, frames), lse, _flat(grad_loss, frames), factors,
                            grad.view(-1, num_labels))  # fmt: skip
    return grad


@_nll_backward.register_fake
def _(grad_loss, logits, targets, lse, scale, scale_value, shift, shift_value, sum_weight):
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


def _nll_setup_context(ctx, inputs, output) -> None:
    logits, targets, scale, scale_value, shift, shift_value, sum_weight = inputs
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(logits, targets, output[1], scale, shift, sum_weight)
    ctx.values = (scale_value, shift_value)


def _nll_gradient(ctx, grad_loss, _grad_lse) -> tuple:
    if grad_loss is None:
        return (None,) * 7
    logits, targets, lse, scale, shift, sum_weight = ctx.saved_tensors
    scale_value, shift_value = ctx.values
    grad = _nll_backward(grad_loss, logits, targets, lse, scale, scale_value, shift, shift_value, sum_weight)
    return grad, None, None, None, None, None, None


_nll.register_autograd(_nll_gradient, setup_context=_nll_setup_context)


def log_softmax_smoothed_nll(logits, targets, scale, shift, sum_weight) -> torch.Tensor:
    """See ``Backend.log_softmax_smoothed_nll``: ``-log_softmax(logits)[targets]`` (dtype of the logits; class axis
    last) with the gradient of ``log_softmax -> scaled_gradient_ext -> gather``, computed from the logits (the
    log-probabilities are not read).

    :param scale: float, or a tensor of one value or one per label (:func:`supports_factors`)
    :param shift: like ``scale``, or None for 0
    :param sum_weight: a tensor like ``scale``, or None for all ones
    """
    (scale_t, scale_v), (shift_t, shift_v) = _split(scale), _split(0.0 if shift is None else shift)
    return _nll(logits, targets, scale_t, scale_v, shift_t, shift_v, sum_weight)[0]
