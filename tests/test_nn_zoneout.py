"""rf.ZoneoutLSTM: the kernel's gradients by finite differences, evaluation against a numpy reference, no zoneout
against rf.LSTM (the fused kernel), the zoneout masks while training; and the new kernels on the NumPy mini backend
against torch."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import frontend_backends
import returnn_ls as rf
from frontend_backends import BackendInfo
from returnn_ls import Dim
from tests._nn_helpers import _sigmoid, padded_dims, restore_global_state, time_mask  # noqa: F401

IN, UNITS = Dim(3, name="in"), Dim(4, name="units")
LENGTHS = [5, 2, 4]


def numpy_zoneout_lstm(x, lengths, ff, rec, bias, order: str, forget_bias: float, keep_c: float, keep_h: float,
                       zoneout_output: bool):  # fmt: skip
    """ZoneoutLSTM in evaluation, float64, one sequence at a time from zero state: :return: out, h, c"""
    out, hs, cs = np.zeros(x.shape[:2] + (rec.shape[1],)), [], []
    for b, n in enumerate(lengths):
        h = c = np.zeros(rec.shape[1])
        for t in range(n):
            parts = dict(zip(order, np.split(ff @ x[b, t] + bias + rec @ h, 4)))
            c_new = _sigmoid(parts["f"] + forget_bias) * c + _sigmoid(parts["i"]) * np.tanh(parts["j"])
            h_new = _sigmoid(parts["o"]) * np.tanh(c_new)
            c, h_prev = keep_c * c_new + (1 - keep_c) * c, h
            h = keep_h * h_new + (1 - keep_h) * h_prev
            out[b, t] = h if zoneout_output else h_new
        hs.append(h), cs.append(c)
    return out, np.array(hs), np.array(cs)


def test_kernel_gradients_by_finite_differences(backend, rng):
    impl, lengths = backend.impl, backend.raw(np.array([3, 2], "int32"))
    options = dict(gate_order="jifo", forget_bias=0.5, cell_keep=0.85, output_keep=0.6, zoneout_output=True)
    arrays = [rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 2)), rng.normal(size=(2, 2)), rng.normal(size=(8, 2))]
    for pick in (0, 2):  # the output and the final cell state
        assert backend.gradcheck(lambda x, h0, c0, rec, pick=pick: impl.zoneout_lstm(x, lengths, h0, c0, rec,
                                                                                      **options)[pick], *arrays)


@pytest.mark.parametrize("order, zoneout_output", [("ifco", True), ("cifo", False)])
def test_evaluation_equals_numpy_and_padding_frames_are_0(backend, rng, order, zoneout_output):
    lstm = rf.ZoneoutLSTM(IN, UNITS, zoneout_factor_cell=0.3, zoneout_factor_output=0.2, forget_bias=1.0,
                          parts_order=order, use_zoneout_output=zoneout_output)  # fmt: skip
    lstm.bias.assign(rng.normal(size=16))
    assert [n for n, _ in lstm.named_parameters()] == ["ff_weight", "rec_weight", "bias"]
    batch, time = padded_dims(LENGTHS)
    x = rng.normal(size=(3, 5, 3)).astype("float32")
    out, state = lstm(rf.convert_to_tensor(x, dims=[batch, time, IN]), spatial_dim=time)
    assert out.dims == (batch, time, UNITS) and out.feature_dim is UNITS and state.h.dims == (batch, UNITS)
    ref_out, ref_h, ref_c = numpy_zoneout_lstm(
        x, LENGTHS, lstm.ff_weight.numpy(), lstm.rec_weight.numpy(), lstm.bias.numpy(), order.replace("c", "j"), 1.0,
        0.7, 0.8, zoneout_output)  # fmt: skip
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.h.numpy(), ref_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.c.numpy(), ref_c, rtol=1e-5, atol=1e-6)
    assert not out.numpy()[~time_mask(LENGTHS, 5)].any()


def test_without_zoneout_equals_the_fused_lstm_also_while_training(backend, rng):
    zoneout, fused = rf.ZoneoutLSTM(IN, UNITS), rf.LSTM(IN, UNITS)
    for name, param in fused.named_parameters():
        param.assign(getattr(zoneout, name).numpy() + (rng.normal(size=16) if name == "bias" else 0))
        getattr(zoneout, name).assign(param.numpy())
    batch, time = padded_dims(LENGTHS)
    x = rf.convert_to_tensor(rng.normal(size=(3, 5, 3)).astype("float32"), dims=[batch, time, IN])
    state = fused.default_initial_state(batch_dims=[batch])
    rf.init_train_step_run_ctx(train_flag=True)
    try:
        results = [lstm(x, state=state, spatial_dim=time) for lstm in (zoneout, fused)]
    finally:
        rf.reset_run_ctx()
    (out, state), (fused_out, fused_state) = results
    for ours, theirs in ((out, fused_out), (state.h, fused_state.h), (state.c, fused_state.c)):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def _train_run(seed: int, x: rf.Tensor, batch: Dim, time: Dim, lstm: rf.ZoneoutLSTM) -> np.ndarray:
    rf.set_random_seed(seed)
    rf.init_train_step_run_ctx(train_flag=True)
    try:
        return lstm(x, spatial_dim=time)[0].copy_transpose([batch, time, UNITS]).numpy().astype("float64")
    finally:
        rf.reset_run_ctx()


def test_training_keeps_the_previous_output_per_unit_with_the_zoneout_probability(backend, rng):
    lstm = rf.ZoneoutLSTM(IN, UNITS, zoneout_factor_output=0.5)  # the cell state is not zoned out
    batch, time = Dim(3, name="batch"), Dim(40, name="time")
    raw = rng.normal(size=(3, 40, 3)).astype("float32")
    x = rf.convert_to_tensor(raw, dims=[batch, time, IN])
    out = _train_run(7, x, batch, time, lstm)
    np.testing.assert_array_equal(out, _train_run(7, x, batch, time, lstm))  # reproducible from the seed
    assert np.abs(out - _train_run(8, x, batch, time, lstm)).max() > 1e-3
    ff, rec, bias = lstm.ff_weight.numpy(), lstm.rec_weight.numpy(), lstm.bias.numpy()
    h, c, kept = np.zeros((3, 4)), np.zeros((3, 4)), []
    for t in range(40):  # each unit's output is either the new LSTM output or the previous one
        i, f, g, o = np.split(raw[:, t] @ ff.T + h @ rec.T + bias, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        new = _sigmoid(o) * np.tanh(c)
        is_new, is_old = np.isclose(out[:, t], new, atol=1e-5), np.isclose(out[:, t], h, atol=1e-5)
        assert (is_new | is_old).all(), t
        decided = ~(is_new & is_old)
        kept.append(np.where(decided, is_old, np.nan))
        h = out[:, t]
    kept = np.array(kept)  # [T, B, H]: 1 where the previous output was kept
    assert 0.3 < np.nanmean(kept) < 0.7
    spread = np.nanmax(kept, axis=1) - np.nanmin(kept, axis=1)  # as RETURNN: one mask per frame for the batch
    assert np.nanmax(spread) == 0.0


def test_bad_arguments_get_errors_naming_them(backend):
    with pytest.raises(ValueError, match=r"ZoneoutLSTM: zoneout_factor_cell must be in \[0, 1\)"):
        rf.ZoneoutLSTM(IN, UNITS, zoneout_factor_cell=1.0)
    with pytest.raises(ValueError, match="ZoneoutLSTM: parts_order must be a permutation of 'ifco'"):
        rf.ZoneoutLSTM(IN, UNITS, parts_order="ifcx")
    with pytest.raises(TypeError, match="ZoneoutLSTM: forget_bias must be a float"):
        rf.ZoneoutLSTM(IN, UNITS, forget_bias="1")
    batch, time = padded_dims([2, 1])
    with pytest.raises(ValueError, match="ZoneoutLSTM: source .* does not have in_dim"):
        rf.ZoneoutLSTM(IN, UNITS)(rf.convert_to_tensor(np.zeros((2, 2, 4), "float32"),
                                                       dims=[batch, time, UNITS]), spatial_dim=time)  # fmt: skip


def test_tensorflow_zoneout_lstm_inside_tf_function_equals_eager(rng):
    import tensorflow as tf

    rf.select_backend("tensorflow")
    lstm = rf.ZoneoutLSTM(IN, UNITS, zoneout_factor_cell=0.3, zoneout_factor_output=0.2, parts_order="icfo")
    batch, time = Dim(3, name="batch"), Dim(None, name="time")

    def step(raw_x, lengths):
        time.dyn_size_ext = rf.convert_to_tensor(lengths, dims=[batch])
        out, state = lstm(rf.convert_to_tensor(raw_x, dims=[batch, time, IN]), spatial_dim=time)
        return out.raw_tensor, state.h.raw_tensor, state.c.raw_tensor

    graph = tf.function(step, input_signature=[tf.TensorSpec([3, None, 3]), tf.TensorSpec([3], tf.int32)])
    for frames in (5, 0):
        x, lengths = rng.normal(size=(3, frames, 3)).astype("float32"), np.minimum(LENGTHS, frames).astype("int32")
        for ours, eager in zip(graph(x, lengths), step(tf.constant(x), tf.constant(lengths))):
            np.testing.assert_allclose(ours.numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
    assert graph.experimental_get_tracing_count() == 1


@pytest.fixture
def mini(restore_backend):
    """The NumPy mini backend (tests/_mini_backend), registered under a name of its own for one test."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    frontend_backends.register_backend("numpy_mini_nn", BackendInfo("_mini_backend", "numpy", ()))
    yield "numpy_mini_nn"
    frontend_backends.unregister_backend("numpy_mini_nn")


