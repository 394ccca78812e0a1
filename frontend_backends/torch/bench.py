"""PyTorch's side of ``returnn-ls bench`` (see :mod:`frontend_backends.bench_base`).

Two modes: ``eager``, and ``compiled``, which runs the loss (forward and, through AOTAutograd, backward) under
``torch.compile`` with the default backend (inductor). Besides the framework's own losses this kit runs
RETURNN's (``returnn_path``), through RETURNN's frontend on raw torch tensors.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from frontend_backends.bench_base import BenchKit, LossFn, Step

__all__ = ["TorchBench"]


def _returnn_loss(x: Any, y: Any, frames: int, vocab: int, a: float) -> Any:
    """:return: RETURNN's per-frame loss of the logits ``x``: ``log_softmax -> label_smoothed_log_prob_gradient ->
    cross_entropy`` in ``returnn.frontend`` with its torch backend"""
    import returnn.frontend as rrf
    from returnn.tensor import Dim, Tensor

    rrf.select_backend_torch()
    frame_dim, vocab_dim = Dim(frames, name="frames"), Dim(vocab, name="vocab")
    rx = Tensor("x", dims=[frame_dim, vocab_dim], dtype="float32", raw_tensor=x, feature_dim=vocab_dim)
    ry = Tensor("y", dims=[frame_dim], dtype="int64", raw_tensor=y, sparse_dim=vocab_dim)
    lp = rrf.label_smoothed_log_prob_gradient(rrf.log_softmax(rx, axis=vocab_dim), a)
    return rrf.cross_entropy(estimated=lp, target=ry, axis=vocab_dim, estimated_type="log-probs").raw_tensor


class TorchBench(BenchKit):
    """The PyTorch kit: ``F.cross_entropy`` (with ``label_smoothing``) as the reference, ``[K, H]`` weights like
    ``nn.Linear``. Each step first frees the gradients of the previous one, as ``optimizer.zero_grad()`` does."""

    modes = {"eager": ("eager",), "compiled": ("compiled",)}
    keeps_buffers = False
    weight_hidden_first = False
    reference_cases = ("plain_ce", "framework_ls", "returnn_path", "linear_framework_ls")

    def unavailable(self, case: str) -> str | None:
        """:return: why ``case`` cannot run here (``returnn_path`` without RETURNN installed), or None"""
        if case == "returnn_path" and importlib.util.find_spec("returnn") is None:
            return "RETURNN is not installed"
        return None

    def set_threads(self, threads: int) -> None:
        """Set torch's intra-op threads."""
        torch.set_num_threads(threads)

    def params(self, arrays: Sequence[np.ndarray]) -> list[Any]:
        """:return: leaf tensors of ``arrays`` that require gradients"""
        return [torch.tensor(array, requires_grad=True) for array in arrays]

    def targets(self, labels: np.ndarray) -> Any:
        """:return: a torch tensor of ``labels``"""
        return torch.tensor(labels)

    def reference_loss(self, case: str, targets: Any, frames: int, vocab: int, a: float) -> LossFn:
        """:return: the loss function of one of :attr:`reference_cases` (``F.cross_entropy``, RETURNN's path)"""
        y = targets
        losses: dict[str, LossFn] = {
            "plain_ce": lambda x: F.cross_entropy(x, y, reduction="none"),
            "framework_ls": lambda x: F.cross_entropy(x, y, reduction="none", label_smoothing=a),
            "returnn_path": lambda x: _returnn_loss(x, y, frames, vocab, a),
            "linear_framework_ls": lambda h, w, b: F.cross_entropy(
                F.linear(h, w, b), y, reduction="none", label_smoothing=a
            ),
        }
        if case not in losses:
            raise ValueError(f"bench: torch has no reference case {case!r}; it has {list(losses)}")
        return losses[case]

    def step(self, loss_fn: LossFn, params: Sequence[Any], mode: str) -> Step:
        """:return: the fwd+bwd step; ``step.release()`` frees the gradients outside a step (before the memory
        baseline is taken)"""
        if mode not in self.execution_modes("all"):
            raise ValueError(f"bench: torch mode must be one of {list(self.execution_modes('all'))}, got {mode!r}")

        def total() -> Any:
            return loss_fn(*params).sum()

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
