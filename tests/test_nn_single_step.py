"""LSTM and ZoneoutLSTM with ``spatial_dim=rf.single_step_dim`` (one step on the state, for step-wise decoding):
against numpy, against the same module run over whole sequences, and under torch.compile and tf.function."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import numpy_lstm, restore_global_state  # noqa: F401 (an autouse fixture)

IN, HIDDEN, BATCH, FRAMES = 3, 4, 2, 3


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(5)
    return {
        "x": rng.normal(size=(BATCH, FRAMES, IN)).astype("float32"),
        "h0": rng.normal(size=(BATCH, HIDDEN)).astype("float32"),
        "c0": rng.normal(size=(BATCH, HIDDEN)).astype("float32"),
        "ff": rng.normal(scale=0.5, size=(4 * HIDDEN, IN)).astype("float32"),
        "rec": rng.normal(scale=0.5, size=(4 * HIDDEN, HIDDEN)).astype("float32"),
        "bias": rng.normal(scale=0.5, size=4 * HIDDEN).astype("float32"),
    }


def _module(cls, case: dict, **kwargs):
    in_dim, out_dim = Dim(IN, name="in"), Dim(HIDDEN, name="out")
    module = cls(in_dim, out_dim, **kwargs)
    module.ff_weight.assign(case["ff"])
    module.rec_weight.assign(case["rec"])
    module.bias.assign(case["bias"])
    return module


def _steps(module, case: dict, batch: Dim):
    """:return: the outputs of FRAMES single steps (numpy ``[B, T, H]``) and the last state"""
    state = rf.LstmState(h=rf.convert_to_tensor(case["h0"], dims=[batch, module.out_dim]),
                         c=rf.convert_to_tensor(case["c0"], dims=[batch, module.out_dim]))  # fmt: skip
    outs = []
    for t in range(FRAMES):
        x = rf.convert_to_tensor(case["x"][:, t], dims=[batch, module.in_dim], feature_dim=module.in_dim)
        out, state = module(x, state=state, spatial_dim=rf.single_step_dim)
        assert out.dims == (batch, module.out_dim) and out.feature_dim is module.out_dim
        assert state.h.dims == (batch, module.out_dim)
        outs.append(out.numpy())
    return np.stack(outs, 1), state


def test_lstm_single_steps_equal_numpy(backend, case):
    rf.select_backend(backend.name)
    lstm = _module(rf.LSTM, case)
    out, state = _steps(lstm, case, Dim(BATCH, name="batch"))
    ref_out, ref_h, ref_c = numpy_lstm(case["x"], [FRAMES] * BATCH, case["h0"], case["c0"], case["ff"], case["rec"],
                                       case["bias"])  # fmt: skip
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.h.numpy(), ref_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.c.numpy(), ref_c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_zoneout_output", [True, False])
def test_zoneout_lstm_single_steps_equal_the_sequence_run(backend, case, use_zoneout_output):
    """In evaluation (no run context: no training), steps one by one equal one run over the whole sequence."""
    rf.select_backend(backend.name)
    lstm = _module(rf.ZoneoutLSTM, case, zoneout_factor_cell=0.15, zoneout_factor_output=0.05,
                   use_zoneout_output=use_zoneout_output, parts_order="icfo")  # fmt: skip
    batch, time = Dim(BATCH, name="batch"), Dim(FRAMES, name="time")
    out, state = _steps(lstm, case, batch)
    full_out, full_state = lstm(
        rf.convert_to_tensor(case["x"], dims=[batch, time, lstm.in_dim]),
        state=rf.LstmState(h=rf.convert_to_tensor(case["h0"], dims=[batch, lstm.out_dim]),
                           c=rf.convert_to_tensor(case["c0"], dims=[batch, lstm.out_dim])),
        spatial_dim=time,
    )  # fmt: skip
    np.testing.assert_allclose(out, full_out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.h.numpy(), full_state.h.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.c.numpy(), full_state.c.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(state.c.numpy(), numpy_lstm(case["x"], [FRAMES] * BATCH, case["h0"], case["c0"],
                                                       case["ff"], case["rec"], case["bias"])[2])  # fmt: skip


def test_default_initial_state_with_dynamic_batch_dim(backend, case):
    rf.select_backend(backend.name)
    lstm = _module(rf.LSTM, case)
    batch = Dim(None, name="batch")
    batch.dyn_size_ext = rf.convert_to_tensor(np.array(BATCH, "int32"), dims=[])
    state = lstm.default_initial_state(batch_dims=[batch])
    assert state.h.dims == (batch, lstm.out_dim) and state.c.dims == (batch, lstm.out_dim)
    assert state.h.feature_dim is lstm.out_dim
    np.testing.assert_array_equal(state.c.numpy(), np.zeros((BATCH, HIDDEN)))
    x = rf.convert_to_tensor(case["x"][:, 0], dims=[batch, lstm.in_dim])
    out, _ = lstm(x, state=state, spatial_dim=rf.single_step_dim)
    zeros = np.zeros((BATCH, HIDDEN), "float32")
    ref = numpy_lstm(case["x"][:, :1], [1] * BATCH, zeros, zeros, case["ff"], case["rec"], case["bias"])[0][:, 0]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_single_step_keeps_a_source_that_has_the_single_step_dim(backend, case):
    """A source that has ``single_step_dim`` itself runs over it (one frame) and keeps it."""
    rf.select_backend(backend.name)
    lstm = _module(rf.LSTM, case)
    batch = Dim(BATCH, name="batch")
    x = rf.convert_to_tensor(case["x"][:, :1], dims=[batch, rf.single_step_dim, lstm.in_dim])
    out, _ = lstm(x, spatial_dim=rf.single_step_dim)
    assert out.dims == (batch, rf.single_step_dim, lstm.out_dim)


def test_torch_compile_of_single_steps_has_no_graph_break(select, case):
    import torch

    select("torch")
    for cls in (rf.LSTM, rf.ZoneoutLSTM):
        module = _module(cls, case)
        batch = Dim(BATCH, name="batch")

        def step(x, h, c, module=module, batch=batch):
            state = rf.LstmState(h=rf.convert_to_tensor(h, dims=[batch, module.out_dim]),
                                 c=rf.convert_to_tensor(c, dims=[batch, module.out_dim]))  # fmt: skip
            out, state = module(rf.convert_to_tensor(x, dims=[batch, module.in_dim]), state=state,
                                spatial_dim=rf.single_step_dim)  # fmt: skip
            return out.raw_tensor, state.h.raw_tensor, state.c.raw_tensor

        compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
        args = [torch.tensor(case["x"][:, 0]), torch.tensor(case["h0"]), torch.tensor(case["c0"])]
        for ours, eager in zip(compiled(*args), step(*args)):
            np.testing.assert_allclose(ours.detach().numpy(), eager.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_tf_function_of_single_steps_equals_eager(select, case):
    import tensorflow as tf

    select("tensorflow")
    for cls in (rf.LSTM, rf.ZoneoutLSTM):
        module = _module(cls, case)
        batch = Dim(None, name="batch")

        def step(x, h, c, module=module, batch=batch):
            batch.dyn_size_ext = rf.convert_to_tensor(tf.shape(x)[0], dims=[])
            state = rf.LstmState(h=rf.convert_to_tensor(h, dims=[batch, module.out_dim]),
                                 c=rf.convert_to_tensor(c, dims=[batch, module.out_dim]))  # fmt: skip
            out, state = module(rf.convert_to_tensor(x, dims=[batch, module.in_dim]), state=state,
                                spatial_dim=rf.single_step_dim)  # fmt: skip
            return out.raw_tensor, state.h.raw_tensor, state.c.raw_tensor

        specs = [tf.TensorSpec([None, IN]), tf.TensorSpec([None, HIDDEN]), tf.TensorSpec([None, HIDDEN])]
        graph = tf.function(step, autograph=False, input_signature=specs)
        args = [tf.constant(case["x"][:, 0]), tf.constant(case["h0"]), tf.constant(case["c0"])]
        for ours, eager in zip(graph(*args), step(*args)):
            np.testing.assert_allclose(ours.numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
        ref = numpy_lstm(case["x"][:, :1], [1] * BATCH, case["h0"], case["c0"], case["ff"], case["rec"],
                         case["bias"])  # fmt: skip
        if cls is rf.LSTM:
            np.testing.assert_allclose(graph(*args)[2].numpy(), ref[2], rtol=1e-5, atol=1e-6)