def _kernels(name: str, x: np.ndarray) -> list[np.ndarray]:
    rf.select_backend(name)
    rf.set_random_seed(3)
    conv = rf.Conv1d(Dim(6, name="c_in"), Dim(4, name="c_out"), 4, padding="same", strides=2, groups=2)
    lstm = rf.ZoneoutLSTM(IN, UNITS, zoneout_factor_cell=0.2, zoneout_factor_output=0.1, parts_order="icfo")
    batch, time = padded_dims(LENGTHS)
    wide = rf.convert_to_tensor(np.concatenate([x, x], -1), dims=[batch, time, conv.in_dim])
    outs = [conv(wide, in_spatial_dim=time)[0]]
    outs += [rf.pool1d(wide, mode=mode, pool_size=3, strides=2, padding=padding, in_spatial_dim=time)[0]
             for mode in ("max", "avg") for padding in ("same", "valid")]  # fmt: skip
    outs += list(lstm(rf.convert_to_tensor(x, dims=[batch, time, IN]), spatial_dim=time)[0:1])
    return [o.numpy() for o in outs]


def test_mini_backend_kernels_equal_torch(mini, rng):
    x = rng.normal(size=(3, 5, 3)).astype("float32")
    for ours, theirs in zip(_kernels(mini, x), _kernels("torch", x)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
