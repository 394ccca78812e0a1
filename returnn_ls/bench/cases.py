"""The cases of ``returnn-ls bench``: their names, descriptions, modes, references, our side of each loss, and
:func:`make_step`, which builds one case on any backend.

The framework's side (execution modes, raw inputs, the framework's own reference losses, the timed step) is the
backend's :class:`frontend_backends.bench_base.BenchKit` (its package's ``Bench``, from
:func:`frontend_backends.bench_kit`); our losses call ``returnn_ls`` on raw tensors and are the same on every
backend. :func:`make_step` builds the inputs (they count towards the memory baseline) and returns a zero-argument
function that runs the forward and backward pass once, in one of the framework's execution modes, on a device
(``--device``) with inputs of a dtype (``--dtype``; drawn as float32, then cast by the kit). Frameworks are
imported only inside the worker subprocess, and in the parent when it asks a kit for its modes, devices and skips
(see :mod:`returnn_ls.bench`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

import frontend_backends
import returnn_ls as rf
from frontend_backends.bench_base import BenchKit, Step

__all__ = [
    "ALL_CASES", "ALSO_AGAINST", "DESCRIPTIONS", "LINEAR_CASES", "LOGIT_CASES", "MODE_CHOICES", "OPTIONAL_CASES",
    "OPTIONAL_LINEAR_CASES", "OPTIONAL_LOGIT_CASES", "OURS_CASES", "REFERENCE", "Step", "estimated_peak_mb",
    "expected_skip", "framework_modes", "is_linear", "make_step", "ours_linear_loss", "ours_loss",
]  # fmt: skip

#: Cases on the logits ``[frames, vocab]`` and, with ``--hidden``, on the projection ``hidden @ W + b``.
LOGIT_CASES = ("plain_ce", "framework_ls", "returnn_path", "ours_path_no_smoothing", "ours_path", "ours_fused")
LINEAR_CASES = ("linear_framework_ls", "ours_linear_fused")
#: Optional references of other packages (torch on CUDA, where installed): run only when named in ``--cases``.
OPTIONAL_LOGIT_CASES = ("liger_ls",)
OPTIONAL_LINEAR_CASES = ("liger_linear_ls", "cce_linear")
OPTIONAL_CASES = OPTIONAL_LOGIT_CASES + OPTIONAL_LINEAR_CASES
#: Every case, in the order they run (and are coloured in the plot).
ALL_CASES = LOGIT_CASES + OPTIONAL_LOGIT_CASES + LINEAR_CASES + OPTIONAL_LINEAR_CASES
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
    "liger_ls": "Liger-Kernel: LigerCrossEntropyLoss(label_smoothing=a, reduction='none') (torch, CUDA)",
    "liger_linear_ls": "Liger-Kernel: LigerFusedLinearCrossEntropyLoss(label_smoothing=a, reduction='none') "
                       "(torch, CUDA)",
    "cce_linear": "cut-cross-entropy: linear_cross_entropy(hidden, W, targets, bias, reduction='none'), no smoothing "
                  "(torch, CUDA)",
}  # fmt: skip
#: The cases of our losses (:func:`ours_loss`, :func:`ours_linear_loss`); the others are the frameworks' own,
#: built by the backend's kit (``BenchKit.reference_loss``).
OURS_CASES = ("ours_path_no_smoothing", "ours_path", "ours_fused", "ours_linear_fused")
#: The case each case's ratios are taken against (same backend, mode and sizes); the goals are stated so.
REFERENCE = {
    "framework_ls": "plain_ce",
    "returnn_path": "plain_ce",
    "ours_path_no_smoothing": "plain_ce",
    "ours_path": "plain_ce",
    "ours_fused": "framework_ls",
    "ours_linear_fused": "linear_framework_ls",
    "liger_ls": "framework_ls",
    "liger_linear_ls": "linear_framework_ls",
    "cce_linear": "linear_framework_ls",
}
#: The ratios a case also gets (besides those against its :data:`REFERENCE`), so that the goals read off one run:
#: (case, other case, the other's mode or None for the row's own, the suffix of the fields ``time_ratio_<suffix>``
#: and ``peak_ratio_<suffix>``). Left out where it would repeat ``time_ratio`` (the row's own reference, same mode).
ALSO_AGAINST = (
    ("ours_fused", "framework_ls", "compiled", "vs_compiled"),
    ("ours_fused", "liger_ls", None, "vs_liger"),
    ("ours_path", "plain_ce", "compiled", "vs_compiled"),
    ("ours_linear_fused", "liger_linear_ls", None, "vs_liger"),
    ("ours_linear_fused", "cce_linear", None, "vs_cce"),
)

#: ``--mode``: ``eager`` or ``compiled`` (the keys of ``BenchKit.modes``: the framework's execution modes under
#: each, e.g. ``torch.compile`` or ``tf.function`` and XLA), or ``all`` (both).
MODE_CHOICES = ("eager", "compiled", "all")

#: Buffers of ``frames x vocab`` floats that the unfused projection case holds at its peak (logits or their
#: log-softmax, the gradient of the log-softmax and the gradient of the logits), a lower bound.
UNFUSED_LINEAR_BUFFERS = 3


def framework_modes(backend: str, mode: str) -> tuple[str, ...]:
    """:return: the execution modes of ``backend`` for ``--mode`` ``mode`` (``eager``, ``compiled`` or ``all``),
    from its kit (importing its framework)"""
    return frontend_backends.bench_kit(backend).execution_modes(mode)


def is_linear(case: str) -> bool:
    """:return: whether ``case`` is a projection case (inputs hidden, weight and bias; needs ``--hidden``)"""
    return case in LINEAR_CASES + OPTIONAL_LINEAR_CASES


def estimated_peak_mb(case: str, frames: int, vocab: int, hidden: int, itemsize: int = 4) -> float | None:
    """:param itemsize: bytes per float of the inputs (``--dtype``)
    :return: a lower bound of the peak memory (MB) of ``case`` computed from the sizes, for the cases whose
        memory grows with ``frames x vocab`` without a bound of ours; None for the others"""
    if case != "linear_framework_ls":
        return None
    return (UNFUSED_LINEAR_BUFFERS * frames * vocab + hidden * vocab) * itemsize / 2**20


def expected_skip(backend: str, case: str, sizes: tuple[int, int, int], max_memory_gb: float, device: str = "cpu",
                  itemsize: int = 4) -> str | None:  # fmt: skip
    """:return: why ``case`` is not run on ``backend`` and ``device`` (an expected skip, not a failure), or None to
    run it"""
    reason = frontend_backends.bench_kit(backend).unavailable(case, device)
    if reason is not None:
        return reason
    estimate = estimated_peak_mb(case, *sizes, itemsize=itemsize)
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


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    array = rng.standard_normal(shape, dtype=np.float32)
    return array if scale == 1.0 else array * scale


def _draw(rng: np.random.Generator, shapes: list[tuple[int, ...]], scale: float = 1.0,
          cache_dir: str | None = None) -> list[np.ndarray]:  # fmt: skip
    """:return: float32 standard normals of ``shapes`` drawn from ``rng`` in that order, times ``scale``. With
    ``cache_dir`` the first call saves them there (keyed by the state of ``rng``, the shapes and the scale) and the
    later ones, in other workers, read them memory-mapped instead of drawing the same values again (a second or
    more per 10^8 values)"""
    if cache_dir is None:
        return [_normal(rng, shape, scale) for shape in shapes]
    key = hashlib.sha1(repr((rng.bit_generator.state, shapes, scale)).encode()).hexdigest()[:20]
    paths = [os.path.join(cache_dir, f"{key}_{i}.npy") for i in range(len(shapes))]
    if all(os.path.exists(path) for path in paths):
        return [np.load(path, mmap_mode="r") for path in paths]
    arrays = [_normal(rng, shape, scale) for shape in shapes]
    for path, array in zip(paths, arrays):
        np.save(path + ".part.npy", array)
        os.replace(path + ".part.npy", path)
    return arrays


def _logit_case(kit: BenchKit, case: str, y: Any, frames: int, vocab: int, a: float, rng: np.random.Generator, *,
                device: str = "cpu", dtype: str = "float32", cache_dir: str | None = None):  # fmt: skip
    """:return: (the parameters: the logits ``[F, K]``; the loss function of ``case`` of them)"""
    params = kit.params(_draw(rng, [(frames, vocab)], cache_dir=cache_dir), dtype=dtype, device=device)
    if case in OURS_CASES:
        return params, lambda x: ours_loss(case, x, y, frames, vocab, a).raw_tensor
    return params, kit.reference_loss(case, y, frames, vocab, a)


def _linear_case(kit: BenchKit, case: str, y: Any, sizes: tuple[int, int, int], a: float, rng: np.random.Generator,
                 *, device: str = "cpu", dtype: str = "float32", cache_dir: str | None = None):  # fmt: skip
    """:return: (the parameters: hidden ``[F, H]``, weight ``[K, H]`` or ``[H, K]`` (as the kit lays it out),
    bias ``[K]``; the loss function of ``case`` of them)"""
    frames, hidden, vocab = sizes
    hidden_first = kit.weight_hidden_first
    weight = (hidden, vocab) if hidden_first else (vocab, hidden)
    arrays = _draw(rng, [(frames, hidden), weight, (vocab,)], scale=0.1, cache_dir=cache_dir)
    params = kit.params(arrays, dtype=dtype, device=device)
    if case in OURS_CASES:
        return params, lambda h, w, b: ours_linear_loss(h, w, b, y, sizes, a, hidden_first=hidden_first).raw_tensor
    return params, kit.reference_loss(case, y, frames, vocab, a)


def make_step(
    backend: str, case: str, frames: int, vocab: int, hidden: int, a: float, rng: np.random.Generator,
    mode: str = "eager", device: str = "cpu", dtype: str = "float32", cache_dir: str | None = None,
) -> Step:  # fmt: skip
    """Build the inputs of ``case`` on ``backend`` and :return: a function running its fwd+bwd step once in
    ``mode`` (see ``BenchKit.step``; on torch it has a ``release()`` that frees the gradients).

    The inputs are drawn from ``rng`` in the same order on every backend, as float32: the targets, then the logits
    (or hidden, weight and bias of the linear cases); the kit casts them to ``dtype`` and puts them on ``device``.

    :param backend: a registered backend with a ``Bench``
    :param case: one of :data:`ALL_CASES`
    :param frames: rows of the logits (or of ``hidden``)
    :param vocab: number of labels ``K``
    :param hidden: hidden size ``H`` of the linear cases (unused by the others)
    :param a: label smoothing
    :param rng: draws the inputs
    :param mode: one of the backend's execution modes (``BenchKit.modes``)
    :param device: one of the kit's devices (``BenchKit.devices``)
    :param dtype: one of the kit's dtypes (``BenchKit.dtypes``)
    :param cache_dir: a folder where the drawn inputs are kept for the next call with the same ``rng`` state and
        sizes (see :func:`_draw`); None to draw them every time
    :raise ValueError: for an unknown case, mode or dtype, or a backend without a ``Bench``
    :raise RuntimeError: for a case that does not exist on ``backend`` or ``device`` (``BenchKit.unavailable``)

    Example::

        step = make_step("tensorflow", "ours_fused", 4096, 10000, 0, 0.1, np.random.default_rng(0), mode="xla")
        step()  # traces and compiles
        step()  # one compiled fwd+bwd step
    """
    kit = frontend_backends.bench_kit(backend)
    if case not in ALL_CASES:
        raise ValueError(f"bench: unknown case {case!r}; choose from {list(ALL_CASES)}")
    modes = kit.execution_modes("all")
    if mode not in modes:
        raise ValueError(f"bench: mode must be one of {list(modes)} on {backend!r}, got {mode!r}")
    if dtype not in kit.dtypes:
        raise ValueError(f"bench: dtype must be one of {list(kit.dtypes)} on {backend!r}, got {dtype!r}")
    reason = kit.unavailable(case, device)
    if reason is not None:
        raise RuntimeError(reason)
    rf.select_backend(backend)
    y = kit.targets(rng.integers(0, vocab, frames), device=device)
    place = dict(device=device, dtype=dtype, cache_dir=cache_dir)
    if is_linear(case):
        params, loss_fn = _linear_case(kit, case, y, (frames, hidden, vocab), a, rng, **place)
    else:
        params, loss_fn = _logit_case(kit, case, y, frames, vocab, a, rng, **place)
    return kit.step(loss_fn, params, mode)
