"""PyTorch's side of ``returnn-ls bench`` (see :mod:`frontend_backends.bench_base`).

Two modes: ``eager``, and ``compiled``, which runs the loss (forward and, through AOTAutograd, backward) under
``torch.compile`` with the default backend (inductor). Besides the framework's own losses this kit runs
RETURNN's (``returnn_path``), through RETURNN's frontend on raw torch tensors, and, on CUDA where the packages are
installed, the optional references ``liger_ls``, ``liger_linear_ls`` (Liger-Kernel) and ``cce_linear``
(cut-cross-entropy, without label smoothing).

On ``cpu`` the benchmark measures time and peak RSS itself; on ``cuda`` :meth:`TorchBench.measure` times each step
with CUDA events and takes the peak of ``torch.cuda.max_memory_allocated`` above the memory allocated after the
warm-up (the inputs and their gradients held): the memory a step needs beyond its inputs and gradients.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from frontend_backends.bench_base import DTYPES, BenchKit, LossFn, Step

__all__ = ["OPTIONAL_PACKAGES", "TorchBench"]

#: The optional reference cases -> (the module they import, the package's name): they run on CUDA only.
OPTIONAL_PACKAGES = {
    "liger_ls": ("liger_kernel", "Liger-Kernel"),
    "liger_linear_ls": ("liger_kernel", "Liger-Kernel"),
    "cce_linear": ("cut_cross_entropy", "cut-cross-entropy"),
}


def _returnn_loss(x: Any, y: Any, frames: int, vocab: int, a: float) -> Any:
    """:return: RETURNN's per-frame loss of the logits ``x``: ``log_softmax -> label_smoothed_log_prob_gradient ->
    cross_entropy`` in ``returnn.frontend`` with its torch backend"""
    import returnn.frontend as rrf
    from returnn.tensor import Dim, Tensor

    rrf.select_backend_torch()
    frame_dim, vocab_dim = Dim(frames, name="frames"), Dim(vocab, name="vocab")
    dtype = str(x.dtype).removeprefix("torch.")
    rx = Tensor("x", dims=[frame_dim, vocab_dim], dtype=dtype, raw_tensor=x, feature_dim=vocab_dim)
    ry = Tensor("y", dims=[frame_dim], dtype="int64", raw_tensor=y, sparse_dim=vocab_dim)
    lp = rrf.label_smoothed_log_prob_gradient(rrf.log_softmax(rx, axis=vocab_dim), a)
    return rrf.cross_entropy(estimated=lp, target=ry, axis=vocab_dim, estimated_type="log-probs").raw_tensor


def _per_frame(case: str, loss: Any) -> Any:
    """:return: ``loss`` if it is the per-frame loss ``[F]`` a case must return; else a RuntimeError naming ``case``"""
    if not isinstance(loss, torch.Tensor) or loss.dim() != 1:
        raise RuntimeError(
            f"bench: {case}: expected the per-frame loss [F] (reduction='none'), got "
            f"{type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}; the package's API differs"
        )
    return loss


def _check_parameters(case: str, fn: Any, expected: Sequence[str]) -> None:
    """Raise a RuntimeError naming ``case`` if the parameters of ``fn`` do not start with ``expected``."""
    names = [n for n in inspect.signature(fn).parameters if n != "self"]
    if names[: len(expected)] != list(expected):
        raise RuntimeError(
            f"bench: {case}: {fn.__qualname__}{inspect.signature(fn)} is not ({', '.join(expected)}, "
            "...) as this case calls it; adapt frontend_backends/torch/bench.py to this version"
        )


def _optional_loss(case: str, y: Any, a: float) -> LossFn:
    """:return: the loss function of one of :data:`OPTIONAL_PACKAGES` (importing its package)"""
    if case == "liger_ls":
        from liger_kernel.transformers import LigerCrossEntropyLoss

        liger = LigerCrossEntropyLoss(label_smoothing=a, reduction="none")
        return lambda x: _per_frame(case, liger(x, y))
    if case == "liger_linear_ls":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        _check_parameters(case, LigerFusedLinearCrossEntropyLoss.forward, ("lin_weight", "_input", "target", "bias"))
        fused = LigerFusedLinearCrossEntropyLoss(label_smoothing=a, reduction="none")
        return lambda h, w, b: _per_frame(case, fused(w, h, y, b))
    from cut_cross_entropy import linear_cross_entropy

    _check_parameters(case, linear_cross_entropy, ("e", "c", "targets", "bias"))
    return lambda h, w, b: _per_frame(case, linear_cross_entropy(h, w, y, bias=b, reduction="none"))


def _measure_cuda(step: Step, repeats: int, device: str) -> dict[str, Any]:
    """Warm up, then time ``repeats`` steps with CUDA events; :return: the times (s) and the peak (MB) of the
    allocated memory above that held after the warm-up (the inputs and the warm-up's gradients)"""
    step()  # warm-up: compiles in the compiled mode; its gradients stay allocated
    torch.cuda.synchronize(device)
    held = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)  # ms -> s
    peak = torch.cuda.max_memory_allocated(device) - held
    return {"times": times, "peak_mb": max(0, peak) / 2**20}


