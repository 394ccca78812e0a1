"""Training: the synthetic dataset, the demo configs on both backends, model.npz across backends, metrics."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from returnn_ls.training.batching import iterate_batches
from returnn_ls.training.config import ConfigError, load_config, load_config_text
from returnn_ls.training.datasets import SyntheticDataset, make_dataset
from returnn_ls.training.engine import Engine
from returnn_ls.training.metrics import edit_alignment, expected_calibration_error, reliability_bins
from returnn_ls.training.setup import build_setup
from returnn_ls.training.train import train

DEMOS = os.path.join(os.path.dirname(__file__), "..", "demos")
TINY = """\
extern_data = {"data": {"dim": 8}, "classes": {"dim": 5, "sparse": True}, "alignment": {"dim": 5, "sparse": True}}
train = {"class": "synthetic", "num_seqs": 24, "seed": 1}
dev = {"class": "synthetic", "num_seqs": 8, "seed": 2}
batch_size = 8
learning_rate = 1e-2
network = {
    "enc": {"class": "linear", "from": "data", "n_out": 16, "activation": "relu"},
    "output": {"class": "softmax", "from": "enc", "target": "alignment", "loss": "ce",
               "loss_opts": {"label_smoothing": 0.1}},
}
"""


pytestmark = pytest.mark.usefixtures("restore_backend")


def test_synthetic_dataset_is_seeded_and_alignment_collapses_to_classes():
    first = SyntheticDataset(input_dim=4, num_labels=6, num_seqs=20, seed=5)
    again = SyntheticDataset(input_dim=4, num_labels=6, num_seqs=20, seed=5)
    assert all(np.array_equal(a["data"], b["data"]) for a, b in zip(first.seqs, again.seqs))
    for seq in first.seqs:
        align = seq["alignment"]
        merged = [int(x) for i, x in enumerate(align) if x != 0 and (i == 0 or x != align[i - 1])]
        assert merged == seq["classes"].tolist() and 0 not in seq["classes"]
        assert seq["data"].shape == (len(align), 4) and seq["data"].dtype == np.float32
    first.init_seq_order(1)
    batch = next(iterate_batches(first, batch_size=7))
    assert batch.data["data"].shape[:2] == batch.data["alignment"].shape and len(batch.lengths["classes"]) == 7
    assert batch.lengths["data"].max() == batch.data["data"].shape[1] and len(set(batch.lengths["data"])) > 1


def test_dataset_options_are_checked():
    with pytest.raises(ValueError, match="unknown synthetic dataset option 'num_seq'.*did you mean 'num_seqs'"):
        make_dataset({"class": "synthetic", "num_seq": 3}, input_dim=2, num_labels=4)
    with pytest.raises(ValueError, match="unknown dataset class 'synthetik'.*did you mean 'synthetic'"):
        make_dataset({"class": "synthetik"}, input_dim=2, num_labels=4)


def evaluate(config, backend_name: str, tmp_path, params: dict | None = None) -> dict:
    """:return: the dev metrics of the config's model (initial parameters, or ``params``), without training"""
    setup = build_setup(config, backend_name, out_dir=str(tmp_path / "eval"))
    if params is not None:
        setup.task.load(params, "test")
    engine = Engine(setup, str(tmp_path / "eval"), progress=False, log=lambda s: None)
    dev = engine._eval_epoch(1)
    return {**dev, **setup.task.dev_metrics()}


@pytest.mark.parametrize("demo", ["ctc_gradient_smoothing.config", "frame_ce_softmax.config"])
def test_demo_config_trains_one_epoch_and_reduces_the_loss(backend, demo, tmp_path):
    config = load_config(os.path.join(DEMOS, demo))
    initial = evaluate(config, backend.name, tmp_path)
    metrics = train(config, backend=backend.name, out_dir=str(tmp_path), epochs=1, progress=False, log=lambda s: None)
    assert metrics["history"][0]["dev_loss"] < 0.8 * initial["dev_loss"]
    assert metrics["history"][0]["dev_error_rate"] < initial["dev_error_rate"]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["backend"] == backend.name and on_disk["config"] == config.filename
    assert set(on_disk["history"][0]) >= {"epoch", "train_loss", "dev_loss", "dev_error_rate", "dev_ece",
                                          "train_scores", "dev_scores", "learning_rate", "seconds"}  # fmt: skip
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.json", "model.npz", "learning_curves.png",
                                                    "reliability.png", "model.001"}  # fmt: skip


def test_model_npz_round_trip_across_backends(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    config = load_config_text(TINY, "tiny.config")
    metrics = train(config, backend="torch", out_dir=str(tmp_path), epochs=1, progress=False, log=lambda s: None)
    with np.load(tmp_path / "model.npz") as f:
        params = {k: f[k] for k in f.files}
    for name in ("tensorflow", "torch"):
        dev = evaluate(config, name, tmp_path / name, params)
        assert dev["dev_loss"] == pytest.approx(metrics["history"][-1]["dev_loss"], rel=1e-5)
    # --init-model continues on the other backend from the saved parameters
    again = train(config, backend="tensorflow", out_dir=str(tmp_path / "tf"), epochs=1, progress=False,
                  init_model=str(tmp_path / "model.npz"), log=lambda s: None)  # fmt: skip
    assert again["history"][0]["train_loss"] < metrics["history"][0]["train_loss"]


def test_init_model_must_match_the_network(tmp_path):
    np.savez(tmp_path / "m.npz", **{"enc/W": np.zeros((8, 3), np.float32)})
    with pytest.raises(ConfigError, match=r"cannot use --init-model .*m\.npz.*does not fit the model: missing"):
        train(load_config_text(TINY), backend="torch", out_dir=str(tmp_path), init_model=str(tmp_path / "m.npz"),
              progress=False, log=lambda s: None)  # fmt: skip


def test_same_config_gives_same_training_on_both_backends(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    config = load_config_text(TINY, "tiny.config")
    runs = [train(config, backend=b, out_dir=str(tmp_path / b), epochs=2, progress=False, log=lambda s: None)
            for b in ("torch", "tensorflow")]  # fmt: skip
    for a, b in zip(runs[0]["history"], runs[1]["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["dev_loss"] == pytest.approx(b["dev_loss"], rel=1e-4)
        assert a["train_scores"]["error"] == pytest.approx(b["train_scores"]["error"], abs=1e-3)


def test_edit_alignment_marks_matched_labels():
    assert edit_alignment([1, 2, 3], [1, 2, 3]) == (0, [True, True, True])
    assert edit_alignment([1, 4, 3], [1, 2, 3]) == (1, [True, False, True])
    assert edit_alignment([1, 2], [1, 2, 3]) == (1, [True, True])
    assert edit_alignment([], [1, 2]) == (2, [])


def test_expected_calibration_error():
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    bins = reliability_bins(confidence, np.array([True, True, True, False]))
    assert expected_calibration_error(bins) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert sum(bins["count"]) == 4 and bins["accuracy"][9] == 1.0 and bins["accuracy"][5] == 0.5
