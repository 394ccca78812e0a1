"""The ``returnn-ls`` command: run in-process via ``main(argv)``; one subprocess test for ``python -m``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from returnn_ls.cli import main
from returnn_ls.training.config import ENV_VAR

TINY = """\
backend = "torch"
extern_data = {"data": {"dim": 8}, "classes": {"dim": 5, "sparse": True}, "alignment": {"dim": 5, "sparse": True}}
train = {"class": "synthetic", "num_seqs": 16, "seed": 1}
dev = {"class": "synthetic", "num_seqs": 8, "seed": 2}
num_epochs = 1
batch_size = 8
learning_rate = 1e-2
network = {
    "enc": {"class": "linear", "from": "data", "n_out": 16, "activation": "relu"},
    "logits": {"class": "linear", "from": "enc", "n_out": 5},
    "ctc": {"class": "ctc_loss", "from": "logits", "target": "classes", "label_smoothing": 0.1, "loss": True},
}
"""


pytestmark = pytest.mark.usefixtures("cli_isolated")


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.config"
    path.write_text(TINY)
    return path


def test_train_writes_metrics_model_and_plots(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", str(tiny), "--out", str(out), "--no-progress"]) == 0
    first, line = capsys.readouterr().out.splitlines()[:2]
    assert first == "training on torch, device cpu", first
    assert line.startswith("epoch 1 score: ") and " error: " in line and " dev: score " in line, line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == "torch" and metrics["config"] == str(tiny) and metrics["error_rate"] == "label"
    assert [h["epoch"] for h in metrics["history"]] == [1]
    assert list(metrics["history"][0]["dev_scores"]) == ["score", "error"]
    assert (out / "model.npz").exists() and (out / "learning_curves.png").exists() and (out / "model.001").exists()
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_compare_draws_one_figure_per_comparison(tiny, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    monkeypatch.setenv(ENV_VAR, "tensorflow")
    out = tmp_path / "cmp"
    assert main(["compare", str(tiny), "--smoothing", "0", "0.2", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert [r["smoothing"] for r in summary["runs"]] == [0.0, 0.2] and summary["backend"] == "tensorflow"
    assert (out / "compare.png").exists() and (out / "smoothing_0.2" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "missing.config"], "config file not found: 'missing.config'"),
        (["train", "{tmp}/bad.config"], "{tmp}/bad.config:10: layer 'out': unknown layer class 'lineer'"),
        (["train", "{tmp}/nobackend.config"], "no backend selected"),
        (["compare", "{tmp}/nosmoothing.config"], "compare: the network has no label-smoothing option"),
        (
            ["train", "{tmp}/badvalue.config"],
            "{tmp}/badvalue.config:11: layer 'ctc' (ctc_loss): ctc_loss: label_smoothing",
        ),
        (
            ["train", "{tmp}/badsoftmax.config"],
            "{tmp}/badsoftmax.config:11: layer 'out' (softmax): loss_opts['label_smoothing'] must be in [0, 1]",
        ),
    ],
)
def test_config_errors_exit_1_without_metrics(tmp_path, capsys, argv, message):
    (tmp_path / "bad.config").write_text(TINY.replace('"logits": {"class": "linear"', '"out": {"class": "lineer"'))
    (tmp_path / "nobackend.config").write_text(TINY.replace('backend = "torch"', ""))
    no_smoothing = '"ctc": {"class": "cross_entropy", "from": "logits", "target": "alignment", "loss": True},\n}'
    (tmp_path / "nosmoothing.config").write_text(TINY[: TINY.index('"ctc"')] + no_smoothing)
    (tmp_path / "badvalue.config").write_text(TINY.replace('"label_smoothing": 0.1', '"label_smoothing": 1.5'))
    softmax = '"out": {"class": "softmax", "from": "enc", "target": "alignment", "loss": "ce", "loss_opts": '
    softmax += '{"label_smoothing": 1.5}},\n}'
    (tmp_path / "badsoftmax.config").write_text(TINY[: TINY.index('"ctc"')] + softmax)
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("returnn-ls: error: ") and message.format(tmp=tmp_path) in err, err
    assert not (out / "metrics.json").exists()


def test_environment_backend_error_exits_1(tiny, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, "jax")
    assert main(["train", str(tiny)]) == 1
    assert "unknown backend 'jax' from the environment variable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [[], ["fit"], ["train", "--backend", "jax"], ["train", "--epochs", "0"], ["compare", "--smoothing", "1.5"]],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: returnn-ls" in capsys.readouterr().err


def test_python_dash_m_runs_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "returnn_ls", "train", str(tmp_path / "none.config")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "config file not found" in result.stderr
