"""Network dicts that both RETURNN (``_network_returnn_reference.py``, in a subprocess) and the tests run."""

from __future__ import annotations

#: the output layer of every case: RETURNN's softmax with CE on the features of "fw" and "bw" concatenated
OUTPUT = {"class": "softmax", "loss": "ce", "from": ["fw", "bw"]}
#: case -> (network dict, train flag, layers whose outputs are compared)
RETURNN_CASES = {
    # a forward and a backward LSTM (TF's LSTM cells, the units RETURNN can run on this CPU), default "from"
    "lstm": ({"fw": {"class": "rec", "unit": "StandardLSTM", "n_out": 4, "from": "data"},
              "bw": {"class": "rec", "unit": "BasicLSTM", "n_out": 3, "direction": -1},
              "output": OUTPUT}, False, ("fw", "bw", "output")),
    "smoothed": ({"fw": {"class": "rec", "unit": "StandardLSTM", "n_out": 4, "from": "data"},
                  "bw": {"class": "rec", "unit": "BasicLSTM", "n_out": 3, "direction": -1},
                  "output": {**OUTPUT, "loss_opts": {"label_smoothing": 0.1}}}, False, ("output",)),
    # dropout of (almost) 1 drops every input feature, so the LSTM sees zeros if dropout acts on its input (TF's
    # uniform draws are below 1 - 1e-7); "bw" shows the dropout mask of RETURNN's layers
    "rec_dropout": ({"fw": {"class": "rec", "unit": "StandardLSTM", "n_out": 4, "dropout": 1 - 1e-7},
                     "bw": {"class": "copy", "from": "data", "dropout": 0.5},
                     "output": OUTPUT}, True, ("fw", "bw")),
    "eval_dropout": ({"fw": {"class": "rec", "unit": "StandardLSTM", "n_out": 4, "dropout": 0.5},
                      "bw": {"class": "copy", "from": "data", "dropout": 0.5},
                      "output": OUTPUT}, False, ("fw", "bw")),
}  # fmt: skip
