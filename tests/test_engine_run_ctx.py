"""The run context's API besides the reductions (those are compared with RETURNN in test_engine_returnn.py)."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim, TensorDict, batch_dim


@pytest.fixture(autouse=True)
def _reset():
    yield
    rf.reset_run_ctx()


def test_epoch_step_and_train_flag_of_a_step(backend):
    assert rf.get_run_ctx().stage == "init" and rf.get_run_ctx().train_flag is False
    ctx = rf.init_train_step_run_ctx(train_flag=True, step=17, epoch=3)
    assert rf.get_run_ctx() is ctx and (ctx.epoch, ctx.step, ctx.train_flag) == (3, 17, True)
    assert ctx.accessed == {"epoch", "step"}  # a compiled step depends on what the model code read
    with ctx.train_flag_ctx(False):
        assert not rf.get_run_ctx().train_flag
    assert ctx.train_flag and int(ctx.get_epoch_tensor().numpy()) == 3


def test_mark_as_loss_errors_name_the_problem(backend):
    loss = rf.convert_to_tensor(np.ones(3, np.float32), dims=[Dim(3)])
    with pytest.raises(
        RuntimeError, match=r"mark_as_loss\('ce'\) is only possible in a train_step, not in stage 'init'"
    ):
        loss.mark_as_loss("ce")
    ctx = rf.init_train_step_run_ctx()
    with pytest.raises(ValueError, match="train_step marked no loss"):
        ctx.total_loss()
    loss.mark_as_loss("ce")
    with pytest.raises(ValueError, match="a loss named 'ce' was already marked"):
        loss.mark_as_loss("ce")
    with pytest.raises(TypeError, match=f"expected a Tensor or a raw tensor of the backend '{backend.name}', got list"):
        ctx.mark_as_loss([1.0], "list")
    (loss * 2.0).mark_as_loss("scaled_out", scale=0.0)
    (loss * 3.0).mark_as_loss("err", as_error=True)
    np.testing.assert_allclose(ctx.total_loss().numpy(), 3.0)  # only "ce": errors and scale 0 are reported only


def test_mark_as_output_in_a_forward_step(backend):
    time, vocab = Dim(2, name="time"), Dim(3, name="vocab")
    batch_dim.dyn_size_ext = rf.convert_to_tensor(np.int32(1), dims=())
    x = rf.convert_to_tensor(np.arange(6, dtype=np.float32).reshape(1, 3, 2), dims=[batch_dim, vocab, time])
    expected = TensorDict({"output": x})
    ctx = rf.init_forward_step_run_ctx(expected_outputs=expected)
    x.mark_as_default_output(shape=(batch_dim, time, vocab))
    out = ctx.outputs["output"]
    assert out.dims == (batch_dim, time, vocab)
    np.testing.assert_array_equal(out.numpy(), np.arange(6).reshape(1, 3, 2).transpose(0, 2, 1))
    ctx.check_outputs_complete()
    with pytest.raises(ValueError, match="unexpected output 'other'"):
        ctx.mark_as_output(x, "other")
    with pytest.raises(RuntimeError, match="only possible in a train_step"):
        x.mark_as_loss("ce")
