"""RETURNN's feature layers: ``copy``, ``dropout``, ``linear``, ``layer_norm`` and ``conv`` (1-D).

Each takes RETURNN's options with RETURNN's defaults (read from RETURNN's TF layers), and concatenates a list in
``"from"`` and applies ``dropout`` to its input as RETURNN does (:class:`ConcatInputLayer`). The parameters are
those of this library's modules: ``rf.Linear`` (``weight`` Glorot uniform, ``bias`` 0, as RETURNN's
``forward_weights_init="glorot_uniform"``, ``bias_init=0``), ``rf.LayerNorm`` (``scale`` 1, ``bias`` 0) and
``rf.Conv1d`` (``filter`` Glorot uniform, ``bias`` 0).
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.nn import Module
from returnn_ls.nn.conv import conv_out_length
from returnn_ls.tensor import Tensor
from returnn_ls.training.layers.activation import activation_kind, apply_activation, check_activation
from returnn_ls.training.layers.base import (
    DENSE,
    REQUIRED,
    ConcatInputLayer,
    Context,
    Layer,
    LayerError,
    Node,
    positive_int,
)

__all__ = ["ConvLayer", "CopyLayer", "DropoutLayer", "LayerNormLayer", "LinearLayer"]


class CopyLayer(ConcatInputLayer):
    """``copy``: the input (a list in ``"from"``: concatenated), with ``dropout`` while training."""

    name = "copy"
    options: ClassVar[dict[str, Any]] = {"dropout": 0.0}
    returnn_options = (*ConcatInputLayer.returnn_options, "extra_deps")
    accepts = (*DENSE, "sparse")

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        return x


class DropoutLayer(CopyLayer):
    """``dropout``: RETURNN's name for a ``copy`` layer with ``dropout``."""

    name = "dropout"


class LinearLayer(ConcatInputLayer):
    """``linear``: ``activation(x @ W + b)`` (``rf.Linear``)."""

    name = "linear"
    options: ClassVar[dict[str, Any]] = {"n_out": REQUIRED, "activation": None, "with_bias": True, "dropout": 0.0}
    returnn_options = (
        *ConcatInputLayer.returnn_options,
        "forward_weights_init",
        "bias_init",
        "grad_filter",
        "use_transposed_weights",
    )

    def check_loss(self, loss: Any, opts: dict[str, Any]) -> None:
        if loss:
            raise LayerError(f"class {self.name!r} computes no loss; RETURNN's output layer with a loss is "
                             "{'class': 'softmax', 'loss': 'ce'}")  # fmt: skip

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        check_activation(layer.opts["activation"])
        n_out = positive_int(layer.opts["n_out"], "n_out")
        kind = activation_kind(layer.opts["activation"])
        return Node(Dim(n_out, name=f"{layer.name}:feature"), kind, layer.in_node.time, self.name)

    def build(self, layer: Layer) -> Module:
        return rf.Linear(layer.in_node.dim, layer.node.dim, with_bias=bool(layer.opts["with_bias"]))

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        return apply_activation(ctx.module(x), ctx.layer.opts["activation"], ctx.layer.node.dim)


class LayerNormLayer(ConcatInputLayer):
    """``layer_norm``: layer normalization over the features (``rf.LayerNorm``; RETURNN's ``epsilon`` 1e-6)."""

    name = "layer_norm"
    options: ClassVar[dict[str, Any]] = {"epsilon": 1e-6, "dropout": 0.0}
    returnn_options = ConcatInputLayer.returnn_options

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        eps = layer.opts["epsilon"]
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
            raise LayerError(f"option 'epsilon' must be a float >= 0, got {eps!r}")
        return Node(layer.in_node.dim, "dense", layer.in_node.time, self.name)

    def build(self, layer: Layer) -> Module:
        return rf.LayerNorm(layer.in_node.dim, eps=float(layer.opts["epsilon"]))

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        return ctx.module(x)


