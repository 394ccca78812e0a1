"""returnn_ls: RETURNN-style label smoothing on PyTorch or TensorFlow, with named dims.

``import returnn_ls as rf`` reads like RETURNN frontend code. Importing this package imports no framework:
a backend's framework is imported when the backend is first used.
"""

from returnn_ls._backend import get_backend_name, select_backend, select_backend_tf, select_backend_torch
from returnn_ls.dim import Dim, batch_dim
from returnn_ls.gradient import scaled_gradient, scaled_gradient_ext, stop_gradient
from returnn_ls.label_smoothing import label_smoothed_log_prob_gradient, label_smoothing, smooth_one_hot
from returnn_ls.linear_ce import linear_label_smoothed_cross_entropy
from returnn_ls.loss import cross_entropy, ctc_loss, label_relaxation_loss, label_smoothed_cross_entropy
from returnn_ls.nn import Functional, Module, ModuleList, Parameter, Sequential, set_random_seed
from returnn_ls.ops import (
    abs,
    cast,
    exp,
    gather,
    log,
    log_softmax,
    maximum,
    minimum,
    range_over_dim,
    relu,
    sequence_mask,
    sigmoid,
    softmax,
    tanh,
    where,
)
from returnn_ls.reduce import reduce_logsumexp, reduce_max, reduce_mean, reduce_min, reduce_sum
from returnn_ls.run_ctx import (
    Loss,
    RunCtx,
    get_run_ctx,
    init_forward_step_run_ctx,
    init_train_step_run_ctx,
    num_elements_of_shape,
    reset_run_ctx,
)
from returnn_ls.tensor import Tensor, convert_to_tensor
from returnn_ls.tensor_dict import TensorDict

__version__ = "0.1.0"

__all__ = [
    "Functional",
    "Module",
    "ModuleList",
    "Parameter",
    "Sequential",
    "set_random_seed",
    "abs",
    "batch_dim",
    "cast",
    "convert_to_tensor",
    "cross_entropy",
    "ctc_loss",
    "Dim",
    "exp",
    "gather",
    "get_backend_name",
    "get_run_ctx",
    "init_forward_step_run_ctx",
    "init_train_step_run_ctx",
    "label_relaxation_loss",
    "label_smoothed_cross_entropy",
    "label_smoothed_log_prob_gradient",
    "label_smoothing",
    "linear_label_smoothed_cross_entropy",
    "log",
    "log_softmax",
    "Loss",
    "maximum",
    "minimum",
    "num_elements_of_shape",
    "range_over_dim",
    "reduce_logsumexp",
    "reduce_max",
    "reduce_mean",
    "reduce_min",
    "reduce_sum",
    "relu",
    "reset_run_ctx",
    "RunCtx",
    "scaled_gradient",
    "scaled_gradient_ext",
    "select_backend",
    "select_backend_tf",
    "select_backend_torch",
    "sequence_mask",
    "sigmoid",
    "smooth_one_hot",
    "softmax",
    "stop_gradient",
    "tanh",
    "Tensor",
    "TensorDict",
    "where",
]
