"""RETURNN's 12AX network-dict demos train under returnn-ls as they are (one short epoch each, on both backends), and
a network dict's TensorFlow step is traced once. The full 5 epochs: ``demos/network_acceptance.py``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _returnn_demos import DEMOS, write_demo

from returnn_ls.training.config import load_config
from returnn_ls.training.network_module import NetworkModule
from returnn_ls.training.train import train

#: small data, one epoch (RETURNN's ++name value overrides)
SMALL = [("num_epochs", "1"), ("train", "{'class': 'Task12AXDataset', 'num_seqs': 40}"),
         ("dev", "{'class': 'Task12AXDataset', 'num_seqs': 20, 'fixed_random_seed': 1}")]  # fmt: skip


pytestmark = pytest.mark.usefixtures("restore_backend")


def _train(backend: str, path, tmp_path) -> dict:
    config = load_config(str(path), [*SMALL, ("model", str(tmp_path / "ckpt" / "model"))])
    return train(config, backend=backend, out_dir=str(tmp_path / "out"), progress=False, log=lambda _: None)


@pytest.mark.parametrize("demo", sorted(DEMOS))
def test_returnn_12ax_demo_trains_unchanged(backend, demo, tmp_path, capfd):
    metrics = _train(backend.name, write_demo(tmp_path, demo), tmp_path)
    first = metrics["history"][0]
    assert list(first["dev_scores"]) == ["score", "error"] and list(first["train_scores"]) == ["score", "error"]
    assert first["dev_scores"]["score"] < math.log(2)  # better than chance after 4 steps
    assert 0.0 < first["dev_scores"]["error"] < 0.5
    assert (tmp_path / "ckpt" / "model.001").exists()
    assert "Hello, experiment" in capfd.readouterr().out  # the config's own code ran


def test_returnn_demo_with_label_smoothing_reports_the_unsmoothed_dev_loss(backend, tmp_path):
    path = write_demo(tmp_path, "demo-tf-vanilla-lstm.12ax.config", {"loss_opts": {"label_smoothing": 0.1}})
    first = _train(backend.name, path, tmp_path)["history"][0]
    assert 0.0 < first["dev_scores"]["score"] < math.log(2)  # the KL to the smoothed targets, as RETURNN's score
    assert first["dev_loss"] > first["dev_scores"]["score"]  # the unsmoothed cross entropy


def test_network_step_is_traced_once_per_mode_on_tensorflow(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    calls = []
    original = NetworkModule.__call__
    monkeypatch.setattr(NetworkModule, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    config = load_config(str(write_demo(tmp_path, "demo-tf-native-lstm2.12ax.config")),
                         [*SMALL, ("num_epochs", "2"), ("model", str(tmp_path / "model"))])  # fmt: skip
    metrics = train(config, backend="tensorflow", out_dir=str(tmp_path), progress=False, log=lambda _: None)
    assert len(metrics["history"]) == 2 and metrics["history"][0]["steps"] == 4
    assert len(calls) == 2  # one trace of the train step, one of the dev step, for 2 epochs of 4 + 1 steps each


RF_CONFIG = """\
import returnn_ls as rf
from returnn_ls import Dim, batch_dim

backend = "torch"
train = {"class": "Task12AXDataset", "num_seqs": 40}
dev = {"class": "Task12AXDataset", "num_seqs": 20, "fixed_random_seed": 1}
time_dim, in_dim, out_dim = Dim(None, name="time"), Dim(9, name="in"), Dim(2, name="out")
extern_data = {"data": {"dims": (batch_dim, time_dim, in_dim), "dtype": "float32"},
               "classes": {"dims": (batch_dim, time_dim), "sparse_dim": out_dim, "dtype": "int32"}}
batching, batch_size, max_seqs = "random", 5000, 10
optimizer = {"class": "adam"}
learning_rate = 0.01
num_epochs = 1


class Model(rf.Module):
    def __init__(self):
        self.conv = rf.Conv1d(in_dim, Dim(16, name="hidden"), 5, padding="same")
        self.output = rf.Linear(self.conv.out_dim, out_dim)

    def __call__(self, x):
        return self.output(rf.relu(self.conv(x, in_spatial_dim=time_dim)[0]))


def get_model(**_):
    return Model()


def train_step(*, model, extern_data, **_):
    logits, targets = model(extern_data["data"]), extern_data["classes"]
    %s
    loss.mark_as_loss("ce", use_normalized_loss=True)
    (rf.reduce_argmax(logits, axis=out_dim) != targets).mark_as_loss("fer", as_error=True)
"""
#: the gradient of the cross entropy with label_smoothed_log_prob_gradient in front is the one of the label-smoothed
#: cross entropy (RETURNN's convention), so both train the same parameters
STEPS = {
    "gradient": "log_probs = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=out_dim), 0.1)\n    "
                "loss = rf.cross_entropy(estimated=log_probs, estimated_type='log-probs', target=targets, "
                "axis=out_dim)",
    "target": "loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=out_dim, smoothing=0.1)",
}  # fmt: skip


def test_rf_train_step_with_label_smoothed_log_prob_gradient_trains_as_smoothed_targets(backend, tmp_path):
    params = {}
    for name, step in STEPS.items():
        path = tmp_path / f"{name}.config"
        path.write_text(RF_CONFIG % step)
        metrics = _train(backend.name, path, tmp_path / name)
        with np.load(tmp_path / name / "out" / "model.npz") as f:
            params[name] = {k: f[k] for k in f.files}
        assert metrics["history"][0]["dev_scores"]["fer"] < 0.5
    assert params["gradient"].keys() == params["target"].keys() == {"conv.filter", "conv.bias", "output.weight",
                                                                     "output.bias"}  # fmt: skip
    for key, value in params["gradient"].items():
        np.testing.assert_allclose(value, params["target"][key], rtol=1e-4, atol=1e-6)


def test_compare_on_a_returnn_demo_trains_each_smoothing_value_from_scratch(tmp_path, monkeypatch):
    from returnn_ls.cli import main

    path = write_demo(tmp_path, "demo-tf-vanilla-lstm.12ax.config")
    monkeypatch.chdir(tmp_path)
    argv = [
        "compare",
        str(path),
        "--smoothing",
        "0",
        "0.1",
        "--backend",
        "torch",
        "--out",
        "cmp",
        "--no-progress",
        *(arg for name, value in SMALL for arg in (f"++{name}", value)),
        "++model",
        str(tmp_path / "m" / "model"),
    ]
    assert main(argv) == 0
    runs = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"]
    assert [r["smoothing"] for r in runs] == [0, 0.1] and all(r["history"][0]["steps"] == 4 for r in runs)
    assert runs[0]["history"][0]["train_scores"] != runs[1]["history"][0]["train_scores"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.smoothing_0.001", "model.smoothing_0.1.001"]
