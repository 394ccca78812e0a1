"""The layer classes of network dicts: each one calls a function of this library.

A layer class declares its options (with defaults; :data:`REQUIRED` marks required ones), how many inputs it
takes from ``"from"``, whether it needs a ``target``, what its output is (:meth:`LayerClass.infer`), which
parameters it has and how it computes its output (``forward``). Loss layers return a :class:`LossOutput`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.ops import align
from returnn_ls.tensor import Tensor

__all__ = ["LAYER_CLASSES", "REQUIRED", "LayerClass", "LossOutput", "Node"]

REQUIRED = object()
#: Keys every layer dict may have besides its class options.
COMMON_KEYS = ("class", "from", "loss")
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax", "log_softmax")


@dataclass
class Node:
    """What flows along a ``"from"`` edge, known before running: the label/feature dim and the value's kind.

    ``kind`` is ``"dense"`` (features), ``"logits"``, ``"log-probs"``, ``"probs"``, ``"sparse"`` (class indices)
    or ``"loss"``.
    """

    dim: Dim | None
    kind: str


@dataclass
class LossOutput:
    """A loss layer's result: the loss per frame (``frame_level``) or per sequence, and what metrics need."""

    value: Tensor
    frame_level: bool
    log_probs: Tensor  # the model's log-distribution per frame, over ``vocab``
    target: Tensor  # the targets (sparse, or a dense distribution), relabelled to ``vocab``
    vocab: Dim
    blank_index: int | None = None

    def normalized(self) -> Tensor:
        """:return: the scalar training loss: mean over frames, or the sum over sequences per target label"""
        if self.frame_level:
            return rf.reduce_mean(self.value, axis=list(self.value.dims))
        lengths = self.target.dims[-1].dyn_size_ext
        total = rf.reduce_sum(self.value, axis=list(self.value.dims))
        return total / rf.reduce_sum(rf.cast(lengths, "float32"), axis=list(lengths.dims))


@dataclass
class LayerClass:
    """One layer class: options, inputs and the function it calls."""

    options: dict[str, Any]
    forward: Callable[..., Any]
    infer: Callable[[str, dict, list[Node], Node | None], Node]
    num_from: tuple[int, ...] = (1,)
    target: str = "none"  # "none", "optional" or "required"
    is_loss: bool = False
    extra_keys: tuple[str, ...] = field(default=())


@dataclass
class Context:
    """What a layer's ``forward`` sees besides its inputs: options, parameters, target, its and its input's node."""

    name: str
    opts: dict
    params: dict[str, Tensor]
    target: Tensor | None
    node: Node
    node_in: Node


# -- helpers -----------------------------------------------------------------------------------------------------


def relabel(x: Tensor, old: Dim, new: Dim) -> Tensor:
    """:return: ``x`` with the label dim ``old`` (a dim or the sparse dim) replaced by ``new`` of equal size"""
    if old is new:
        return x
    dims = tuple(new if d is old else d for d in x.dims)
    feature = new if x.feature_dim is old else x.feature_dim
    sparse = new if x.sparse_dim is old else x.sparse_dim
    return Tensor(x.raw_tensor, dims, feature_dim=feature, sparse_dim=sparse, backend=x.backend)


def log_probs_of(x: Tensor, kind: str, axis: Dim) -> Tensor:
    """:return: log-probabilities from logits, log-probs or probs over ``axis``"""
    if kind == "log-probs":
        return x
    if kind == "probs":
        return rf.log(rf.maximum(x, 1e-30))
    return rf.log_softmax(x, axis=axis)


def _activation(x: Tensor, name: str | None, axis: Dim) -> Tensor:
    if name in (None, "linear"):
        return x
    if name == "softmax":
        return rf.softmax(x, axis=axis)
    if name == "log_softmax":
        return rf.log_softmax(x, axis=axis)
    return getattr(rf, name)(x)


def _dense(x: Tensor, ctx: Context, out_dim: Dim) -> Tensor:
    """:return: ``x @ W + b`` over ``x``'s feature dim: the one matmul of the network"""
    weight, bias = ctx.params["W"], ctx.params["b"]
    in_dim = weight.dims[0]
    others = tuple(d for d in x.dims if d is not in_dim)
    raw = x.backend.matmul(align(x, others + (in_dim,)), weight.raw_tensor)
    return Tensor(raw, others + (out_dim,), feature_dim=out_dim, backend=x.backend) + bias


