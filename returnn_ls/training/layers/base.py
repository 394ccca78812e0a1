"""What every layer class of a network dict has: options, static inference, module construction and forward.

A layer class (a subclass of :class:`LayerClass`, one object per class name) declares its options with their
defaults, how many inputs it takes from ``"from"``, whether it has a ``target``, and implements

- :meth:`LayerClass.infer`: what flows out of the layer (a :class:`Node`), known before running, so that bad
  networks are reported when the config is read;
- :meth:`LayerClass.build`: the ``rf.Module`` that holds the layer's parameters (``rf.Linear``, ``rf.LSTM``, ...),
  or None;
- :meth:`LayerClass.forward`: the layer's output from its inputs; loss layers also return a :class:`LossOutput`.

:class:`ConcatInputLayer` is RETURNN's common input handling: a list in ``"from"`` is concatenated along the
features, and the option ``dropout`` applies dropout to that input.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.nn import Module
from returnn_ls.tensor import Tensor

__all__ = [
    "DENSE",
    "REQUIRED",
    "ConcatInputLayer",
    "Context",
    "Layer",
    "LayerClass",
    "LayerError",
    "LossOutput",
    "Node",
    "log_probs_of",
    "positive_int",
    "relabel",
]

#: Marks an option without a default.
REQUIRED = object()
#: The kinds of dense values (everything but class indices and losses).
DENSE = ("dense", "logits", "log-probs", "probs")


class LayerError(ValueError):
    """A bad layer: the network adds the config file and line and the layer's name and class."""


@dataclass
class Node:
    """What flows along a ``"from"`` edge, known before running.

    :param dim: the feature dim (dense) or the label dim (sparse); None for losses
    :param kind: ``"dense"`` (features), ``"logits"``, ``"log-probs"``, ``"probs"``, ``"sparse"`` (class indices)
        or ``"loss"``
    :param time: the time dim, or None if there is none
    :param origin: the layer class that produced it (None for ``extern_data``)
    """

    dim: Dim | None
    kind: str
    time: Dim | None = None
    origin: str | None = None


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
class Layer:
    """One layer of a network dict, validated: options with defaults filled in, inputs, target, output node.

    :param loss: the ``loss`` option as written (``True``, ``"ce"``, ``"ctc"``, or None/False)
    :param in_node: the input as the layer sees it (for a list in ``"from"`` of a :class:`ConcatInputLayer`: the
        concatenated features)
    """

    name: str
    cls: LayerClass
    opts: dict[str, Any]
    sources: list[str]
    target: str | None
    loss: Any = None
    node: Node | None = None
    in_node: Node | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def contributes(self) -> bool:
        """:return: whether the layer's loss is part of the training loss"""
        return bool(self.loss)


@dataclass
class Context:
    """What :meth:`LayerClass.forward` sees besides its inputs."""

    layer: Layer
    module: Module | None
    target: Tensor | None  # relabelled to :meth:`LayerClass.target_vocab`


class LayerClass:
    """Base of the layer classes (see the module docstring). Subclasses set the class attributes."""

    #: the ``"class"`` name in a network dict
    name: ClassVar[str] = ""
    #: option -> default (:data:`REQUIRED`: no default)
    options: ClassVar[dict[str, Any]] = {}
    #: options RETURNN's layer of this name has that are not supported here (an error says so)
    returnn_options: ClassVar[tuple[str, ...]] = ()
    #: how many names ``"from"`` may have (None: one or more)
    num_from: ClassVar[tuple[int, ...] | None] = (1,)
    #: the kinds of input (of the first ``"from"``) the layer accepts
    accepts: ClassVar[tuple[str, ...]] = DENSE
    #: ``"none"``, ``"optional"`` or ``"required"`` (the default target is ``"classes"``, as in RETURNN)
    target: ClassVar[str] = "none"
    #: the layer computes a loss (``"loss": True`` is allowed)
    is_loss: ClassVar[bool] = False
    #: the option that holds a label-smoothing value (``compare`` varies it); ``label_prob`` holds ``1 - value``
    smoothing_option: ClassVar[str | None] = None

    # -- validation and static inference -----------------------------------------------------------------------

    def default_target(self, spec: dict[str, Any]) -> str | None:
        """:return: the target when the layer dict gives none (RETURNN's default ``"classes"`` for losses)"""
        return "classes" if self.target == "required" else None

    def check_loss(self, loss: Any, opts: dict[str, Any]) -> None:
        """Check the ``loss`` option; :raise LayerError: if it is not valid for this class"""
        if isinstance(loss, str) and not self.is_loss:
            raise LayerError(
                f"'loss': {loss!r} is supported on the softmax layer only (RETURNN's output layer, "
                "e.g. {'class': 'softmax', 'loss': 'ce'}); RETURNN's losses on other layers are not"
            )
        if loss not in (None, False, True):
            raise LayerError(f"'loss' must be True or False for class {self.name}, got {loss!r}")
        if loss and not self.is_loss:
            raise LayerError(f"class {self.name!r} computes no loss, so 'loss': True is invalid")

    def input_node(self, layer: Layer, ins: list[Node]) -> Node:
        """:return: the node of the (first) input, after checking its kind; :raise LayerError: for a wrong kind"""
        if ins[0].kind not in self.accepts:
            raise LayerError(f"input {layer.sources[0]!r} is {ins[0].kind}, expected one of {list(self.accepts)}")
        return ins[0]

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        """:return: the layer's output node (default: the input's); :raise LayerError: for a bad combination"""
        return Node(layer.in_node.dim, layer.in_node.kind, layer.in_node.time, self.name)

    def target_vocab(self, layer: Layer) -> Dim:
        """:return: the label dim the target is relabelled to (default: the input's)"""
        return layer.in_node.dim

    # -- parameters and running --------------------------------------------------------------------------------

    def build(self, layer: Layer) -> Module | None:
        """:return: the module that holds the layer's parameters (created now, from the seeded generator), or None"""
        return None

    def prepare(self, ctx: Context, xs: list[Tensor]) -> list[Tensor]:
        """:return: the inputs as :meth:`forward` takes them (default: unchanged)"""
        return xs

    def forward(self, ctx: Context, *xs: Tensor) -> Tensor | LossOutput | tuple[Tensor, LossOutput]:
        """:return: the layer's output; a loss layer returns a :class:`LossOutput` (or the output and one)"""
        raise NotImplementedError

    def user_message(self, exc: Exception) -> str:
        """:return: the message of an error raised by a library function, in terms of the layer's options"""
        return str(exc)

    # -- label smoothing (``compare`` and the unsmoothed dev loss) ---------------------------------------------

    def with_smoothing(self, opts: dict[str, Any], loss: Any, value: float) -> dict[str, Any] | None:
        """:return: a copy of ``opts`` (a layer dict or parsed options) with the smoothing set to ``value``, or
        None if the class has no smoothing option"""
        if self.smoothing_option is None:
            return None
        return {**opts, self.smoothing_option: 1.0 - value if self.smoothing_option == "label_prob" else value}

    def is_smoothed(self, opts: dict[str, Any], loss: Any) -> bool:
        """:return: whether the options smooth (a smoothing value other than 0)"""
        if self.smoothing_option is None:
            return False
        value = opts.get(self.smoothing_option)
        neutral = 1.0 if self.smoothing_option == "label_prob" else 0.0
        return value is not None and value != neutral


