"""Transformer decoder (as ``returnn.frontend.decoder.transformer``, same parameter names): pre-norm layers of causal
self-attention, optional cross-attention to an encoder, and a feed-forward block; token embedding, sinusoidal
positions, final layer norm and the output projection ``logits``.

It runs over a whole label sequence or, with ``spatial_dim=rf.single_step_dim``, one label at a time on a state
(:meth:`TransformerDecoder.default_initial_state`), with the same outputs. The defaults are RETURNN's (behavior
version >= 20): the embedding shared with ``logits``, scaled by ``sqrt(model_dim)``, dropout on the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls.dim import Dim, single_step_dim
from returnn_ls.index_funcs import gather
from returnn_ls.math_funcs import matmul
from returnn_ls.nn._att_utils import sizes_on, to_device_of
from returnn_ls.nn.attention import CausalSelfAttention, CrossAttention
from returnn_ls.nn.build_from_dict import build_from_dict
from returnn_ls.nn.container import Sequential
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.feed_forward import FeedForward, FeedForwardGated, build_part, make_norm
from returnn_ls.nn.linear import Embedding, Linear
from returnn_ls.nn.module import Module
from returnn_ls.nn.normalization import LayerNorm
from returnn_ls.nn.positional import sinusoidal_positional_encoding
from returnn_ls.nn.state import State
from returnn_ls.ops import cast
from returnn_ls.tensor import Tensor

__all__ = ["FeedForward", "FeedForwardGated", "TransformerDecoder", "TransformerDecoderLayer", "make_norm"]

#: RETURNN's default dims (one Dim object each, shared by all instances that use the default)
_DEFAULT_LAYER_DIM = Dim(512, name="transformer-dec-default-out-dim")
_DEFAULT_MODEL_DIM = Dim(512, name="transformer-dec-default-model-dim")


class TransformerDecoderLayer(Module):
    """One pre-norm decoder layer: ``x + self_att(norm(x))``, ``x + cross_att(norm(x), encoder)`` (if
    ``encoder_dim``), ``x + ff(norm(x))``, each branch with dropout.

    :param encoder_dim: the encoder's features for cross-attention; None: no cross-attention
    :param out_dim: the model dim
    :param ff: the feed-forward block: None (:class:`FeedForward`), a class, a dict or a module
    :param self_att: None (:class:`~returnn_ls.nn.attention.CausalSelfAttention`), a class, a dict or a module
    :param self_att_opts: more options of the self-attention
    :param cross_att: a dict for the cross-attention (default :class:`~returnn_ls.nn.attention.CrossAttention`)
    :param norm: the normalisation: a class (default ``LayerNorm``), a dict, a module or a callable
    """

    def __init__(self, encoder_dim: Dim | None, out_dim: Dim = _DEFAULT_LAYER_DIM, *,
                 ff: Any = None, ff_dim: Dim | int | None = None, ff_activation: Any = None, dropout: float = 0.1,
                 num_heads: int = 8, self_att: Any = None, self_att_opts: dict | None = None,
                 att_dropout: float = 0.1, cross_att: dict | None = None, norm: Any = LayerNorm):  # fmt: skip
        func = "TransformerDecoderLayer"
        self.encoder_dim, self.out_dim, self.dropout = encoder_dim, out_dim, dropout
        ff_opts = {k: v for k, v in dict(ff_dim=ff_dim, activation=ff_activation).items() if v is not None}
        self.ff = build_part(ff, FeedForward, func, "ff", out_dim=out_dim, dropout=dropout, **ff_opts)
        self.ff_layer_norm = make_norm(norm, out_dim)
        att_opts = dict(in_dim=out_dim, proj_dim=out_dim, key_dim_total=out_dim, value_dim_total=out_dim,
                        num_heads=num_heads, att_dropout=att_dropout, **(self_att_opts or {}))  # fmt: skip
        self.self_att = build_part(self_att, CausalSelfAttention, func, "self_att", **att_opts)
        self.self_att_layer_norm = make_norm(norm, out_dim)
        self.cross_att = self.cross_att_layer_norm = None
        if encoder_dim is not None:
            cross_opts = dict(encoder_dim=encoder_dim, query_in_dim=out_dim, proj_dim=out_dim, key_dim_total=out_dim,
                              value_dim_total=out_dim, num_heads=num_heads, att_dropout=att_dropout)  # fmt: skip
            self.cross_att = build_part(cross_att, CrossAttention, func, "cross_att", **cross_opts)
            self.cross_att_layer_norm = make_norm(norm, out_dim)

    def default_initial_state(self, *, batch_dims: Sequence[Dim]) -> State:
        """:return: ``State(self_att=...)``, the self-attention's initial state"""
        return State(self_att=self.self_att.default_initial_state(batch_dims=batch_dims))

    def transform_encoder(self, encoder: Tensor, *, axis: Dim) -> State:
        """:return: ``State(cross_att=...)``: the cross-attention's keys and values of the encoder output"""
        if self.cross_att is None:
            raise ValueError("TransformerDecoderLayer.transform_encoder: this layer has no cross-attention")
        return State(cross_att=self.cross_att.transform_encoder(encoder, axis=axis))

    def __call__(self, x: Tensor, *, spatial_dim: Dim, state: State, encoder: State | None = None
                 ) -> tuple[Tensor, State]:  # fmt: skip
        new_state = State()
        att, new_state.self_att = self.self_att(self.self_att_layer_norm(x), axis=spatial_dim, state=state.self_att)
        x = dropout(att, self.dropout) + x
        if self.cross_att is not None:
            if encoder is None:
                raise ValueError("TransformerDecoderLayer: cross-attention needs encoder (see transform_encoder)")
            x = dropout(self.cross_att(self.cross_att_layer_norm(x), encoder.cross_att), self.dropout) + x
        x = dropout(self.ff(self.ff_layer_norm(x)), self.dropout) + x
        return x, new_state


