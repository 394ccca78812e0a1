"""The layer classes of network dicts, one object per ``"class"`` name, and the one registry of them.

==================================  ====================================================================
class                               what it is
==================================  ====================================================================
``rec``                             RETURNN's recurrent layer with an LSTM unit (``rf.LSTM``)
``linear``, ``softmax``             RETURNN's feed-forward and output layers (``rf.Linear``)
``conv``                            RETURNN's convolution, 1-D (``rf.Conv1d``)
``layer_norm``                      RETURNN's layer normalization (``rf.LayerNorm``)
``copy``, ``dropout``               RETURNN's identity layers (with ``dropout``)
``log_softmax``, ``label_smoothing``, ``smooth_one_hot``, ``label_smoothed_log_prob_gradient``, ``scaled_grad``:
                                    this library's label-smoothing functions
``cross_entropy``, ``label_smoothed_cross_entropy``, ``ctc_loss``, ``label_relaxation_loss``:
                                    this library's losses
==================================  ====================================================================
"""

from __future__ import annotations

from returnn_ls.training.config_names import suggest
from returnn_ls.training.layers.base import (
    DENSE,
    REQUIRED,
    ConcatInputLayer,
    Context,
    Layer,
    LayerClass,
    LayerError,
    LossOutput,
    Node,
    log_probs_of,
    relabel,
)
from returnn_ls.training.layers.basic import ConvLayer, CopyLayer, DropoutLayer, LayerNormLayer, LinearLayer
from returnn_ls.training.layers.losses import (
    CrossEntropyLayer,
    CtcLossLayer,
    LabelRelaxationLossLayer,
    LabelSmoothedCrossEntropyLayer,
)
from returnn_ls.training.layers.output import SOFTMAX_LOSS_OPTS, SoftmaxLayer
from returnn_ls.training.layers.rec import LSTM_UNITS, RecLayer
from returnn_ls.training.layers.smoothing import (
    LabelSmoothedLogProbGradientLayer,
    LabelSmoothingLayer,
    LogSoftmaxLayer,
    ScaledGradLayer,
    SmoothOneHotLayer,
)

__all__ = [
    "COMMON_KEYS",
    "DENSE",
    "LAYER_CLASSES",
    "LSTM_UNITS",
    "NO_EFFECT_OPTIONS",
    "REQUIRED",
    "RETURNN_COMMON_OPTIONS",
    "RETURNN_LAYER_CLASSES",
    "SOFTMAX_LOSS_OPTS",
    "ConcatInputLayer",
    "Context",
    "Layer",
    "LayerClass",
    "LayerError",
    "LossOutput",
    "Node",
    "get_layer_class",
    "log_probs_of",
    "relabel",
]

#: name -> layer class, every class of network dicts
LAYER_CLASSES: dict[str, LayerClass] = {
    cls.name: cls
    for cls in (
        RecLayer(), LinearLayer(), SoftmaxLayer(), ConvLayer(), LayerNormLayer(), CopyLayer(), DropoutLayer(),
        LogSoftmaxLayer(), LabelSmoothingLayer(), SmoothOneHotLayer(), LabelSmoothedLogProbGradientLayer(),
        ScaledGradLayer(), CrossEntropyLayer(), LabelSmoothedCrossEntropyLayer(), CtcLossLayer(),
        LabelRelaxationLossLayer(),
    )
}  # fmt: skip
#: keys every layer dict may have besides its class's options (``target`` where the class has one)
COMMON_KEYS = ("class", "from", "loss")
#: RETURNN layer options that change nothing when training here (accepted quietly)
NO_EFFECT_OPTIONS = ("is_output_layer",)
#: options every RETURNN layer has that are not supported here (an error says so)
RETURNN_COMMON_OPTIONS = (
    "loss_scale", "loss_opts", "size_target", "reuse_params", "name_scope", "param_device", "trainable", "L2",
    "darc1", "spatial_smoothing", "param_variational_noise", "param_dropout", "updater_opts", "initial_output",
    "state", "need_last", "rec_previous_layer", "collocate_with", "control_dependencies_on_output",
    "only_on_eval", "only_on_search", "register_as_extern_data", "copy_output_loss_from_source_idx",
    "batch_norm", "encapsulate", "custom_param_importer", "out_type", "out_shape", "out_dim", "n_out", "target",
    "loss_only_on_non_search", "sources",
)  # fmt: skip
#: RETURNN's layer classes that are not supported here (an error says they are RETURNN's)
RETURNN_LAYER_CLASSES = (
    "accumulate_mean", "activation", "attention", "batch_norm", "batch_softmax", "boolean_mask", "cast", "choice",
    "choice_get_beam_scores", "choice_get_src_beams", "combine", "combine_dims", "compare", "concat",
    "concat_attention", "cond", "constant", "cum_concat", "cumsum", "dct", "decide", "decide_keep_beam", "dot",
    "dot_attention", "edit_distance", "edit_distance_table", "elemwise_prod", "eval", "expand_dims", "fast_bw",
    "flatten_batch", "fold", "forced_align", "framewise_statistics", "gather", "gather_nd", "gating",
    "gauss_window_attention", "generic_attention", "get_last_hidden_state", "get_rec_accumulated",
    "global_train_step", "gradient", "hdf_dump", "identity", "image_summary", "kenlm", "length", "loss",
    "masked_computation", "math_norm", "merge_dims", "norm", "optimal_completions", "pad", "pool",
    "positional_encoding", "postfix_in_time", "prefix_in_time", "print", "rand_int", "random", "random_state_init",
    "range", "range_from_length", "range_in_axis", "rec_last_output", "rec_unstack", "reduce", "reduce_out",
    "reinterpret_data", "relative_positional_encoding", "remove", "repeat", "reshape", "resize", "rnn_cell",
    "scatter_nd", "search_sorted", "self_attention", "seq_len_mask", "shift_axis", "slice", "slice_nd",
    "softmax_over_spatial", "source", "sparse_softmax_cross_entropy_with_logits", "split", "split_batch_beam",
    "split_batch_time", "split_dims", "squeeze", "stack", "subnetwork", "swap_axes", "switch", "synthetic_gradient",
    "tikhonov_regularization", "tile", "time_chunking", "time_unchunking", "top_k", "train_flag", "transpose",
    "transposed_conv", "twod_lstm", "unflatten_batch", "unflatten_nd", "unmask", "variable", "weighted_sum",
    "window",
)  # fmt: skip


def get_layer_class(name: object) -> LayerClass:
    """:return: the layer class of the ``"class"`` name ``name``

    Example: ``get_layer_class("rec").options["unit"] == "lstm"``

    :raise LayerError: for an unknown name (listing the known ones and the closest) or a RETURNN layer class that
        is not supported here (saying so)
    """
    if name in LAYER_CLASSES:
        return LAYER_CLASSES[name]
    known = sorted(LAYER_CLASSES)
    if name in RETURNN_LAYER_CLASSES:
        raise LayerError(f"layer class {name!r} is RETURNN's but not supported by returnn-ls; supported: {known}")
    raise LayerError(f"unknown layer class {name!r}; known: {known}{suggest(name, known)}")
