"""Tiny configs for the engine tests: an rf-style config (``rf.Module`` with ``rf.Parameter`` s), a ``torch.nn.Module``
config with raw tensors, and a network dict; all on the built-in synthetic task, a few steps per epoch."""

from __future__ import annotations

RF_CONFIG = """\
import os
import time
import returnn_ls as rf
from returnn_ls import Dim, Tensor, TensorDict, batch_dim
from returnn_ls.ops import align

backend = {backend!r}
time_dim = Dim(None, name="time")
in_dim = Dim(8, name="in")
out_dim = Dim(5, name="out")
extern_data = {{
    "data": {{"dims": (batch_dim, time_dim, in_dim), "dtype": "float32"}},
    "alignment": {{"dims": (batch_dim, time_dim), "sparse_dim": out_dim, "dtype": "int32"}},
}}
train = {{"class": "synthetic", "num_seqs": 24, "seed": 1}}
dev = {{"class": "synthetic", "num_seqs": 8, "seed": 2}}
batch_size = 8
num_epochs = 2
optimizer = {{"class": "adam", "epsilon": 1e-8}}
learning_rate = 0.01
learning_rate_control = "newbob"
learning_rate_decay = 0.5
newbob_relative_error_threshold = 0.0


class Model(rf.Module):
    def __init__(self):
        hidden = Dim(16, name="hidden")
        self.w1 = rf.Parameter([in_dim, hidden])
        self.w2 = rf.Parameter([hidden, out_dim])
        self.b2 = rf.Parameter([out_dim])

    def __call__(self, x):
        h = x.backend.matmul(align(x, (batch_dim, time_dim, in_dim)), self.w1.raw_tensor)
        h = rf.relu(Tensor(h, (batch_dim, time_dim, self.w1.dims[1])))
        y = h.backend.matmul(h.raw_tensor, self.w2.raw_tensor)
        return Tensor(y, (batch_dim, time_dim, out_dim), feature_dim=out_dim) + self.b2


def get_model(*, epoch, step, **_):
    return Model()


def train_step(*, model, extern_data: TensorDict, **_):
    epoch = rf.get_run_ctx().epoch
    if os.environ.get("ENGINE_TEST_PAUSE_EPOCH") == str(epoch):  # the resume test kills the run here
        open(os.environ["ENGINE_TEST_MARKER"], "w").close()
        time.sleep(120)
    logits = model(extern_data["data"])
    targets = extern_data["alignment"]
    smoothing = 0.0 if epoch < 2 else 0.1  # a schedule in one line
    loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=out_dim, smoothing=smoothing)
    loss.mark_as_loss("ce", use_normalized_loss=True)
    frame_error = rf.gather(logits, indices=targets, axis=out_dim) < rf.reduce_max(logits, axis=out_dim)
    frame_error.mark_as_loss("fer", as_error=True)
"""

TORCH_CONFIG = """\
import torch
from torch import nn
import returnn_ls as rf

backend = "torch"
num_inputs = 8
num_outputs = 5
extern_data = {"data": {"dim": num_inputs}, "alignment": {"dim": num_outputs, "sparse": True}}
train = {"class": "synthetic", "num_seqs": 24, "seed": 1}
dev = {"class": "synthetic", "num_seqs": 8, "seed": 2}
batch_size = 8
num_epochs = 2
optimizer = {"class": "adam"}
learning_rate = 0.01


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv1d(num_inputs, 16, 3, padding=1), nn.ReLU(),
                                    nn.Conv1d(16, num_outputs, 3, padding=1))

    def forward(self, x):
        return self.layers(x.permute(0, 2, 1)).permute(0, 2, 1)


def get_model(*, epoch, step, **_):
    return Model()


def train_step(*, model, extern_data, **_):
    data = extern_data["data"]
    logits = model(data.raw_tensor)
    lens = data.dims[1].dyn_size_ext.raw_tensor
    packed = torch.nn.utils.rnn.pack_padded_sequence(logits, lens, batch_first=True, enforce_sorted=False)
    targets = torch.nn.utils.rnn.pack_padded_sequence(extern_data["alignment"].raw_tensor, lens, batch_first=True,
                                                      enforce_sorted=False)
    loss = nn.CrossEntropyLoss(reduction="none")(packed.data, targets.data.long())
    rf.get_run_ctx().mark_as_loss(name="ce", loss=loss)
    frame_error = torch.argmax(packed.data, dim=-1).not_equal(targets.data)
    rf.get_run_ctx().mark_as_loss(name="fer", loss=frame_error, as_error=True)
"""

NETWORK_CONFIG = """\
backend = {backend!r}
extern_data = {{"data": {{"dim": 8}}, "classes": {{"dim": 5, "sparse": True}},
               "alignment": {{"dim": 5, "sparse": True}}}}
train = {{"class": "synthetic", "num_seqs": 24, "seed": 1}}
dev = {{"class": "synthetic", "num_seqs": 8, "seed": 2}}
num_epochs = 2
batch_size = 8
learning_rate = 1e-2
network = {{
    "enc": {{"class": "linear", "from": "data", "n_out": 16, "activation": "relu"}},
    "output": {{"class": "softmax", "from": "enc", "target": "alignment", "loss": "ce",
               "loss_opts": {{"label_smoothing": 0.1}}}},
}}
"""


def write_config(folder, text: str, name: str = "c.config", **fmt: str):
    """:return: the path of ``text`` (formatted with ``fmt``) written into ``folder``"""
    path = folder / name
    path.write_text(text.format(**fmt) if fmt else text)
    return path
