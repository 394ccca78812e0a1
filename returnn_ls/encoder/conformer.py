"""The Conformer encoder at RETURNN's path ``rf.encoder.conformer`` (see :mod:`returnn_ls.nn.conformer`)."""

from returnn_ls.nn.conformer import (
    ConformerConvBlock,
    ConformerEncoder,
    ConformerEncoderLayer,
    ConformerPositionwiseFeedForward,
)
from returnn_ls.nn.feed_forward import FeedForward, make_norm

__all__ = ["ConformerConvBlock", "ConformerEncoder", "ConformerEncoderLayer", "ConformerPositionwiseFeedForward",
           "FeedForward", "make_norm"]  # fmt: skip
