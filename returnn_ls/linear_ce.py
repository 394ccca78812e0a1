r"""Output projection fused with the label-smoothed cross entropy: the ``[frames, K]`` logits never exist in full.

With logits ``z = hidden @ weight + bias``, ``lse = logsumexp(z)`` and a smoothed target that is a constant
``off`` on the included labels (mask ``v``, ``V = sum v``) plus extra mass ``on`` at the target ``y``,
``q = off * v + on * onehot(y)``, the loss of a frame is::

    L = -sum_k q_k (z_k - lse) = on * (lse - z_y) + off * (V * lse - sum_k v_k z_k)

and, as ``sum_k q_k = off * V + on = 1``, its gradient w.r.t. the logits is ``softmax(z) - q``. Only
``lse`` (one float per frame) is kept from the forward pass; the backward pass recomputes the logits of one
chunk of frames at a time, turns them into ``dL * (softmax - q)`` in place and multiplies that into the
gradients of ``hidden`` (``G @ weight^T``), ``weight`` (``hidden^T @ G``, accumulated) and ``bias``. Peak
memory is ``chunk_size * K`` floats instead of several ``frames * K`` buffers, for one extra matmul.

``off`` and ``on`` per target label (``a`` = smoothing, ``E`` excluded labels):

=============  ========================  ==========================  ===================
convention     ``off`` (others)          ``off + on`` (target)       excluded target
=============  ========================  ==========================  ===================
``returnn``    ``a / (K - E - 1)``       ``1 - a``                   ``off = 0, on = 1``
``uniform``    ``a / (K - E)``           ``1 - a + a / (K - E)``     ``off = 0, on = 1``
=============  ========================  ==========================  ===================

(an excluded target is not smoothed, as :func:`returnn_ls.label_smoothed_log_prob_gradient` leaves the
gradient on excluded labels unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.fused_ce import check_targets, smoothing_coefficients
from returnn_ls.ops import align, valid_frames, where
from returnn_ls.tensor import Tensor

__all__ = ["linear_label_smoothed_cross_entropy"]

#: The default chunk holds about this many logits (64 MiB in float32; the kernels keep two such buffers) ...
CHUNK_ELEMENTS = 1 << 24
#: ... but at least this many frames: every chunk reads the whole weight matrix and adds into its whole gradient,
#: so fewer rows make the matmuls memory-bound (a 262,144-label vocabulary: 128 frames are 128 MiB of logits).
MIN_CHUNK_FRAMES = 128


def _check_projection(hidden: Tensor, weight: Tensor, bias: Tensor | None, axis: Dim, func: str) -> Dim:
    """Check the shapes of the projection; :return: the hidden dim (the dim of ``weight`` that is not ``axis``)"""
    for name, x in (("hidden", hidden), ("weight", weight), ("bias", bias)):
        if x is not None:
            _validate.check_tensor(x, name, func)
            _validate.check_float(x, name, func)
            if x.backend is not hidden.backend:
                raise TypeError(f"{func}: {name} is on {x.backend.name}, hidden on {hidden.backend.name}")
    if len(weight.dims) != 2 or axis not in weight.dims:
        raise ValueError(f"{func}: weight must have dims [hidden_dim, {axis}] (any order), got {list(weight.dims)}")
    hidden_dim = weight.dims[0] if weight.dims[1] is axis else weight.dims[1]
    if hidden_dim not in hidden.dims or axis in hidden.dims:
        raise ValueError(
            f"{func}: hidden must have the weight's input dim {hidden_dim} and not {axis}, got {list(hidden.dims)}"
        )
    if bias is not None and bias.dims != (axis,):
        raise ValueError(f"{func}: bias must have exactly the dims [{axis}], got {list(bias.dims)}")
    return hidden_dim


def _check_chunk_size(chunk_size: int | None, num_labels: int, func: str) -> int:
    if chunk_size is None:
        return max(MIN_CHUNK_FRAMES, CHUNK_ELEMENTS // num_labels)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"{func}: chunk_size must be a positive int (frames per chunk) or None, got {chunk_size!r}")
    return chunk_size


def linear_label_smoothed_cross_entropy(
    *,
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    targets: Tensor,
    axis: Dim,
    smoothing: float | Tensor,
    convention: str = "returnn",
    exclude_labels: Sequence[int] | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Per-frame label-smoothed cross entropy of ``hidden @ weight + bias``, without the full logits.

    Equals ``cross_entropy(estimated=hidden @ weight + bias, target=label_smoothing(targets, a), axis=axis,
    estimated_type="logits")`` for ``convention="returnn"``, and PyTorch's ``F.cross_entropy(logits, targets,
    label_smoothing=a, reduction="none")`` for ``"uniform"``, in value and gradients (see the module docstring).

    :param hidden: float Tensor with dims ``[..., hidden_dim]`` (any order)
    :param weight: float Tensor with dims ``[hidden_dim, axis]`` (any order; aligned by dim)
    :param bias: optional float Tensor with dims ``[axis]``
    :param targets: int class indices with the dims of ``hidden`` without ``hidden_dim``
    :param axis: the class axis (static)
    :param smoothing: ``a`` in ``[0, 1]``: float or scalar Tensor
    :param convention: ``"returnn"`` (others get ``a/(K-1)``) or ``"uniform"`` (all get ``a/K``)
    :param exclude_labels: labels that get no smoothing mass (e.g. a blank)
    :param chunk_size: frames per chunk; default: about ``CHUNK_ELEMENTS / K``, at least ``MIN_CHUNK_FRAMES``
    :return: the loss with the dims of ``targets``; 0 (and gradient 0) on frames outside a dynamic dim's length
    """
    func = "linear_label_smoothed_cross_entropy"
    _validate.check_tensor(weight, "weight", func)
    axis = _validate.resolve_axis(weight, axis, func)
    _validate.check_tensor(hidden, "hidden", func)
    hidden_dim = _check_projection(hidden, weight, bias, axis, func)
    frame_dims, targets, bad = check_targets(targets, hidden, axis, func, feature_dim=hidden_dim, name="hidden")
    if convention not in ("returnn", "uniform"):
        raise ValueError(f"{func}: convention must be 'returnn' or 'uniform', got {convention!r}")
    smoothing = _validate.check_fraction(smoothing, "smoothing", func)
    excluded = _validate.check_exclude_labels(exclude_labels, axis.dimension, func)
    chunk = _check_chunk_size(chunk_size, axis.dimension, func)
    dtype = "float64" if hidden.dtype == "float64" else "float32"
    off, on, v = smoothing_coefficients(smoothing, convention, excluded, axis, None, weight, dtype)
    mask = valid_frames(targets)
    if mask is not None:
        targets = where(mask, targets, 0)
    raw = hidden.backend.linear_label_smoothed_cross_entropy(
        align(hidden, frame_dims + (hidden_dim,)),
        align(weight, (hidden_dim, axis)),
        None if bias is None else bias.raw_tensor,
        align(targets, frame_dims),
        off.raw_tensor,
        on.raw_tensor,
        None if v is None else v.raw_tensor,
        None if mask is None else align(mask, frame_dims),
        chunk,
    )
    return _validate.poison_bad_frames(Tensor(raw, frame_dims, backend=hidden.backend), bad)
