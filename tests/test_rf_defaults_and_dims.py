"""RETURNN's small helpers: the default dtypes, ``get_selected_backend``/``is_executing_eagerly`` (also inside
``tf.function``), ``linspace_over_dim`` and ``last_frame_position_of_dim`` (numpy references), and
``ctc_greedy_decode`` (against a per-sequence Python best path)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


def test_default_dtypes_and_the_selected_backend(backend):
    assert (rf.get_default_float_dtype(), rf.get_default_int_dtype()) == ("float32", "int32")
    assert rf.get_default_array_index_dtype() == "int32"
    dtypes = ("float16", "bfloat16", "float64", "int32", "bool")
    assert [rf.is_float_dtype(d) for d in dtypes] == [True, True, True, False, False]
    assert rf.get_selected_backend() == backend.name == rf.get_backend_name()
    assert rf.is_executing_eagerly()
    assert rf.convert_to_tensor(1.5).dtype == rf.get_default_float_dtype()


def test_is_executing_eagerly_is_false_while_tensorflow_traces(select):
    tf = pytest.importorskip("tensorflow")
    select("tensorflow")
    seen = []

    @tf.function
    def traced(x):
        seen.append(rf.is_executing_eagerly())
        return x + 1

    traced(tf.constant(1.0))
    assert seen == [False] and rf.is_executing_eagerly()


def test_linspace_over_static_and_dynamic_dims(backend):
    five = Dim(5, name="five")
    np.testing.assert_allclose(rf.linspace_over_dim(five).numpy(), np.arange(5) / 5, rtol=1e-6)
    np.testing.assert_allclose(rf.linspace_over_dim(five, 2.0, 4.0).numpy(), 2.0 + 2.0 * np.arange(5) / 5, rtol=1e-6)
    batch = Dim(2, name="batch")
    lens = np.array([4, 2])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    got = rf.linspace_over_dim(time, dtype="float64").copy_transpose([batch, time]).numpy()
    np.testing.assert_allclose(got, np.arange(4)[None, :] / lens[:, None], rtol=1e-12)
    with pytest.raises(ValueError, match="dtype must be a float dtype"):
        rf.linspace_over_dim(five, dtype="int32")


def test_last_frame_position_of_dim(backend):
    assert rf.last_frame_position_of_dim(Dim(5, name="five")) == 4
    assert rf.last_frame_position_of_dim(Dim(0, name="none")) == 0
    batch = Dim(3, name="batch")
    time = Dim(rf.convert_to_tensor(np.array([4, 1, 0], "int32"), dims=[batch]), name="time")
    last = rf.last_frame_position_of_dim(time)
    assert last.sparse_dim is time
    np.testing.assert_array_equal(last.numpy(), [3, 0, 0])


def _best_path(scores: np.ndarray, blank: int) -> list[int]:
    best = scores.argmax(-1)
    return [int(k) for k, _ in itertools.groupby(best) if k != blank]


def test_ctc_greedy_decode_merges_repeats_and_removes_blanks(backend, rng):
    batch, classes = Dim(3, name="batch"), Dim(4, name="classes")
    lens = np.array([6, 3, 1])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    scores = rng.normal(size=(3, 6, 4))
    scores[0, :, :] = -5.0
    scores[0, np.arange(6), [1, 1, 3, 3, 1, 3]] = 5.0  # repeats merged: 1 3 1 3; frames after the length ignored
    scores[0, 3, [3, 2]] = [-5.0, 5.0]  # ... 1 1 3 2 1 3
    logits = rf.convert_to_tensor(scores, dims=[batch, time, classes], feature_dim=classes)
    for blank in (0, 3):
        labels, out_dim = rf.ctc_greedy_decode(logits, in_spatial_dim=time, blank_index=blank)
        assert labels.dtype == "int32" and labels.sparse_dim is classes
        got = labels.copy_transpose([batch, out_dim]).numpy()
        sizes = out_dim.dyn_size_ext.copy_transpose([batch]).numpy()
        for b in range(3):
            assert got[b, : sizes[b]].tolist() == _best_path(scores[b, : lens[b]], blank)
    target = Dim(3, name="target")
    labels, _ = rf.ctc_greedy_decode(logits, in_spatial_dim=time, blank_index=3, target_dim=target)
    assert labels.sparse_dim is target
    with pytest.raises(ValueError, match="target_dim needs the blank last"):
        rf.ctc_greedy_decode(logits, in_spatial_dim=time, blank_index=0, target_dim=target)


def test_range_over_dim_strided_and_merged_dims(backend):
    seven = Dim(7, name="seven")
    values, out_dim = rf.range_over_dim_strided(seven, stride=3)
    assert out_dim.dimension == 3
    np.testing.assert_array_equal(values.numpy(), [0, 3, 6])
    rows, cols = Dim(2, name="rows"), Dim(3, name="cols")
    merged = rf.range_over_merged_dims([rows, cols])
    assert merged.dims == (rows, cols) and merged.sparse_dim.dimension == 6
    np.testing.assert_array_equal(merged.numpy(), np.arange(6).reshape(2, 3))
    batch = Dim(2, name="batch")
    time = Dim(rf.convert_to_tensor(np.array([5, 2], "int32"), dims=[batch]), name="time")
    values, out_dim = rf.range_over_dim_strided(time, stride=2)
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), [3, 1])  # ceil(5 / 2), ceil(2 / 2)


def test_cum_concat_step_appends_a_frame_per_sequence(backend, rng):
    batch, feat = Dim(2, name="batch"), Dim(3, name="feat")
    lens = np.array([2, 1])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    prev, new = rng.normal(size=(2, 2, 3)), rng.normal(size=(2, 3))
    out, out_dim = rf.cum_concat_step(rf.convert_to_tensor(new, dims=[batch, feat]),
                                      prev_accum=rf.convert_to_tensor(prev, dims=[batch, time, feat]), axis=time)
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), lens + 1)
    got = out.copy_transpose([batch, out_dim, feat]).numpy()
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(got[b, : n + 1], np.concatenate([prev[b, :n], new[b : b + 1]]))


def test_sequential_applies_modules_and_functions_in_order(backend, rng):
    feat = Dim(3, name="feat")
    x = rf.convert_to_tensor(rng.normal(size=3), dims=[feat])
    out = rf.sequential(x, lambda t: t * 2.0, rf.relu, lambda t: t + 1.0)
    np.testing.assert_allclose(out.numpy(), np.maximum(x.numpy() * 2, 0) + 1, rtol=1e-12)


def test_calc_conv_out_length_matches_pytorchs_formula_for_ints_tensors_and_dims(backend):
    for length, size, stride, pad, dilation in itertools.product([1, 7, 16], [1, 3, 4], [1, 2, 3], [0, 1, 2], [1, 2]):
        expected = max((length + 2 * pad - dilation * (size - 1) - 1) // stride + 1, 0)  # torch.nn.Conv1d's docs
        got = rf.calc_conv_out_length(length, filter_size=size, stride=stride, padding=pad, dilation_rate=dilation)
        assert got == expected, (length, size, stride, pad, dilation)
        same = rf.calc_conv_out_length(length, filter_size=size, stride=stride, padding="same")
        assert same == -(-length // stride)
    batch = Dim(3, name="batch")
    lengths = np.array([7, 2, 16])
    tensor = rf.calc_conv_out_length(rf.convert_to_tensor(lengths.astype("int32"), dims=[batch]), filter_size=3,
                                     stride=2, padding="valid")  # fmt: skip
    np.testing.assert_array_equal(tensor.numpy(), np.maximum(lengths - 2, 0) // 2 + (np.maximum(lengths - 2, 0) % 2))
    time = Dim(rf.convert_to_tensor(lengths.astype("int32"), dims=[batch]), name="time")
    out_dim = rf.calc_conv_out_length(time, filter_size=3, stride=2, padding="valid", name="conv_time")
    assert out_dim.name == "conv_time"
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), tensor.numpy())
    assert rf.calc_conv_out_length(time, filter_size=3, stride=1, padding="same") is time
