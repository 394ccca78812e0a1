"""RETURNN is the reference: the run context's loss reductions, the learning-rate control and the learning-rate
file are compared with RETURNN's own classes (run once, in a subprocess: tests/_engine_reference.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim, batch_dim
from returnn_ls.training.config import load_config_text
from returnn_ls.training.lr_control import lr_control_from_config
from returnn_ls.training.lr_file import EpochData, read_lr_file, write_lr_file

HERE = os.path.dirname(os.path.abspath(__file__))
_rng = np.random.default_rng(7)
RUN_CTX = {
    "lens": [4, 2, 3],
    "target_lens": [2, 1, 3],
    "frame": _rng.uniform(0, 1, size=(3, 4)).round(4).tolist(),
    "seq": [1.5, 0.25, 2.0],
    "packed": [0.5, 1.0, 2.0, 0.125, 3.0],
}
DEV = [1.0, 0.8, 0.79, 0.795, 0.7, 0.7, 0.69, 0.72, 0.6, 0.61, 0.55, 0.56]


def _scores(keys: tuple[str, str, str]) -> list[dict]:
    train, dev, error = keys
    return [{train: 1.2 * d, dev: d, error: d / 4 + 0.01 * (i % 3)} for i, d in enumerate(DEV)]


NETWORK_KEYS = ("train_score", "dev_score", "dev_error")
RF_KEYS = ("train_loss_ce", "dev_loss_ce", "dev_loss_fer")
LR_CASES = [
    ({"learning_rate_control": "constant", "learning_rates": [0.1, 0.05, 0.02]}, NETWORK_KEYS),
    ({"learning_rate_control": "newbob"}, NETWORK_KEYS),
    ({"learning_rate_control": "newbob", "learning_rate_decay": 0.9, "newbob_relative_error_threshold": 0.0,
      "min_learning_rate": 0.004, "learning_rate_control_error_measure": "dev_error"}, NETWORK_KEYS),
    ({"learning_rate_control": "newbob_rel", "newbob_relative_error_div_by_old": True, "learning_rate_growth": 1.1,
      "learning_rate_control_relative_error_relative_lr": True, "newbob_learning_rate_decay": 0.7}, NETWORK_KEYS),
    ({"learning_rate_control": "newbob_abs", "newbob_error_threshold": -0.02}, NETWORK_KEYS),
    ({"learning_rate_control": "newbob_multi_epoch", "newbob_multi_num_epochs": 3, "newbob_multi_update_interval": 2,
      "newbob_relative_error_grow_threshold": -0.05, "learning_rate_growth": 1.2}, NETWORK_KEYS),
    ({"learning_rate_control": "newbob", "learning_rate_control_min_num_epochs_per_new_lr": 3}, NETWORK_KEYS),
    ({"learning_rate_control": "newbob", "learning_rate_decay": 0.8}, RF_KEYS),
]  # fmt: skip


def _our_rates(options: dict, scores: list[dict]) -> list[float]:
    text = "learning_rate = 0.01\n" + "".join(f"{k} = {v!r}\n" for k, v in options.items())
    control = lr_control_from_config(load_config_text(text, "lr.config"))
    rates = []
    for epoch, epoch_scores in enumerate(scores, start=1):
        rates.append(control.learning_rate(epoch))
        control.set_epoch_error(epoch, epoch_scores)
    return rates


@pytest.fixture(scope="module")
def returnn(tmp_path_factory):
    """RETURNN's results for all requests of this module, and the learning-rate file we wrote for it."""
    pytest.importorskip("returnn")
    folder = tmp_path_factory.mktemp("returnn")
    ours = {1: EpochData(0.01, {"train_score": 0.5, "dev_score": 0.25, "dev_error": float("nan")}),
            2: EpochData(0.005, {"train_loss_ce": 0.125, "dev_loss_ce": 1e-20})}  # fmt: skip
    write_lr_file(str(folder / "lr_ours.txt"), ours)
    cases = [{"config": {"learning_rate": 0.01, **opts}, "scores": _scores(keys)} for opts, keys in LR_CASES]
    request = {"run_ctx": RUN_CTX, "lr_control": cases, "lr_files": [str(folder / "lr_ours.txt")]}
    (folder / "in.json").write_text(json.dumps(request))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_engine_reference.py"), str(folder / "in.json"),
                           str(folder / "out.json")], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((folder / "out.json").read_text()), ours


