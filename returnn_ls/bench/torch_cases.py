"""The PyTorch cases of ``returnn-ls bench`` (see :mod:`returnn_ls.bench.cases`)."""

from __future__ import annotations

from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls.bench.cases import LINEAR_CASES, Step, ours_linear_loss, ours_loss

__all__ = ["make_torch"]


def _returnn_torch_loss(x: Any, y: Any, frames: int, vocab: int, a: float) -> Any:
    import returnn.frontend as rrf
    from returnn.tensor import Dim, Tensor

    rrf.select_backend_torch()
    frame_dim, vocab_dim = Dim(frames, name="frames"), Dim(vocab, name="vocab")
    rx = Tensor("x", dims=[frame_dim, vocab_dim], dtype="float32", raw_tensor=x, feature_dim=vocab_dim)
    ry = Tensor("y", dims=[frame_dim], dtype="int64", raw_tensor=y, sparse_dim=vocab_dim)
    lp = rrf.label_smoothed_log_prob_gradient(rrf.log_softmax(rx, axis=vocab_dim), a)
    return rrf.cross_entropy(estimated=lp, target=ry, axis=vocab_dim, estimated_type="log-probs").raw_tensor


def _linear_losses(frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator, y: Any):
    """:return: (the two projection cases' loss functions, their parameters)"""
    import torch
    import torch.nn.functional as F

    h, w, b = (torch.tensor(rng.standard_normal(s, dtype=np.float32) * 0.1, requires_grad=True)
               for s in ((frames, hidden), (vocab, hidden), (vocab,)))  # fmt: skip
    losses = {
        "ours_linear_fused": lambda: ours_linear_loss(h, w, b, y, (frames, hidden, vocab), a).raw_tensor,
        "linear_framework_ls": lambda: F.cross_entropy(F.linear(h, w, b), y, reduction="none", label_smoothing=a),
    }
    return losses, (h, w, b)


def _logit_losses(frames: int, vocab: int, a: float, rng: np.random.Generator, y: Any):
    """:return: (the logit cases' loss functions, their parameters)"""
    import torch
    import torch.nn.functional as F

    x = torch.tensor(rng.standard_normal((frames, vocab), dtype=np.float32), requires_grad=True)
    losses = {
        "plain_ce": lambda: F.cross_entropy(x, y, reduction="none"),
        "framework_ls": lambda: F.cross_entropy(x, y, reduction="none", label_smoothing=a),
        "returnn_path": lambda: _returnn_torch_loss(x, y, frames, vocab, a),
    }
    for case in ("ours_path_no_smoothing", "ours_path", "ours_fused"):
        losses[case] = lambda case=case: ours_loss(case, x, y, frames, vocab, a).raw_tensor
    return losses, (x,)


def make_torch(
    case: str, frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator, mode: str = "eager"
) -> Step:
    """:return: a fwd+bwd step of ``case`` on PyTorch; ``mode`` ``"compiled"`` runs the loss (forward and, through
    AOTAutograd, backward) under ``torch.compile`` with the default backend (inductor). Each step
    first frees the gradients of the previous one, as ``optimizer.zero_grad()`` does; ``step.release()`` frees
    them outside a step (before the memory baseline is taken)."""
    import torch

    if mode not in ("eager", "compiled"):
        raise ValueError(f"make_torch: mode must be 'eager' or 'compiled', got {mode!r}")
    rf.select_backend("torch")
    y = torch.tensor(rng.integers(0, vocab, frames))
    if case in LINEAR_CASES:
        losses, params = _linear_losses(frames, vocab, hidden, a, rng, y)
    else:
        losses, params = _logit_losses(frames, vocab, a, rng, y)
    loss = losses[case]

    def total() -> Any:
        return loss().sum()

    if mode == "compiled":
        total = torch.compile(total)

    def release() -> None:
        for p in params:
            p.grad = None

    def step() -> None:
        release()
        total().backward()

    step.release = release
    return step
