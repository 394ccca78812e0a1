"""``rf.cond``, ``rf.while_loop`` and ``rf.scan`` against plain numpy loops, on both backends: a cumulative
recurrence over a padded dim (each sequence's final state at its own end), a loop until a condition per batch
entry (lengths, and the state kept from before the step where an entry stops), and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


def test_cond_and_while_loop(backend):
    x = rf.convert_to_tensor(np.float32(3.0))
    assert rf.cond(x > 2.0, lambda: "yes", lambda: "no") == "yes"
    assert rf.cond(False, lambda: "yes", lambda: "no") == "no"
    final = rf.while_loop(lambda s: s[0] < 5, lambda s: (s[0] + 1, s[1] * 2.0), (0, x))
    assert final[0] == 5 and float(final[1].numpy()) == 96.0
    with pytest.raises(TypeError, match="scalar bool Tensor"):
        rf.cond(rf.convert_to_tensor(np.array([True, False]), dims=[Dim(2, name="two")]), lambda: 1, lambda: 2)


def test_scan_over_a_padded_dim_equals_a_numpy_recurrence(backend, rng):
    batch, feat = Dim(3, name="batch"), Dim(2, name="feat")
    lens = np.array([5, 2, 4])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    x = rng.normal(size=(3, 5, 2))

    def body(frame, state):  # h = 0.5 * h + x_t; output h * 2
        h = state["h"] * 0.5 + frame
        return {"y": h * 2.0, "none": None}, {"h": h}

    initial = {"h": rf.convert_to_tensor(np.zeros((3, 2)), dims=[batch, feat])}
    xs = rf.convert_to_tensor(x, dims=[batch, time, feat])
    ys, final, out_dim = rf.scan(spatial_dim=time, initial=initial, xs=xs, body=body)
    assert out_dim is time and ys["none"] is None
    h, ref_y, ref_final = np.zeros((3, 2)), np.zeros((3, 5, 2)), np.zeros((3, 2))
    for t in range(5):
        h = 0.5 * h + x[:, t]
        ref_y[:, t] = 2 * h
        ref_final[lens == t + 1] = h[lens == t + 1]
    got = ys["y"].copy_transpose([batch, time, feat]).numpy()
    for b, n in enumerate(lens):
        np.testing.assert_allclose(got[b, :n], ref_y[b, :n], rtol=1e-12)
    np.testing.assert_allclose(final["h"].copy_transpose([batch, feat]).numpy(), ref_final, rtol=1e-12)


@pytest.mark.parametrize("cond_before_body", [True, False])
def test_scan_until_a_condition_per_entry(backend, cond_before_body):
    batch = Dim(3, name="batch")
    limits = np.array([3, 0, 5])
    limit = rf.convert_to_tensor(limits.astype("int32"), dims=[batch])

    def body(_, count):  # count up; output the new count
        new = count + 1
        return new, new

    initial = rf.convert_to_tensor(np.zeros(3, "int32"), dims=[batch])
    ys, final, out_dim = rf.scan(cond_dims=[batch], cond_before_body=cond_before_body, cond=lambda _, c: c < limit,
                                 initial=initial, body=body)  # fmt: skip
    # Python reference of RETURNN's semantics: an entry runs while cond holds (checked before the first step only
    # with cond_before_body); the step where cond turns false counts, but its state is not kept
    ref_len, ref_final = [], []
    for lim in limits:
        count, steps, running = 0, 0, (0 < lim) if cond_before_body else True
        while running:
            steps += 1
            running = count + 1 < lim
            count = count + 1 if running else count
        ref_len.append(steps)
        ref_final.append(count)
    np.testing.assert_array_equal(out_dim.dyn_size_ext.copy_transpose([batch]).numpy(), ref_len)
    np.testing.assert_array_equal(final.copy_transpose([batch]).numpy(), ref_final)
    got = ys.copy_transpose([batch, out_dim]).numpy()
    for b, n in enumerate(ref_len):
        np.testing.assert_array_equal(got[b, :n], np.arange(1, n + 1))


def test_scan_max_seq_len_and_bad_arguments(backend):
    batch = Dim(2, name="batch")
    initial = rf.convert_to_tensor(np.zeros(2, "int32"), dims=[batch])
    _, _, out_dim = rf.scan(cond_dims=[batch], cond=lambda _, c: c >= 0, initial=initial,
                            body=lambda _, c: (c, c + 1), max_seq_len=4)  # fmt: skip
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), [4, 4])
    with pytest.raises(ValueError, match="give cond and cond_dims"):
        rf.scan(initial=initial, body=lambda _, c: (c, c))
    with pytest.raises(ValueError, match="ran no step"):
        rf.scan(cond_dims=[batch], cond=lambda _, c: c < 0, initial=initial, body=lambda _, c: (c, c))
    with pytest.raises(ValueError, match="return_tensor_arrays=True is not supported"):
        rf.scan(spatial_dim=batch, initial=initial, body=lambda _, c: (c, c), return_tensor_arrays=True)


def test_a_traced_condition_in_tf_function_is_an_error_naming_the_fix(select):
    tf = pytest.importorskip("tensorflow")
    select("tensorflow")

    @tf.function
    def traced(x):
        return rf.cond(rf.convert_to_tensor(x) > 0.0, lambda: 1, lambda: 2)

    with pytest.raises(ValueError, match="use tf.cond/tf.while_loop"):
        traced(tf.constant(1.0))
