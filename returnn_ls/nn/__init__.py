"""Model code in RETURNN's frontend style: modules, parameters and layers (also as ``rf.Module``, ``rf.Linear``...)."""

from returnn_ls.nn import init
from returnn_ls.nn.activation import elu, gelu, leaky_relu, log_sigmoid, relu_square, selu, silu, softplus, swish
from returnn_ls.nn.array import (
    concat,
    concat_dim,
    concat_features,
    pack_padded,
    pad_packed,
    reduce_argmax,
    reduce_argmin,
)
from returnn_ls.nn.attention import (
    CausalSelfAttention,
    CausalSelfAttentionState,
    CrossAttention,
    SelfAttention,
    SelfAttentionBase,
    dot_attention,
)
from returnn_ls.nn.build_from_dict import build_dict, build_from_dict
from returnn_ls.nn.conformer import (
    ConformerConvBlock,
    ConformerEncoder,
    ConformerEncoderLayer,
    ConformerPositionwiseFeedForward,
)
from returnn_ls.nn.container import ModuleList, ParameterList, Sequential, sequential
from returnn_ls.nn.conv import Conv1d
from returnn_ls.nn.conv_funcs import calc_conv_out_length, conv, make_conv_out_spatial_dims
from returnn_ls.nn.conv_transposed import TransposedConv1d, make_transposed_conv_out_spatial_dims, transposed_conv
from returnn_ls.nn.dropout import dropout, dropout_broadcast_default
from returnn_ls.nn.group_norm import GroupNorm, GroupNormSpatial
from returnn_ls.nn.init import set_random_seed
from returnn_ls.nn.linear import Embedding, Linear
from returnn_ls.nn.module import Functional, Module
from returnn_ls.nn.normalization import BatchNorm, LayerNorm, Normalize, RMSNorm, moments, normalize
from returnn_ls.nn.parameter import Parameter
from returnn_ls.nn.parametrize import (
    WeightDropout,
    WeightNoise,
    is_parametrized,
    register_parametrization,
    remove_parametrization,
    weight_dropout,
    weight_noise,
)
from returnn_ls.nn.pool import max_pool1d, pool1d
from returnn_ls.nn.positional import (
    LearnedRelativePositionalEncoding,
    relative_positional_encoding,
    sinusoidal_encoding,
    sinusoidal_positional_encoding,
)
from returnn_ls.nn.rec import LSTM, LstmState, ZoneoutLSTM
from returnn_ls.nn.rel_pos_attention import RelPosCausalSelfAttention, RelPosSelfAttention
from returnn_ls.nn.rotary_attention import RotaryPosCausalSelfAttention, RotaryPosSelfAttention
from returnn_ls.nn.state import State
from returnn_ls.nn.transformer import FeedForward, FeedForwardGated, TransformerDecoder, TransformerDecoderLayer
from returnn_ls.nn.transformer_encoder import TransformerEncoder, TransformerEncoderLayer

__all__ = [
    "BatchNorm",
    "CausalSelfAttention",
    "CausalSelfAttentionState",
    "ConformerConvBlock",
    "ConformerEncoder",
    "ConformerEncoderLayer",
    "ConformerPositionwiseFeedForward",
    "Conv1d",
    "CrossAttention",
    "Embedding",
    "FeedForward",
    "FeedForwardGated",
    "Functional",
    "GroupNorm",
    "GroupNormSpatial",
    "LayerNorm",
    "LearnedRelativePositionalEncoding",
    "Linear",
    "LSTM",
    "LstmState",
    "Module",
    "ModuleList",
    "Normalize",
    "Parameter",
    "ParameterList",
    "RelPosCausalSelfAttention",
    "RelPosSelfAttention",
    "RMSNorm",
    "RotaryPosCausalSelfAttention",
    "RotaryPosSelfAttention",
    "SelfAttention",
    "SelfAttentionBase",
    "Sequential",
    "State",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransposedConv1d",
    "WeightDropout",
    "WeightNoise",
    "ZoneoutLSTM",
    "build_dict",
    "calc_conv_out_length",
    "build_from_dict",
    "concat",
    "concat_dim",
    "concat_features",
    "conv",
    "dot_attention",
    "dropout",
    "dropout_broadcast_default",
    "elu",
    "gelu",
    "init",
    "is_parametrized",
    "leaky_relu",
    "log_sigmoid",
    "make_conv_out_spatial_dims",
    "make_transposed_conv_out_spatial_dims",
    "max_pool1d",
    "moments",
    "normalize",
    "pack_padded",
    "pad_packed",
    "pool1d",
    "reduce_argmax",
    "reduce_argmin",
    "register_parametrization",
    "relative_positional_encoding",
    "relu_square",
    "remove_parametrization",
    "selu",
    "set_random_seed",
    "sequential",
    "silu",
    "sinusoidal_encoding",
    "sinusoidal_positional_encoding",
    "softplus",
    "swish",
    "transposed_conv",
    "weight_dropout",
    "weight_noise",
]
