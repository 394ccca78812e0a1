"""Data-parallel training with label smoothing: PyTorch DistributedDataParallel (gloo, 2 processes on 127.0.0.1)
and TensorFlow MirroredStrategy (2 logical CPU devices) end with the parameters of single-process training on
the same global batch. The training runs in tests/_dp_worker.py, in subprocesses with a timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_dp_worker.py")
TIMEOUT = 180
sys.path.insert(0, HERE)
import _dp_worker  # noqa: E402  (no framework imported: only the data and the initial parameters)


def _env(**extra: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1", **extra)
    if os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo on the loopback interface
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_result(path: str) -> dict:
    result = dict(np.load(path))
    for name in ("w", "b"):
        parallel, single = result[f"parallel_{name}"], result[f"single_{name}"]
        np.testing.assert_allclose(parallel, single, rtol=0, atol=1e-6, err_msg=name)
        assert np.abs(single - _dp_worker.INIT[name]).max() > 1e-2, "training must move the parameters"
    return result


def test_ddp_gloo_two_processes_equals_single_process_training(tmp_path):
    pytest.importorskip("torch")
    out, port = str(tmp_path / "torch.npz"), str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, "torch", out],
            env=_env(RANK=str(rank), WORLD_SIZE="2", MASTER_PORT=port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    _check_result(out)


def test_mirrored_strategy_two_devices_equals_single_device_training(tmp_path):
    pytest.importorskip("tensorflow")
    out = str(tmp_path / "tensorflow.npz")
    proc = subprocess.run(
        [sys.executable, WORKER, "tensorflow", out], env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_result(out)
