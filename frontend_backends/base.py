"""The backend protocol: every primitive the frontend needs, over raw tensors and integer axes.

A backend never sees a :class:`returnn_ls.Dim`. The frontend (``returnn_ls``) resolves every dim to an
integer axis, aligns operands so that they broadcast in the framework's positional sense, and then calls
exactly one primitive per raw operation. Adding a framework means subclassing :class:`Backend` and
implementing the abstract methods below; nothing else in the project changes.

Conventions for all primitives:

- ``x``, ``a``, ``b``, ``cond`` are raw framework tensors (``torch.Tensor``, ``tf.Tensor``); where noted,
  Python scalars are accepted too and take the dtype of the other operand.
- ``axis`` is a non-negative ``int``, ``axes`` a tuple of them.
- ``dtype`` is a string: ``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"``, ``"int32"``,
  ``"int64"`` or ``"bool"``.
- No primitive modifies its inputs.
- Devices: a primitive's result lives on the device of its tensor inputs. Primitives that create a tensor from
  Python or numpy values take ``like``, a raw tensor whose device the result gets; without one, the result goes
  to the framework's default device (torch: ``torch.get_default_device()``, which ``with torch.device("cuda"):``
  sets; TensorFlow places ops itself).
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from frontend_backends.array_kernels import ArrayKernels
from frontend_backends.layer_kernels import LayerKernels

#: Binary operations shared by all backends: the frameworks implement Python's operators elementwise with
#: numpy-style broadcasting, so one table serves every backend.
BINARY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,  # rounds toward -inf (Python's, torch's and TensorFlow's)
    "mod": operator.mod,  # the sign of the divisor (Python's, torch.remainder, tf.math.floormod)
    "pow": operator.pow,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
    "logical_and": operator.and_,
    "logical_or": operator.or_,
}

#: Names accepted by :meth:`Backend.unary`.
UNARY_OPS = ("neg", "abs", "exp", "log", "log1p", "sqrt", "square", "relu", "tanh", "sigmoid", "logical_not", "sin",
             "cos")

#: Names accepted by :meth:`Backend.reduce`.
REDUCE_OPS = ("sum", "mean", "max", "min", "logsumexp", "any", "all")


class Backend(ArrayKernels, LayerKernels, ABC):
    """Base class of the backends: the abstract methods are the protocol, the others have slow-but-correct
    defaults built on them. The registry sets :attr:`name` to the registered name."""

    #: The name used by ``returnn_ls.select_backend``.
    name: str = ""
    #: Whether the framework also has a graph mode that builds ops instead of running them (TensorFlow 1's), into
    #: which RETURNN switches it when RETURNN's frontend first sees one of its tensors (see :meth:`in_graph_mode`).
    has_graph_mode: bool = False

    def in_graph_mode(self) -> bool:
        """:return: whether the program runs in the framework's graph mode now (default: never)"""
        return False

    # -- creation and inspection ------------------------------------------------------------------------------

    @abstractmethod
    def is_tensor(self, x: Any) -> bool:
        """:return: whether ``x`` is a raw tensor (or variable) of this backend's framework"""
        raise NotImplementedError

    @abstractmethod
    def convert(self, value: Any, dtype: str | None = None, like: Any = None) -> Any:
        """Create a new raw tensor from a numpy array, Python scalar or nested list (always a copy).

        :param dtype: the dtype of the result; ``None`` keeps the numpy dtype of ``value``
        :param like: a raw tensor: the result goes to its device (see the module docstring)
        """
        raise NotImplementedError

    @abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """:return: a numpy copy of ``x`` (detached from any autograd graph); eager tensors only"""
        raise NotImplementedError

    @abstractmethod
    def concrete_value(self, x: Any) -> np.ndarray | None:
        """:return: the value of ``x`` as numpy if it can be read now without tracing or compiling, else None.

        Used for argument checks that are skipped inside ``tf.function`` and ``torch.compile``.
        """
        raise NotImplementedError

    def is_concrete(self, x: Any) -> bool:
        """:return: whether :meth:`concrete_value` of ``x`` would give its value (eager, not tracing), without
        reading it (which on an accelerator waits for the queued work); default: asks :meth:`concrete_value`"""
        return self.concrete_value(x) is not None

    @abstractmethod
    def dtype(self, x: Any) -> str:
        """:return: the dtype of ``x`` as a string (see the module docstring)"""
        raise NotImplementedError

    @abstractmethod
    def shape(self, x: Any) -> tuple[int | None, ...]:
        """:return: the static shape of ``x``; an entry is None where it is only known at run time"""
        raise NotImplementedError

    @abstractmethod
    def axis_size(self, x: Any, axis: int) -> Any:
        """:return: the size of ``x`` along ``axis``: an ``int``, or a scalar int tensor inside a graph"""
        raise NotImplementedError

    @abstractmethod
    def arange(self, n: Any, dtype: str, like: Any = None) -> Any:
        """:return: ``[0, 1, ..., n-1]`` on the device of ``like``; ``n`` is an ``int`` or a scalar int tensor"""
        raise NotImplementedError

    def to_device_of(self, x: Any, like: Any) -> Any:
        """:return: ``x`` on the device of ``like`` (``x`` itself if it is there; default: ``x``, for frameworks
        that place ops themselves)"""
        return x

    def to_device(self, x: Any, device: str) -> Any:
        """:return: ``x`` on ``device`` (``"cpu"``, ``"cuda:0"``; ``x`` itself if it is there; default: ``x``, for
        frameworks that place ops themselves)"""
        return x

    def device_name(self, x: Any) -> str | None:
        """:return: the device of the raw tensor ``x`` as a string (``"cpu"``, ``"cuda:0"``), None where it is not
        known (e.g. a symbolic tensor); default ``"cpu"``"""
        return "cpu"

    def move_parameter(self, param: Any, device: str) -> None:
        """Move ``param`` (from :meth:`create_parameter`) to ``device`` in place, keeping the object. Default: a
        ValueError (frameworks whose variables stay on the device they were created on)."""
        raise ValueError(f"the {self.name} backend cannot move a parameter; create it on {device!r} instead")

    @abstractmethod
    def create_parameter(self, value: np.ndarray, trainable: bool) -> Any:
        """:return: the framework's own parameter (``torch.nn.Parameter``, ``tf.Variable``) holding a copy of
        ``value``; optimizers update it when ``trainable``"""
        raise NotImplementedError

    @abstractmethod
    def assign_parameter(self, param: Any, value: Any) -> None:
        """Overwrite ``param`` (from :meth:`create_parameter`) in place with ``value`` (raw tensor or numpy of
        its shape), without recording a gradient."""
        raise NotImplementedError

    # -- shape and dtype ---------------------------------------------------------------------------------------

    @abstractmethod
    def cast(self, x: Any, dtype: str) -> Any:
        """:return: ``x`` converted to ``dtype`` (``x`` itself if it already has it)"""
        raise NotImplementedError

    @abstractmethod
    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        """:return: ``x`` with its axes permuted; axis ``i`` of the result is axis ``perm[i]`` of ``x``"""
        raise NotImplementedError

    @abstractmethod
    def expand_dims(self, x: Any, axis: int) -> Any:
        """:return: ``x`` with a new axis of size 1 inserted at position ``axis``"""
        raise NotImplementedError

    # -- elementwise -------------------------------------------------------------------------------------------

    def binary(self, op: str, a: Any, b: Any) -> Any:
        """Elementwise binary operation ``op`` (a key of :data:`BINARY_OPS`, ``"maximum"`` or ``"minimum"``).

        ``a`` and ``b`` have equal rank (or one is a Python scalar) and broadcast positionally.
        """
        return BINARY_OPS[op](a, b)

    @abstractmethod
    def unary(self, op: str, x: Any) -> Any:
        """Elementwise unary operation ``op``, one of :data:`UNARY_OPS`."""
        raise NotImplementedError

    @abstractmethod
    def where(self, cond: Any, a: Any, b: Any) -> Any:
        """:return: ``a`` where ``cond`` is true, else ``b``; the operands broadcast positionally"""
        raise NotImplementedError

    # -- reductions and softmax --------------------------------------------------------------------------------

    @abstractmethod
    def reduce(self, op: str, x: Any, axes: Sequence[int], keepdims: bool = False) -> Any:
        """Reduce ``x`` over ``axes`` with ``op``, one of :data:`REDUCE_OPS`."""
        raise NotImplementedError

    @abstractmethod
    def log_softmax(self, x: Any, axis: int) -> Any:
        """:return: ``x - logsumexp(x, axis)``, computed stably"""
        raise NotImplementedError

    @abstractmethod
    def softmax(self, x: Any, axis: int) -> Any:
        """:return: ``exp(log_softmax(x, axis))``, computed stably"""
        raise NotImplementedError

    @abstractmethod
    def gather_last(self, x: Any, indices: Any) -> Any:
        """:return: ``x[..., indices[...]]``: ``x`` has shape ``[*S, K]``, ``indices`` shape ``S``, result ``S``"""
        raise NotImplementedError

    @abstractmethod
    def matmul(self, a: Any, b: Any) -> Any:
        """:return: the matrix product over the last axis of ``a`` and the first axis of 2-D ``b``"""
        raise NotImplementedError

    def assert_none_in_graph(self, bad: Any, message: str) -> None:
        """Inside a graph the framework runs assertions in (TensorFlow's ``tf.function`` without XLA): make the
        graph raise an error with ``message`` at run time if any entry of the bool tensor ``bad`` is true.
        Elsewhere (eager mode, where the caller checks the values itself; XLA; ``torch.compile``) do nothing:
        this default."""

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
