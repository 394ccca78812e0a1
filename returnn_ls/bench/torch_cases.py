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


def make_torch(case: str, frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator) -> Step:
    """:return: a fwd+bwd step of ``case`` on PyTorch"""
    import torch
    import torch.nn.functional as F

    rf.select_backend("torch")
    y = torch.tensor(rng.integers(0, vocab, frames))
    if case in LINEAR_CASES:
        h, w, b = (torch.tensor(rng.standard_normal(s, dtype=np.float32) * 0.1, requires_grad=True)
                   for s in ((frames, hidden), (vocab, hidden), (vocab,)))  # fmt: skip
        if case == "ours_linear_fused":
            loss_fn = lambda: ours_linear_loss(h, w, b, y, (frames, hidden, vocab), a).raw_tensor  # noqa: E731
        else:
            loss_fn = lambda: F.cross_entropy(F.linear(h, w, b), y, reduction="none", label_smoothing=a)  # noqa: E731
        params = (h, w, b)
    else:
        x = torch.tensor(rng.standard_normal((frames, vocab), dtype=np.float32), requires_grad=True)
        losses = {
            "plain_ce": lambda: F.cross_entropy(x, y, reduction="none"),
            "framework_ls": lambda: F.cross_entropy(x, y, reduction="none", label_smoothing=a),
            "returnn_path": lambda: _returnn_torch_loss(x, y, frames, vocab, a),
        }
        loss_fn = losses.get(case) or (lambda: ours_loss(case, x, y, frames, vocab, a).raw_tensor)
        params = (x,)

    def step() -> None:
        for p in params:
            p.grad = None
        loss_fn().sum().backward()

    return step