class ConvLayer(ConcatInputLayer):
    """``conv``, 1-D over the time dim (``rf.Conv1d``): RETURNN's ``filter_size`` is a tuple of one int,
    ``padding`` ``"same"`` (``ceil(T / strides)`` frames; with ``strides > 1`` padded as TensorFlow's ``"SAME"`` for
    the padded length of the batch, as RETURNN's layer) or ``"valid"``; ``with_bias`` defaults to True (RETURNN
    since behavior version 10)."""

    name = "conv"
    options: ClassVar[dict[str, Any]] = {
        "n_out": REQUIRED, "filter_size": REQUIRED, "padding": REQUIRED, "strides": 1, "dilation_rate": 1,
        "groups": 1, "activation": None, "with_bias": True, "dropout": 0.0,
    }  # fmt: skip
    returnn_options = (
        *ConcatInputLayer.returnn_options, "input_expand_dims", "input_add_feature_dim", "input_split_feature_dim",
        "in_spatial_dims", "out_spatial_dims", "auto_use_channel_first", "forward_weights_init", "bias_init",
        "filter", "filter_perm", "bias", "use_time_mask", "pad_seq_len_to_power",
    )  # fmt: skip

    @staticmethod
    def _one_int(value: Any, option: str, example: str) -> int:
        """:return: the int of ``value`` (an int or a tuple/list of one int)"""
        if isinstance(value, (tuple, list)):
            if len(value) != 1:
                raise LayerError(f"option {option!r} must have one entry (a 1-D convolution), e.g. {example}, got "
                                 f"{value!r}; 2-D and 3-D convolutions are not supported")  # fmt: skip
            value = value[0]
        return positive_int(value, option)

    def _geometry(self, opts: dict[str, Any]) -> tuple[int, str, int, int]:
        """:return: filter size, padding, stride and dilation rate, checked"""
        if not isinstance(opts["filter_size"], (tuple, list)):
            raise LayerError(f"option 'filter_size' must be a tuple of one int, e.g. (3,), got {opts['filter_size']!r}")
        size = self._one_int(opts["filter_size"], "filter_size", "(3,)")
        padding = opts["padding"].lower() if isinstance(opts["padding"], str) else opts["padding"]
        if padding not in ("same", "valid"):
            raise LayerError(f"option 'padding' must be 'same' or 'valid', got {opts['padding']!r}")
        stride = self._one_int(opts["strides"], "strides", "2")
        dilation = self._one_int(opts["dilation_rate"], "dilation_rate", "2")
        if stride > 1 and dilation > 1:
            raise LayerError("strides > 1 together with dilation_rate > 1 is not supported; use one of them")
        if opts["groups"] != 1:
            groups = opts["groups"]
            raise LayerError(f"option 'groups' must be 1 (grouped convolution is not supported), got {groups!r}")
        return size, padding, stride, dilation

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        check_activation(layer.opts["activation"])
        n_out = positive_int(layer.opts["n_out"], "n_out")
        size, padding, stride, dilation = self._geometry(layer.opts)
        time = layer.in_node.time
        if time is None:
            raise LayerError(f"input {layer.sources[0]!r} has no time dim to convolve over")
        if padding != "same" or stride != 1:
            taps = (size - 1) * dilation + 1
            length = None if time.dimension is None else conv_out_length(time.dimension, taps, stride, padding)
            time = Dim(length, name=f"{layer.name}:time")
        kind = activation_kind(layer.opts["activation"])
        return Node(Dim(n_out, name=f"{layer.name}:feature"), kind, time, self.name)

    def build(self, layer: Layer) -> Module:
        size, padding, stride, dilation = self._geometry(layer.opts)
        # RETURNN's TF ConvLayer pads "same" as TensorFlow's "SAME" for the padded length of the batch
        return rf.Conv1d(layer.in_node.dim, layer.node.dim, size, padding=padding, strides=stride,
                         dilation_rate=dilation, with_bias=bool(layer.opts["with_bias"]),
                         use_consistent_same_padding=False)  # fmt: skip

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        in_time, out_time = ctx.layer.in_node.time, ctx.layer.node.time
        if out_time is not in_time and out_time.dimension is None:  # the output's lengths, for this batch
            size, padding, stride, dilation = self._geometry(ctx.layer.opts)
            taps = (size - 1) * dilation + 1
            out_time.dyn_size_ext = conv_out_length(in_time.dyn_size_ext, taps, stride, padding)
        y, _ = ctx.module(x, in_spatial_dim=in_time, out_spatial_dim=out_time)
        return apply_activation(y, ctx.layer.opts["activation"], ctx.layer.node.dim)