def _marked_losses(backend_name: str) -> rf.RunCtx:
    """Mark the losses of tests/_engine_reference.py:run_ctx_reductions on our side."""
    lens = np.array(RUN_CTX["lens"], np.int32)
    batch_dim.dyn_size_ext = rf.convert_to_tensor(np.int32(len(lens)), dims=())
    time = Dim(rf.convert_to_tensor(lens, dims=[batch_dim]), name="time")
    frame = rf.convert_to_tensor(np.array(RUN_CTX["frame"], np.float32), dims=[batch_dim, time])
    ctx = rf.init_train_step_run_ctx(train_flag=True)
    frame.mark_as_loss("ce")
    (frame * 2.0).mark_as_loss("ce_norm", scale=0.5, use_normalized_loss=True)
    seq = rf.convert_to_tensor(np.array(RUN_CTX["seq"], np.float32), dims=[batch_dim])
    norm = rf.convert_to_tensor(np.array(RUN_CTX["target_lens"], np.int32), dims=[batch_dim])
    seq.mark_as_loss("ctc", use_normalized_loss=True, custom_inv_norm_factor=norm)
    (frame > 0.5).mark_as_loss("fer", as_error=True)
    packed = rf.convert_to_tensor(np.array(RUN_CTX["packed"], np.float32), dims=[Dim(5)]).raw_tensor
    ctx.mark_as_loss(packed, "packed", scale=2.0)  # a raw framework tensor without dims
    ctx.mark_as_loss((frame * 3.0).raw_tensor, "raw_dims", dims=[batch_dim, time], use_normalized_loss=True)
    return ctx


def test_mark_as_loss_reductions_equal_returnns(backend, returnn):
    expected = returnn[0]["run_ctx"]
    ctx = _marked_losses(backend.name)
    try:
        for name, loss in ctx.losses.items():
            norm = loss.get_inv_norm_factor()
            ours = [float(loss.get_summed_loss().numpy()), float(norm.numpy() if isinstance(norm, rf.Tensor) else norm),
                    float(loss.get_scaled_reduced_loss().numpy())]  # fmt: skip
            np.testing.assert_allclose(ours, expected[name], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(float(ctx.total_loss().numpy()), expected["total"], rtol=1e-6)
    finally:
        rf.reset_run_ctx()


@pytest.mark.parametrize("case", range(len(LR_CASES)))
def test_learning_rate_control_equals_returnns(returnn, case):
    options, keys = LR_CASES[case]
    expected = returnn[0]["lr_control"][case]
    ours = _our_rates(options, _scores(keys))
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert len(set(expected)) > 1 or options["learning_rate_control"] == "constant" or case == 6


def test_returnn_reads_our_learning_rate_file(returnn, tmp_path):
    results, ours = returnn
    read = results["lr_files"][0]
    assert {int(e) for e in read} == set(ours)
    for epoch, data in ours.items():
        lr, error = read[str(epoch)]
        assert lr == data.learning_rate
        assert set(error) == set(data.error)
        for key, value in data.error.items():
            assert (np.isnan(value) and np.isnan(error[key])) or error[key] == value


def test_we_read_returnns_learning_rate_file(tmp_path):
    text = ("{\n1: EpochData(learningRate=0.01, error={\n':meta:device': 'cpu',\n':meta:distributed': None,\n"
            "'dev_loss_ce': 0.049,\n'train_loss_ce': 0.09,\n}),\n2: EpochData(learningRate=np.float64(0.009), "
            "error={'dev_loss_ce': nan, 'train_loss_ce': -inf}),\n}\n")  # fmt: skip
    (tmp_path / "lr.txt").write_text(text)
    data = read_lr_file(str(tmp_path / "lr.txt"))
    assert data[1].learning_rate == 0.01 and data[1].error == {"dev_loss_ce": 0.049, "train_loss_ce": 0.09}
    assert data[2].learning_rate == 0.009 and np.isnan(data[2].error["dev_loss_ce"])
    assert data[2].error["train_loss_ce"] == float("-inf")
    (tmp_path / "bad.txt").write_text("{1: __import__('os').system('true')}\n")
    with pytest.raises(ValueError, match="unexpected expression"):
        read_lr_file(str(tmp_path / "bad.txt"))