class ConcatInputLayer(LayerClass):
    """RETURNN's common input handling: several ``"from"`` names are concatenated along their features (in
    order), then ``dropout`` (only while training) drops input features with one mask per feature, shared over
    batch and time (RETURNN's default noise shape). Subclasses have the option ``dropout``."""

    num_from: ClassVar[tuple[int, ...] | None] = None
    #: the options of RETURNN's input handling that are not supported here
    returnn_options: ClassVar[tuple[str, ...]] = (
        "dropout_axis", "dropout_noise_shape", "dropout_on_forward", "mask", "in_dim", "out_dim",
    )  # fmt: skip

    def input_node(self, layer: Layer, ins: list[Node]) -> Node:
        rate = layer.opts.get("dropout", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
            raise LayerError(f"option 'dropout' must be a float in [0, 1), got {rate!r}")
        if len(ins) == 1:
            node = super().input_node(layer, ins)
            if rate and node.kind == "sparse":
                raise LayerError(f"dropout needs features, but input {layer.sources[0]!r} holds class indices")
            return node
        for node, source in zip(ins, layer.sources):
            if node.kind not in DENSE:
                raise LayerError(f"input {source!r} is {node.kind}; only features can be concatenated")
            if node.time is not ins[0].time:
                raise LayerError(f"inputs {layer.sources[0]!r} and {source!r} have different time dims; they "
                                 "cannot be concatenated")  # fmt: skip
        return Node(rf.concat_dim(*(node.dim for node in ins)), "dense", ins[0].time, "concat")

    def prepare(self, ctx: Context, xs: list[Tensor]) -> list[Tensor]:
        x = xs[0] if len(xs) == 1 else rf.concat_features(*xs)
        drop = ctx.layer.opts.get("dropout") or 0.0
        return [rf.dropout(x, drop, axis=x.feature_dim) if drop else x]


def positive_int(value: Any, option: str) -> int:
    """:return: ``value`` as an int; :raise LayerError: naming ``option`` unless it is an int >= 1

    Example: ``positive_int(layer.opts["n_out"], "n_out")``
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise LayerError(f"option {option!r} must be an int >= 1, got {value!r}")
    return int(value)


def relabel(x: Tensor, old: Dim, new: Dim) -> Tensor:
    """:return: ``x`` with the label dim ``old`` (a dim or the sparse dim) replaced by ``new`` of equal size

    Example: ``relabel(targets, targets.sparse_dim, logits.feature_dim)``
    """
    if old is new:
        return x
    dims = tuple(new if d is old else d for d in x.dims)
    feature = new if x.feature_dim is old else x.feature_dim
    sparse = new if x.sparse_dim is old else x.sparse_dim
    return Tensor(x.raw_tensor, dims, feature_dim=feature, sparse_dim=sparse, backend=x.backend)


def log_probs_of(x: Tensor, kind: str, axis: Dim) -> Tensor:
    """:return: log-probabilities from logits, log-probs or probs over ``axis``

    Example: ``log_probs_of(probs, "probs", vocab)`` is ``log(probs)`` (floored at 1e-30)
    """
    if kind == "log-probs":
        return x
    if kind == "probs":
        return rf.log(rf.maximum(x, 1e-30))
    return rf.log_softmax(x, axis=axis)
