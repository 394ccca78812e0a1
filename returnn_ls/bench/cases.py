"""The cases of ``returnn-ls bench``: their names, descriptions, modes, references, and our side of each loss.

The per-framework functions (``torch_cases.make_torch``, ``tensorflow_cases.make_tensorflow``) build the inputs
(they count towards the memory baseline) and return a zero-argument function that runs the forward and backward
pass once, in one of the framework's execution modes. Frameworks are imported only inside the worker subprocess
(see :mod:`returnn_ls.bench`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import returnn_ls as rf

#: Cases on the logits ``[frames, vocab]`` and, with ``--hidden``, on the projection ``hidden @ W + b``.
LOGIT_CASES = ("plain_ce", "framework_ls", "returnn_path", "ours_path_no_smoothing", "ours_path", "ours_fused")
LINEAR_CASES = ("linear_framework_ls", "ours_linear_fused")
#: What each case is, for the table's legend.
DESCRIPTIONS = {
    "plain_ce": "F.cross_entropy / tf.nn.sparse_softmax_cross_entropy_with_logits, no smoothing",
    "framework_ls": "F.cross_entropy(label_smoothing=a) / Keras CategoricalCrossentropy(label_smoothing=a) on one-hot",
    "returnn_path": "RETURNN: rf.log_softmax -> rf.label_smoothed_log_prob_gradient -> rf.cross_entropy (torch)",
    "ours_path_no_smoothing": "ours: log_softmax -> cross_entropy (the same path without smoothing)",
    "ours_path": "ours: log_softmax -> label_smoothed_log_prob_gradient -> cross_entropy",
    "ours_fused": "ours: label_smoothed_cross_entropy(convention='uniform')",
    "linear_framework_ls": "hidden @ W + b, then the framework's own label smoothing",
    "ours_linear_fused": "ours: linear_label_smoothed_cross_entropy(convention='uniform'), chunked",
}
#: The case each case's ratios are taken against (same backend, mode and sizes); the goals are stated so.
REFERENCE = {
    "framework_ls": "plain_ce",
    "returnn_path": "plain_ce",
    "ours_path_no_smoothing": "plain_ce",
    "ours_path": "plain_ce",
    "ours_fused": "framework_ls",
    "ours_linear_fused": "linear_framework_ls",
}

#: ``--mode`` -> the execution modes of each framework: ``torch.compile`` (inductor) on torch, ``tf.function``
#: and ``tf.function(jit_compile=True)`` (XLA) on TensorFlow.
FRAMEWORK_MODES = {
    "torch": {"eager": ("eager",), "compiled": ("compiled",)},
    "tensorflow": {"eager": ("eager",), "compiled": ("function", "xla")},
}
MODE_CHOICES = ("eager", "compiled", "all")

#: Buffers of ``frames x vocab`` floats that the unfused projection case holds at its peak (logits or their
#: log-softmax, the gradient of the log-softmax and the gradient of the logits), a lower bound.
UNFUSED_LINEAR_BUFFERS = 3

Step = Callable[[], Any]


def framework_modes(backend: str, mode: str) -> tuple[str, ...]:
    """:return: the execution modes of ``backend`` for ``--mode`` ``mode`` (``eager``, ``compiled`` or ``all``)"""
    modes = FRAMEWORK_MODES[backend]
    return modes["eager"] + modes["compiled"] if mode == "all" else modes[mode]


def estimated_peak_mb(case: str, frames: int, vocab: int, hidden: int) -> float | None:
    """:return: a lower bound of the peak memory (MB) of ``case`` computed from the sizes, for the cases whose
    memory grows with ``frames x vocab`` without a bound of ours; None for the others"""
    if case != "linear_framework_ls":
        return None
    return (UNFUSED_LINEAR_BUFFERS * frames * vocab + hidden * vocab) * 4 / 2**20


def expected_skip(backend: str, case: str, sizes: tuple[int, int, int], max_memory_gb: float) -> str | None:
    """:return: why ``case`` is not run on ``backend`` (an expected skip, not a failure), or None to run it"""
    if case == "returnn_path" and backend != "torch":
        return "RETURNN's TF backend builds graph-mode layers; timed on torch only"
    if case == "returnn_path" and importlib.util.find_spec("returnn") is None:
        return "RETURNN is not installed"
    estimate = estimated_peak_mb(case, *sizes)
    if estimate is not None and estimate > max_memory_gb * 1024:
        return (f"not run: needs >= {estimate / 1024:.1f} GB ({UNFUSED_LINEAR_BUFFERS} x frames x vocab floats + "
                f"the weight's gradient), over --max-memory-gb {max_memory_gb:g}")  # fmt: skip
    return None


def _ours_inputs(raw_x: Any, raw_y: Any, frames: int, vocab: int) -> tuple[rf.Tensor, rf.Tensor, rf.Dim]:
    frame_dim, vocab_dim = rf.Dim(frames, name="frames"), rf.Dim(vocab, name="vocab")
    x = rf.convert_to_tensor(raw_x, dims=[frame_dim, vocab_dim], feature_dim=vocab_dim)
    y = rf.convert_to_tensor(raw_y, dims=[frame_dim], sparse_dim=vocab_dim)
    return x, y, vocab_dim


def ours_loss(case: str, raw_x: Any, raw_y: Any, frames: int, vocab: int, a: float) -> rf.Tensor:
    """:return: the per-frame loss of one of our logit cases"""
    x, y, vocab_dim = _ours_inputs(raw_x, raw_y, frames, vocab)
    if case == "ours_fused":
        return rf.label_smoothed_cross_entropy(logits=x, targets=y, axis=vocab_dim, smoothing=a, convention="uniform")
    lp = rf.log_softmax(x, axis=vocab_dim)
    if case == "ours_path":
        lp = rf.label_smoothed_log_prob_gradient(lp, a)
    return rf.cross_entropy(estimated=lp, target=y, axis=vocab_dim, estimated_type="log-probs")


def ours_linear_loss(
    raw_h: Any, raw_w: Any, raw_b: Any, raw_y: Any, sizes: tuple[int, int, int], a: float, hidden_first: bool = False
):
    """:return: the per-frame loss of :func:`returnn_ls.linear_label_smoothed_cross_entropy`; ``W`` is ``[K, H]``
    (PyTorch's ``Linear``) or, with ``hidden_first``, ``[H, K]`` (Keras's ``Dense``)"""
    frames, hidden, vocab = sizes
    frame_dim, hidden_dim, vocab_dim = rf.Dim(frames, name="f"), rf.Dim(hidden, name="h"), rf.Dim(vocab, name="v")
    return rf.linear_label_smoothed_cross_entropy(
        hidden=rf.convert_to_tensor(raw_h, dims=[frame_dim, hidden_dim]),
        weight=rf.convert_to_tensor(raw_w, dims=[hidden_dim, vocab_dim] if hidden_first else [vocab_dim, hidden_dim]),
        bias=rf.convert_to_tensor(raw_b, dims=[vocab_dim]),
        targets=rf.convert_to_tensor(raw_y, dims=[frame_dim], sparse_dim=vocab_dim),
        axis=vocab_dim,
        smoothing=a,
        convention="uniform",
    )