def _loss_output(ctx: Context, value: Tensor, x: Tensor, kind: str, frame_level: bool, blank=None) -> LossOutput:
    axis = ctx.node_in.dim
    return LossOutput(value, frame_level, log_probs_of(x, kind, axis), ctx.target, axis, blank)


# -- forward functions -------------------------------------------------------------------------------------------


def _linear(ctx: Context, x: Tensor) -> Tensor:
    return _activation(_dense(x, ctx, ctx.node.dim), ctx.opts["activation"], ctx.node.dim)


def _softmax(ctx: Context, x: Tensor) -> Tensor | tuple[Tensor, LossOutput]:
    logits = _dense(x, ctx, ctx.node.dim)
    probs = rf.softmax(logits, axis=ctx.node.dim)
    loss = ctx.opts["loss"]
    if loss in (None, False):
        return probs
    lo = ctx.opts["loss_opts"]
    if loss == "ce":
        value = rf.label_smoothed_cross_entropy(
            logits=logits, targets=ctx.target, axis=ctx.node.dim, smoothing=lo.get("label_smoothing", 0.0),
            convention=lo.get("label_smoothing_convention", "returnn"), exclude_labels=lo.get("exclude_labels"),
        )  # fmt: skip
        return probs, LossOutput(value, True, rf.log_softmax(logits, axis=ctx.node.dim), ctx.target, ctx.node.dim)
    value = _ctc(logits, ctx.target, ctx.node.dim, lo.get("blank_index", 0), lo.get("label_smoothing", 0.0), False)
    lp = rf.log_softmax(logits, axis=ctx.node.dim)
    return probs, LossOutput(value, False, lp, ctx.target, ctx.node.dim, lo.get("blank_index", 0))


def _ctc(logits: Tensor, target: Tensor, vocab: Dim, blank: int, smoothing: Any, normalized: bool) -> Tensor:
    time = next(d for d in logits.dims if d.is_padded())  # the time dim (the batch dim has no padding)
    return rf.ctc_loss(
        logits=logits, targets=target, input_spatial_dim=time, targets_spatial_dim=target.dims[-1],
        blank_index=blank, logits_normalized=normalized, label_smoothing=smoothing,
    )  # fmt: skip


def _log_softmax(ctx: Context, x: Tensor) -> Tensor:
    return rf.log_softmax(x, axis=ctx.node.dim)


def _label_smoothing(ctx: Context, x: Tensor) -> Tensor:
    return rf.label_smoothing(x, ctx.opts["smoothing"])


def _smooth_one_hot(ctx: Context, x: Tensor) -> Tensor:
    return rf.smooth_one_hot(x, label_prob=ctx.opts["label_prob"])


def _ls_gradient(ctx: Context, x: Tensor) -> Tensor:
    o = ctx.opts
    return rf.label_smoothed_log_prob_gradient(
        x, o["smoothing"], axis=ctx.node.dim, exclude_labels=o["exclude_labels"], returnn_compat=o["returnn_compat"]
    )


def _scaled_grad(ctx: Context, x: Tensor) -> Tensor:
    o = ctx.opts
    axis = o["scale_shift_by_sum_over_axis"]
    axis = ctx.node.dim if axis not in (None, False) else None
    return rf.scaled_gradient_ext(x, scale=o["scale"], shift=o["shift"], scale_shift_by_sum_over_axis=axis)


def _cross_entropy(ctx: Context, x: Tensor, dense_target: Tensor | None = None) -> LossOutput:
    axis, kind = ctx.node_in.dim, ctx.node_in.kind
    etype = ctx.opts["estimated_type"] or {"log-probs": "log-probs", "probs": "probs"}.get(kind, "logits")
    if dense_target is not None:
        target = relabel(dense_target, dense_target.feature_dim, axis)
        value = rf.cross_entropy(estimated=x, target=target, axis=axis, estimated_type=etype)
        sparse = target
    else:
        value = rf.cross_entropy(estimated=x, target=ctx.target, axis=axis, estimated_type=etype)
        sparse = ctx.target
    lp = log_probs_of(x, etype if etype != "logits" else "logits", axis)
    return LossOutput(value, True, lp, sparse, axis)


