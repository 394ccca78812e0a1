"""Model code in RETURNN's frontend style: modules, parameters and layers (also as ``rf.Module``, ``rf.Linear``...)."""

from returnn_ls.nn import init
from returnn_ls.nn.activation import elu, gelu, leaky_relu, log_sigmoid, relu_square, selu, silu, softplus, swish
from returnn_ls.nn.array import concat, concat_dim, concat_features, pack_padded, reduce_argmax, reduce_argmin
from returnn_ls.nn.conv import Conv1d
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.init import set_random_seed
from returnn_ls.nn.linear import Embedding, Linear
from returnn_ls.nn.module import Functional, Module, ModuleList, Sequential
from returnn_ls.nn.normalization import LayerNorm
from returnn_ls.nn.parameter import Parameter
from returnn_ls.nn.rec import LSTM, LstmState
from returnn_ls.nn.state import State

__all__ = [
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
    "Sequential",
    "State",
    "concat",
    "concat_dim",
    "concat_features",
    "dropout",
    "elu",
    "gelu",
    "init",
    "leaky_relu",
    "log_sigmoid",
    "pack_padded",
    "reduce_argmax",
    "reduce_argmin",
    "relu_square",
    "selu",
    "set_random_seed",
    "silu",
    "softplus",
    "swish",
]
