"""Conformer encoder (Gulati et al. 2020; as ``returnn.frontend.encoder.conformer``, same parameter names).

Each layer: ``x + 1/2 ff1(norm(x))``, ``x + self_att(norm(x))`` (relative positions by default), ``x +
conv_block(norm(x))``, ``x + 1/2 ff2(norm(x))``, then a final norm; each branch with dropout. The conv block is
``positionwise_conv2(swish(norm(depthwise_conv(GLU(positionwise_conv1(x))))))`` with a batch norm by default.
The encoder: an optional ``input_layer`` (``(x, in_spatial_dim=) -> (y, out_spatial_dim)``, e.g. a subsampling
frontend), ``input_projection`` (no bias) to ``out_dim`` if the features differ, optional scale and positional
encoding, dropout, then the layers.
"""

from __future__ import annotations

import functools
import inspect
from types import FunctionType
from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.nn._att_utils import split, to_device_of
from returnn_ls.nn.activation import swish
from returnn_ls.nn.build_from_dict import build_from_dict
from returnn_ls.nn.container import Sequential
from returnn_ls.nn.conv import Conv1d
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.feed_forward import FeedForward, build_part, make_norm
from returnn_ls.nn.linear import Linear
from returnn_ls.nn.module import Module
from returnn_ls.nn.normalization import BatchNorm, LayerNorm
from returnn_ls.nn.rel_pos_attention import RelPosSelfAttention
from returnn_ls.ops import sigmoid
from returnn_ls.tensor import Tensor

__all__ = ["ConformerConvBlock", "ConformerEncoder", "ConformerEncoderLayer", "ConformerPositionwiseFeedForward"]

#: RETURNN's default dims (one Dim object each, shared by all instances that use the default)
_DEFAULT_OUT_DIM = Dim(512, name="conformer-enc-default-out-dim")


class ConformerPositionwiseFeedForward(FeedForward):
    """:class:`~returnn_ls.nn.transformer.FeedForward` with swish as the default activation."""

    @staticmethod
    def _default_activation() -> Any:
        return swish


class ConformerConvBlock(Module):
    """``positionwise_conv2(swish(norm(depthwise_conv(GLU(positionwise_conv1(x))))))``.

    :param out_dim: the model dim
    :param kernel_size: of the depthwise convolution ("same" padding)
    :param norm: a callable module, e.g. ``BatchNorm(out_dim)``; it gets ``spatial_dim=`` if it takes one
    """

    def __init__(self, out_dim: Dim, *, kernel_size: int, norm: Any):
        self.out_dim = out_dim
        self.positionwise_conv1 = Linear(out_dim, 2 * out_dim)
        self.depthwise_conv = Conv1d(out_dim, out_dim, kernel_size, groups=out_dim.dimension, padding="same")
        self.positionwise_conv2 = Linear(out_dim, out_dim)
        if not callable(norm):
            raise TypeError(f"ConformerConvBlock: norm must be callable, got {norm!r}")
        self.norm = norm
        call = norm.__call__ if isinstance(norm, Module) else norm
        self._norm_wants_spatial_dim = "spatial_dim" in inspect.signature(call).parameters

    def __call__(self, inp: Tensor, *, spatial_dim: Dim) -> Tensor:
        x = self.positionwise_conv1(inp)
        a, gate = split(x, self.positionwise_conv1.out_dim, [self.out_dim, self.out_dim])
        x, _ = self.depthwise_conv(a * sigmoid(gate), in_spatial_dim=spatial_dim)
        x = self.norm(x, spatial_dim=spatial_dim) if self._norm_wants_spatial_dim else self.norm(x)
        return self.positionwise_conv2(swish(x))


def _conv_norm(conv_norm: Any, conv_norm_opts: dict | None, out_dim: Dim) -> Any:
    if conv_norm is None or conv_norm is BatchNorm:
        return BatchNorm(out_dim, **(conv_norm_opts or {}))
    if isinstance(conv_norm, type):
        return conv_norm(out_dim, **(conv_norm_opts or {}))
    if isinstance(conv_norm, dict):
        return build_from_dict(conv_norm, out_dim, **(conv_norm_opts or {}))
    if not callable(conv_norm):
        raise TypeError(f"ConformerEncoderLayer: conv_norm must be a class, a dict or callable, got {conv_norm!r}")
    return conv_norm


