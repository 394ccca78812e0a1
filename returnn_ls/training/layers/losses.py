"""This project's loss layer classes: ``cross_entropy``, ``label_smoothed_cross_entropy``, ``ctc_loss`` and
``label_relaxation_loss``. Each calls the library's loss of its name; with ``"loss": True`` it is part of the
training loss. The target defaults to ``"classes"``, as in RETURNN."""

from __future__ import annotations

from typing import Any, ClassVar

import returnn_ls as rf
from returnn_ls.tensor import Tensor
from returnn_ls.training.layers.base import (
    REQUIRED,
    Context,
    Layer,
    LayerClass,
    LayerError,
    LossOutput,
    Node,
    log_probs_of,
    relabel,
)
from returnn_ls.training.layers.output import ctc_of_logits

__all__ = ["CrossEntropyLayer", "CtcLossLayer", "LabelRelaxationLossLayer", "LabelSmoothedCrossEntropyLayer"]


class _LossLayer(LayerClass):
    """A loss over the input's labels: the target's labels must be the input's; frame-level losses need one
    target label per frame."""

    target = "required"
    is_loss = True
    frame_level: ClassVar[bool] = True

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        if target is not None:
            if layer.in_node.dim.dimension != target.dim.dimension:
                raise LayerError(f"input has {layer.in_node.dim.dimension} labels, target {layer.target!r} has "
                                 f"{target.dim.dimension}")  # fmt: skip
            if self.frame_level and target.time is not layer.in_node.time:
                raise LayerError(
                    f"a frame-level loss needs one target label per frame of the input, but target "
                    f"{layer.target!r} has a time dim of its own (label sequences, as for CTC)"
                )
        return Node(None, "loss", None, self.name)

    def _output(self, ctx: Context, value: Tensor, x: Tensor, kind: str, blank: int | None = None) -> LossOutput:
        axis = ctx.layer.in_node.dim
        return LossOutput(value, self.frame_level, log_probs_of(x, kind, axis), ctx.target, axis, blank)


class CrossEntropyLayer(_LossLayer):
    """``cross_entropy`` against a sparse ``target``, or against a distribution given as the second ``"from"``."""

    name = "cross_entropy"
    options: ClassVar[dict[str, Any]] = {"estimated_type": None}
    num_from = (1, 2)
    target = "optional"

    def default_target(self, spec: dict[str, Any]) -> str | None:
        return None if isinstance(spec.get("from"), (list, tuple)) and len(spec["from"]) == 2 else "classes"

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        if len(ins) == 2:
            if ins[1].kind not in ("probs", "dense") or ins[1].dim.dimension != layer.in_node.dim.dimension:
                raise LayerError(f"the second 'from' {layer.sources[1]!r} must be a distribution over the "
                                 f"{layer.in_node.dim.dimension} labels of the input")  # fmt: skip
            return Node(None, "loss", None, self.name)
        if target is None:
            raise LayerError("cross_entropy needs a 'target' or a second 'from'")
        return super().infer(layer, ins, target)

    def forward(self, ctx: Context, x: Tensor, dense_target: Tensor | None = None) -> LossOutput:
        axis, kind = ctx.layer.in_node.dim, ctx.layer.in_node.kind
        etype = ctx.layer.opts["estimated_type"] or {"log-probs": "log-probs", "probs": "probs"}.get(kind, "logits")
        target = ctx.target if dense_target is None else relabel(dense_target, dense_target.feature_dim, axis)
        value = rf.cross_entropy(estimated=x, target=target, axis=axis, estimated_type=etype)
        return LossOutput(value, True, log_probs_of(x, etype, axis), target, axis)


class LabelSmoothedCrossEntropyLayer(_LossLayer):
    """``label_smoothed_cross_entropy`` of logits (``smoothing``, ``convention``, ``exclude_labels``, ``weight``)."""

    name = "label_smoothed_cross_entropy"
    options: ClassVar[dict[str, Any]] = {"smoothing": REQUIRED, "convention": "returnn", "exclude_labels": None,
                                         "weight": None}  # fmt: skip
    smoothing_option = "smoothing"

    def forward(self, ctx: Context, x: Tensor) -> LossOutput:
        o, axis = ctx.layer.opts, ctx.layer.in_node.dim
        weight = o["weight"]
        if weight is not None:
            weight = rf.convert_to_tensor([float(w) for w in weight], dims=[axis], dtype="float32")
        value = rf.label_smoothed_cross_entropy(
            logits=x, targets=ctx.target, axis=axis, smoothing=o["smoothing"], convention=o["convention"],
            exclude_labels=o["exclude_labels"], weight=weight,
        )  # fmt: skip
        return self._output(ctx, value, x, "logits")


class CtcLossLayer(_LossLayer):
    """``ctc_loss`` (``blank_index``, ``label_smoothing``, ``logits_normalized``: None means "if the input is
    log-probabilities")."""

    name = "ctc_loss"
    options: ClassVar[dict[str, Any]] = {"blank_index": 0, "label_smoothing": 0.0, "logits_normalized": None}
    smoothing_option = "label_smoothing"
    frame_level = False

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        if ins[0].origin == "label_smoothed_log_prob_gradient" and layer.opts["logits_normalized"] is False:
            layer.warnings.append("label_smoothed_log_prob_gradient in front of ctc_loss with logits_normalized "
                                  "False smooths exp(lp) - q, not the CTC posterior q; leave logits_normalized "
                                  "unset (true on log-probs) or use ctc_loss's option label_smoothing")  # fmt: skip
        return super().infer(layer, ins, target)

    def forward(self, ctx: Context, x: Tensor) -> LossOutput:
        o, node = ctx.layer.opts, ctx.layer.in_node
        normalized = o["logits_normalized"]
        if normalized is None:
            normalized = node.kind == "log-probs"
        value = ctc_of_logits(x, ctx.target, node.dim, node.time, o["blank_index"], o["label_smoothing"], normalized)
        return self._output(ctx, value, x, "log-probs" if normalized else "logits", o["blank_index"])


class LabelRelaxationLossLayer(_LossLayer):
    """``label_relaxation_loss`` of logits (``alpha``)."""

    name = "label_relaxation_loss"
    options: ClassVar[dict[str, Any]] = {"alpha": REQUIRED}

    def forward(self, ctx: Context, x: Tensor) -> LossOutput:
        value = rf.label_relaxation_loss(logits=x, targets=ctx.target, axis=ctx.layer.in_node.dim,
                                         alpha=ctx.layer.opts["alpha"])  # fmt: skip
        return self._output(ctx, value, x, "logits")
