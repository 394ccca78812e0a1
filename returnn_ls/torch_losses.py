"""Drop-in PyTorch losses on raw tensors: ``nn.Module`` s with ``nn.CrossEntropyLoss``'s and ``nn.CTCLoss``'s
conventions that run on this library's fused kernels (:func:`returnn_ls.label_smoothed_cross_entropy`,
:func:`returnn_ls.ctc_loss`). Importing this module imports torch; ``import returnn_ls`` does not.

Example (where ``nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=-100)`` was)::

    from returnn_ls.torch_losses import LabelSmoothedCrossEntropyLoss

    loss_fn = LabelSmoothedCrossEntropyLoss(smoothing=0.1, convention="uniform")  # PyTorch's numbers
    loss = loss_fn(logits, labels)   # logits (N, C) or (N, C, d1, ...); labels (N) or (N, d1, ...), -100 ignored
    loss.backward()

``convention="returnn"`` (the default, as in the rest of this library) gives the other labels ``a/(C-1)`` and the
target ``1-a``; ``"uniform"`` is PyTorch's ``label_smoothing`` (``a/C`` each, the target ``1-a+a/C``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls._optional import optional_import

torch = optional_import("torch", "returnn_ls.torch_losses")

import returnn_ls as rf  # noqa: E402 (after the framework check, so that a missing torch names its extra)
from returnn_ls.dim import Dim  # noqa: E402

__all__ = ["CTCLoss", "LabelSmoothedCrossEntropyLoss"]

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: Any, cls: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{cls}: reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    return reduction


def _smoothing(value: Any) -> Any:
    """:return: a float as it is, a scalar ``torch.Tensor`` (e.g. a schedule) as a scalar returnn_ls Tensor"""
    return rf.convert_to_tensor(value, dims=()) if isinstance(value, torch.Tensor) else value


class LabelSmoothedCrossEntropyLoss(torch.nn.Module):
    """``nn.CrossEntropyLoss`` with label smoothing of either convention, exclusion, on the fused kernel.

    Input ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``; target class indices ``(N)``, ``(N, d1, ...)`` or ``()``;
    frames whose target is ``ignore_index`` get loss 0 and gradient 0. The result is float32 (float64 for float64
    input). With ``convention="uniform"`` every reduction equals ``F.cross_entropy(input, target, weight=weight,
    ignore_index=ignore_index, reduction=reduction, label_smoothing=smoothing)``, gradients included.

    :param weight: optional class weights ``(C,)`` (a buffer: moves with ``.to(device)``)
    :param ignore_index: the target value of frames to ignore (PyTorch's default -100)
    :param reduction: ``"none"`` (the shape of the target), ``"mean"`` (sum over frames divided by the number of
        frames not ignored, or by the sum of their target's weight), ``"sum"``
    :param smoothing: ``a`` in ``[0, 1]``: float or scalar tensor (a schedule may change it between steps)
    :param convention: ``"returnn"`` or ``"uniform"`` (see the module doc)
    :param exclude_labels: labels that get no smoothing mass (e.g. a blank)
    :param z_loss: adds ``z_loss * logsumexp(logits)**2`` per frame
    """

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean", *,
                 smoothing: float | Any = 0.0, convention: str = "returnn",
                 exclude_labels: Sequence[int] | None = None, z_loss: float = 0.0):  # fmt: skip
        super().__init__()
        cls = type(self).__name__
        if weight is not None and (not isinstance(weight, torch.Tensor) or weight.dim() != 1):
            raise TypeError(f"{cls}: weight must be a 1-D torch.Tensor of class weights, got {weight!r}")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise TypeError(f"{cls}: ignore_index must be an int, got {ignore_index!r}")
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = _check_reduction(reduction, cls)
        self.smoothing, self.convention, self.z_loss = smoothing, convention, z_loss
        self.exclude_labels = None if exclude_labels is None else tuple(exclude_labels)

    def forward(self, input: Any, target: Any) -> Any:  # noqa: A002 (PyTorch's argument name)
        """:return: the loss, reduced as ``reduction`` says"""
        cls = type(self).__name__
        if input.dim() < 1 or target.dim() != max(input.dim() - 1, 0) or target.is_floating_point():
            raise ValueError(f"{cls}: expected input (N, C, d1, ...) and integer target (N, d1, ...) (or (C,) and "
                             f"()), got input {tuple(input.shape)} and target {tuple(target.shape)} {target.dtype}; "
                             "probability targets are not supported")  # fmt: skip
        logits = input.movedim(1, -1) if input.dim() > 1 else input
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        frames = [Dim(int(n), name=f"d{i}") for i, n in enumerate(target.shape)]
        classes = Dim(int(logits.shape[-1]), name="classes")
        loss = rf.label_smoothed_cross_entropy(
            logits=rf.convert_to_tensor(logits, dims=[*frames, classes], feature_dim=classes),
            targets=rf.convert_to_tensor(safe, dims=frames, sparse_dim=classes),
            axis=classes, smoothing=_smoothing(self.smoothing), convention=self.convention,
            exclude_labels=self.exclude_labels, z_loss=self.z_loss,
            weight=None if self.weight is None else rf.convert_to_tensor(self.weight, dims=[classes]),
        ).copy_transpose(frames).raw_tensor  # fmt: skip
        loss = torch.where(valid, loss, torch.zeros_like(loss))  # gradient exactly 0 on ignored frames
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        if self.weight is None:
            return loss.sum() / valid.sum().to(loss.dtype)
        return loss.sum() / torch.where(valid, self.weight.to(loss.dtype)[safe], 0.0).sum()


class CTCLoss(torch.nn.Module):
    """``nn.CTCLoss`` on :func:`returnn_ls.ctc_loss`, with label smoothing of the CTC posterior.

    ``forward(log_probs, targets, input_lengths, target_lengths)``: ``log_probs`` ``(T, N, C)`` (or ``(T, C)``),
    log-probabilities (``log_softmax`` output); ``targets`` ``(N, S)`` padded, or 1-D concatenated (then the
    lengths are read on the host); ``input_lengths``/``target_lengths`` ``(N,)`` tensors or sequences (``()``/
    ints unbatched). The loss equals ``nn.CTCLoss``'s; with ``smoothing`` ``a`` the gradient w.r.t. the logits
    before the ``log_softmax`` is ``softmax - q'``, the CTC posterior ``q`` smoothed over the non-blank labels
    (mass kept; the value is unchanged). The gradient w.r.t. ``log_probs`` itself is the true ``-q'``, not
    PyTorch's ``exp(lp) - q``: the same after a ``log_softmax``.

    :param blank: the blank's class index
    :param reduction: ``"mean"`` (each loss divided by its target length, then the batch mean), ``"sum"``,
        ``"none"`` (``(N,)``)
    :param zero_infinity: loss 0 for targets that cannot be aligned (PyTorch's meaning)
    :param smoothing: ``a`` in ``[0, 1]``: float or scalar tensor; needs ``C >= 3`` when nonzero
    """

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False, *,
                 smoothing: float | Any = 0.0):  # fmt: skip
        super().__init__()
        self.blank, self.zero_infinity, self.smoothing = blank, zero_infinity, smoothing
        self.reduction = _check_reduction(reduction, type(self).__name__)

    def forward(self, log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any) -> Any:
        """:return: the loss, reduced as ``reduction`` says"""
        unbatched = log_probs.dim() == 2
        if unbatched:
            log_probs = log_probs.unsqueeze(1)
            targets = targets.unsqueeze(0) if targets.dim() == 1 else targets
        device = log_probs.device
        input_lengths = torch.as_tensor(input_lengths, device=device).reshape(-1).to(torch.int32)
        target_lengths = torch.as_tensor(target_lengths, device=device).reshape(-1).to(torch.int32)
        if targets.dim() == 1:  # concatenated: pad them (reads the lengths on the host)
            targets = _pad_concatenated(targets, target_lengths)
        batch = Dim(int(log_probs.shape[1]), name="batch")
        classes = Dim(int(log_probs.shape[2]), name="classes")
        time = Dim(rf.convert_to_tensor(input_lengths, dims=[batch]), name="time")
        labels = Dim(rf.convert_to_tensor(target_lengths, dims=[batch]), name="labels")
        loss = rf.ctc_loss(
            logits=rf.convert_to_tensor(log_probs, dims=[time, batch, classes], feature_dim=classes),
            targets=rf.convert_to_tensor(targets.to(torch.int32), dims=[batch, labels], sparse_dim=classes),
            input_spatial_dim=time, targets_spatial_dim=labels, blank_index=self.blank, logits_normalized=True,
            label_smoothing=_smoothing(self.smoothing), zero_infinity=self.zero_infinity,
        ).raw_tensor  # fmt: skip
        if self.reduction == "sum":
            return loss.sum()
        if self.reduction == "mean":
            return (loss / target_lengths.clamp(min=1).to(loss.dtype)).mean()
        return loss[0] if unbatched else loss


def _pad_concatenated(targets: Any, lengths: Any) -> Any:
    """:return: the 1-D concatenated ``targets`` as ``(N, max(lengths))``, padded with 0"""
    width = max(int(lengths.max()), 1) if lengths.numel() else 1
    starts = torch.cumsum(lengths, 0) - lengths
    index = starts[:, None] + torch.arange(width, device=targets.device, dtype=starts.dtype)[None, :]
    inside = torch.arange(width, device=targets.device)[None, :] < lengths[:, None]
    gathered = targets[index.clamp(max=max(targets.numel() - 1, 0)).long()] if targets.numel() else index * 0
    return torch.where(inside, gathered, torch.zeros_like(gathered))
