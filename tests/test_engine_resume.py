"""Crash-safe training: ``kill -9`` during epoch 3 of a 4-epoch run, a damaged newest checkpoint, then the same
command again ends with the results of an uninterrupted run (bit-identical on torch, 1e-5 on TensorFlow), and
``metrics.json`` has every epoch once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from returnn_ls.cli import main
from returnn_ls.training.checkpoints import find_checkpoints

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _engine_helpers import RF_CONFIG, write_config  # noqa: E402

ARGS = ["++num_epochs", "4", "--no-progress"]


pytestmark = pytest.mark.usefixtures("cli_isolated")


def _kill_during_epoch_3(config, out, marker) -> None:
    env = dict(os.environ, ENGINE_TEST_PAUSE_EPOCH="3", ENGINE_TEST_MARKER=str(marker), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.path.dirname(HERE))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "returnn_ls", "train", str(config), "--out", str(out), *ARGS],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run did not reach epoch 3"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def test_resume_after_sigkill_and_a_damaged_checkpoint_equals_an_uninterrupted_run(backend, tmp_path, capsys):
    config = write_config(tmp_path, RF_CONFIG, backend=backend.name)
    assert main(["train", str(config), "--out", str(tmp_path / "full"), *ARGS]) == 0
    out = tmp_path / "killed"
    _kill_during_epoch_3(config, out, tmp_path / "marker")
    assert [e for e, _ in find_checkpoints(str(out / "model"))] == [2, 1]
    newest = out / "model.002"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a truncated newest checkpoint
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(out), *ARGS]) == 0
    captured = capsys.readouterr()
    assert f"checkpoint {newest} is incomplete or damaged" in captured.err and "using the one before it" in captured.err
    assert f"resuming after epoch 1 from {out / 'model.001'}" in captured.out
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    resumed = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    exact = backend.name == "torch"
    for a, b in zip(full, resumed):
        for group in ("train_scores", "dev_scores"):
            for key, value in a[group].items():
                assert b[group][key] == value if exact else b[group][key] == pytest.approx(value, rel=1e-5, abs=1e-6)
        assert a["learning_rate"] == b["learning_rate"]
    with np.load(tmp_path / "full" / "model.npz") as f, np.load(out / "model.npz") as g:
        for key in f.files:
            np.testing.assert_allclose(g[key], f[key], rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)


def test_ctrl_c_exits_130_and_keeps_the_checkpoints(tmp_path):
    pytest.importorskip("torch")
    config = write_config(tmp_path, RF_CONFIG, backend="torch")
    marker, out = tmp_path / "marker", tmp_path / "out"
    env = dict(
        os.environ, ENGINE_TEST_PAUSE_EPOCH="2", ENGINE_TEST_MARKER=str(marker), PYTHONPATH=os.path.dirname(HERE)
    )
    proc = subprocess.Popen([sys.executable, "-m", "returnn_ls", "train", str(config), "--out", str(out), *ARGS],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted; run the same command again to resume" in err, err[-2000:]
    assert [e for e, _ in find_checkpoints(str(out / "model"))] == [1]
