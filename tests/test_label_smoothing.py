"""label_smoothing and smooth_one_hot against the numpy formulas, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


def np_label_smoothing(prob: np.ndarray, a: float, axis: int) -> np.ndarray:
    """The reference formula: a one becomes 1-a, a zero a/(K-1)."""
    k = prob.shape[axis]
    return prob * (1 - a) + (1 - prob) * a / (k - 1)


def np_smooth_one_hot(labels: np.ndarray, k: int, label_prob: float) -> np.ndarray:
    out = np.full(labels.shape + (k,), (1 - label_prob) / (k - 1))
    np.put_along_axis(out, labels[..., None], label_prob, axis=-1)
    return out


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_dense_matches_formula(backend, rng, smoothing):
    batch, vocab = Dim(3, name="batch"), Dim(6, name="vocab")
    prob = rng.dirichlet(np.ones(6), size=3).astype("float32")
    x = rf.convert_to_tensor(prob, dims=[batch, vocab], feature_dim=vocab)
    out = rf.label_smoothing(x, smoothing)
    assert out.dims == (batch, vocab)
    np.testing.assert_allclose(out.numpy(), np_label_smoothing(prob, smoothing, 1), rtol=1e-6, atol=1e-7)


def test_label_smoothing_label_axis_not_last(backend, rng):
    vocab, batch, time = Dim(5, name="vocab"), Dim(2, name="batch"), Dim(4, name="time")
    prob = rng.dirichlet(np.ones(5), size=(2, 4)).transpose(2, 0, 1).astype("float32")  # [vocab, batch, time]
    x = rf.convert_to_tensor(prob, dims=[vocab, batch, time])
    out = rf.label_smoothing(x, 0.2, axis=vocab)
    assert out.dims == (vocab, batch, time)
    np.testing.assert_allclose(out.numpy(), np_label_smoothing(prob, 0.2, 0), rtol=1e-6)
    np.testing.assert_allclose(out.numpy().sum(axis=0), 1.0, rtol=1e-6)


def test_label_smoothing_sparse_equals_smooth_one_hot_formula(backend, rng):
    batch, time, vocab = Dim(2, name="batch"), Dim(3, name="time"), Dim(7, name="vocab")
    labels = rng.integers(0, 7, size=(2, 3))
    y = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
    out = rf.label_smoothing(y, 0.1)
    assert out.dims == (batch, time, vocab) and out.feature_dim is vocab
    np.testing.assert_allclose(out.numpy(), np_smooth_one_hot(labels, 7, 0.9), rtol=1e-6)


@pytest.mark.parametrize("label_prob", [0.0, 0.7, 1.0])
def test_smooth_one_hot_matches_numpy(backend, rng, label_prob):
    batch, vocab = Dim(4, name="batch"), Dim(3, name="vocab")
    labels = rng.integers(0, 3, size=(4,))
    y = rf.convert_to_tensor(labels, dims=[batch], sparse_dim=vocab)
    out = rf.smooth_one_hot(y, label_prob=label_prob)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), np_smooth_one_hot(labels, 3, label_prob), rtol=1e-6)


def test_smoothing_given_as_scalar_tensor(backend, rng):
    batch, vocab = Dim(3, name="batch"), Dim(4, name="vocab")
    prob = rng.dirichlet(np.ones(4), size=3).astype("float32")
    labels = rng.integers(0, 4, size=(3,))
    a = rf.convert_to_tensor(np.float32(0.3))
    x = rf.convert_to_tensor(prob, dims=[batch, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(labels, dims=[batch], sparse_dim=vocab)
    np.testing.assert_allclose(rf.label_smoothing(x, a).numpy(), np_label_smoothing(prob, 0.3, 1), rtol=1e-6)
    np.testing.assert_allclose(rf.label_smoothing(y, a).numpy(), np_smooth_one_hot(labels, 4, 0.7), rtol=1e-6)


def test_label_smoothing_is_differentiable_wrt_prob(backend, rng):
    """d/dprob of sum(w * smoothed) is w * (1 - K*a/(K-1))."""
    batch, vocab = Dim(2, name="batch"), Dim(5, name="vocab")
    prob = rng.dirichlet(np.ones(5), size=2)
    w = rng.normal(size=(2, 5))

    def fn(raw):
        x = rf.convert_to_tensor(raw, dims=[batch, vocab], feature_dim=vocab)
        return rf.label_smoothing(x, 0.2) * rf.convert_to_tensor(w, dims=[batch, vocab])

    _, (grad,) = backend.value_and_grad(fn, prob)
    np.testing.assert_allclose(grad, w * (1 - 5 * 0.2 / 4), rtol=1e-12)
