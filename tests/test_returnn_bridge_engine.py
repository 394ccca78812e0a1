"""End to end, in RETURNN's own engine: RETURNN trains ``demos/returnn_engine_fused_ce.config``, whose
``train_step`` calls our losses through ``from_returnn``/``to_returnn`` and marks the result as RETURNN's loss.

Four RETURNN runs (``python -m returnn``, in parallel subprocesses, about 15 s in all; deselect them with
``-k "not returnn_engine"``): on RETURNN's torch engine with our fused CE, with RETURNN's CE on our
gradient-smoothed log-probs, and with RETURNN's own smoothed CE as the reference; on RETURNN's TensorFlow
engine (graph mode) with our fused CE. 12AX data, 2 epochs of 3 steps. Every run also reports RETURNN's own
smoothed CE of the same logits as ``ce_returnn`` (an error score: reported, not trained).
"""

from __future__ import annotations

import json

import pytest
from _returnn_bridge_helpers import ROOT, is_finite, read_learning_rate_file, run_python_parallel

DEMO = ROOT / "demos" / "returnn_engine_fused_ce.config"
TRAIN = {"class": "Task12AXDataset", "num_seqs": 30}
DEV = {"class": "Task12AXDataset", "num_seqs": 10, "fixed_random_seed": 1}
RUNS = {  # name: (RETURNN's backend, loss_variant)
    "torch-fused_ce": ("torch", "fused_ce"),
    "torch-log_prob_gradient": ("torch", "log_prob_gradient"),
    "torch-returnn": ("torch", "returnn"),
    "tensorflow-fused_ce": ("tensorflow", "fused_ce"),
}
SCORES = [f"{part}_loss_{name}" for part in ("train", "dev") for name in ("ce", "ce_returnn", "fer")]


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> dict[str, dict[int, dict[str, float]]]:
    """run name -> epoch -> score name -> value, as RETURNN wrote them to its learning-rate file."""
    folder = tmp_path_factory.mktemp("returnn_engine")
    no_data_workers = folder / "no_data_workers.json"  # torch only: RETURNN's TF engine rejects the option
    no_data_workers.write_text(json.dumps({"torch_dataloader_opts": {"num_workers": 0}}))
    jobs = {}
    for name, (backend, variant) in RUNS.items():
        overrides = {
            "backend": backend, "loss_variant": variant, "num_epochs": 2, "train": TRAIN, "dev": DEV,
            "model": folder / name / "model", "learning_rate_file": folder / f"{name}.lr", "log_verbosity": 2,
        }  # fmt: skip
        if backend == "torch":  # 12AX is generated fast enough without a data worker process (saves ~2 s)
            overrides["include"] = no_data_workers
        jobs[name] = ["-m", "returnn", str(DEMO)] + [a for k, v in overrides.items() for a in (f"++{k}", str(v))]
    run_python_parallel(jobs, folder, timeout=300)
    return {name: read_learning_rate_file(folder / f"{name}.lr") for name in RUNS}


@pytest.mark.parametrize("run", list(RUNS))
def test_returnn_engine_finishes_with_finite_decreasing_scores(scores, run):
    epochs = scores[run]
    assert sorted(epochs) == [1, 2]
    for epoch in epochs.values():
        assert set(SCORES) <= set(epoch) and is_finite(epoch.values()), epoch
    for key in ("train_loss_ce", "dev_loss_ce", "train_loss_ce_returnn", "dev_loss_ce_returnn"):
        assert epochs[2][key] < epochs[1][key], (key, epochs)


@pytest.mark.parametrize("run", ["torch-fused_ce", "tensorflow-fused_ce"])
def test_returnn_engine_reports_our_fused_ce_as_its_own_smoothed_ce(scores, run):
    """``ce`` (ours, trained) equals ``ce_returnn`` (RETURNN's, same logits) on every epoch, train and dev."""
    for epoch in scores[run].values():
        for part in ("train", "dev"):
            assert epoch[f"{part}_loss_ce"] == pytest.approx(epoch[f"{part}_loss_ce_returnn"], rel=1e-6)


@pytest.mark.parametrize("run", ["torch-fused_ce", "torch-log_prob_gradient"])
def test_returnn_engine_trains_the_same_model_with_our_losses_as_with_its_own(scores, run):
    """Same seeds and batches: the smoothed CE and frame error of every epoch match the run that trains on
    RETURNN's own smoothed CE, so the gradients RETURNN applied were the same."""
    reference = scores["torch-returnn"]
    for epoch, values in scores[run].items():
        for key in ("train_loss_ce_returnn", "dev_loss_ce_returnn", "train_loss_fer", "dev_loss_fer"):
            assert values[key] == pytest.approx(reference[epoch][key], rel=1e-5), (epoch, key)
    if run == "torch-log_prob_gradient":  # its "ce" is RETURNN's plain CE: only the gradient is smoothed
        assert scores[run][1]["train_loss_ce"] != pytest.approx(reference[1]["train_loss_ce"], rel=1e-3)
