"""Operations that are the identity in the forward pass and change only the gradient."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.ops import align, cast
from returnn_ls.tensor import Tensor

__all__ = ["gradient", "scaled_gradient", "scaled_gradient_ext", "set_requires_gradient", "stop_gradient"]


def set_requires_gradient(source: Tensor) -> None:
    """Make :func:`gradient` w.r.t. ``source`` possible (in place, as RETURNN's): call it before computing
    anything from ``source``. On TensorFlow in eager mode a gradient tape records from here on until
    :func:`gradient` w.r.t. ``source`` is taken (one gradient per call; of unused tapes at most 16 stay open; in a
    ``tf.function`` nothing is needed); on PyTorch ``source`` gets ``requires_grad``.

    :param source: a float Tensor (e.g. an input of the model)
    """
    _validate.check_tensor(source, "source", "set_requires_gradient")
    _validate.check_float(source, "source", "set_requires_gradient")
    source.backend.set_requires_gradient(source.raw_tensor)


def gradient(y: Tensor, x: Tensor) -> Tensor:
    """:return: the gradient of the scalar ``y`` w.r.t. ``x`` (dims of ``x``; zeros where ``y`` does not depend
    on ``x``); it can be differentiated again. ``x`` must have been passed to :func:`set_requires_gradient`
    before ``y`` was computed from it.

    Example::

        rf.set_requires_gradient(x)
        loss = rf.reduce_sum(rf.scaled_gradient(x, -0.5), axis=x.dims)
        grad = rf.gradient(loss, x)  # -0.5 everywhere

    :param y: a scalar Tensor (reduce over all dims first, e.g. with :func:`returnn_ls.reduce_sum`)
    :param x: a float Tensor
    """
    func = "gradient"
    _validate.check_tensor(y, "y", func)
    _validate.check_tensor(x, "x", func)
    if y.dims:
        raise ValueError(f"{func}: y must be a scalar (no dims), got dims {list(y.dims)}; reduce it first")
    if y.backend is not x.backend:
        raise TypeError(f"{func}: y is on {y.backend.name}, x on {x.backend.name}; cannot mix backends")
    return x.copy_template(x.backend.gradient(y.raw_tensor, x.raw_tensor))


def stop_gradient(source: Tensor) -> Tensor:
    """:return: ``source`` in the forward pass; no gradient flows back through it"""
    _validate.check_tensor(source, "source", "stop_gradient")
    return source.copy_template(source.backend.stop_gradient(source.raw_tensor))


def scaled_gradient(source: Tensor, scale: float | Tensor) -> Tensor:
    """:return: ``source`` in the forward pass; in the backward pass the gradient is multiplied by ``scale``"""
    return scaled_gradient_ext(source, scale=scale)


def _raw_factor(value: Any, source: Tensor, name: str) -> Any:
    """:return: a float, or ``value``'s raw tensor aligned to ``source``'s dims and cast to its dtype (a raw
    framework scalar, e.g. a ``torch.Tensor`` schedule value, counts as a scalar Tensor)"""
    value = _validate.raw_scalar(value, name, "scaled_gradient_ext")
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return None if value is None else float(value)
    if not isinstance(value, Tensor):
        raise TypeError(f"scaled_gradient_ext: {name} must be a float or a Tensor, got {type(value).__name__}")
    if value.backend is not source.backend:
        raise TypeError(
            f"scaled_gradient_ext: {name} is on {value.backend.name}, source on {source.backend.name}; "
            "cannot mix backends"
        )
    extra = [d for d in value.dims if d not in source.dims]
    if extra:
        raise ValueError(
            f"scaled_gradient_ext: the dims of {name} must be a subset of the source's dims "
            f"{list(source.dims)}; it has {extra} besides"
        )
    if value.dtype != source.dtype:
        value = cast(value, source.dtype)
    return align(value, source.dims)


def scaled_gradient_ext(
    source: Tensor,
    *,
    scale: float | Tensor = 1.0,
    shift: float | Tensor | None = None,
    scale_shift_by_sum_over_axis: Dim | None = None,
    sum_mask: Tensor | None = None,
) -> Tensor:
    """Identity in the forward pass; rescales and shifts the gradient in the backward pass.

    With incoming gradient ``g``, the gradient passed on to ``source`` is::

        g * scale + shift * sum(|g|, axis)   if scale_shift_by_sum_over_axis (= axis) is given,
        g * scale + shift                    otherwise.

    :param source: any float Tensor
    :param scale: float or Tensor whose dims are a subset of ``source.dims`` (any order; aligned by dim)
    :param shift: like ``scale``, or None for no shift
    :param scale_shift_by_sum_over_axis: a dim of ``source``: scale the shift by the sum of ``|g|`` over it
    :param sum_mask: (this library's extension) a Tensor over ``scale_shift_by_sum_over_axis``: the sum runs
        over ``|g| * sum_mask`` only, e.g. 0 for excluded labels
    """
    func = "scaled_gradient_ext"
    _validate.check_tensor(source, "source", func)
    _validate.check_float(source, "source", func)
    sum_axis = None
    if scale_shift_by_sum_over_axis is not None:
        if not isinstance(scale_shift_by_sum_over_axis, Dim) or scale_shift_by_sum_over_axis not in source.dims:
            raise ValueError(
                f"{func}: scale_shift_by_sum_over_axis must be one of the source's dims {list(source.dims)}, "
                f"got {scale_shift_by_sum_over_axis!r}"
            )
        sum_axis = source.dims.index(scale_shift_by_sum_over_axis)
    raw_scale = _raw_factor(scale, source, "scale")
    raw_shift = _raw_factor(shift, source, "shift")
    raw_weight = _raw_factor(sum_mask, source, "sum_mask") if sum_axis is not None else None
    raw_scale = 1.0 if raw_scale is None else raw_scale
    fusable = source.log_softmax_of is not None and source.log_softmax_of[1] is scale_shift_by_sum_over_axis
    if not (fusable and raw_shift is not None):
        return source.copy_template(
            source.backend.scaled_gradient_ext(source.raw_tensor, raw_scale, raw_shift, sum_axis, raw_weight)
        )
    # source = log_softmax(logits): one op gives the gradient w.r.t. the logits directly
    smoothed = SmoothedLogSoftmax(source.log_softmax_of[0], source, source.log_softmax_of[1], raw_scale, raw_shift,
                                  raw_weight)  # fmt: skip
    raw = source.backend.log_softmax_smoothed_gradient(
        smoothed.logits.raw_tensor, source.raw_tensor, sum_axis, raw_scale, raw_shift, raw_weight
    )
    out = source.copy_template(raw)
    out.smoothed_log_softmax_of = smoothed
    return out


@dataclasses.dataclass(frozen=True)
class SmoothedLogSoftmax:
    """How the output of :func:`scaled_gradient_ext` on a :func:`returnn_ls.log_softmax` was made: the logits,
    the log-softmax, its axis and the raw factors, aligned to the log-softmax's dims."""

    logits: Tensor
    log_probs: Tensor
    axis: Dim
    scale: Any
    shift: Any
    sum_weight: Any

    def nll(self, targets: Tensor) -> Tensor:
        """:return: ``-log_probs[targets]`` over the frame dims, with the gradient of the smoothed path, fused.

        Used by :func:`returnn_ls.cross_entropy` for sparse targets: the backward pass then never builds the dense
        one-hot gradient of the gather. The smoothing of this consumer's gradient happens inside the fused op, so
        gradients that other consumers of the smoothed log-probs send back are smoothed separately (the same sum
        unless their signs differ, as ``sum|g|`` is not linear).
        """
        backend = self.log_probs.backend
        frame_dims = tuple(d for d in self.log_probs.dims if d is not self.axis)
        order = frame_dims + (self.axis,)
        perm = [self.log_probs.dims.index(d) for d in order]

        def arrange(raw: Any) -> Any:
            if not backend.is_tensor(raw) or perm == sorted(perm):
                return raw
            return backend.transpose(raw, perm)

        raw = backend.log_softmax_smoothed_nll(
            align(self.logits, order), align(self.log_probs, order), align(targets, frame_dims),
            arrange(self.scale), arrange(self.shift), arrange(self.sum_weight),
        )  # fmt: skip
        return Tensor(raw, frame_dims, backend=backend)
