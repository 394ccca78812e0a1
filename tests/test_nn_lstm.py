"""rf.LSTM: against torch.nn.LSTM on packed sequences, Keras's LSTM layer with a mask, numpy, and across backends."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import (
    numpy_lstm,
    outputs_and_grads,
    padded_dims,
    restore_global_state,  # noqa: F401 (an autouse fixture)
    time_mask,
)

IN, HIDDEN = 3, 5
LENGTHS = [7, 4, 1, 6]


@pytest.fixture(scope="module")
def case():
    """Inputs with garbage (not zeros) in the padding, weights of the scale the kernels see in training."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(len(LENGTHS), max(LENGTHS), IN)).astype("float32")
    x[~time_mask(LENGTHS, x.shape[1])] = 1e3
    return {
        "x": x,
        "h0": rng.normal(size=(len(LENGTHS), HIDDEN)).astype("float32"),
        "c0": rng.normal(size=(len(LENGTHS), HIDDEN)).astype("float32"),
        "ff": rng.normal(scale=0.5, size=(4 * HIDDEN, IN)).astype("float32"),
        "rec": rng.normal(scale=0.5, size=(4 * HIDDEN, HIDDEN)).astype("float32"),
        "bias": rng.normal(scale=0.5, size=4 * HIDDEN).astype("float32"),
    }


def _run_ours(name: str, case: dict, reverse: bool, lengths=LENGTHS):
    """:return: outputs (out, h, c) and gradients (inputs x, h0, c0; parameters) of our LSTM on backend ``name``"""
    rf.select_backend(name)
    in_dim, out_dim = Dim(IN, name="in"), Dim(HIDDEN, name="out")
    lstm = rf.LSTM(in_dim, out_dim, reverse=reverse)
    for key in ("ff", "rec", "bias"):
        getattr(lstm, "bias" if key == "bias" else f"{key}_weight").assign(case[key])
    batch, time = padded_dims(lengths)

    def fn(x, h0, c0):
        source = rf.convert_to_tensor(x, dims=[batch, time, in_dim], feature_dim=in_dim)
        state = rf.LstmState(h=rf.convert_to_tensor(h0, dims=[batch, out_dim]),
                             c=rf.convert_to_tensor(c0, dims=[batch, out_dim]))  # fmt: skip
        out, new_state = lstm(source, state=state, spatial_dim=time)
        assert out.dims == (batch, time, out_dim) and out.feature_dim is out_dim
        return [out, new_state.h, new_state.c]

    return outputs_and_grads(name, fn, [case["x"], case["h0"], case["c0"]], lstm)


