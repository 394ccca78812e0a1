"""rf.gather, search_sorted, top_k, masked_select and masked_scatter on every backend, against numpy references,
padded batches included (padding frames are never selected), with gradients."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import padded_dims, restore_global_state, time_mask  # noqa: F401 (an autouse fixture)

LENS = [4, 1, 3]
T = 5


def _batch(rng, lens=LENS, time=T, feat=2):
    batch, tdim = padded_dims(lens)
    fdim = Dim(feat, name="feat")
    x = rng.standard_normal((len(lens), time, feat)).astype("float32")
    x[~time_mask(lens, time)] = np.nan
    return batch, tdim, fdim, x, rf.convert_to_tensor(x, dims=[batch, tdim, fdim], feature_dim=fdim)


# -- gather ---------------------------------------------------------------------------------------------------------


def test_gather_with_batch_dims_own_index_dims_and_an_int(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    n = Dim(3, name="n")
    idx = np.array([[0, 3, 1], [0, 0, 0], [2, 1, 0]])
    it = rf.convert_to_tensor(idx, dims=[batch, n], sparse_dim=time)
    y = rf.gather(xt, indices=it)  # axis: the sparse dim of the indices
    assert y.dims == (batch, n, feat) and y.feature_dim is feat
    np.testing.assert_array_equal(y.numpy(), np.take_along_axis(x, idx[:, :, None], 1))
    vocab, emb = Dim(5, name="vocab"), Dim(3, name="emb")
    w = rng.standard_normal((5, 3)).astype("float32")
    labels = rf.convert_to_tensor(np.array([[1, 4], [0, 2]]), dims=[Dim(2, name="b"), Dim(2, name="l")],
                                  sparse_dim=vocab)  # fmt: skip
    e = rf.gather(rf.convert_to_tensor(w, dims=[vocab, emb]), indices=labels)
    assert e.dims == labels.dims + (emb,)
    np.testing.assert_array_equal(e.numpy(), w[[[1, 4], [0, 2]]])
    first = rf.gather(xt, indices=0, axis=time)
    assert first.dims == (batch, feat)
    np.testing.assert_array_equal(first.numpy(), x[:, 0])
    np.testing.assert_array_equal(rf.gather(xt, indices=-1, axis=feat).numpy(), x[:, :, -1])
    per_frame = rf.convert_to_tensor(np.array([[1, 0, 1, 0, 1]] * 3), dims=[batch, time])
    np.testing.assert_array_equal(rf.gather(xt, indices=per_frame, axis=feat).numpy(),
                                  np.take_along_axis(x, np.array([[1, 0, 1, 0, 1]] * 3)[..., None], 2)[..., 0])


def test_gather_clip_to_valid_clips_into_each_sequence(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    n = Dim(4, name="n")
    idx = rf.convert_to_tensor(np.array([-2, 0, 3, 9]), dims=[n])
    y = rf.gather(xt, indices=idx, axis=time, clip_to_valid=True)
    got = y.copy_transpose([batch, n, feat]).numpy()
    for b, length in enumerate(LENS):
        np.testing.assert_array_equal(got[b], x[b, np.clip([-2, 0, 3, 9], 0, length - 1)])
    static = rf.gather(xt, indices=idx, axis=feat, clip_to_valid=True)
    np.testing.assert_array_equal(static.copy_transpose([batch, time, n]).numpy(), x[:, :, [0, 0, 1, 1]])


def test_gather_gradient_and_errors(backend, rng):
    vocab, emb, frames = Dim(4, name="vocab"), Dim(2, name="emb"), Dim(5, name="frames")
    w = rng.standard_normal((4, 2))
    labels = np.array([1, 3, 1, 1, 0])
    it = rf.convert_to_tensor(labels, dims=[frames], sparse_dim=vocab)
    _, (grad,) = backend.value_and_grad(lambda raw: rf.gather(rf.convert_to_tensor(raw, dims=[vocab, emb]),
                                                              indices=it), w)  # fmt: skip
    np.testing.assert_array_equal(grad, np.bincount(labels, minlength=4)[:, None] * np.ones((1, 2)))
    wt = rf.convert_to_tensor(w, dims=[vocab, emb])
    with pytest.raises(ValueError, match="gather: without axis, indices must be a Tensor with a sparse_dim"):
        rf.gather(wt, indices=1)
    with pytest.raises(TypeError, match="gather: indices must have an integer dtype"):
        rf.gather(wt, indices=rf.convert_to_tensor(np.array([0.5]), dims=[Dim(1, name="o")]), axis=vocab)
    with pytest.raises(ValueError, match="gather: axis .* is not one of the tensor's dims"):
        rf.gather(wt, indices=0, axis=frames)


# -- search_sorted --------------------------------------------------------------------------------------------------


def test_search_sorted_equals_numpy_and_ignores_padding(backend, rng):
    batch, time, _, _, _ = _batch(rng)
    seq = np.sort(rng.integers(0, 10, size=(3, T)), axis=1).astype("float32")
    seq[~time_mask(LENS, T)] = -5.0  # unsorted padding: must not be looked at
    queries = Dim(4, name="q")
    values = np.array([[0.5, 3.0, 7.0, 11.0]] * 3, "float32")
    st = rf.convert_to_tensor(seq, dims=[batch, time])
    vt = rf.convert_to_tensor(values, dims=[batch, queries])
    for side in ("left", "right"):
        out = rf.search_sorted(st, vt, axis=time, side=side, out_dtype="int64")
        assert out.dims == (batch, queries) and out.sparse_dim is time and out.dtype == "int64"
        expected = [np.searchsorted(seq[b, :n], values[b], side=side) for b, n in enumerate(LENS)]
        np.testing.assert_array_equal(out.numpy(), expected, err_msg=side)
    static = Dim(5, name="static")
    boundaries = rf.convert_to_tensor(np.array([0.0, 1.0, 1.0, 2.0, 5.0], "float32"), dims=[static])
    out = rf.search_sorted(boundaries, vt, axis=static, side="right")
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy(), np.searchsorted([0, 1, 1, 2, 5], values, side="right"))
    with pytest.raises(ValueError, match="search_sorted: dims .* of sorted_seq are not dims of values"):
        rf.search_sorted(st, boundaries, axis=time)
    with pytest.raises(ValueError, match="search_sorted: side must be one of"):
        rf.search_sorted(st, vt, axis=time, side="middle")


# -- top_k ----------------------------------------------------------------------------------------------------------


def test_top_k_over_a_dynamic_axis_never_picks_padding(backend, rng):
    batch, time, feat, x, xt = _batch(rng, lens=[4, 2, 3])
    x = np.where(np.isnan(x), 100.0, x).astype("float32")  # padding larger than every real value
    xt = rf.convert_to_tensor(x, dims=[batch, time, feat], feature_dim=feat)
    values, indices, k_dim = rf.top_k(xt, axis=time, k=2)
    assert values.dims == indices.dims == (batch, feat, k_dim) and k_dim.dimension == 2
    assert indices.sparse_dim is time and indices.dtype == "int64" and values.feature_dim is feat
    for b, n in enumerate([4, 2, 3]):
        order = np.argsort(-x[b, :n], axis=0, kind="stable")[:2]
        np.testing.assert_array_equal(indices.numpy()[b], order.T)
        np.testing.assert_array_equal(values.numpy()[b], np.take_along_axis(x[b, :n], order, 0).T)
    beam = Dim(3, name="beam")
    assert rf.top_k(xt, axis=time, k_dim=beam)[0].dims == (batch, feat, beam)
    vals, (ti, fi), k2 = rf.top_k(xt, axis=[time, feat], k=3)
    flat = np.where(time_mask([4, 2, 3], T)[:, :, None], x, -np.inf).reshape(3, -1)
    best = np.argsort(-flat, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(vals.numpy(), np.take_along_axis(flat, best, 1))
    np.testing.assert_array_equal(ti.numpy(), best // 2)
    np.testing.assert_array_equal(fi.numpy(), best % 2)
    assert ti.sparse_dim is time and fi.sparse_dim is feat


def test_top_k_gradient_goes_to_the_chosen_entries(backend, rng):
    dims = [Dim(2, name="b"), Dim(5, name="v")]
    x = rng.permutation(10).reshape(2, 5).astype("float64")
    assert backend.gradcheck(lambda raw: rf.top_k(rf.convert_to_tensor(raw, dims=dims), axis=dims[1], k=2)[0]
                             .raw_tensor, x)  # fmt: skip
    with pytest.raises(ValueError, match="top_k: give k, or a k_dim with a known size"):
        rf.top_k(rf.convert_to_tensor(x, dims=dims), axis=dims[1])
    with pytest.raises(ValueError, match="top_k: k must be an int >= 0 or an integer Tensor"):
        rf.top_k(rf.convert_to_tensor(x, dims=dims), axis=dims[1], k=-1)


# -- masked_select / masked_scatter ---------------------------------------------------------------------------------


def test_masked_select_along_one_dim_and_all_dims(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    keep = rng.random((3, T)) < 0.6
    keep[:, 0] = True
    mask = rf.convert_to_tensor(keep, dims=[batch, time])  # True also at some padding frames: never selected
    kept = keep & time_mask(LENS, T)
    out, out_dim = rf.masked_select(xt, mask=mask, dims=[time])
    assert out.dims == (batch, out_dim, feat) and out.feature_dim is feat
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), kept.sum(1))
    for b in range(3):
        n = kept[b].sum()
        np.testing.assert_array_equal(out.numpy()[b, :n], x[b, kept[b]])
        assert (out.numpy()[b, n:] == 0).all()
    packed, pack_dim = rf.masked_select(xt, mask=mask, dims=[batch, time])
    assert packed.dims == (pack_dim, feat)
    np.testing.assert_array_equal(packed.numpy(), x[kept])
    np.testing.assert_array_equal(pack_dim.dyn_size_ext.numpy(), kept.sum())
    order = rf.masked_select(xt, mask=mask, dims=[time, batch])[0]
    np.testing.assert_array_equal(order.numpy(), x.transpose(1, 0, 2)[kept.T])


def test_masked_select_over_two_of_three_mask_dims(backend, rng):
    a, b, c = Dim(2, name="a"), Dim(3, name="b"), Dim(2, name="c")
    x = rng.standard_normal((2, 3, 2)).astype("float32")
    keep = rng.random((2, 3, 2)) < 0.5
    out, out_dim = rf.masked_select(rf.convert_to_tensor(x, dims=[a, b, c]), mask=rf.convert_to_tensor(
        keep, dims=[a, b, c]), dims=[b, c])  # fmt: skip
    assert out.dims == (a, out_dim)
    for i in range(2):
        n = keep[i].sum()
        np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy()[i], n)
        np.testing.assert_array_equal(out.numpy()[i, :n], x[i][keep[i]])


def test_masked_scatter_inverts_masked_select_with_gradients(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    keep = (rng.random((3, T)) < 0.6) & time_mask(LENS, T)
    mask = rf.convert_to_tensor(keep, dims=[batch, time])
    for dims in ([time], [batch, time]):
        packed, pack_dim = rf.masked_select(xt, mask=mask, dims=dims)
        back = rf.masked_scatter(packed, mask=mask, dims=dims, in_dim=pack_dim)
        np.testing.assert_array_equal(back.copy_transpose([batch, time, feat]).numpy(),
                                      np.where(keep[..., None], x, 0.0))  # fmt: skip
        backup = rf.convert_to_tensor(np.full((3, 2), 7.0, "float32"), dims=[batch, feat])
        back = rf.masked_scatter(packed, backup, mask=mask, dims=dims, in_dim=pack_dim)
        np.testing.assert_array_equal(back.copy_transpose([batch, time, feat]).numpy(),
                                      np.where(keep[..., None], x, 7.0))  # fmt: skip
    clean = np.nan_to_num(x).astype("float64")

    def roundtrip(raw):
        packed, pack_dim = rf.masked_select(rf.convert_to_tensor(raw, dims=[batch, time, feat]), mask=mask,
                                            dims=[time])  # fmt: skip
        return rf.masked_scatter(packed * 3.0, mask=mask, dims=[time], in_dim=pack_dim)

    _, (grad,) = backend.value_and_grad(roundtrip, clean)
    np.testing.assert_array_equal(grad, 3.0 * np.broadcast_to(keep[..., None], x.shape))


def test_masked_select_errors(backend, rng):
    batch, time, feat, _, xt = _batch(rng)
    mask = rf.sequence_mask(time)
    with pytest.raises(TypeError, match="masked_select: mask must be a bool Tensor"):
        rf.masked_select(xt, mask=rf.cast(mask, "int32"), dims=[time])
    with pytest.raises(ValueError, match="masked_select: dims .* must be a non-empty subset of the mask's dims"):
        rf.masked_select(xt, mask=mask, dims=[feat])
    with pytest.raises(ValueError, match="masked_scatter: dims .* must be a non-empty subset"):
        rf.masked_scatter(xt, mask=mask, dims=[], in_dim=time)