class ConformerEncoderLayer(Module):
    """One Conformer block (see the module doc).

    :param out_dim: the model dim
    :param ff: None (:class:`ConformerPositionwiseFeedForward`), a class, a dict or a module; ``ff_dim``,
        ``ff_activation``: its options
    :param dropout: on each branch (and inside the feed-forward blocks)
    :param conv_kernel_size: of the depthwise convolution
    :param conv_norm: the conv block's norm: None (``BatchNorm``), a class, a dict or a callable;
        ``conv_norm_opts``: its options
    :param self_att: None (:class:`~returnn_ls.nn.rel_pos_attention.RelPosSelfAttention`), a class, a dict or a
        module; ``self_att_opts``: more options
    :param norm: the pre-norms and the final norm: a class (default ``LayerNorm``), a dict, a module or a callable
    """

    def __init__(self, out_dim: Dim = _DEFAULT_OUT_DIM, *, ff: Any = None,
                 ff_dim: Dim | None = None, ff_activation: Any = None, dropout: float = 0.1,
                 conv_kernel_size: int = 32, conv_norm: Any = None, conv_norm_opts: dict | None = None,
                 num_heads: int = 4, self_att: Any = None, self_att_opts: dict | None = None,
                 att_dropout: float = 0.1, norm: Any = LayerNorm):  # fmt: skip
        func = "ConformerEncoderLayer"
        self.out_dim, self.dropout = out_dim, dropout
        ff_opts = {k: v for k, v in dict(ff_dim=ff_dim, activation=ff_activation).items() if v is not None}
        for name in ("ffn1", "ffn2"):
            setattr(self, name, build_part(ff, ConformerPositionwiseFeedForward, func, "ff", out_dim=out_dim,
                                           dropout=dropout, **ff_opts))  # fmt: skip
            setattr(self, f"{name}_layer_norm", make_norm(norm, out_dim))
        self.conv_block = ConformerConvBlock(out_dim, kernel_size=conv_kernel_size,
                                             norm=_conv_norm(conv_norm, conv_norm_opts, out_dim))  # fmt: skip
        self.conv_layer_norm = make_norm(norm, out_dim)
        att_opts = dict(in_dim=out_dim, proj_dim=out_dim, key_dim_total=out_dim, value_dim_total=out_dim,
                        num_heads=num_heads, att_dropout=att_dropout, **(self_att_opts or {}))  # fmt: skip
        if self_att is not None and not isinstance(self_att, (type, dict, Module)) and callable(self_att):
            self.self_att = self_att
        else:
            self.self_att = build_part(self_att, RelPosSelfAttention, func, "self_att", **att_opts)
        self.self_att_layer_norm = make_norm(norm, out_dim)
        self.final_layer_norm = make_norm(norm, out_dim)

    def __call__(self, inp: Tensor, *, spatial_dim: Dim) -> Tensor:
        x = 0.5 * dropout(self.ffn1(self.ffn1_layer_norm(inp)), self.dropout) + inp
        x = dropout(self.self_att(self.self_att_layer_norm(x), axis=spatial_dim), self.dropout) + x
        x = dropout(self.conv_block(self.conv_layer_norm(x), spatial_dim=spatial_dim), self.dropout) + x
        x = 0.5 * dropout(self.ffn2(self.ffn2_layer_norm(x)), self.dropout) + x
        return self.final_layer_norm(x)


