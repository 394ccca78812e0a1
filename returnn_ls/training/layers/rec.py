"""RETURNN's ``rec`` layer with an LSTM unit: one ``rf.LSTM`` over the time dim, on the framework's fused kernel.

Every LSTM unit name of RETURNN (``lstm``, ``nativelstm``, ``nativelstm2``, ``lstmblock``, ``lstmblockfused``,
``basiclstm``, ``standardlstm``, ``cudnnlstm``; any case) is the same LSTM here; ``direction: -1`` runs each
sequence backwards, and ``dropout`` drops input features while training (one mask per feature, RETURNN's default).

Initial parameters follow what RETURNN's TF backend does for the unit (all with its default Xavier/Glorot uniform
initializer of the ``rec`` layer):

- RETURNN's own kernels (``nativelstm``, ``nativelstm2``, and ``lstm``, ``lstmblock``, ``lstmblockfused``,
  ``cudnnlstm``, which RETURNN maps onto ``NativeLSTM2`` with TensorFlow 2 on CPU): an input and a recurrent
  matrix, each Glorot uniform on its own, bias 0. These are ``rf.LSTM``'s own defaults.
- TensorFlow's cells (``basiclstm``, ``standardlstm``): one kernel over the concatenated ``[input, output]``
  features, Glorot uniform over that shape (so both our matrices get the limit ``sqrt(6 / (n_in + 5 n_out))``),
  and TensorFlow's ``forget_bias=1`` added to the forget gate: here the forget block of the bias starts at 1,
  which trains exactly as a constant 1 plus a bias starting at 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.nn import Module, init
from returnn_ls.tensor import Tensor
from returnn_ls.training.config_names import suggest
from returnn_ls.training.layers.base import REQUIRED, ConcatInputLayer, Context, Layer, LayerError, Node, positive_int

__all__ = ["LSTM_UNITS", "RecLayer"]

#: RETURNN's LSTM unit names (compared in lower case)
LSTM_UNITS = ("lstm", "nativelstm", "nativelstm2", "lstmblock", "lstmblockfused", "basiclstm", "standardlstm",
              "cudnnlstm")  # fmt: skip
#: units that are TensorFlow's LSTM cells in RETURNN (one kernel over [input, output], forget bias 1)
_TF_CELLS = ("basiclstm", "standardlstm")


class RecLayer(ConcatInputLayer):
    """``rec`` with an LSTM ``unit``: ``n_out`` units, ``direction`` None/1 (forward) or -1 (backward)."""

    name = "rec"
    options: ClassVar[dict[str, Any]] = {"unit": "lstm", "n_out": REQUIRED, "direction": None, "dropout": 0.0}
    returnn_options = (
        *ConcatInputLayer.returnn_options, "unit_opts", "initial_state", "input_projection", "max_seq_len",
        "max_seq_len_via", "forward_weights_init", "recurrent_weights_init", "bias_init", "optimize_move_layers_out",
        "cheating", "unroll", "back_prop", "use_global_rec_step_offset", "include_eos", "debug", "axis",
    )  # fmt: skip

    @staticmethod
    def unit(opts: dict[str, Any]) -> str:
        """:return: the unit name in lower case; :raise LayerError: for a unit other than an LSTM"""
        unit = opts["unit"]
        if isinstance(unit, dict):
            raise LayerError(
                "a rec layer with a subnetwork unit (a dict, evaluated step by step) is RETURNN's but "
                f"not supported by returnn-ls; supported units: the LSTM names {list(LSTM_UNITS)}"
            )
        if not isinstance(unit, str) or unit.lower() not in LSTM_UNITS:
            raise LayerError(f"unit {unit!r} is not supported by returnn-ls; supported units: the LSTM names "
                             f"{list(LSTM_UNITS)} (any case){suggest(str(unit).lower(), LSTM_UNITS)}")  # fmt: skip
        return unit.lower()

    def infer(self, layer: Layer, ins: list[Node], target: Node | None) -> Node:
        self.unit(layer.opts)
        if layer.opts["direction"] not in (None, 1, -1):
            direction = layer.opts["direction"]
            raise LayerError(f"option 'direction' must be 1 (forward) or -1 (backward), got {direction!r}")
        n_out = positive_int(layer.opts["n_out"], "n_out")
        if layer.in_node.time is None:
            raise LayerError(f"input {layer.sources[0]!r} has no time dim to run the LSTM over")
        return Node(Dim(n_out, name=f"{layer.name}:feature"), "dense", layer.in_node.time, self.name)

    def build(self, layer: Layer) -> Module:
        in_dim, out_dim = layer.in_node.dim, layer.node.dim
        lstm = rf.LSTM(in_dim, out_dim, reverse=layer.opts["direction"] == -1)
        if self.unit(layer.opts) in _TF_CELLS:
            n_in, n_out = in_dim.dimension, out_dim.dimension
            fan = n_in + 5 * n_out  # fan in + fan out of TF's kernel [n_in + n_out, 4 n_out]
            # our matrices [4 n_out, n_in] and [4 n_out, n_out]: fan_avg scale = (variance 2 / fan) * fan_avg
            lstm.ff_weight.initial = init.VarianceScaling((4 * n_out + n_in) / fan, "fan_avg", "uniform")
            lstm.rec_weight.initial = init.VarianceScaling(5 * n_out / fan, "fan_avg", "uniform")
            bias = np.zeros(4 * n_out, dtype="float32")
            bias[n_out : 2 * n_out] = 1.0  # gates i, f, g, o: TF's forget_bias=1
            lstm.bias.initial = bias
        return lstm

    def forward(self, ctx: Context, x: Tensor) -> Tensor:
        y, _ = ctx.module(x, spatial_dim=ctx.layer.in_node.time)
        return y
