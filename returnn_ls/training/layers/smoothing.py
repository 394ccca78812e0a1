"""This project's layer classes around the label-smoothing functions: ``log_softmax``, ``label_smoothing``,
``smooth_one_hot``, ``label_smoothed_log_prob_gradient`` and ``scaled_grad`` (RETURNN's name for
``scaled_gradient_ext``). Each calls the library function of its name with the layer's options as arguments."""

from __future__ import annotations

from typing import Any, ClassVar

import returnn_ls as rf
from returnn_ls.tensor import Tensor
from returnn_ls.training.layers.base import REQUIRED, Context, Layer, LayerClass, Node

__all__ = ["LabelSmoothedLogProbGradientLayer", "LabelSmoothingLayer", "LogSoftmaxLayer", "ScaledGradLayer",
           "SmoothOneHotLayer"]  # fmt: skip


class LogSoftmaxLayer(LayerClass):
    """``log_softmax`` over the features."""

    name = "log_softmax"

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        return Node(layer.in_node.dim, "log-probs", layer.in_node.time, self.name)

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        return rf.log_softmax(x, axis=ctx.layer.node.dim)


class LabelSmoothingLayer(LayerClass):
    """``label_smoothing`` of class indices or of probabilities (``smoothing``)."""

    name = "label_smoothing"
    options: ClassVar[dict[str, Any]] = {"smoothing": REQUIRED}
    accepts = ("sparse", "probs")
    smoothing_option = "smoothing"

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        return Node(layer.in_node.dim, "probs", layer.in_node.time, self.name)

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        return rf.label_smoothing(x, ctx.layer.opts["smoothing"])


class SmoothOneHotLayer(LabelSmoothingLayer):
    """``smooth_one_hot`` of class indices (``label_prob``)."""

    name = "smooth_one_hot"
    options: ClassVar[dict[str, Any]] = {"label_prob": REQUIRED}
    accepts = ("sparse",)
    smoothing_option = "label_prob"

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        return rf.smooth_one_hot(x, label_prob=ctx.layer.opts["label_prob"])


class LabelSmoothedLogProbGradientLayer(LayerClass):
    """``label_smoothed_log_prob_gradient``: the identity forward, label smoothing in the gradient."""

    name = "label_smoothed_log_prob_gradient"
    options: ClassVar[dict[str, Any]] = {"smoothing": REQUIRED, "exclude_labels": None, "returnn_compat": False}
    smoothing_option = "smoothing"

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        o = ctx.layer.opts
        return rf.label_smoothed_log_prob_gradient(
            x, o["smoothing"], axis=ctx.layer.node.dim, exclude_labels=o["exclude_labels"],
            returnn_compat=o["returnn_compat"],
        )  # fmt: skip


class ScaledGradLayer(LayerClass):
    """``scaled_grad``: the identity forward, the gradient scaled and shifted (``scaled_gradient_ext``)."""

    name = "scaled_grad"
    options: ClassVar[dict[str, Any]] = {"scale": 1.0, "shift": None, "scale_shift_by_sum_over_axis": None}

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        o = ctx.layer.opts
        axis = ctx.layer.node.dim if o["scale_shift_by_sum_over_axis"] not in (None, False) else None
        return rf.scaled_gradient_ext(x, scale=o["scale"], shift=o["shift"], scale_shift_by_sum_over_axis=axis)