class TransformerDecoder(Module):
    """The Transformer decoder: ``logits(norm(layers(dropout(embed(labels) * scale + pos_enc))))``.

    :param encoder_dim: the encoder's features for cross-attention; None: a decoder-only model (a language model)
    :param vocab_dim: the labels (the ``sparse_dim`` of the input) and the logits' dim
    :param model_dim: a Dim or an int
    :param num_layers: the number of :class:`TransformerDecoderLayer`
    :param pos_enc: a function ``(spatial_dim=, offset=) -> Tensor`` (``feat_dim`` is passed), a dict or a module;
        default :func:`~returnn_ls.nn.positional.sinusoidal_positional_encoding`; None: none
    :param layer: a layer module (copied per layer), a class or a dict; ``layer_opts``: more options of it
    :param embed_dim: if given, embed into ``embed_dim`` first, then project (``input_embedding_proj``)
    :param share_embedding: ``logits`` uses the embedding matrix (default: True where possible)
    :param input_embedding_scale: default ``sqrt(model_dim)``
    :param input_dropout: default ``dropout``
    The other options go to the layers (see :class:`TransformerDecoderLayer`).
    """

    def __init__(self, encoder_dim: Dim | None, vocab_dim: Dim,
                 model_dim: Dim | int = _DEFAULT_MODEL_DIM, *, num_layers: int,
                 ff: Any = None, ff_dim: Dim | int | None = None, ff_activation: Any = None,
                 pos_enc: Any = sinusoidal_positional_encoding, dropout: float = 0.1, num_heads: int = 8,
                 att_dropout: float = 0.1, norm: Any = LayerNorm, layer: Any = None, layer_opts: dict | None = None,
                 embed_dim: Dim | None = None, share_embedding: bool | None = None, input_embedding: bool = True,
                 input_embedding_scale: float | None = None, input_dropout: float | None = None,
                 logits_with_bias: bool = False, sequential: type = Sequential, **compat_kwargs: Any):  # fmt: skip
        func = "TransformerDecoder"
        layer = compat_kwargs.pop("decoder_layer", layer)
        layer_opts = compat_kwargs.pop("decoder_layer_opts", layer_opts)
        if compat_kwargs:
            raise TypeError(f"{func}: unexpected arguments {sorted(compat_kwargs)}")
        if not isinstance(vocab_dim, Dim):
            raise TypeError(f"{func}: vocab_dim must be a Dim, got {vocab_dim!r}")
        model_dim = Dim(model_dim, name="transformer-dec-model-dim") if isinstance(model_dim, int) else model_dim
        self.encoder_dim, self.vocab_dim, self.model_dim, self.embed_dim = encoder_dim, vocab_dim, model_dim, embed_dim
        self.input_embedding = Embedding(vocab_dim, embed_dim or model_dim) if input_embedding else None
        self.input_embedding_proj = Linear(embed_dim, model_dim, with_bias=False) if embed_dim else None
        self.pos_enc = _pos_enc(pos_enc, embed_dim or model_dim, func)
        if share_embedding is None:
            share_embedding = bool(input_embedding) and not (embed_dim and embed_dim is not model_dim)
        if input_embedding_scale is None:
            input_embedding_scale = model_dim.dimension**0.5 if (input_embedding or pos_enc) else 1.0
        self.input_embedding_scale = input_embedding_scale
        self.input_dropout = dropout if input_dropout is None else input_dropout
        opts = dict(encoder_dim=encoder_dim, out_dim=model_dim, ff=ff, ff_dim=ff_dim, ff_activation=ff_activation,
                    dropout=dropout, num_heads=num_heads, att_dropout=att_dropout, norm=norm, **(layer_opts or {}))
        self.layers = sequential(build_part(layer, TransformerDecoderLayer, func, "layer", **opts)
                                 for _ in range(num_layers))  # fmt: skip
        self.final_layer_norm = make_norm(norm, model_dim)
        self.logits = Linear(model_dim, vocab_dim, with_bias=logits_with_bias)
        if share_embedding:
            if not input_embedding or logits_with_bias:
                raise ValueError(f"{func}: share_embedding needs input_embedding and no logits_with_bias")
            self.logits.weight = self.input_embedding.weight

    def default_initial_state(self, *, batch_dims: Sequence[Dim]) -> State:
        """:return: each layer's initial state by layer name, and ``pos`` (0): the position of the next label"""
        state = State({name: layer.default_initial_state(batch_dims=batch_dims) for name, layer in self.layers.items()})
        state.pos = _zero_like(self.logits.weight)
        return state

    def transform_encoder(self, encoder: Tensor, *, axis: Dim) -> State:
        """:return: each layer's cross-attention keys and values of ``encoder`` (usually layer-normed already)"""
        return State({name: layer.transform_encoder(encoder, axis=axis) for name, layer in self.layers.items()})

    def __call__(self, source: Tensor, *, spatial_dim: Dim, state: State, encoder: State | None = None,
                 collected_outputs: dict | None = None, output_only_last_frame: bool = False
                 ) -> tuple[Tensor, State]:  # fmt: skip
        """:return: the logits (over ``vocab_dim``) and the new state; ``spatial_dim``: the labels' dim, or
        ``rf.single_step_dim`` for one label per sequence"""
        x = self.input_embedding(source) if self.input_embedding is not None else source
        if self.input_embedding_scale != 1:
            x = x * self.input_embedding_scale
        if self.pos_enc is not None:
            x = x + to_device_of(self.pos_enc(spatial_dim=spatial_dim, offset=state.pos), x)
        x = dropout(x, self.input_dropout)
        if self.input_embedding_proj is not None:
            x = self.input_embedding_proj(x)
        new_state = State()
        steps = 1 if spatial_dim is single_step_dim else sizes_on(spatial_dim, state.pos)
        new_state.pos = state.pos + steps
        for name, layer in self.layers.items():
            x, new_state[name] = layer(x, spatial_dim=spatial_dim, state=state[name],
                                       encoder=encoder[name] if encoder is not None else None)  # fmt: skip
            if collected_outputs is not None:
                collected_outputs[name] = x
        if output_only_last_frame and spatial_dim is not single_step_dim:
            last = sizes_on(spatial_dim, x) - 1
            x = gather(x, indices=last if isinstance(last, int) else cast(last, "int32"), axis=spatial_dim)
        return self._logits(self.final_layer_norm(x)), new_state

    def _logits(self, x: Tensor) -> Tensor:
        if self.logits.weight.dims[0] is self.model_dim:
            return self.logits(x)
        out = matmul(x, self.logits.weight, reduce=self.model_dim)  # the shared embedding [vocab, model]
        out.feature_dim = self.vocab_dim
        return out


def _zero_like(param: Tensor) -> Tensor:
    return Tensor(param.backend.full([], 0, "int32", like=param.raw_tensor), (), backend=param.backend)


def _pos_enc(pos_enc: Any, feat_dim: Dim, func: str) -> Any:
    """:return: the positional encoding as a callable ``(spatial_dim=, offset=)``, or None"""
    import functools
    from types import FunctionType

    if pos_enc is None or isinstance(pos_enc, Module):
        return pos_enc
    if isinstance(pos_enc, dict):
        return build_from_dict(pos_enc, feat_dim=feat_dim)
    if isinstance(pos_enc, FunctionType):
        return functools.partial(pos_enc, feat_dim=feat_dim)
    raise TypeError(f"{func}: pos_enc must be None, a function, a dict or a module, got {pos_enc!r}")
