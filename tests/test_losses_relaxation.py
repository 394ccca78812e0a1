"""label_relaxation_loss against a numpy reference of KL(credal target || p), on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

B, T, K = 3, 4, 5
LENS = np.array([4, 1, 3])


def np_label_relaxation(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """:return: (KL(q || p) summed over labels, p - q), 0 where p[y] >= 1 - alpha; float64, written out"""
    x = x.astype(np.float64)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    onehot = np.eye(x.shape[-1], dtype=bool)[y]
    p_y = (p * onehot).sum(-1, keepdims=True)
    q = np.where(onehot, 1 - alpha, alpha * p / (1 - p_y))
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(q > 0, q * np.log(q / p), 0.0).sum(-1)
    inside = p_y[..., 0] >= 1 - alpha
    return np.where(inside, 0.0, kl), np.where(inside[..., None], 0.0, p - q)


def relax_fn(dims, y, alpha):
    batch, time, vocab = dims

    def fn(raw):
        logits = rf.convert_to_tensor(raw, dims=[batch, time, vocab], feature_dim=vocab)
        targets = rf.convert_to_tensor(y, dims=[batch, time], sparse_dim=vocab)
        return rf.label_relaxation_loss(logits=logits, targets=targets, axis=vocab, alpha=alpha)

    return fn


def setup(rng, scale: float = 2.0):
    batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(LENS, dims=[batch]), name="time")
    x = (scale * rng.standard_normal((B, T, K))).astype("float32")
    y = rng.integers(0, K, size=(B, T))
    return (batch, time, vocab), x, y


def valid() -> np.ndarray:
    return np.arange(T)[None, :] < LENS[:, None]


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.4])
def test_label_relaxation_matches_numpy_reference(backend, rng, alpha):
    dims, x, y = setup(rng)
    x[0, 0] = 0.0
    x[0, 0, y[0, 0]] = 10.0  # confident and right: inside the credal set
    loss, (grad,) = backend.value_and_grad(relax_fn(dims, y, alpha), x)
    ref, ref_grad = np_label_relaxation(x, y, alpha)
    np.testing.assert_allclose(loss, ref * valid(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad * valid()[..., None], atol=1e-6)
    if alpha > 0:
        assert loss[0, 0] == 0.0 and np.all(grad[0, 0] == 0.0)


def test_zero_where_target_probability_reaches_one_minus_alpha(backend, rng):
    dims, x, y = setup(rng, scale=6.0)
    loss, (grad,) = backend.value_and_grad(relax_fn(dims, y, 0.3), x)
    p = np.exp(x - x.max(-1, keepdims=True))
    p_y = np.take_along_axis(p / p.sum(-1, keepdims=True), y[..., None], -1)[..., 0]
    reached = (p_y >= 0.7) & valid()
    assert reached.any() and (~reached & valid()).any()  # the case is exercised both ways
    assert np.all(loss[reached] == 0.0) and np.all(grad[reached] == 0.0)
    assert np.all(loss[~reached & valid()] > 0.0)


def test_alpha_zero_is_cross_entropy(backend, rng):
    dims, x, y = setup(rng)
    loss, _ = backend.value_and_grad(relax_fn(dims, y, 0.0), x)
    lp = x - np.log(np.exp(x.astype(np.float64)).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss, -np.take_along_axis(lp, y[..., None], -1)[..., 0] * valid(), rtol=1e-5)


def test_stable_for_extreme_logits(backend, rng):
    dims, x, y = setup(rng)
    x[0, 1] = -1e4
    x[0, 1, (y[0, 1] + 1) % K] = 1e4  # target probability underflows to 0: log(p) would be -inf
    x[2, 0] = 1e4 * (np.arange(K) == y[2, 0])  # 1 - p_target underflows to 0
    loss, (grad,) = backend.value_and_grad(relax_fn(dims, y, 0.2), x)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss[0, 1], 0.8 * (np.log(0.8) + 2e4) + 0.2 * np.log(0.2), rtol=1e-5)
    assert loss[2, 0] == 0.0


def test_padding_gets_zero_loss_and_gradient(backend, rng):
    dims, x, y = setup(rng)
    y[1, 2] = -7  # garbage on padding is ignored
    loss, (grad,) = backend.value_and_grad(relax_fn(dims, y, 0.1), x)
    assert np.all(loss[~valid()] == 0.0) and np.all(grad[~valid()] == 0.0)


def test_tensor_alpha(backend, rng):
    dims, x, y = setup(rng)
    alpha = rf.convert_to_tensor(np.float32(0.2), dims=[])
    loss_t, (grad_t,) = backend.value_and_grad(relax_fn(dims, y, alpha), x)
    loss_f, (grad_f,) = backend.value_and_grad(relax_fn(dims, y, 0.2), x)
    np.testing.assert_allclose(loss_t, loss_f, rtol=1e-6)
    np.testing.assert_allclose(grad_t, grad_f, atol=1e-7)


@pytest.mark.parametrize(
    "alpha, error", [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("x", TypeError)]
)
def test_alpha_outside_unit_interval_raises(backend, rng, alpha, error):
    dims, x, y = setup(rng)
    with pytest.raises(error, match="alpha"):
        relax_fn(dims, y, alpha)(backend.raw(x))