def _ls_cross_entropy(ctx: Context, x: Tensor) -> LossOutput:
    o = ctx.opts
    weight = o["weight"]
    if weight is not None:
        weight = rf.convert_to_tensor([float(w) for w in weight], dims=[ctx.node_in.dim], dtype="float32")
    value = rf.label_smoothed_cross_entropy(
        logits=x, targets=ctx.target, axis=ctx.node_in.dim, smoothing=o["smoothing"], convention=o["convention"],
        exclude_labels=o["exclude_labels"], weight=weight,
    )  # fmt: skip
    return _loss_output(ctx, value, x, "logits", True)


def _ctc_loss(ctx: Context, x: Tensor) -> LossOutput:
    o = ctx.opts
    normalized = o["logits_normalized"]
    if normalized is None:
        normalized = ctx.node_in.kind == "log-probs"
    value = _ctc(x, ctx.target, ctx.node_in.dim, o["blank_index"], o["label_smoothing"], normalized)
    return _loss_output(ctx, value, x, "log-probs" if normalized else "logits", False, o["blank_index"])


def _label_relaxation(ctx: Context, x: Tensor) -> LossOutput:
    value = rf.label_relaxation_loss(logits=x, targets=ctx.target, axis=ctx.node_in.dim, alpha=ctx.opts["alpha"])
    return _loss_output(ctx, value, x, "logits", True)


# -- static inference --------------------------------------------------------------------------------------------


def _same(kind: str | None = None) -> Callable:
    return lambda name, opts, ins, target: Node(ins[0].dim, kind or ins[0].kind)


def _new_dim(kind: str) -> Callable:
    def infer(name, opts, ins, target):
        n_out = opts.get("n_out") or target.dim.dimension
        return Node(Dim(int(n_out), name=f"{name}:feature"), kind)

    return infer


def _linear_kind(name, opts, ins, target) -> Node:
    kind = {None: "logits", "linear": "logits", "softmax": "probs", "log_softmax": "log-probs"}
    return _new_dim(kind.get(opts.get("activation"), "dense"))(name, opts, ins, target)


def _one_hot(name, opts, ins, target) -> Node:
    return Node(ins[0].dim, "probs")


def _loss(name, opts, ins, target) -> Node:
    return Node(None, "loss")


_LOSS = dict(target="required", is_loss=True, infer=_loss)

LAYER_CLASSES: dict[str, LayerClass] = {
    "linear": LayerClass({"n_out": REQUIRED, "activation": None}, _linear, _linear_kind),
    "softmax": LayerClass(
        {"n_out": None, "loss": None, "loss_opts": {}}, _softmax, _new_dim("probs"), target="optional"
    ),
    "log_softmax": LayerClass({}, _log_softmax, _same("log-probs")),
    "label_smoothing": LayerClass({"smoothing": REQUIRED}, _label_smoothing, _one_hot),
    "smooth_one_hot": LayerClass({"label_prob": REQUIRED}, _smooth_one_hot, _one_hot),
    "label_smoothed_log_prob_gradient": LayerClass(
        {"smoothing": REQUIRED, "exclude_labels": None, "returnn_compat": False}, _ls_gradient, _same()
    ),
    "scaled_grad": LayerClass(
        {"scale": 1.0, "shift": None, "scale_shift_by_sum_over_axis": None}, _scaled_grad, _same()
    ),
    "cross_entropy": LayerClass(
        {"estimated_type": None}, _cross_entropy, _loss, num_from=(1, 2), target="optional", is_loss=True
    ),
    "label_smoothed_cross_entropy": LayerClass(
        {"smoothing": REQUIRED, "convention": "returnn", "exclude_labels": None, "weight": None},
        _ls_cross_entropy,
        **_LOSS,
    ),  # fmt: skip
    "ctc_loss": LayerClass({"blank_index": 0, "label_smoothing": 0.0, "logits_normalized": None}, _ctc_loss, **_LOSS),
    "label_relaxation_loss": LayerClass({"alpha": REQUIRED}, _label_relaxation, **_LOSS),
}

#: Options of ``loss_opts`` of the ``softmax`` layer.
SOFTMAX_LOSS_OPTS = ("label_smoothing", "label_smoothing_convention", "exclude_labels", "blank_index")
#: The options that hold a label-smoothing value, per layer class (``compare`` replaces them).
SMOOTHING_OPTIONS = {
    "label_smoothing": "smoothing",
    "label_smoothed_log_prob_gradient": "smoothing",
    "label_smoothed_cross_entropy": "smoothing",
    "ctc_loss": "label_smoothing",
    "smooth_one_hot": "label_prob",
}
