"""``rf.sort``, ``rf.top_k_mask`` and ``rf.top_p_mask`` against numpy (stable sorts, padded dims), both backends."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


@pytest.mark.parametrize("descending", [False, True])
def test_sort_is_numpys_stable_sort(backend, rng, descending):
    batch, vocab = Dim(3, name="batch"), Dim(6, name="vocab")
    x = rng.integers(0, 3, size=(3, 6)).astype("float64")  # many ties
    values, order, sorted_dim = rf.sort(rf.convert_to_tensor(x, dims=[batch, vocab]), axis=vocab,
                                        descending=descending)  # fmt: skip
    ref = np.argsort(-x if descending else x, axis=1, kind="stable")
    assert order.sparse_dim is vocab and sorted_dim.dimension == 6 and sorted_dim is not vocab
    np.testing.assert_array_equal(order.copy_transpose([batch, sorted_dim]).numpy(), ref)
    np.testing.assert_array_equal(values.copy_transpose([batch, sorted_dim]).numpy(), np.take_along_axis(x, ref, 1))


def test_sort_along_a_dynamic_dim_keeps_each_sequence(backend, rng):
    batch = Dim(2, name="batch")
    lens = np.array([5, 3])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    x = rng.normal(size=(2, 5))
    values, order, sorted_dim = rf.sort(rf.convert_to_tensor(x, dims=[batch, time]), axis=time)
    np.testing.assert_array_equal(sorted_dim.dyn_size_ext.numpy(), lens)
    got_values, got_order = (t.copy_transpose([batch, sorted_dim]).numpy() for t in (values, order))
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(got_order[b, :n], np.argsort(x[b, :n], kind="stable"))
        np.testing.assert_array_equal(got_values[b, :n], np.sort(x[b, :n]))


def test_top_k_mask_marks_the_k_largest(backend, rng):
    batch, vocab = Dim(4, name="batch"), Dim(7, name="vocab")
    x = rng.normal(size=(4, 7))
    mask = rf.top_k_mask(rf.convert_to_tensor(x, dims=[batch, vocab]), axis=vocab, k=3)
    ref = np.zeros((4, 7), bool)
    np.put_along_axis(ref, np.argsort(-x, axis=1)[:, :3], True, axis=1)
    np.testing.assert_array_equal(mask.copy_transpose([batch, vocab]).numpy(), ref)


@pytest.mark.parametrize("p, one_more, min_keep", [(0.5, True, 1), (0.5, False, 0), (0.9, True, 3), (0.0, False, 2)])
def test_top_p_mask_is_the_nucleus(backend, rng, p, one_more, min_keep):
    batch, vocab = Dim(5, name="batch"), Dim(8, name="vocab")
    probs = rng.dirichlet(np.ones(8) * 0.5, size=5)
    mask = rf.top_p_mask(rf.convert_to_tensor(probs, dims=[batch, vocab]), axis=vocab, p=p, one_more=one_more,
                         min_tokens_to_keep=min_keep)  # fmt: skip
    got = mask.copy_transpose([batch, vocab]).numpy()
    for b in range(5):
        order = np.argsort(-probs[b], kind="stable")
        below = np.cumsum(probs[b][order]) <= p
        count = below.sum() + (1 if one_more else 0)  # cumsum is increasing: the kept ones are a prefix
        count = min(max(count, min_keep), 8)
        np.testing.assert_array_equal(np.sort(np.flatnonzero(got[b])), np.sort(order[:count]))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        rf.top_p_mask(rf.convert_to_tensor(probs, dims=[batch, vocab]), axis=vocab, p=1.5)


def test_top_k_orders_equal_values_by_index(backend):
    rows, vocab = Dim(2, name="rows"), Dim(6, name="vocab")
    x = np.array([[1.0, 3.0, 3.0, 0.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    values, indices, _ = rf.top_k(rf.convert_to_tensor(x, dims=[rows, vocab]), axis=vocab, k=4)
    np.testing.assert_array_equal(indices.numpy()[0], [1, 2, 4, 5])
    got = indices.numpy()[1]
    assert np.all(np.diff(got) > 0) and np.all(values.numpy()[1] == 2.0)  # equal values: ascending indices
