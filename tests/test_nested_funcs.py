"""rf.nested.masked_select_nested / masked_scatter_nested on every backend, against numpy: the packed structure
holds the selected rows with packed sizes, scattering it back restores the data, and a backup with another dim
merges both dims into one whose sizes come from either side by the mask."""

from __future__ import annotations

import numpy as np

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

MASK = np.array([True, False, True, False])


def _dims(lens, name):
    batch = Dim(4, name="batch")
    return batch, Dim(rf.convert_to_tensor(np.asarray(lens, dtype="int32"), dims=[batch]), name=name)


def _padded(rng, lens, feat=2):
    x = rng.standard_normal((len(lens), max(lens), feat)).astype("float32")
    x[np.arange(max(lens))[None, :] >= np.asarray(lens)[:, None]] = 0.0
    return x


def test_masked_select_nested_packs_rows_and_their_sizes_and_scatters_back(backend, rng):
    lens = [3, 5, 2, 4]
    batch, time = _dims(lens, "time")
    feat = Dim(2, name="feat")
    x = _padded(rng, lens)
    data = rf.convert_to_tensor(x, dims=[batch, time, feat])
    mask = rf.convert_to_tensor(MASK, dims=[batch])
    (sel, sel_time), packed, dim_map = rf.nested.masked_select_nested((data, time), mask=mask, dims=[batch])
    assert dim_map == {time: sel_time} and sel_time.name == "time_1"
    np.testing.assert_array_equal(sel_time.dyn_size_ext.numpy(), [3, 2])
    assert set(sel.dims) == {packed, sel_time, feat}
    np.testing.assert_array_equal(sel.copy_transpose([packed, sel_time, feat]).numpy(), x[MASK][:, :3])
    out, out_time = rf.nested.masked_scatter_nested(
        (sel * 2.0, sel_time), (data, time), mask=mask, mask_cpu=mask, dims=[batch], in_dim=packed,
        masked_select_dim_map=dim_map)  # fmt: skip
    assert out_time is time
    np.testing.assert_allclose(out.copy_transpose([batch, time, feat]).numpy(), np.where(MASK[:, None, None], 2 * x, x))


def test_masked_scatter_nested_merges_two_branches_of_other_lengths(backend, rng):
    lens_a, lens_b = [3, 1, 2, 4], [1, 5, 2, 2]
    batch = Dim(4, name="batch")
    time_a = Dim(rf.convert_to_tensor(np.asarray(lens_a, dtype="int32"), dims=[batch]), name="time_a")
    time_b = Dim(rf.convert_to_tensor(np.asarray(lens_b, dtype="int32"), dims=[batch]), name="time_b")
    feat = Dim(2, name="feat")
    xa, xb = _padded(rng, lens_a), _padded(rng, lens_b)
    a, b = rf.convert_to_tensor(xa, dims=[batch, time_a, feat]), rf.convert_to_tensor(xb, dims=[batch, time_b, feat])
    mask_a = rf.convert_to_tensor(MASK, dims=[batch])
    mask_b = rf.logical_not(mask_a)
    (sel_a, sel_a_dim), a_dim, map_a = rf.nested.masked_select_nested((a, time_a), mask=mask_a, dims=[batch])
    (sel_b, sel_b_dim), b_dim, map_b = rf.nested.masked_select_nested((b, time_b), mask=mask_b, dims=[batch])
    stub_dim = Dim(rf.zeros([batch], dtype="int32"), name="stub")
    stub = rf.zeros([batch, stub_dim, feat])
    half, half_dim = rf.nested.masked_scatter_nested((sel_a, sel_a_dim), (stub, stub_dim), mask=mask_a,
                                                     mask_cpu=mask_a, dims=[batch], in_dim=a_dim,
                                                     masked_select_dim_map=map_a)  # fmt: skip
    out, out_dim = rf.nested.masked_scatter_nested((sel_b, sel_b_dim), (half, half_dim), mask=mask_b,
                                                   mask_cpu=mask_b, dims=[batch], in_dim=b_dim,
                                                   masked_select_dim_map=map_b)  # fmt: skip
    lens = np.where(MASK, lens_a, lens_b)
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), lens)
    got = out.copy_transpose([batch, out_dim, feat]).numpy()
    for i, n in enumerate(lens):
        np.testing.assert_array_equal(got[i, :n], (xa if MASK[i] else xb)[i, :n])


def test_nested_structures_keep_their_shape_and_leave_other_tensors(backend):
    batch = Dim(4, name="batch")
    mask = rf.convert_to_tensor(MASK, dims=[batch])
    scalar = rf.convert_to_tensor(np.float32(3.0))
    per_row = rf.convert_to_tensor(np.arange(4, dtype="float32"), dims=[batch])
    out, packed, _ = rf.nested.masked_select_nested({"s": scalar, "r": [per_row, None]}, mask=mask, dims=[batch])
    assert out["s"] is scalar and out["r"][1] is None
    np.testing.assert_array_equal(out["r"][0].numpy(), [0.0, 2.0])
    assert out["r"][0].dims == (packed,)
