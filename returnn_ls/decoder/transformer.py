"""The Transformer decoder at RETURNN's path ``rf.decoder.transformer`` (see :mod:`returnn_ls.nn.transformer`)."""

from returnn_ls.nn.transformer import (
    FeedForward,
    FeedForwardGated,
    TransformerDecoder,
    TransformerDecoderLayer,
    make_norm,
)

__all__ = ["FeedForward", "FeedForwardGated", "TransformerDecoder", "TransformerDecoderLayer", "make_norm"]
