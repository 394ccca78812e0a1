"""RETURNN's output layer ``softmax``: ``softmax(x @ W + b)``, optionally with a loss on a target.

As in RETURNN, ``n_out`` defaults to the target's number of labels, the target defaults to ``"classes"`` when there
is a ``loss``, and the loss is computed from the logits (before the softmax):

- ``"ce"``: the cross entropy per frame; with ``loss_opts`` ``label_smoothing`` the cross entropy against the
  label-smoothed target (RETURNN's convention by default) minus that target's entropy, as RETURNN computes it
  (the minimum is 0; the gradient is the one of the cross entropy). RETURNN's score is its mean over the frames,
  its error the fraction of frames whose arg max is not the target;
- ``"ctc"``: the CTC loss per sequence (``blank_index`` in the target's vocabulary, this project's convention);
  the score is normalized per target label.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.nn import Module
from returnn_ls.ops import valid_frames
from returnn_ls.tensor import Tensor
from returnn_ls.training.config_names import suggest
from returnn_ls.training.layers.base import ConcatInputLayer, Context, Layer, LayerError, LossOutput, Node, positive_int

__all__ = ["SOFTMAX_LOSS_OPTS", "SoftmaxLayer", "ctc_of_logits", "target_entropy"]

#: the keys of the softmax layer's ``loss_opts``
SOFTMAX_LOSS_OPTS = ("label_smoothing", "label_smoothing_convention", "exclude_labels", "blank_index")
#: argument of the library's loss functions -> the ``loss_opts`` key the user wrote
_ARGUMENT_KEYS = {"smoothing": "label_smoothing", "convention": "label_smoothing_convention",
                  "exclude_labels": "exclude_labels", "blank_index": "blank_index"}  # fmt: skip


def ctc_of_logits(logits: Tensor, target: Tensor, vocab: Dim, time: Dim, blank: int, smoothing: Any,
                  normalized: bool) -> Tensor:  # fmt: skip
    """:return: the CTC loss per sequence of ``logits`` (over ``time``) against the label sequences ``target``

    Example: ``ctc_of_logits(logits, targets, vocab, time, 0, 0.1, False)`` (blank 0, smoothing 0.1)
    """
    return rf.ctc_loss(
        logits=logits, targets=target, input_spatial_dim=time, targets_spatial_dim=target.dims[-1],
        blank_index=blank, logits_normalized=normalized, label_smoothing=smoothing,
    )  # fmt: skip


def target_entropy(smoothing: float, convention: str, num_excluded: int, num_labels: int) -> float:
    """:return: the entropy of the label-smoothed target distribution of a target that is not excluded, in the
    conventions of :func:`returnn_ls.label_smoothed_cross_entropy`: of the ``n`` included labels, the target gets
    ``1 - a`` (``"returnn"``) or ``1 - a + a / n`` (``"uniform"``), each other one ``a / (n - 1)`` or ``a / n``

    Example: ``target_entropy(0.1, "returnn", 0, 2) == -(0.9 * log(0.9) + 0.1 * log(0.1))``
    """
    included = num_labels - num_excluded
    others = included - 1 if convention == "returnn" else included
    floor = smoothing / others if others > 0 else 0.0
    on_target = 1.0 - smoothing + (0.0 if convention == "returnn" else floor)
    xlogx = lambda p: p * math.log(p) if p > 0 else 0.0  # noqa: E731
    return -(xlogx(on_target) + (included - 1) * xlogx(floor))


def _entropy_per_frame(target: Tensor, smoothing: float, loss_opts: dict[str, Any], vocab: Dim) -> Tensor:
    """:return: per frame of ``target`` the entropy of its smoothed target distribution (0 at padding frames)"""
    excluded = set(loss_opts.get("exclude_labels") or ())
    convention = loss_opts.get("label_smoothing_convention", "returnn")
    entropy = target_entropy(smoothing, convention, len(excluded), vocab.dimension)
    smoothed = valid_frames(target)
    for label in excluded:  # an excluded target label is not smoothed: entropy 0
        differs = target != int(label)
        smoothed = differs if smoothed is None else smoothed & differs
    if smoothed is None:
        return rf.convert_to_tensor(entropy, dims=())
    return rf.where(smoothed, entropy, 0.0)


class SoftmaxLayer(ConcatInputLayer):
    """``softmax``: options ``n_out``, ``target``, ``loss`` (``"ce"``/``"ctc"``), ``loss_opts``, ``with_bias``,
    ``dropout``."""

    name = "softmax"
    options: ClassVar[dict[str, Any]] = {"n_out": None, "loss_opts": {}, "with_bias": True, "dropout": 0.0}
    returnn_options = (*ConcatInputLayer.returnn_options, "forward_weights_init", "bias_init", "grad_filter",
                       "use_transposed_weights", "loss_scale", "activation")  # fmt: skip
    target = "optional"

    def default_target(self, spec: dict[str, Any]) -> str | None:
        return "classes" if spec.get("loss") else None

    def check_loss(self, loss: Any, opts: dict[str, Any]) -> None:
        if loss not in (None, False, "ce", "ctc"):
            raise LayerError(f"softmax 'loss' must be 'ce' or 'ctc', got {loss!r}")
        loss_opts = opts["loss_opts"] or {}
        if not isinstance(loss_opts, dict):
            raise LayerError(f"'loss_opts' must be a dict such as {{'label_smoothing': 0.1}}, got {loss_opts!r}")
        bad = [k for k in loss_opts if k not in SOFTMAX_LOSS_OPTS]
        if bad:
            raise LayerError(f"unknown loss_opts key {bad[0]!r}; known: {list(SOFTMAX_LOSS_OPTS)}"
                             f"{suggest(bad[0], SOFTMAX_LOSS_OPTS)}")  # fmt: skip
        opts["loss_opts"] = dict(loss_opts)

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        n_out = layer.opts["n_out"]
        if n_out is None and target is None:
            raise LayerError("softmax needs 'n_out' or a 'target'")
        n_out = positive_int(n_out, "n_out") if n_out is not None else target.dim.dimension
        if target is not None and n_out != target.dim.dimension:
            raise LayerError(f"n_out {n_out} differs from the {target.dim.dimension} labels of target "
                             f"{layer.target!r}")  # fmt: skip
        if layer.loss == "ce" and target.time is not layer.in_node.time:
            raise LayerError(f"loss 'ce' needs one target label per frame of the input, but target {layer.target!r} "
                             "has a time dim of its own (label sequences: use loss 'ctc', or a frame-aligned "
                             "target)")  # fmt: skip
        return Node(Dim(n_out, name=f"{layer.name}:feature"), "probs", layer.in_node.time, self.name)

    def target_vocab(self, layer: Layer) -> Dim:
        return layer.node.dim

    def build(self, layer: Layer) -> Module:
        return rf.Linear(layer.in_node.dim, layer.node.dim, with_bias=bool(layer.opts["with_bias"]))

    def forward(self, ctx: Context, x: Tensor) -> Tensor | tuple[Tensor, LossOutput]:
        vocab, loss_opts = ctx.layer.node.dim, ctx.layer.opts["loss_opts"]
        logits = ctx.module(x)
        probs = rf.softmax(logits, axis=vocab)
        if not ctx.layer.loss:
            return probs
        log_probs = rf.log_softmax(logits, axis=vocab)
        smoothing = loss_opts.get("label_smoothing", 0.0)
        if ctx.layer.loss == "ce":
            value = rf.label_smoothed_cross_entropy(
                logits=logits, targets=ctx.target, axis=vocab, smoothing=smoothing,
                convention=loss_opts.get("label_smoothing_convention", "returnn"),
                exclude_labels=loss_opts.get("exclude_labels"),
            )  # fmt: skip
            if smoothing:  # RETURNN's score: minus the smoothed target's entropy (the gradient stays)
                value = value - _entropy_per_frame(ctx.target, smoothing, loss_opts, vocab)
            return probs, LossOutput(value, True, log_probs, ctx.target, vocab)
        blank = loss_opts.get("blank_index", 0)
        value = ctc_of_logits(logits, ctx.target, vocab, ctx.layer.in_node.time, blank, smoothing, False)
        return probs, LossOutput(value, False, log_probs, ctx.target, vocab, blank)

    def user_message(self, exc: Exception) -> str:
        message = str(exc)
        for argument, key in _ARGUMENT_KEYS.items():
            message = re.sub(rf"^\w+: {argument}\b", f"loss_opts[{key!r}]", message)
        return message

    def with_smoothing(self, opts: dict[str, Any], loss: Any, value: float) -> dict[str, Any] | None:
        if not loss:
            return None
        return {**opts, "loss_opts": {**(opts.get("loss_opts") or {}), "label_smoothing": value}}

    def is_smoothed(self, opts: dict[str, Any], loss: Any) -> bool:
        return bool(loss) and bool((opts.get("loss_opts") or {}).get("label_smoothing"))
