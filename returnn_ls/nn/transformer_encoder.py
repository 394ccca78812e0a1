"""Transformer encoder (as ``returnn.frontend.encoder.transformer``, same parameter names): pre-norm layers of
self-attention and a feed-forward block over a label (or feature) sequence, then a final layer norm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.nn._att_utils import to_device_of
from returnn_ls.nn.attention import SelfAttention
from returnn_ls.nn.build_from_dict import build_from_dict
from returnn_ls.nn.container import Sequential
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.feed_forward import FeedForward, build_part, make_norm
from returnn_ls.nn.linear import Embedding, Linear
from returnn_ls.nn.module import Module
from returnn_ls.nn.normalization import LayerNorm
from returnn_ls.nn.positional import sinusoidal_positional_encoding
from returnn_ls.nn.state import State
from returnn_ls.nn.transformer import _pos_enc
from returnn_ls.tensor import Tensor

__all__ = ["TransformerEncoder", "TransformerEncoderLayer"]

#: RETURNN's default dims (one Dim object each, shared by all instances that use the default)
_DEFAULT_LAYER_DIM = Dim(512, name="transformer-enc-default-out-dim")
_DEFAULT_MODEL_DIM = Dim(512, name="transformer-enc-default-model-dim")


class TransformerEncoderLayer(Module):
    """One pre-norm encoder layer: ``x + self_att(norm(x))``, then ``x + ff(norm(x))``, each branch with dropout.

    :param out_dim: the model dim
    :param ff: None (:class:`~returnn_ls.nn.transformer.FeedForward`), a class, a dict or a module
    :param self_att: None (:class:`~returnn_ls.nn.attention.SelfAttention`), a class, a dict or a module
    :param norm: a class (default ``LayerNorm``), a dict, a module or a callable
    """

    def __init__(self, out_dim: Dim = _DEFAULT_LAYER_DIM, *, ff: Any = None,
                 dropout: float = 0.1, num_heads: int = 8, self_att: Any = None, att_dropout: float = 0.1,
                 norm: Any = LayerNorm):  # fmt: skip
        func = "TransformerEncoderLayer"
        self.out_dim, self.dropout = out_dim, dropout
        self.ff = build_part(ff, FeedForward, func, "ff", out_dim=out_dim, dropout=dropout)
        self.ff_layer_norm = make_norm(norm, out_dim)
        att_opts = dict(in_dim=out_dim, proj_dim=out_dim, key_dim_total=out_dim, value_dim_total=out_dim,
                        num_heads=num_heads, att_dropout=att_dropout)  # fmt: skip
        self.self_att = build_part(self_att, SelfAttention, func, "self_att", **att_opts)
        self.self_att_layer_norm = make_norm(norm, out_dim)

    def default_initial_state(self, *, batch_dims: Sequence[Dim]) -> State:
        """:return: ``State(self_att=...)`` (for a causal self-attention)"""
        return State(self_att=self.self_att.default_initial_state(batch_dims=batch_dims))

    def __call__(self, x: Tensor, *, spatial_dim: Dim) -> Tensor:
        x = dropout(self.self_att(self.self_att_layer_norm(x), axis=spatial_dim), self.dropout) + x
        return dropout(self.ff(self.ff_layer_norm(x)), self.dropout) + x


class TransformerEncoder(Module):
    """The Transformer encoder: ``norm(layers(dropout(embed(x) * scale + pos_enc)))``.

    :param vocab_dim: the input labels (``input_embedding``: an Embedding from them, the default)
    :param model_dim: a Dim or an int (also ``out_dim``)
    :param num_layers: the number of :class:`TransformerEncoderLayer`
    :param pos_enc: a function ``(spatial_dim=) -> Tensor`` (``feat_dim`` is passed), a dict or a module; default
        sinusoidal; None: none
    :param input_embedding: None (the input has ``model_dim`` features), a module, a class or a dict
    :param input_embedding_scale: default ``sqrt(model_dim)``
    :param input_dropout: default ``dropout``
    """

    def __init__(self, vocab_dim: Dim, model_dim: Dim | int = _DEFAULT_MODEL_DIM, *,
                 num_layers: int, ff: Any = None, pos_enc: Any = sinusoidal_positional_encoding,
                 dropout: float = 0.1, num_heads: int = 8, att_dropout: float = 0.1, norm: Any = LayerNorm,
                 layer: Any = None, layer_opts: dict | None = None, embed_dim: Dim | None = None,
                 input_embedding: Any = Embedding, input_embedding_scale: float | None = None,
                 input_dropout: float | None = None, sequential: type = Sequential, **compat_kwargs: Any):  # fmt: skip
        func = "TransformerEncoder"
        layer = compat_kwargs.pop("decoder_layer", layer)
        if compat_kwargs:
            raise TypeError(f"{func}: unexpected arguments {sorted(compat_kwargs)}")
        if not isinstance(vocab_dim, Dim):
            raise TypeError(f"{func}: vocab_dim must be a Dim, got {vocab_dim!r}")
        model_dim = Dim(model_dim, name="transformer-enc-model-dim") if isinstance(model_dim, int) else model_dim
        self.vocab_dim, self.model_dim, self.embed_dim = vocab_dim, model_dim, embed_dim
        self.out_dim = model_dim
        if isinstance(input_embedding, type):
            input_embedding = input_embedding(vocab_dim, embed_dim or model_dim)
        elif isinstance(input_embedding, dict):
            input_embedding = build_from_dict(input_embedding, vocab_dim, embed_dim or model_dim)
        elif input_embedding is not None and not isinstance(input_embedding, Module):
            raise TypeError(f"{func}: input_embedding must be None, a module, a class or a dict")
        self.input_embedding = input_embedding
        self.input_embedding_proj = Linear(embed_dim, model_dim, with_bias=False) if embed_dim else None
        self.pos_enc = _pos_enc(pos_enc, embed_dim or model_dim, func)
        self.input_embedding_scale = model_dim.dimension**0.5 if input_embedding_scale is None \
            else input_embedding_scale  # fmt: skip
        self.input_dropout = dropout if input_dropout is None else input_dropout
        opts = dict(out_dim=model_dim, ff=ff, dropout=dropout, num_heads=num_heads, att_dropout=att_dropout,
                    norm=norm, **(layer_opts or {}))  # fmt: skip
        self.layers = sequential(build_part(layer, TransformerEncoderLayer, func, "layer", **opts)
                                 for _ in range(num_layers))  # fmt: skip
        self.final_layer_norm = make_norm(norm, model_dim)

    def __call__(self, source: Tensor, *, spatial_dim: Dim, collected_outputs: dict | None = None) -> Tensor:
        """:return: the encoder output (after the final layer norm), ``model_dim`` features"""
        if self.input_embedding is not None:
            x = self.input_embedding(source) * self.input_embedding_scale
        else:
            if self.model_dim not in source.dims:
                raise ValueError(f"TransformerEncoder: without input_embedding, the source must have {self.model_dim}")
            x = source
        if self.pos_enc is not None:
            x = x + to_device_of(self.pos_enc(spatial_dim=spatial_dim), x)
        x = dropout(x, self.input_dropout)
        if self.input_embedding_proj is not None:
            x = self.input_embedding_proj(x)
        for name, layer in self.layers.items():
            x = layer(x, spatial_dim=spatial_dim)
            if collected_outputs is not None:
                collected_outputs[name] = x
        return self.final_layer_norm(x)
