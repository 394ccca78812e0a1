"""The rf-style demo config ``demos/rf_label_smoothing.12ax.config`` trains on both backends, and its two ways of
smoothing (the fused smoothed-target CE, and gradient smoothing in front of the plain CE) train the same model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from returnn_ls.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "demos", "rf_label_smoothing.12ax.config")
SMALL = ["++train", "{'class': 'Task12AXDataset', 'num_seqs': 30}", "++dev",
         "{'class': 'Task12AXDataset', 'num_seqs': 10, 'fixed_random_seed': 1}", "++num_epochs", "2",
         "++max_seqs", "5", "--no-progress"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("cli_isolated")


def _run(backend: str, out, via: str) -> tuple[list[dict], dict[str, np.ndarray]]:
    assert main(["train", CONFIG, "--backend", backend, "--out", str(out), "++smoothing_via", via, *SMALL]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    with np.load(out / "model.npz") as f:
        return history, {k: f[k] for k in f.files}


def test_smoothing_the_target_or_the_gradient_trains_the_same_model(backend, tmp_path):
    target, params_target = _run(backend.name, tmp_path / "target", "target")
    gradient, params_gradient = _run(backend.name, tmp_path / "gradient", "gradient")
    assert [h["epoch"] for h in target] == [1, 2]
    for key, value in params_target.items():
        np.testing.assert_allclose(params_gradient[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    assert gradient[1]["dev_scores"]["fer"] == pytest.approx(target[1]["dev_scores"]["fer"], abs=1e-6)
    # epoch 1 has no smoothing (the schedule): both report the plain CE; epoch 2 smooths with 0.1, and only the
    # target variant reports the smoothed CE, which is larger by at least 0.1 * (the CE of the other label) > 0
    assert gradient[0]["train_scores"]["ce"] == pytest.approx(target[0]["train_scores"]["ce"], rel=1e-5)
    assert target[1]["dev_scores"]["ce"] > gradient[1]["dev_scores"]["ce"] + 0.01