def _torch_reference(case: dict, reverse: bool):
    """torch.nn.LSTM on packed sequences; for reverse, the backward half of a bidirectional LSTM."""
    import torch

    ref = torch.nn.LSTM(IN, HIDDEN, batch_first=True, bidirectional=reverse)
    suffix = "_reverse" if reverse else ""
    with torch.no_grad():
        for name, value in (("weight_ih", case["ff"]), ("weight_hh", case["rec"]), ("bias_ih", case["bias"])):
            getattr(ref, f"{name}_l0{suffix}").copy_(torch.tensor(value))
        getattr(ref, f"bias_hh_l0{suffix}").zero_()
    x, h0, c0 = (torch.tensor(case[k], requires_grad=True) for k in ("x", "h0", "c0"))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
    zeros = torch.zeros(1, len(LENGTHS), HIDDEN)
    state = (torch.cat([zeros, h0[None]]), torch.cat([zeros, c0[None]])) if reverse else (h0[None], c0[None])
    out, (h, c) = ref(packed, state)
    out = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]
    outs = [out[..., HIDDEN:] if reverse else out, h[-1], c[-1]]
    rng = np.random.default_rng(0)  # the same upstream weights as outputs_and_grads
    weights = [torch.tensor(rng.normal(size=o.shape).astype("float32")) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    param_grads = {
        "ff_weight": getattr(ref, f"weight_ih_l0{suffix}").grad,
        "rec_weight": getattr(ref, f"weight_hh_l0{suffix}").grad,
        "bias": getattr(ref, f"bias_ih_l0{suffix}").grad,
    }
    return [o.detach().numpy() for o in outs], [v.grad.numpy() for v in (x, h0, c0)], param_grads


def _assert_close(ours, ref, atol=1e-5):
    for (out, x_grads, p_grads), (r_out, r_x_grads, r_p_grads) in [(ours, ref)]:
        for a, b in zip(out + x_grads, r_out + r_x_grads):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)
        for key, value in r_p_grads.items():
            np.testing.assert_allclose(p_grads[key], np.asarray(value), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_torch_backend_equals_torch_nn_lstm_on_packed_sequences(case, reverse):
    _assert_close(_run_ours("torch", case, reverse), _torch_reference(case, reverse))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_tensorflow_backend_equals_keras_lstm_with_mask(case, reverse):
    import keras
    import tensorflow as tf

    layer = keras.layers.LSTM(HIDDEN, return_sequences=True, return_state=True, go_backwards=reverse)
    layer.build((None, None, IN))
    layer.set_weights([case["ff"].T, case["rec"].T, case["bias"]])
    x, h0, c0 = (tf.constant(case[k]) for k in ("x", "h0", "c0"))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        out, h, c = layer(x, mask=time_mask(LENGTHS, x.shape[1]), initial_state=[h0, c0])
        out = out[:, ::-1] if reverse else out  # Keras returns the reversed sequence
        out = tf.where(time_mask(LENGTHS, x.shape[1])[:, :, None], out, 0.0)  # Keras repeats the last output there
        rng = np.random.default_rng(0)
        total = sum(tf.reduce_sum(o * rng.normal(size=o.shape).astype("float32")) for o in (out, h, c))
    kernel, recurrent, bias = layer.trainable_weights
    grads = [np.asarray(g) for g in tape.gradient(total, [x, h0, c0, kernel, recurrent, bias])]
    reference = (
        [out.numpy(), h.numpy(), c.numpy()],
        grads[:3],
        {"ff_weight": grads[3].T, "rec_weight": grads[4].T, "bias": grads[5]},
    )
    _assert_close(_run_ours("tensorflow", case, reverse), reference)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_torch_and_tensorflow_backends_agree_within_1e_5(case, reverse):
    torch_result, tf_result = _run_ours("torch", case, reverse), _run_ours("tensorflow", case, reverse)
    _assert_close(torch_result, (tf_result[0], tf_result[1], tf_result[2]))


def test_equals_the_numpy_formula_and_padding_gets_no_gradient(backend, case):
    (out, h, c), (gx, _, _), _ = _run_ours(backend.name, case, reverse=False)
    params = [case[k] for k in ("h0", "c0", "ff", "rec", "bias")]
    ref_out, ref_h, ref_c = numpy_lstm(case["x"], LENGTHS, *params)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-6)
    padding = ~time_mask(LENGTHS, case["x"].shape[1])
    assert (out[padding] == 0).all() and (gx[padding] == 0).all()


def test_empty_sequence_keeps_the_initial_state(backend, case):
    lengths = [7, 0, 2, 6]
    (out, h, c), _, _ = _run_ours(backend.name, case, reverse=True, lengths=lengths)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_allclose(h[1], case["h0"][1], rtol=1e-6)
    np.testing.assert_allclose(c[1], case["c0"][1], rtol=1e-6)
    ref = numpy_lstm(case["x"], lengths, case["h0"], case["c0"], case["ff"], case["rec"], case["bias"], reverse=True)
    np.testing.assert_allclose(out, ref[0], rtol=1e-5, atol=1e-6)