class ConformerEncoder(Module):
    """The Conformer encoder (see the module doc); returns ``(output, out_spatial_dim)``.

    :param in_dim: the input features
    :param out_dim: the model dim (a Dim or an int)
    :param num_layers: the number of :class:`ConformerEncoderLayer`
    :param input_layer: None, or a module ``(x, in_spatial_dim=) -> (y, out_spatial_dim)`` with ``in_dim`` and
        ``out_dim`` (e.g. a subsampling frontend), or a dict to build one from (given ``in_dim``)
    :param input_embedding_scale: default ``sqrt(out_dim)`` with ``pos_enc``, else 1
    :param pos_enc: None (default), a function ``(spatial_dim=) -> Tensor`` (``feat_dim`` is passed), a dict or a
        module, added after the scale
    :param input_dropout: after the input projection
    :param encoder_layer: None (a :class:`ConformerEncoderLayer` of the other options), a class, a dict or a module
        (copied per layer); ``encoder_layer_opts``: more options of it
    """

    def __init__(self, in_dim: Dim, out_dim: Dim | int = _DEFAULT_OUT_DIM, *,
                 num_layers: int, input_layer: Any, input_embedding_scale: float | None = None, pos_enc: Any = None,
                 input_dropout: float = 0.1, ff_dim: Dim | None = None, ff_activation: Any = None,
                 dropout: float = 0.1, conv_kernel_size: int | None = None, conv_norm: Any = None,
                 num_heads: int = 4, att_dropout: float = 0.1, encoder_layer: Any = None,
                 encoder_layer_opts: dict | None = None, sequential: type = Sequential):  # fmt: skip
        func = "ConformerEncoder"
        if not isinstance(in_dim, Dim):
            raise TypeError(f"{func}: in_dim must be a Dim, got {in_dim!r}")
        out_dim = Dim(out_dim, name="conformer-enc-out-dim") if isinstance(out_dim, int) else out_dim
        self.in_dim, self.out_dim, self.dropout = in_dim, out_dim, dropout
        if isinstance(input_layer, dict):
            input_layer = build_from_dict(input_layer, in_dim)
        elif input_layer is not None and not callable(input_layer):
            raise TypeError(f"{func}: input_layer must be None, a dict or callable, got {input_layer!r}")
        self.input_layer = input_layer
        layer_in = input_layer.out_dim if input_layer is not None else in_dim
        self.input_projection = Linear(layer_in, out_dim, with_bias=False) if layer_in is not out_dim else None
        if input_embedding_scale is None:
            input_embedding_scale = out_dim.dimension**0.5 if pos_enc is not None else 1.0
        self.input_embedding_scale = input_embedding_scale
        if isinstance(pos_enc, dict):
            pos_enc = build_from_dict(pos_enc, feat_dim=out_dim)
        elif isinstance(pos_enc, FunctionType):
            pos_enc = functools.partial(pos_enc, feat_dim=out_dim)
        self.pos_enc = pos_enc
        self.input_dropout = input_dropout
        opts = dict(out_dim=out_dim, ff_dim=ff_dim, ff_activation=ff_activation, dropout=dropout,
                    conv_kernel_size=conv_kernel_size, conv_norm=conv_norm, num_heads=num_heads,
                    att_dropout=att_dropout)  # fmt: skip
        opts = {k: v for k, v in opts.items() if v is not None}
        opts.update(encoder_layer_opts or {})
        self.layers = sequential(build_part(encoder_layer, ConformerEncoderLayer, func, "encoder_layer", **opts)
                                 for _ in range(num_layers))  # fmt: skip

    def __call__(self, source: Tensor, *, in_spatial_dim: Dim, collected_outputs: dict | None = None
                 ) -> tuple[Tensor, Dim]:  # fmt: skip
        if self.input_layer is not None and self.input_layer.in_dim in source.dims:
            x, out_spatial_dim = self.input_layer(source, in_spatial_dim=in_spatial_dim)
        else:
            x, out_spatial_dim = source, in_spatial_dim
        if self.input_projection is not None and self.input_projection.in_dim in x.dims:
            x = self.input_projection(x)
        if self.out_dim not in x.dims:
            raise ValueError(f"ConformerEncoder: after the input layer, {x} does not have out_dim {self.out_dim}")
        if self.input_embedding_scale != 1.0:
            x = x * self.input_embedding_scale
        if self.pos_enc is not None:
            x = x + to_device_of(self.pos_enc(spatial_dim=out_spatial_dim), x)
        x = dropout(x, self.input_dropout)
        return self.layers(x, spatial_dim=out_spatial_dim, collected_outputs=collected_outputs), out_spatial_dim
