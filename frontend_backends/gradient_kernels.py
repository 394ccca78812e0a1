"""The gradient primitives and fused losses of a backend: gradient control (``stop_gradient``,
``scaled_gradient_ext``, the log-softmax forms of gradient smoothing), ``gradient``/``edit_distance``, and the
losses that compute loss and gradient in one pass (label-smoothed CE, with the projection, and CTC).

Part of the backend protocol (:class:`frontend_backends.base.Backend` inherits :class:`GradientKernels`), kept in
its own module as :mod:`frontend_backends.layer_kernels` is. The conventions of :mod:`frontend_backends.base` hold:
raw tensors and integer axes, no Dims, inputs never modified.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class GradientKernels(ABC):
    """The gradient primitives and fused losses; a mixin of :class:`frontend_backends.base.Backend`, whose
    primitives (``log_softmax``, ``unary``, ``gather_last``, ``shape``) the default implementations use."""

    # -- gradients ---------------------------------------------------------------------------------------------

    @abstractmethod
    def stop_gradient(self, x: Any) -> Any:
        """:return: ``x`` in the forward pass; no gradient flows back through it"""
        raise NotImplementedError

    def set_requires_gradient(self, x: Any) -> None:
        """Make :meth:`gradient` w.r.t. ``x`` possible for results computed from ``x`` from now on (in place).
        Default: a NotImplementedError (a backend without automatic differentiation)."""
        raise NotImplementedError(f"the {self.name} backend has no automatic differentiation (set_requires_gradient)")

    def gradient(self, y: Any, x: Any) -> Any:
        """:return: the gradient of the scalar ``y`` w.r.t. ``x`` (zeros where ``y`` does not depend on ``x``), itself
        differentiable; ``x`` was passed to :meth:`set_requires_gradient` before ``y`` was computed from it.
        Default: a NotImplementedError."""
        raise NotImplementedError(f"the {self.name} backend has no automatic differentiation (gradient)")

    def edit_distance(self, a: Any, a_lens: Any, b: Any, b_lens: Any) -> Any:
        """:return: the Levenshtein distance (insertions, deletions, substitutions cost 1) of each ``a[n, :a_lens[n]]``
        to ``b[n, :b_lens[n]]``: int32 of shape ``[N]``. ``a``: ``[N, Ta]``, ``b``: ``[N, Tb]`` integer labels;
        ``a_lens``, ``b_lens``: ``[N]``. Default: a NotImplementedError."""
        raise NotImplementedError(f"the {self.name} backend has no edit_distance")

    @abstractmethod
    def scaled_gradient_ext(self, x: Any, scale: Any, shift: Any, sum_axis: int | None, sum_weight: Any = None) -> Any:
        """Identity in the forward pass; in the backward pass the incoming gradient ``g`` becomes

        - ``g * scale + shift * sum(|g| * sum_weight, sum_axis, keepdims)`` if ``sum_axis`` is given,
        - ``g * scale + shift`` otherwise.

        ``scale`` and ``shift`` are Python floats or raw tensors that broadcast against ``x`` (``shift``
        may be None). ``sum_weight`` (raw tensor or None for all ones) restricts the sum to some labels.
        No gradient flows to ``scale``, ``shift`` or ``sum_weight``.
        """
        raise NotImplementedError

    def log_softmax_smoothed_gradient(
        self, logits: Any, log_probs: Any, axis: int, scale: Any, shift: Any, sum_weight: Any = None
    ) -> Any:
        """``log_probs`` (the value of ``log_softmax(logits, axis)``, already computed) in the forward pass; the
        gradient flows to ``logits`` only, as :meth:`scaled_gradient_ext` followed by the log-softmax backward:

            g' = g * scale + shift * sum(|g| * sum_weight, axis)
            d logits = g' - softmax(logits) * sum(g', axis)

        ``scale``/``shift``/``sum_weight`` are as in :meth:`scaled_gradient_ext`. Backends may compute the
        backward in one pass; this default composes the two ops (slow but correct).
        """
        return self.scaled_gradient_ext(self.log_softmax(logits, axis), scale, shift, axis, sum_weight)

    def log_softmax_smoothed_nll(
        self, logits: Any, log_probs: Any, targets: Any, scale: Any, shift: Any, sum_weight: Any = None
    ) -> Any:
        """``-log_probs[..., targets]`` in the forward pass (class axis last, ``targets`` int ``[*S]``); the gradient
        flows to ``logits`` only, as :meth:`log_softmax_smoothed_gradient` followed by that gather.

        The gather's gradient is ``g = -dl * onehot(y)`` (``dl`` the upstream per-frame gradient), so with
        ``S = |dl| * sum_weight_y`` and ``T = -scale_y * dl + S * sum(shift)`` the gradient w.r.t. the logits is
        ``shift * S - softmax(logits) * T - scale_y * dl * onehot(y)``: backends may compute it without a dense
        ``g``. ``scale``/``shift``/``sum_weight`` are as in :meth:`scaled_gradient_ext`. This default composes
        the two ops (slow but correct).
        """
        if isinstance(scale, float) and scale == 1.0 and isinstance(shift, float) and shift == 0.0:
            return self.unary("neg", self.gather_last(log_probs, targets))  # nothing to smooth
        axis = len(self.shape(log_probs)) - 1
        smoothed = self.log_softmax_smoothed_gradient(logits, log_probs, axis, scale, shift, sum_weight)
        return self.unary("neg", self.gather_last(smoothed, targets))

    # -- fused losses (loss and gradient in one pass; no gradient to any input but the logits) ------------------

    @abstractmethod
    def label_smoothed_cross_entropy(
        self, logits: Any, targets: Any, off: Any, on: Any, weight: Any, z_loss: float, mask: Any
    ) -> Any:
        """Per-frame cross entropy against a smoothed target, without building the dense target.

        ``logits`` is ``[*S, K]`` (class axis last, any float dtype), ``targets`` int ``[*S]`` in ``[0, K)``,
        ``off`` and ``on`` float ``[K]`` (looked up at each frame's target ``y``), ``weight`` float ``[K]``
        (``v``; None means all ones), ``mask`` bool broadcastable to ``[*S]`` or None. With ``lp = log_softmax``
        and ``lse = logsumexp(logits)`` the loss of a frame is::

            L = -off[y] * sum_k v_k lp_k - on[y] * lp_y + z_loss * lse**2
              = on[y] * (lse - z_y) + off[y] * (V * lse - sum_k v_k z_k) + z_loss * lse**2,   V = sum_k v_k

        and its gradient w.r.t. the logits is
        ``(off[y]*V + on[y] + 2*z_loss*lse) * softmax - off[y] * v - on[y] * onehot(y)``.
        Frames where ``mask`` is False get loss 0 and gradient exactly 0. The loss is float32 (float64 for
        float64 logits); half-precision logits are accumulated in float32.
        """
        raise NotImplementedError

    @abstractmethod
    def linear_label_smoothed_cross_entropy(
        self, hidden: Any, weight: Any, bias: Any, targets: Any, off: Any, on: Any, v: Any, mask: Any, chunk: int
    ) -> Any:
        """Like :meth:`label_smoothed_cross_entropy` of ``logits = hidden @ weight + bias``, in chunks of frames.

        ``hidden`` is ``[*S, H]``, ``weight`` ``[H, K]``, ``bias`` ``[K]`` or None; the other arguments are as
        there (without ``z_loss``). The logits of at most ``chunk`` frames exist at a time: the forward pass keeps
        each frame's logsumexp, the backward pass recomputes the logits per chunk. Gradients flow to ``hidden``,
        ``weight`` and ``bias`` for any upstream per-frame gradient; masked frames get loss and gradient 0.
        """
        raise NotImplementedError

    @abstractmethod
    def ctc_loss(
        self, logits: Any, targets: Any, in_lens: Any, tgt_lens: Any, blank: int, normalized: bool,
        smoothing: Any, zero_infinity: bool,
    ) -> Any:  # fmt: skip
        """Per-sequence CTC loss ``[*B]`` of ``logits`` ``[*B, T, K]`` and ``targets`` int ``[*B, S]``.

        ``in_lens`` and ``tgt_lens`` are int ``[*B]``. ``normalized``: ``logits`` are already log-probs ``lp``
        (else ``lp = log_softmax(logits)``). The value is ``F.ctc_loss(lp, reduction="none")``: inf for a
        target that cannot be aligned (0 with ``zero_infinity``). ``q`` is the frame's CTC posterior (recovered
        as ``exp(lp) - g`` from the gradient ``g`` the framework's CTC returns for its log-prob input), ``q'`` is
        ``q`` smoothed by ``smoothing`` (float or raw scalar) over the ``K - 1`` non-blank labels with the blank
        kept and the total mass preserved: ``q'_k = (1 - (K-1)*f) * q_k + f * sum_{j != blank} q_j``,
        ``f = smoothing / (K - 2)``. The gradient is the true one of the loss, with ``q'`` for ``q``:

        - w.r.t. free log-probabilities (``normalized``): ``-q'`` (rows sum to -1; the frameworks' own CTC ops
          return ``exp(lp) - q`` there, which is only right once a log-softmax follows),
        - w.r.t. logits (not ``normalized``): ``softmax(logits) - q'`` (rows sum to 0).

        So ``log_softmax`` -> :meth:`scaled_gradient_ext` smoothing with the blank excluded -> this op with
        ``normalized`` gives exactly the gradient of this op with ``smoothing`` on the logits.
        Padding frames and impossible sequences get gradient 0.
        """
        raise NotImplementedError