def test_engine_style_dims_several_batch_dims_and_default_state(backend, rng):
    """Time Dim(None) with sizes set per batch over the global batch_dim (scalar size), an extra batch dim the
    lengths do not vary along, state=None and default_initial_state all give the numpy result."""
    rf.set_random_seed(5)
    in_dim, out_dim, beam = Dim(IN, name="in"), Dim(HIDDEN, name="out"), Dim(2, name="beam")
    lstm = rf.LSTM(in_dim, out_dim)
    time = Dim(None, name="time")
    rf.batch_dim.dyn_size_ext = rf.convert_to_tensor(np.int32(3))
    time.dyn_size_ext = rf.convert_to_tensor(np.array([4, 2, 3], "int32"), dims=[rf.batch_dim])
    x = rng.normal(size=(2, 4, 3, IN)).astype("float32")
    source = rf.convert_to_tensor(x, dims=[beam, time, rf.batch_dim, in_dim])
    out, state = lstm(source, spatial_dim=time)
    out2, _ = lstm(source, state=lstm.default_initial_state(batch_dims=[rf.batch_dim, beam]), spatial_dim=time)
    params = [p.numpy() for p in (lstm.ff_weight, lstm.rec_weight, lstm.bias)]
    flat = x.transpose(0, 2, 1, 3).reshape(6, 4, IN)
    ref_out, ref_h, _ = numpy_lstm(flat, [4, 2, 3] * 2, np.zeros((6, HIDDEN)), np.zeros((6, HIDDEN)), *params)
    got = out.copy_transpose([beam, rf.batch_dim, time, out_dim]).numpy().reshape(6, 4, HIDDEN)
    np.testing.assert_allclose(got, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out2.copy_transpose(out.dims).numpy(), out.numpy(), rtol=1e-6)
    np.testing.assert_allclose(state.h.copy_transpose([beam, rf.batch_dim, out_dim]).numpy().reshape(6, -1), ref_h,
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_tensorflow_lstm_inside_tf_function_equals_eager(case):
    import tensorflow as tf

    rf.select_backend("tensorflow")
    in_dim, out_dim = Dim(IN, name="in"), Dim(HIDDEN, name="out")
    lstm = rf.LSTM(in_dim, out_dim, reverse=True)
    batch, time = Dim(len(LENGTHS), name="batch"), Dim(None, name="time")

    def step(x, lengths):
        time.dyn_size_ext = rf.convert_to_tensor(lengths, dims=[batch])
        with tf.GradientTape() as tape:
            out, _ = lstm(rf.convert_to_tensor(x, dims=[batch, time, in_dim]), spatial_dim=time)
            total = tf.reduce_sum(out.raw_tensor**2)
        return out.raw_tensor, tape.gradient(total, lstm.ff_weight.raw_tensor)

    signature = [tf.TensorSpec([len(LENGTHS), None, IN], tf.float32), tf.TensorSpec([len(LENGTHS)], tf.int32)]
    args = (tf.constant(case["x"]), tf.constant(LENGTHS, tf.int32))
    eager, compiled = step(*args), tf.function(step, input_signature=signature)(*args)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_bad_input_gets_errors_naming_the_argument(backend):
    in_dim, out_dim, other = Dim(IN, name="in"), Dim(HIDDEN, name="out"), Dim(4, name="other")
    lstm = rf.LSTM(in_dim, out_dim)
    batch, time = padded_dims([2, 1])
    x = rf.convert_to_tensor(np.zeros((2, 2, 4), "float32"), dims=[batch, time, other])
    with pytest.raises(ValueError, match="LSTM: source .* does not have in_dim"):
        lstm(x, spatial_dim=time)
    x = rf.convert_to_tensor(np.zeros((2, 2, IN), "float32"), dims=[batch, time, in_dim])
    with pytest.raises(ValueError, match="does not have spatial_dim"):
        lstm(x, spatial_dim=other)
    with pytest.raises(TypeError, match="LSTM: state must be an rf.LstmState"):
        lstm(x, state=(1, 2), spatial_dim=time)
    bad = rf.LstmState(h=rf.convert_to_tensor(np.zeros(4, "float32"), dims=[other]), c=None)
    with pytest.raises(ValueError, match="state.h .* must have out_dim"):
        lstm(x, state=bad, spatial_dim=time)
    with pytest.raises(ValueError, match="LSTM: out_dim must be a static Dim"):
        rf.LSTM(in_dim, time)


def test_a_batch_without_frames_keeps_the_state(backend, case):
    in_dim, out_dim = Dim(IN, name="in"), Dim(HIDDEN, name="out")
    lstm = rf.LSTM(in_dim, out_dim)
    batch, time = padded_dims([0, 0])
    state = rf.LstmState(h=rf.convert_to_tensor(case["h0"][:2], dims=[batch, out_dim]),
                         c=rf.convert_to_tensor(case["c0"][:2], dims=[batch, out_dim]))  # fmt: skip
    out, new_state = lstm(rf.convert_to_tensor(np.zeros((2, 0, IN), "float32"), dims=[batch, time, in_dim]),
                          state=state, spatial_dim=time)  # fmt: skip
    assert out.numpy().shape == (2, 0, HIDDEN)
    np.testing.assert_array_equal(new_state.h.numpy(), case["h0"][:2])
    np.testing.assert_array_equal(new_state.c.numpy(), case["c0"][:2])


def test_tensorflow_lstm_in_float64_is_refused_with_a_clear_error():
    rf.select_backend("tensorflow")
    in_dim, time = Dim(IN, name="in"), Dim(2, name="time")
    lstm = rf.LSTM(in_dim, Dim(HIDDEN, name="out"))
    x = rf.convert_to_tensor(np.zeros((2, IN)), dims=[time, in_dim], dtype="float64")
    with pytest.raises(TypeError, match="LSTM: TensorFlow's fused LSTM kernel supports float32 and float16"):
        lstm(x, spatial_dim=time)
