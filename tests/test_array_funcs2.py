"""rf.pad_packed, rf.pack_padded with sizes varying along dims not packed, rf.replace_dim(_v2), rf.set_sparse_dim,
rf.repeat, rf.compare(_bc), the logical operations, a Dim from sizes with a sparse dim and masked integer reductions,
on every backend, against numpy references."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import padded_dims, restore_global_state, time_mask  # noqa: F401 (an autouse fixture)

LENS = [4, 1, 3]
T = 5


def _nested_case(rng):
    """:return: batch, hyps (static), a hyps-spatial dim with sizes over [batch, hyps], data [B, H, S], sizes"""
    batch, hyps = Dim(2, name="batch"), Dim(3, name="hyps")
    sizes = np.array([[2, 0, 3], [1, 3, 2]], dtype="int32")
    spatial = Dim(rf.convert_to_tensor(sizes, dims=[batch, hyps]), name="hyps_spatial")
    x = rng.integers(1, 100, (2, 3, 4)).astype("int32")
    return batch, hyps, spatial, x, sizes


def test_pack_padded_with_sizes_varying_along_a_dim_not_packed_and_pad_packed_back(backend, rng):
    batch, hyps, spatial, x, sizes = _nested_case(rng)
    labels = rf.convert_to_tensor(x, dims=[batch, hyps, spatial])
    packed, packed_dim = rf.pack_padded(labels, dims=[hyps, spatial])
    assert packed.dims == (batch, packed_dim) and packed_dim.dyn_size_ext.dims == (batch,)
    np.testing.assert_array_equal(packed_dim.dyn_size_ext.numpy(), sizes.sum(1))
    out = packed.numpy()
    for b in range(2):
        ref = np.concatenate([x[b, h, : sizes[b, h]] for h in range(3)])
        np.testing.assert_array_equal(out[b, : len(ref)], ref)
    back = rf.pad_packed(packed, in_dim=packed_dim, dims=[hyps, spatial])
    assert set(back.dims) == {batch, hyps, spatial}
    valid = np.arange(3)[None, None, :] < sizes[:, :, None]  # unpacked to the largest size, 3 (the data had 4)
    np.testing.assert_array_equal(back.copy_transpose([batch, hyps, spatial]).numpy(), np.where(valid, x[..., :3], 0))


def test_pad_packed_inverts_pack_padded_over_batch_and_time(backend, rng):
    batch, time = padded_dims(LENS)
    feat = Dim(2, name="feat")
    x = rng.standard_normal((3, T, 2)).astype("float32")
    x_t = rf.convert_to_tensor(x, dims=[batch, time, feat])
    packed, packed_dim = rf.pack_padded(x_t, dims=[batch, time])
    assert packed.numpy().shape == (sum(LENS), 2)
    y = rf.pad_packed(packed, in_dim=packed_dim, dims=[batch, time])
    assert y.dims == (batch, time, feat)
    mask = time_mask(LENS, max(LENS))  # unpacked to the largest size
    np.testing.assert_array_equal(y.numpy(), np.where(mask[..., None], x[:, : max(LENS)], 0))
    with pytest.raises(TypeError, match="pad_packed: dims must be a non-empty sequence of Dims"):
        rf.pad_packed(packed, in_dim=packed_dim, dims=batch)


def test_replace_dim_keeps_data_and_replace_dim_v2_pads_or_cuts(backend, rng):
    batch, time = padded_dims(LENS)
    x = rng.standard_normal((3, T)).astype("float32")
    x_t = rf.convert_to_tensor(x, dims=[batch, time], feature_dim=time)
    y, new = rf.replace_dim(x_t, in_dim=time)
    assert y.dims == (batch, new) and new is not time and y.feature_dim is new
    np.testing.assert_array_equal(new.dyn_size_ext.numpy(), LENS)
    np.testing.assert_array_equal(y.numpy(), x)
    later = Dim(None, name="later")
    _, same = rf.replace_dim(x_t, in_dim=time, out_dim=later)
    assert same is later and later.dyn_size_ext is time.dyn_size_ext
    valid = np.where(time_mask(LENS, T), x, 0)
    longer = time + 2
    y = rf.replace_dim_v2(x_t, in_dim=time, out_dim=longer)
    assert y.dims == (batch, longer) and y.numpy().shape == (3, max(LENS) + 2)  # longer's length, not the buffer's
    np.testing.assert_array_equal(y.numpy(), np.pad(valid, [(0, 0), (0, 2)])[:, : max(LENS) + 2])
    short = Dim(3, name="short")
    np.testing.assert_array_equal(rf.replace_dim_v2(x_t, in_dim=time, out_dim=short).numpy(), valid[:, :3])
    with pytest.raises(ValueError, match="replace_dim_v2: not allowed to shrink"):
        rf.replace_dim_v2(x_t, in_dim=time, out_dim=short, allow_shrink=False)
    with pytest.raises(ValueError, match="replace_dim_v2: not allowed to expand"):
        rf.replace_dim_v2(x_t, in_dim=time, out_dim=longer, allow_expand=False)
    cond = rf.convert_to_tensor(time_mask(LENS, T) & (x > 0), dims=[batch, time])
    out = rf.replace_dim_v2(cond, in_dim=time, out_dim=longer)
    assert out.dtype == "bool"
    np.testing.assert_array_equal(out.numpy(), np.pad(time_mask(LENS, T) & (x > 0), [(0, 0), (0, 1)]))


def test_set_sparse_dim(backend):
    n, vocab = Dim(3, name="n"), Dim(9, name="vocab")
    x = rf.convert_to_tensor(np.array([1, 2, 8], dtype="int64"), dims=[n])
    assert rf.set_sparse_dim(x, vocab).sparse_dim is vocab and x.sparse_dim is None
    with pytest.raises(TypeError, match="set_sparse_dim"):
        rf.set_sparse_dim(rf.cast(x, "float32"), vocab)


def test_repeat_expands_each_frame_by_its_count(backend, rng):
    batch, time = padded_dims(LENS)
    feat = Dim(2, name="feat")
    x = rng.standard_normal((3, T, 2)).astype("float32")
    counts = rng.integers(0, 4, (3, T)).astype("int32")
    counts[0, 0] = 0  # a leading zero
    out, out_dim = rf.repeat(rf.convert_to_tensor(x, dims=[batch, time, feat]), in_spatial_dim=time,
                             repeats=rf.convert_to_tensor(counts, dims=[batch, time]))  # fmt: skip
    assert out.dims == (batch, out_dim, feat)
    ref_lens = [counts[b, :n].sum() for b, n in enumerate(LENS)]
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), ref_lens)
    got = out.numpy()
    for b, n in enumerate(LENS):
        np.testing.assert_array_equal(got[b, : ref_lens[b]], np.repeat(x[b, :n], counts[b, :n], axis=0))
    with pytest.raises(TypeError, match="repeat: repeats must be an integer Tensor"):
        rf.repeat(rf.convert_to_tensor(x, dims=[batch, time, feat]), in_spatial_dim=time,
                  repeats=rf.convert_to_tensor(counts.astype("float32"), dims=[batch, time]))  # fmt: skip


def test_repeat_gradient_sums_over_the_copies(backend, rng):
    batch, time = padded_dims(LENS)
    x = rng.standard_normal((3, T)).astype("float32")
    counts = rng.integers(0, 4, (3, T)).astype("int32")

    def fn(raw):
        out, _ = rf.repeat(rf.convert_to_tensor(raw, dims=[batch, time]), in_spatial_dim=time,
                           repeats=rf.convert_to_tensor(counts, dims=[batch, time]))  # fmt: skip
        return rf.reduce_sum(out, axis=out.dims)  # padding of the output is masked by the reduction

    _, (grad,) = backend.value_and_grad(fn, x)
    np.testing.assert_allclose(grad, np.where(time_mask(LENS, T), counts, 0))


def test_compare_bc_and_the_logical_operations(backend, rng):
    beam, vocab = Dim(3, name="beam"), Dim(5, name="vocab")
    idx = rng.integers(0, 5, 3).astype("int32")
    labels = rf.convert_to_tensor(idx, dims=[beam], sparse_dim=vocab)
    other = rf.compare_bc(labels, "!=", rf.range_over_dim(vocab))
    assert other.dims == (beam, vocab) and other.dtype == "bool"
    np.testing.assert_array_equal(other.numpy(), idx[:, None] != np.arange(5)[None, :])
    np.testing.assert_array_equal(rf.compare(labels, "less_equal", 2).numpy(), idx <= 2)
    flipped = rf.compare(labels, ">", rf.range_over_dim(vocab), dim_order=[vocab])
    assert flipped.dims == (vocab, beam)
    np.testing.assert_array_equal(flipped.numpy(), (idx[:, None] > np.arange(5)[None, :]).T)
    summed = rf.combine_bc(labels, "+", rf.range_over_dim(vocab))
    np.testing.assert_array_equal(summed.numpy(), idx[:, None] + np.arange(5)[None, :])
    a, b = other, rf.compare(labels, "==", 1)
    np.testing.assert_array_equal(rf.logical_not(a).numpy(), ~other.numpy())
    np.testing.assert_array_equal(rf.logical_and(a, b).numpy(), other.numpy() & (idx == 1)[:, None])
    np.testing.assert_array_equal(rf.logical_or(a, b).numpy(), other.numpy() | (idx == 1)[:, None])
    assert rf.opt_logical_and(True, b) is b and rf.opt_logical_and(b, False) is False
    assert rf.opt_logical_or(False, b) is b and rf.opt_logical_or(b, True) is True
    with pytest.raises(ValueError, match="compare: kind must be one of"):
        rf.compare(labels, "<>", 1)
    with pytest.raises(TypeError, match="logical_not: a must be a bool Tensor"):
        rf.logical_not(labels)


def test_dim_from_sizes_with_a_sparse_dim_and_integer_reduce_max(backend):
    batch, time = padded_dims(LENS)
    positions = rf.convert_to_tensor(np.array([[0, 1, 1, 2, 9], [0, 9, 9, 9, 9], [1, 1, 2, 9, 9]], dtype="int32"),
                                     dims=[batch, time], sparse_dim=time)  # fmt: skip
    top = rf.reduce_max(positions, axis=time)  # padding must not turn the int into a float
    assert top.dtype == "int32"
    np.testing.assert_array_equal(top.numpy(), [2, 0, 2])
    assert rf.reduce_min(positions, axis=time).dtype == "int32"
    dim = Dim(top + 1, name="out")  # sizes may carry a sparse dim (as RETURNN); the dim's sizes have none
    assert dim.dyn_size_ext.sparse_dim is None and positions.sparse_dim is time
    np.testing.assert_array_equal(dim.dyn_size_ext.numpy(), [3, 1, 3])


def test_sequence_mask_of_several_dims_and_a_device(backend):
    batch, time = padded_dims(LENS)
    feat = Dim(2, name="feat")
    mask = rf.sequence_mask([batch, time, feat], device="cpu")
    assert mask.dims == (batch, time) and backend.impl.device_name(mask.raw_tensor) == "cpu"
    np.testing.assert_array_equal(mask.numpy(), time_mask(LENS, max(LENS)))
    lens2 = rf.convert_to_tensor(np.array([2, 2, 1], dtype="int32"), dims=[batch])
    other = Dim(lens2, name="other")
    both = rf.sequence_mask([batch, time, other])
    assert set(both.dims) == {batch, time, other}
    ref = time_mask(LENS, max(LENS))[:, :, None] & time_mask([2, 2, 1], 2)[:, None, :]
    np.testing.assert_array_equal(both.copy_transpose([batch, time, other]).numpy(), ref)
    none = rf.sequence_mask([batch, feat])
    assert none.dims == () and bool(none.numpy())
    steps = rf.range_over_dim(feat, device="cpu", dtype="int64")
    assert steps.dtype == "int64" and steps.sparse_dim is feat and list(steps.numpy()) == [0, 1]


def test_limit_repeats_and_repeat_with_max_len_factor(backend):
    batch, time = padded_dims(LENS)
    counts = np.array([[9, 0, 3, 1, 7], [2, 5, 5, 5, 5], [1, 1, 1, 9, 9]], dtype="int32")
    repeats = rf.convert_to_tensor(counts, dims=[batch, time])
    limited = rf.limit_repeats(repeats, in_spatial_dim=time, max_len_factor=2)
    ref = []
    for row, n in zip(counts, LENS):
        row = np.where(np.arange(T) < n, row, 0)
        kept = (row > 0).astype(int)
        extra, allowed = row - kept, 2.0 * n
        scale = max(allowed - kept.sum(), 0) / max(extra.sum(), 1) if row.sum() > allowed else 1.0
        ref.append(kept + np.floor(extra * scale).astype(int))
    np.testing.assert_array_equal(limited.numpy(), ref)
    np.testing.assert_array_equal(ref[0], [5, 0, 2, 1, 0])  # 13 frames for 4: one kept each, the rest halved
    assert (limited.numpy().sum(1) <= 2 * np.array(LENS)).all()
    np.testing.assert_array_equal(rf.limit_repeats(limited, in_spatial_dim=time, max_len_factor=2).numpy(), ref)
    x = rf.convert_to_tensor(np.arange(15, dtype="float32").reshape(3, 5), dims=[batch, time])
    _, out_dim = rf.repeat(x, in_spatial_dim=time, repeats=repeats, max_len_factor=2)
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), np.sum(ref, axis=1))
    assert out_dim.bounded_by is not None
    with pytest.raises(ValueError, match="limit_repeats: max_len_factor must be a number >= 1"):
        rf.limit_repeats(repeats, in_spatial_dim=time, max_len_factor=0.5)
