"""RETURNN's four 12AX network-dict demos (``demos/demo-tf-*-lstm*.12ax.config`` in RETURNN's repository), written
as config files for the tests and the acceptance check.

RETURNN's demo files are not part of its installed package (and may not be copied here), so each config below has
the same top-level assignments with the same values as its RETURNN original (``use_tensorflow``, the login-name
import or ``os.getlogin()``, ``task``, the 12AX datasets, ``num_inputs``/``num_outputs``, the batching keys, the
network, the optimizer, ``model`` under ``/tmp/<user>/returnn/``, logging and session options); comments and the
example output are left out. ``demos/network_acceptance.py --returnn-demos DIR`` runs RETURNN's own files instead.
"""

from __future__ import annotations

from pathlib import Path

#: demo file name -> (the rec layer, the output layer's "from", chunking, extra assignments)
DEMOS = {
    "demo-tf-vanilla-lstm.12ax.config": (
        {"class": "rec", "unit": "BasicLSTM", "n_out": 10}, ["fw0"], "200:200",
        {"num_epochs": 100, "save_interval": 1, "gradient_clip": 0},
    ),
    "demo-tf-native-lstm.12ax.config": (
        {"class": "rec", "unit": "nativelstm", "dropout": 0.1, "n_out": 10, "from": "data"}, "fw0", "200:200",
        {"num_epochs": 5},
    ),
    "demo-tf-native-lstm2.12ax.config": (
        {"class": "rec", "unit": "NativeLstm2", "dropout": 0.1, "n_out": 10, "from": "data"}, ["fw0"], "0",
        {"num_epochs": 5, "tf_session_opts": {"gpu_options": {"per_process_gpu_memory_fraction": 0.1}}},
    ),
    "demo-tf-contribrnn-lstm.12ax.config": (
        {"class": "rec", "unit": "LSTMBlockFused", "n_out": 10}, ["fw0"], "200:200",
        {"num_epochs": 100, "save_interval": 1, "gradient_clip": 0},
    ),
}  # fmt: skip

_HEADER = """\
use_tensorflow = True
import os
{login_import}
demo_name, _ = os.path.splitext(__file__)
print("Hello, experiment: %s" % demo_name)
task = "train"
train = {{"class": "Task12AXDataset", "num_seqs": 1000}}
dev = {{"class": "Task12AXDataset", "num_seqs": 100, "fixed_random_seed": 1}}
num_inputs = 9
num_outputs = 2
batching = "random"
batch_size = 5000
max_seqs = 10
chunking = {chunking!r}
network = {network!r}
optimizer = {{"class": "adam"}}
learning_rate = 0.01
model = "/tmp/%s/returnn/%s/model" % ({login}, demo_name)
log_verbosity = 3
"""


def demo_config_text(name: str, output_opts: dict | None = None) -> str:
    """:return: the config text of RETURNN's demo ``name``; ``output_opts`` are added to its output layer (e.g.
    ``{"loss_opts": {"label_smoothing": 0.1}}``)"""
    rec, output_from, chunking, extra = DEMOS[name]
    network = {"fw0": rec, "output": {"class": "softmax", "loss": "ce", "from": output_from, **(output_opts or {})}}
    getlogin = name == "demo-tf-contribrnn-lstm.12ax.config"  # this one calls os.getlogin()
    text = _HEADER.format(
        login_import="" if getlogin else "from returnn.util.basic import get_login_username",
        chunking=chunking, network=network, login="os.getlogin()" if getlogin else "get_login_username()",
    )  # fmt: skip
    return text + "".join(f"{key} = {value!r}\n" for key, value in extra.items())


def write_demo(folder: Path, name: str, output_opts: dict | None = None) -> Path:
    """:return: the path of demo ``name`` written into ``folder`` (under its RETURNN file name)"""
    path = Path(folder) / name
    path.write_text(demo_config_text(name, output_opts))
    return path
