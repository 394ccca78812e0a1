"""BatchNorm, grouped and strided Conv1d, pooling, ZoneoutLSTM (in evaluation) and containers built from dicts: the
parameter names (in order, with their sizes) and the numbers of RETURNN's own rf modules (``returnn.frontend`` on
its torch backend, behavior version 24) for the same parameters.

RETURNN runs in a subprocess (``_nn_returnn_modules_reference.py``), once for all tests here; the parameters are
copied by name, so a name of ours that RETURNN does not have fails there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim, _backend
from tests._nn_helpers import restore_global_state, time_mask  # noqa: F401 (restore_global_state: autouse)
from tests._nn_modules_cases import CONVS, POOLS, ZONEOUTS

LENGTHS = np.array([8, 3, 5], "int32")  # a padded length of 8: the padding before behavior version 24 differs
IN, OUT, ZONEOUT = Dim(6, name="in"), Dim(4, name="out"), Dim(5, name="zoneout")


def _modules() -> dict[str, rf.Module]:
    modules: dict[str, rf.Module] = {"bn_eval": rf.BatchNorm(IN), "bn_train_mask": rf.BatchNorm(IN),
                                     "bn_train_nomask": rf.BatchNorm(IN, use_mask=False)}  # fmt: skip
    for case, kwargs in CONVS.items():
        kwargs = dict(kwargs)
        modules[case] = rf.Conv1d(IN, OUT, kwargs.pop("filter_size"), **kwargs)
    for case, kwargs in ZONEOUTS.items():
        modules[case] = rf.ZoneoutLSTM(IN, ZONEOUT, **kwargs)
    modules["sequential"] = rf.Sequential({"proj": rf.Linear(IN, OUT), "act": rf.relu, "9": rf.Linear(OUT, OUT)})
    return modules


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Inputs and parameters (random; variances positive), and RETURNN's results on them."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 8, 6)).astype("float32")
    x[~time_mask(LENGTHS, 8)] = 30.0  # garbage at padding frames: masked by both or a mismatch
    data = {"x": x, "lengths": LENGTHS, "h0": rng.normal(size=(3, 5)).astype("float32"),
            "c0": rng.normal(size=(3, 5)).astype("float32")}  # fmt: skip
    previous = _backend._selected
    rf.select_backend("torch")
    for case_name, module in _modules().items():
        for name, param in module.named_parameters():
            value = rng.normal(scale=0.4, size=param.numpy().shape)
            data[f"{case_name}/{name}"] = (np.abs(value) + 0.5 if name == "running_variance" else value).astype("f4")
    _backend._selected = previous
    folder = tmp_path_factory.mktemp("returnn_nn_modules")
    np.savez(folder / "in.npz", **data)
    script = Path(__file__).with_name("_nn_returnn_modules_reference.py")
    proc = subprocess.run([sys.executable, str(script), str(folder / "in.npz"), str(folder / "out.npz")],
                          timeout=300, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, dict(np.load(folder / "out.npz"))


def _names(module: rf.Module) -> list[str]:
    return [f"{name} {list(param.numpy().shape)}" for name, param in module.named_parameters()]


def _load(module: rf.Module, data: dict, ref: dict, case_name: str) -> rf.Module:
    """Check the parameter names and sizes (in order) against RETURNN's and copy the parameters by name."""
    assert _names(module) == list(ref[f"{case_name}:names"])
    for name, param in module.named_parameters():
        param.assign(data[f"{case_name}/{name}"])
    return module


def _inputs(data: dict) -> tuple[rf.Tensor, Dim, Dim]:
    batch = Dim(3, name="batch")
    time = Dim(rf.convert_to_tensor(data["lengths"], dims=[batch]), name="time")
    return rf.convert_to_tensor(data["x"], dims=[batch, time, IN], feature_dim=IN), batch, time


def _close_valid(ours: rf.Tensor, theirs: np.ndarray, dims: list[Dim], rows=slice(None)) -> None:
    """Compare at the frames inside the sequences (the frames after a sequence's end are unspecified)."""
    value = ours.copy_transpose(dims).numpy()
    lengths = dims[1].dyn_size_ext.numpy()
    mask = time_mask(lengths, value.shape[1])[rows]
    np.testing.assert_allclose(value[rows][mask], theirs[rows][mask], rtol=1e-5, atol=1e-5)


