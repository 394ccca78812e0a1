"""The training loop: rf-style configs (``rf.Module`` and ``torch.nn.Module``) on both backends, metrics.json,
``++`` overrides, checkpoints and the learning-rate file, non-finite guards and a diverging training."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from returnn_ls.cli import main
from returnn_ls.training.checkpoints import find_checkpoints, read_checkpoint
from returnn_ls.training.datasets import SyntheticDataset
from returnn_ls.training.lr_file import read_lr_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _engine_helpers import NETWORK_CONFIG, RF_CONFIG, TORCH_CONFIG, write_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("cli_isolated")


def _train(config, out, *extra: str) -> int:
    return main(["train", str(config), "--out", str(out), "--no-progress", *extra])


def test_rf_config_trains_the_same_on_both_backends(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    runs = {}
    for name in ("torch", "tensorflow"):
        config = write_config(tmp_path, RF_CONFIG, f"{name}.config", backend=name)
        lr_file = tmp_path / name / "lr.txt"
        assert _train(config, tmp_path / name, "++learning_rate_file", str(lr_file)) == 0
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch")]
        assert lines[0].startswith("epoch 1 ce: ") and " fer: " in lines[0] and " dev: ce " in lines[0], lines
        assert set(read_lr_file(str(lr_file))[2].error) == {"train_loss_ce", "train_loss_fer", "dev_loss_ce",
                                                             "dev_loss_fer"}  # fmt: skip
    for a, b in zip(runs["torch"]["history"], runs["tensorflow"]["history"], strict=True):
        assert set(a) >= {"epoch", "learning_rate", "seconds", "train_scores", "dev_scores"}
        assert list(a["train_scores"]) == ["ce", "fer"] and list(a["dev_scores"]) == ["ce", "fer"]
        for group in ("train_scores", "dev_scores"):
            for key in ("ce", "fer"):
                assert a[group][key] == pytest.approx(b[group][key], rel=1e-4, abs=1e-6), (group, key)
    first, second = runs["torch"]["history"]
    assert second["train_scores"]["ce"] < first["train_scores"]["ce"] and runs["torch"]["backend"] == "torch"


def test_torch_module_with_raw_tensors_trains(tmp_path):
    pytest.importorskip("torch")
    assert _train(write_config(tmp_path, TORCH_CONFIG), tmp_path / "out") == 0
    history = json.loads((tmp_path / "out" / "metrics.json").read_text())["history"]
    assert history[1]["dev_scores"]["ce"] < history[0]["dev_scores"]["ce"] < np.log(5)
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"model.001", "model.002", "model.npz"}


def test_torch_module_on_another_backend_names_the_backend_it_needs(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    assert _train(write_config(tmp_path, TORCH_CONFIG), tmp_path / "out", "--backend", "tensorflow") == 1
    err = capsys.readouterr().err
    assert "get_model returns a Model (a torch.nn.modules.module.Module), a model of the backend 'torch'" in err, err
    assert "but the backend is 'tensorflow'; set backend = 'torch'" in err, err


def test_overrides_checkpoints_and_rerun(tmp_path, capsys):
    pytest.importorskip("torch")
    config = write_config(tmp_path, NETWORK_CONFIG, backend="torch")
    model = tmp_path / "ckpt" / "net"
    argv = ["++num_epochs", "3", "++model", str(model), "++save_interval", "2", "++learning_rate", "+-1e-2"]
    assert _train(config, tmp_path / "out", *argv[:-2]) == 0
    assert [e for e, _ in find_checkpoints(str(model))] == [3, 2]  # every 2nd epoch and the last
    checkpoint = read_checkpoint(str(model) + ".003")
    assert checkpoint.meta["backend"] == "torch" and checkpoint.meta["step"] == 9
    assert set(checkpoint.params) == {"enc.weight", "enc.bias", "output.weight", "output.bias"} and checkpoint.optimizer
    assert [int(e) for e in checkpoint.meta["lr_control"]] == [1, 2, 3]
    assert not [p for p in os.listdir(model.parent) if ".tmp" in p]
    capsys.readouterr()
    assert _train(config, tmp_path / "out", *argv[:-2]) == 0  # a rerun finds all epochs done
    assert "all 3 epochs are trained already" in capsys.readouterr().out
    history = json.loads((tmp_path / "out" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert main(["train", str(config), "--out", str(tmp_path / "x"), *argv[-2:], "++model", str(tmp_path / "m")]) == 1
    assert "learning_rate must be a number >= 0, got -0.01" in capsys.readouterr().err  # "+-" is RETURNN's minus


def _poison(monkeypatch, tag: str) -> None:
    """Put a NaN into the features of the synthetic training sequence ``tag`` (the train set has 24 sequences)."""
    original = SyntheticDataset.get_seq

    def get_seq(self, index):
        seq = original(self, index)
        if seq["seq_tag"] == tag and len(self) == 24:
            seq = {**seq, "data": seq["data"].copy()}
            seq["data"][1, 2] = np.nan
        return seq

    monkeypatch.setattr(SyntheticDataset, "get_seq", get_seq)


def test_nan_in_one_sequence_stops_training_with_one_message(backend, tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, "seq-5")
    config = write_config(tmp_path, NETWORK_CONFIG, backend=backend.name)
    assert _train(config, tmp_path / "out") == 1
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "returnn-ls: error" in x]
    assert len(lines) == 1 and "epoch 1, step " in lines[0] and "'seq-5'" in lines[0], err
    assert "stop_on_nonfinite_train_score = False" in lines[0] and "Traceback" not in err
    assert not find_checkpoints(str(tmp_path / "out" / "model"))  # nothing saved from a non-finite state


def test_skipping_non_finite_batches_counts_them(backend, tmp_path, monkeypatch):
    _poison(monkeypatch, "seq-5")
    config = write_config(tmp_path, NETWORK_CONFIG, backend=backend.name)
    assert _train(config, tmp_path / "out", "++stop_on_nonfinite_train_score", "False") == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [h.get("nonfinite_skipped") for h in metrics["history"]] == [1, 1]
    assert all(np.isfinite(h["dev_scores"]["score"]) and np.isfinite(h["train_scores"]["score"])
               for h in metrics["history"])  # fmt: skip
    with np.load(tmp_path / "out" / "model.npz") as f:
        assert all(np.isfinite(f[k]).all() for k in f.files)


def test_diverging_training_is_reported(backend, tmp_path, capsys):
    config = write_config(tmp_path, NETWORK_CONFIG, backend=backend.name)
    assert _train(config, tmp_path / "out", "++learning_rate", "1e3", "++optimizer", "{'class': 'sgd'}") == 0
    err = capsys.readouterr().err
    assert "training diverges; the learning rate 1000 is probably too large (config key learning_rate)" in err
    assert err.count("training diverges") == 1
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["warnings"]) == 1 and "diverges" in metrics["warnings"][0]


def test_progress_bar_counts_the_steps_of_each_epoch(tmp_path, monkeypatch, capsys):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    config = write_config(tmp_path, NETWORK_CONFIG, backend="torch")
    assert main(["train", str(config), "--out", str(tmp_path / "out")]) == 0
    shown = terminal.getvalue()
    assert "epoch 1: " in shown and "3step" in shown.replace(" ", "")  # epoch 1: the count so far
    assert "epoch 2: " in shown and "1/3" in shown and "3/3" in shown  # later epochs: of the previous epoch's count


def test_an_error_in_the_configs_train_step_names_its_line(tmp_path, capsys):
    text = RF_CONFIG.format(backend="torch").replace('    logits = model(extern_data["data"])',
                                                     '    logits = model(extern_data["dat"])')  # fmt: skip
    config = tmp_path / "bug.config"
    config.write_text(text)
    line = text.splitlines().index('    logits = model(extern_data["dat"])') + 1
    assert _train(config, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"returnn-ls: error: {config}:{line}: train_step raised KeyError:") and "'dat'" in err, err


def test_a_checkpoint_of_the_other_backend_is_not_resumed(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    config = write_config(tmp_path, NETWORK_CONFIG, backend="torch")
    assert _train(config, tmp_path / "out", "++num_epochs", "1") == 0
    assert _train(config, tmp_path / "out", "--backend", "tensorflow") == 1
    assert "model.001 was written by the torch backend; continue it with --backend torch" in capsys.readouterr().err


def test_learning_rates_of_an_existing_learning_rate_file_are_used(tmp_path):
    from returnn_ls.training.lr_file import EpochData, write_lr_file

    write_lr_file(str(tmp_path / "lr.txt"), {1: EpochData(0.05), 2: EpochData(0.02)})  # RETURNN: rates set by hand
    config = write_config(tmp_path, NETWORK_CONFIG, backend="torch")
    assert _train(config, tmp_path / "out", "++learning_rate_file", str(tmp_path / "lr.txt")) == 0
    history = json.loads((tmp_path / "out" / "metrics.json").read_text())["history"]
    assert [h["learning_rate"] for h in history] == [0.05, 0.02]
    assert set(read_lr_file(str(tmp_path / "lr.txt"))[2].error) == {"train_score", "train_error", "dev_score",
                                                                     "dev_error"}  # fmt: skip
