"""Model code in RETURNN's frontend style: modules, parameters and layers (also as ``rf.Module``, ``rf.Linear``...)."""

from returnn_ls.nn import init
from returnn_ls.nn.activation import elu, gelu, leaky_relu, log_sigmoid, relu_square, selu, silu, softplus, swish
from returnn_ls.nn.array import concat, concat_dim, concat_features, pack_padded, reduce_argmax, reduce_argmin
from returnn_ls.nn.build_from_dict import build_dict, build_from_dict
from returnn_ls.nn.container import ModuleList, ParameterList, Sequential
from returnn_ls.nn.conv import Conv1d
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.init import set_random_seed
from returnn_ls.nn.linear import Embedding, Linear
from returnn_ls.nn.module import Functional, Module
from returnn_ls.nn.normalization import BatchNorm, LayerNorm
from returnn_ls.nn.parameter import Parameter
from returnn_ls.nn.pool import max_pool1d, pool1d
from returnn_ls.nn.rec import LSTM, LstmState, ZoneoutLSTM
from returnn_ls.nn.state import State

__all__ = [
    "BatchNorm",
    "Conv1d",
    "Embedding",
    "Functional",
    "LSTM",
    "LayerNorm",
    "Linear",
    "LstmState",
    "Module",
    "ModuleList",
    "Parameter",
    "ParameterList",
    "Sequential",
    "State",
    "ZoneoutLSTM",
    "build_dict",
    "build_from_dict",
    "concat",
    "concat_dim",
    "concat_features",
    "dropout",
    "elu",
    "gelu",
    "init",
    "leaky_relu",
    "log_sigmoid",
    "max_pool1d",
    "pack_padded",
    "pool1d",
    "reduce_argmax",
    "reduce_argmin",
    "relu_square",
    "selu",
    "set_random_seed",
    "silu",
    "softplus",
    "swish",
]