def test_containers_from_dicts_have_returnns_parameter_names(backend, case):
    data, ref = case
    seq = _load(_modules()["sequential"], data, ref, "sequential")
    assert [name for name, _ in seq.named_parameters()] == ["proj.weight", "proj.bias", "2.weight", "2.bias"]
    x, batch, time = _inputs(data)
    np.testing.assert_allclose(seq(x).copy_transpose([batch, time, OUT]).numpy(), ref["sequential"], rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    params = rf.ParameterList({"scale": rf.Parameter([IN]), "7": rf.Parameter([OUT])})
    assert _names(params) == list(ref["parameter_list:names"]) == ["scale [6]", "1 [4]"]


def test_batch_norm_equals_returnn_in_training_and_evaluation(backend, case):
    data, ref = case
    x, batch, time = _inputs(data)
    for case_name, train in (("bn_eval", False), ("bn_train_mask", True), ("bn_train_nomask", True)):
        norm = _load(_modules()[case_name], data, ref, case_name)
        assert not norm.running_mean.trainable and norm.running_mean.auxiliary and norm.gamma.trainable
        rf.init_train_step_run_ctx(train_flag=train)
        try:
            out = norm(x)
        finally:
            rf.reset_run_ctx()
        assert out.feature_dim is IN
        np.testing.assert_allclose(out.copy_transpose([batch, time, IN]).numpy(), ref[case_name], rtol=1e-4,
                                   atol=1e-5)  # fmt: skip
        for stat in ("running_mean", "running_variance"):
            np.testing.assert_allclose(getattr(norm, stat).numpy(), ref[f"{case_name}_{stat}"], rtol=1e-5, atol=1e-6)


def test_grouped_and_strided_conv_equal_returnn_with_either_padding(backend, case):
    data, ref = case
    x, batch, time = _inputs(data)
    for case_name in CONVS:
        conv = _load(_modules()[case_name], data, ref, case_name)
        for suffix, consistent in (("", True), ("_old", False)):
            conv.use_consistent_same_padding = consistent
            out, out_time = conv(x, in_spatial_dim=time)
            np.testing.assert_array_equal(out_time.dyn_size_ext.numpy(), ref[f"{case_name}_lengths"])
            _close_valid(out, ref[case_name + suffix], [batch, out_time, OUT])
    old, new = ref["conv_strided_old"][1, :2], ref["conv_strided"][1, :2]
    assert np.abs(old - new).max() > 0.1  # the 3-frame sequence: RETURNN's two paddings differ here


def test_pooling_equals_returnn(backend, case):
    data, ref = case
    x, batch, time = _inputs(data)
    for case_name, kwargs in POOLS.items():
        out, out_time = rf.pool1d(x, in_spatial_dim=time, **kwargs)
        assert out.feature_dim is IN
        np.testing.assert_array_equal(out_time.dyn_size_ext.numpy(), ref[f"{case_name}_lengths"])
        # avg with "same": RETURNN counts the zeros after a shorter sequence's end; the longest one agrees
        _close_valid(out, ref[case_name], [batch, out_time, IN], rows=slice(0, 1) if case_name == "avg_same" else
                     slice(None))  # fmt: skip


def test_zoneout_lstm_in_evaluation_equals_returnn(backend, case):
    data, ref = case
    x, batch, time = _inputs(data)
    state = rf.LstmState(h=rf.convert_to_tensor(data["h0"], dims=[batch, ZONEOUT]),
                         c=rf.convert_to_tensor(data["c0"], dims=[batch, ZONEOUT]))  # fmt: skip
    for case_name in ZONEOUTS:
        lstm = _load(_modules()[case_name], data, ref, case_name)
        out, new_state = lstm(x, state=state, spatial_dim=time)
        _close_valid(out, ref[case_name], [batch, time, ZONEOUT])
        for key in ("h", "c"):
            np.testing.assert_allclose(new_state[key].copy_transpose([batch, ZONEOUT]).numpy(),
                                       ref[f"{case_name}_{key}"], rtol=1e-5, atol=1e-5)  # fmt: skip