class TorchBench(BenchKit):
    """The PyTorch kit: ``F.cross_entropy`` (with ``label_smoothing``) as the reference, ``[K, H]`` weights like
    ``nn.Linear``. Each step first frees the gradients of the previous one, as ``optimizer.zero_grad()`` does."""

    modes = {"eager": ("eager",), "compiled": ("compiled",)}
    keeps_buffers = False
    weight_hidden_first = False
    reference_cases = ("plain_ce", "framework_ls", "returnn_path", "linear_framework_ls", *OPTIONAL_PACKAGES)
    dtypes = DTYPES

    def unavailable(self, case: str, device: str = "cpu") -> str | None:
        """:return: why ``case`` cannot run here (``returnn_path`` without RETURNN installed; the optional cases
        without their package or off CUDA), or None"""
        if case == "returnn_path" and importlib.util.find_spec("returnn") is None:
            return "RETURNN is not installed"
        if case not in OPTIONAL_PACKAGES:
            return None
        module, package = OPTIONAL_PACKAGES[case]
        reasons = [] if device == "cuda" else [f"needs --device cuda ({package}'s kernels are Triton, for GPUs)"]
        if importlib.util.find_spec(module) is None:
            reasons.append(f"{package} is not installed (no module {module})")
        return "; ".join(reasons) or None

    def devices(self) -> tuple[str, ...]:
        """:return: ``cpu``, and ``cuda`` where ``torch.cuda.is_available()``"""
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def device_unavailable(self, device: str) -> str | None:
        """:return: why ``device`` cannot be used here (``cuda``: which torch build sees no GPU), or None"""
        if device == "cuda" and not torch.cuda.is_available():
            return (f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA "
                    f"{torch.version.cuda or 'none: a CPU build'}); use --device cpu")  # fmt: skip
        return super().device_unavailable(device)

    def measure(self, step: Step, repeats: int, device: str) -> dict[str, Any] | None:
        """:return: on ``cuda``, the times by CUDA events and the peak allocated memory above the inputs and their
        gradients (see the module docstring); None on ``cpu`` (the benchmark measures)"""
        return _measure_cuda(step, repeats, device) if device == "cuda" else None

    def set_threads(self, threads: int) -> None:
        """Set torch's intra-op threads."""
        torch.set_num_threads(threads)

    def params(self, arrays: Sequence[np.ndarray], dtype: str = "float32", device: str = "cpu") -> list[Any]:
        """:return: leaf tensors of ``arrays`` (copied, cast to ``dtype``, on ``device``) that require gradients"""
        torch_dtype = getattr(torch, dtype)
        return [torch.tensor(array).to(device=device, dtype=torch_dtype).requires_grad_(True) for array in arrays]

    def targets(self, labels: np.ndarray, device: str = "cpu") -> Any:
        """:return: a torch tensor of ``labels`` on ``device``"""
        return torch.tensor(labels, device=device)

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
        if case in OPTIONAL_PACKAGES:
            return _optional_loss(case, y, a)
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
