"""RETURNN's ``device`` and ``torch_amp`` config keys in the engine: the device printed and stored in metrics.json,
clear errors for a device that is not there, mixed precision that trains like float32."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _engine_helpers import RF_CONFIG, write_config

from returnn_ls.cli import main


def _train(config, out, *extra: str) -> int:
    return main(["train", str(config), "--out", str(out), "--no-progress", *extra])


def _gpu_available(name: str) -> bool:
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.parametrize("device", [None, "cpu"])
def test_device_is_printed_and_stored(backend, cli_isolated, tmp_path, capsys, device):
    text = RF_CONFIG.format(backend=backend.name) + ("" if device is None else f"device = {device!r}\n")
    assert _train(write_config(tmp_path, text), tmp_path / "out", "++num_epochs", "1") == 0
    expected = "cpu" if device == "cpu" or not _gpu_available(backend.name) else "cuda:0"
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["device"] == expected
    assert f"training on {backend.name}, device {expected}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("device", "message"),
    [("gpu", r"device: 'gpu': .*GPU"), ("cuda:3", r"device: 'cuda:3': "),
     ("tpu", r"device: must be 'cpu', 'gpu', 'cuda' or 'cuda:N', got 'tpu'"), (7, r"device: must be .*got 7")],
)  # fmt: skip
def test_a_device_that_is_not_there_is_a_config_error(backend, cli_isolated, tmp_path, capsys, device, message):
    if device in ("gpu", "cuda:3") and _gpu_available(backend.name):
        pytest.skip("this machine has a GPU")
    text = RF_CONFIG.format(backend=backend.name) + f"device = {device!r}\n"
    assert _train(write_config(tmp_path, text), tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.startswith("returnn-ls: error: ") and "c.config:" in err
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "metrics.json").exists()


def _history(tmp_path, name: str, extra: str) -> list[dict]:
    text = RF_CONFIG.format(backend="torch") + extra
    assert _train(write_config(tmp_path, text, name=f"{name}.config"), tmp_path / name) == 0
    return json.loads((tmp_path / name / "metrics.json").read_text())["history"]


def test_torch_amp_trains_like_float32(cli_isolated, tmp_path):
    """bfloat16 and float16 (with a grad scaler) autocast on the CPU: the dev CE after 2 epochs is within 2% of
    float32's (bfloat16 has 8 bits of mantissa), and every score is finite."""
    pytest.importorskip("torch")
    reference = _history(tmp_path, "fp32", "")
    for dtype in ("bfloat16", "float16", {"dtype": "bfloat16"}):
        history = _history(tmp_path, str(dtype).replace("'", "").replace(" ", ""), f"torch_amp = {dtype!r}\n")
        for ref, got in zip(reference, history, strict=True):
            assert np.isfinite(got["train_scores"]["ce"]) and np.isfinite(got["dev_scores"]["ce"])
            assert got["dev_scores"]["ce"] == pytest.approx(ref["dev_scores"]["ce"], rel=0.02), dtype


@pytest.mark.parametrize(
    ("backend_name", "value", "message"),
    [("torch", "int8", r"torch_amp: must be 'bfloat16' or 'float16', got 'int8'"),
     ("torch", {"dtype": "float16", "grad_scaler": None}, r"torch_amp: must be 'bfloat16' or 'float16', got \{"),
     ("tensorflow", "bfloat16", r"torch_amp is not supported by the backend 'tensorflow'")],
)  # fmt: skip
def test_bad_torch_amp_is_a_config_error(cli_isolated, tmp_path, capsys, backend_name, value, message):
    pytest.importorskip(backend_name)
    text = RF_CONFIG.format(backend=backend_name) + f"torch_amp = {value!r}\n"
    assert _train(write_config(tmp_path, text), tmp_path / "out") == 1
    assert re.search(message, capsys.readouterr().err)
