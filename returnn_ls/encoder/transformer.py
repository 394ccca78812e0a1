"""The Transformer encoder at RETURNN's path ``rf.encoder.transformer`` (see
:mod:`returnn_ls.nn.transformer_encoder`)."""

from returnn_ls.nn.feed_forward import FeedForward, make_norm
from returnn_ls.nn.transformer_encoder import TransformerEncoder, TransformerEncoderLayer

__all__ = ["FeedForward", "TransformerEncoder", "TransformerEncoderLayer", "make_norm"]
