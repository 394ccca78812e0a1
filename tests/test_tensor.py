"""Dim and Tensor: broadcasting by dim identity, transposes, masks, backend rules."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import frontend_backends
import returnn_ls as rf
from returnn_ls import Dim


def test_binary_ops_broadcast_by_dim_identity_not_position(backend, rng):
    batch, vocab = Dim(3, name="batch"), Dim(3, name="vocab")  # same size: position would be ambiguous
    x = rng.normal(size=(3, 3)).astype("float32")
    s = rng.normal(size=(3,)).astype("float32")
    tx = rf.convert_to_tensor(x, dims=[batch, vocab])
    ts = rf.convert_to_tensor(s, dims=[vocab])
    out = tx * ts
    assert out.dims == (batch, vocab)
    np.testing.assert_allclose(out.numpy(), x * s[None, :], rtol=1e-6)
    out2 = ts * tx  # the left operand's dims come first
    assert out2.dims == (vocab, batch)
    np.testing.assert_allclose(out2.numpy(), (x * s[None, :]).T, rtol=1e-6)


def test_binary_ops_with_disjoint_dims_form_an_outer_product(backend):
    a, b = Dim(2, name="a"), Dim(3, name="b")
    ta = rf.convert_to_tensor(np.array([1.0, 2.0]), dims=[a])
    tb = rf.convert_to_tensor(np.array([1.0, 10.0, 100.0]), dims=[b])
    out = ta - tb
    assert out.dims == (a, b)
    np.testing.assert_allclose(out.numpy(), np.array([1.0, 2.0])[:, None] - np.array([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal((ta < tb).numpy(), np.array([1.0, 2.0])[:, None] < np.array([1, 10, 100.0]))


def test_copy_transpose_keeps_data(backend, rng):
    a, b, c = Dim(2, name="a"), Dim(3, name="b"), Dim(4, name="c")
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    t = rf.convert_to_tensor(x, dims=[a, b, c], feature_dim=c)
    out = t.copy_transpose([c, a, b])
    assert out.dims == (c, a, b) and out.feature_dim is c
    np.testing.assert_array_equal(out.numpy(), x.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="perm"):
        t.copy_transpose([a, b])


def test_dynamic_dim_mask_and_masked_reductions(backend, rng):
    batch = Dim(3, name="batch")
    lens = np.array([4, 2, 3])
    time = Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time")
    assert time.dimension is None
    mask = time.get_mask()
    assert mask.dims == (batch, time)
    expected_mask = np.arange(4)[None, :] < lens[:, None]
    np.testing.assert_array_equal(mask.numpy(), expected_mask)
    x = rng.normal(size=(3, 4)).astype("float32")
    t = rf.convert_to_tensor(x, dims=[batch, time])
    np.testing.assert_allclose(rf.reduce_sum(t, axis=time).numpy(), (x * expected_mask).sum(1), rtol=1e-6)
    np.testing.assert_allclose(rf.reduce_mean(t, axis=time).numpy(), (x * expected_mask).sum(1) / lens, rtol=1e-6)
    np.testing.assert_allclose(
        rf.reduce_mean(t, axis=[batch, time]).numpy(), (x * expected_mask).sum() / lens.sum(), rtol=1e-6
    )
    np.testing.assert_allclose(
        rf.reduce_max(t, axis=time).numpy(), np.where(expected_mask, x, -np.inf).max(1), rtol=1e-6
    )


def test_log_softmax_and_softmax_match_numpy(backend, rng):
    vocab, batch = Dim(5, name="vocab"), Dim(2, name="batch")
    x = rng.normal(size=(5, 2)) * 3
    t = rf.convert_to_tensor(x, dims=[vocab, batch])
    ref = x - np.log(np.exp(x).sum(0, keepdims=True))
    np.testing.assert_allclose(rf.log_softmax(t, axis=vocab).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(rf.softmax(t, axis=vocab).numpy(), np.exp(ref), rtol=1e-12)


def test_softmax_over_a_dynamic_axis_masks_padding_and_empty_sequences(backend, rng):
    batch = Dim(3, name="batch")
    lens = np.array([0, 2, 4])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    x = rng.normal(size=(4, 3))
    t = rf.convert_to_tensor(x, dims=[time, batch])
    probs = rf.softmax(t, axis=time).copy_transpose([time, batch]).numpy()
    log_probs = rf.log_softmax(t, axis=time).copy_transpose([time, batch]).numpy()
    for b, n in enumerate(lens):  # the length-0 sequence: probability 0 and log -inf, not NaN
        ref = np.exp(x[:n, b]) / np.exp(x[:n, b]).sum() if n else np.zeros(0)
        np.testing.assert_allclose(probs[:, b], np.concatenate([ref, np.zeros(4 - n)]), rtol=1e-12)
        np.testing.assert_allclose(log_probs[:n, b], np.log(ref), rtol=1e-12)
        assert np.all(log_probs[n:, b] == -np.inf)


@pytest.mark.parametrize("estimated_type", ["logits", "log-probs", "probs"])
def test_cross_entropy_sparse_and_dense_match_numpy(backend, rng, estimated_type):
    batch, vocab = Dim(4, name="batch"), Dim(5, name="vocab")
    z = rng.normal(size=(4, 5))
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    est = {"logits": z, "log-probs": lp, "probs": np.exp(lp)}[estimated_type]
    labels = rng.integers(0, 5, size=(4,))
    dense = rng.dirichlet(np.ones(5), size=4)
    e = rf.convert_to_tensor(est, dims=[batch, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(labels, dims=[batch], sparse_dim=vocab)
    q = rf.convert_to_tensor(dense, dims=[batch, vocab])
    sparse_ce = rf.cross_entropy(estimated=e, target=y, axis=vocab, estimated_type=estimated_type)
    dense_ce = rf.cross_entropy(estimated=e, target=q, axis=vocab, estimated_type=estimated_type)
    np.testing.assert_allclose(sparse_ce.numpy(), -lp[np.arange(4), labels], rtol=1e-10)
    np.testing.assert_allclose(dense_ce.numpy(), -(dense * lp).sum(-1), rtol=1e-10)


def test_numpy_input_is_copied_and_never_mutated(backend, rng):
    batch, vocab = Dim(2, name="batch"), Dim(4, name="vocab")
    x = rng.dirichlet(np.ones(4), size=2).astype("float32")
    before = x.copy()
    t = rf.convert_to_tensor(x, dims=[batch, vocab], feature_dim=vocab)
    rf.label_smoothing(t, 0.1)
    rf.label_smoothed_log_prob_gradient(rf.log(t), 0.1)
    x[0, 0] = 123.0  # the tensor holds its own copy
    np.testing.assert_array_equal(t.numpy(), before)


def test_mixing_backends_in_one_operation_is_a_type_error(backend):
    other = next(name for name in frontend_backends.backend_names() if name != backend.name)
    vocab = Dim(3, name="vocab")
    mine = rf.convert_to_tensor(np.ones(3, "float32"), dims=[vocab])
    rf.select_backend(other)
    theirs = rf.convert_to_tensor(np.ones(3, "float32"), dims=[vocab])
    assert theirs.backend_name == other and mine.backend_name == backend.name
    with pytest.raises(TypeError, match="cannot mix"):
        mine + theirs


def test_raw_tensors_keep_their_backend_whatever_is_selected(backend):
    other = next(name for name in frontend_backends.backend_names() if name != backend.name)
    raw = backend.raw(np.zeros(3, "float32"))
    rf.select_backend(other)
    t = rf.convert_to_tensor(raw, dims=[Dim(3, name="x")])
    assert t.backend_name == backend.name
    assert rf.get_backend_name() == other


def test_import_returnn_ls_imports_no_framework():
    code = "import sys, returnn_ls; print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mask_shorter_than_the_padded_data_is_an_error_not_a_broadcast(backend):
    batch = Dim(1, name="batch")
    time = Dim(rf.convert_to_tensor(np.array([1]), dims=[batch]), name="time")
    x = rf.convert_to_tensor(np.ones((1, 2), "float32"), dims=[batch, time])  # padded to 2 > max(lens) = 1
    with pytest.raises(ValueError, match="sequence_mask"):
        rf.where(time.get_mask(), x, 0.0)
    np.testing.assert_array_equal(rf.where(rf.sequence_mask(time, x), x, 0.0).numpy(), [[1.0, 0.0]])
