"""scaled_gradient_ext and label_smoothed_log_prob_gradient: forward identity, backward formulas."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

K = 6


def _dims():
    return Dim(2, name="batch"), Dim(3, name="time"), Dim(K, name="vocab")


def _grad_through(backend, op, x, upstream, dims):
    """:return: (forward value, gradient w.r.t. x) of sum(op(x) * upstream)"""

    def fn(raw):
        t = rf.convert_to_tensor(raw, dims=dims, feature_dim=dims[-1])
        return op(t) * rf.convert_to_tensor(upstream, dims=dims)

    value, (grad,) = backend.value_and_grad(fn, x)
    return value, grad


def np_smoothed_grad(g, a, excluded=(), compat=False):
    """Reference: smoothing of a negative-distribution gradient g over the last axis."""
    k = g.shape[-1]
    incl = np.ones(k, bool)
    incl[list(excluded)] = False
    floor = a / (incl.sum() - 1)
    factor = 1 - incl.sum() * floor
    total = np.abs(g if compat else g * incl).sum(-1, keepdims=True)
    return np.where(incl, factor * g - floor * total, g)


def test_scaled_gradient_ext_forward_is_identity(backend, rng):
    dims = _dims()
    x = rng.normal(size=(2, 3, K))
    t = rf.convert_to_tensor(x, dims=dims)
    out = rf.scaled_gradient_ext(t, scale=0.5, shift=-0.1, scale_shift_by_sum_over_axis=dims[2])
    np.testing.assert_array_equal(out.numpy(), x)


def test_scaled_gradient_ext_backward_with_sum(backend, rng):
    batch, time, vocab = dims = _dims()
    x, g = rng.normal(size=(2, 3, K)), rng.normal(size=(2, 3, K))
    scale = rng.normal(size=(K, 2))  # dims [vocab, batch]: not in the source's order
    shift = rng.normal(size=(3,))

    def op(t):
        s = rf.convert_to_tensor(scale, dims=[vocab, batch])
        h = rf.convert_to_tensor(shift, dims=[time])
        return rf.scaled_gradient_ext(t, scale=s, shift=h, scale_shift_by_sum_over_axis=vocab)

    _, grad = _grad_through(backend, op, x, g, dims)
    expected = g * scale.T[:, None, :] + shift[None, :, None] * np.abs(g).sum(-1, keepdims=True)
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_scaled_gradient_ext_backward_without_sum(backend, rng):
    dims = _dims()
    x, g = rng.normal(size=(2, 3, K)), rng.normal(size=(2, 3, K))
    _, grad = _grad_through(backend, lambda t: rf.scaled_gradient_ext(t, scale=-2.0, shift=0.25), x, g, dims)
    np.testing.assert_allclose(grad, -2.0 * g + 0.25, rtol=1e-12)


def test_scaled_gradient_ext_takes_raw_framework_scalars_as_scale_and_shift(backend, rng):
    dims = _dims()
    x, g = rng.normal(size=(2, 3, K)), rng.normal(size=(2, 3, K))
    scale, shift = backend.raw(np.float64(-2.0)), backend.raw(np.float64(0.25))  # e.g. a schedule's value
    op = lambda t: rf.scaled_gradient_ext(t, scale=scale, shift=shift, scale_shift_by_sum_over_axis=dims[2])  # noqa: E731
    _, grad = _grad_through(backend, op, x, g, dims)
    np.testing.assert_allclose(grad, -2.0 * g + 0.25 * np.abs(g).sum(-1, keepdims=True), rtol=1e-12)
    with pytest.raises(ValueError, match=r"scale must be a scalar, got a \w+\.\w+ of shape \(2,\)"):
        rf.scaled_gradient(rf.convert_to_tensor(x, dims=dims), backend.raw(np.array([1.0, 2.0])))


def test_scaled_gradient_and_stop_gradient(backend, rng):
    dims = _dims()
    x, g = rng.normal(size=(2, 3, K)), rng.normal(size=(2, 3, K))
    _, grad = _grad_through(backend, lambda t: rf.scaled_gradient(t, -0.5), x, g, dims)
    np.testing.assert_allclose(grad, -0.5 * g, rtol=1e-12)
    _, grad = _grad_through(backend, lambda t: rf.stop_gradient(t) * 3.0 + t, x, g, dims)
    np.testing.assert_allclose(grad, g, rtol=1e-12)


@pytest.mark.parametrize(
    "excluded, compat", [((), False), ((0,), False), ((0, 3), False), ((0,), True), ((2, 5), True)]
)
def test_label_smoothed_log_prob_gradient_matches_formula(backend, rng, excluded, compat):
    dims = _dims()
    x = np.log(rng.dirichlet(np.ones(K), size=(2, 3)))
    q = rng.dirichlet(np.ones(K), size=(2, 3)) * rng.uniform(0.5, 2.0, size=(2, 3, 1))  # scaled distributions

    def op(t):
        return rf.label_smoothed_log_prob_gradient(t, 0.2, exclude_labels=list(excluded), returnn_compat=compat)

    value, grad = _grad_through(backend, op, x, -q, dims)
    np.testing.assert_array_equal(value, x * -q)
    np.testing.assert_allclose(grad, np_smoothed_grad(-q, 0.2, excluded, compat), rtol=1e-10, atol=1e-14)


def test_excluded_labels_keep_gradient_and_total_mass_is_preserved(backend, rng):
    dims = _dims()
    x = np.log(rng.dirichlet(np.ones(K), size=(2, 3)))
    q = rng.dirichlet(np.ones(K), size=(2, 3))
    q[0, 0] = np.eye(K)[0]  # a frame where the blank (label 0) has all the mass
    op = lambda t: rf.label_smoothed_log_prob_gradient(t, 0.3, exclude_labels=[0])  # noqa: E731
    _, grad = _grad_through(backend, op, x, -q, dims)
    np.testing.assert_array_equal(grad[..., 0], -q[..., 0])
    np.testing.assert_allclose(-grad.sum(-1), 1.0, rtol=1e-12)
    assert (-grad[..., 1:] >= -1e-15).all()


def test_returnn_compat_adds_mass_on_blank_frames(backend, rng):
    """RETURNN's numbers: a blank-only frame sums to 1 + (K-1)a/(K-2) (RETURNN sums over all labels)."""
    dims = _dims()
    x = np.zeros((2, 3, K))
    q = np.zeros((2, 3, K))
    q[..., 0] = 1.0
    op = lambda t: rf.label_smoothed_log_prob_gradient(t, 0.1, exclude_labels=[0], returnn_compat=True)  # noqa: E731
    _, grad = _grad_through(backend, op, x, -q, dims)
    np.testing.assert_allclose(-grad.sum(-1), 1 + (K - 1) * 0.1 / (K - 2), rtol=1e-12)


def test_ce_gradient_through_smoothed_log_probs_equals_ce_against_smoothed_targets(backend, rng):
    batch, time, vocab = dims = _dims()
    logits = rng.normal(size=(2, 3, K))
    labels = rng.integers(0, K, size=(2, 3))

    def gradient_smoothing(z):
        z = rf.convert_to_tensor(z, dims=dims, feature_dim=vocab)
        y = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
        lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), 0.15)
        return rf.cross_entropy(estimated=lp, target=y, axis=vocab, estimated_type="log-probs")

    def target_smoothing(z):
        z = rf.convert_to_tensor(z, dims=dims, feature_dim=vocab)
        y = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
        target = rf.label_smoothing(y, 0.15)
        return rf.cross_entropy(estimated=z, target=rf.cast(target, "float64"), axis=vocab, estimated_type="logits")

    _, (g1,) = backend.value_and_grad(gradient_smoothing, logits)
    _, (g2,) = backend.value_and_grad(target_smoothing, logits)
    soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    target = np.full((2, 3, K), 0.15 / (K - 1))
    np.put_along_axis(target, labels[..., None], 0.85, axis=-1)
    np.testing.assert_allclose(g1, soft - target, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2, soft - target, atol=1e-7)  # float32 smoothed target


def test_finite_differences_of_smoothed_target_ce_equal_gradient_smoothing(backend, rng):
    """Independent check by central differences in float64 (no autograd in the reference)."""
    batch, time, vocab = dims = _dims()
    logits = rng.normal(size=(2, 3, K))
    labels = rng.integers(0, K, size=(2, 3))
    target = np.full((2, 3, K), 0.2 / (K - 1))
    np.put_along_axis(target, labels[..., None], 0.8, axis=-1)

    def np_loss(z):
        lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return -(target * lp).sum()

    eps, fd = 1e-6, np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        d = np.zeros_like(logits)
        d[idx] = eps
        fd[idx] = (np_loss(logits + d) - np_loss(logits - d)) / (2 * eps)

    def fn(z):
        z = rf.convert_to_tensor(z, dims=dims, feature_dim=vocab)
        y = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
        lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), 0.2)
        return rf.cross_entropy(estimated=lp, target=y, axis=vocab, estimated_type="log-probs")

    _, (grad,) = backend.value_and_grad(fn, logits)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_padded_frames_get_zero_gradient(backend, rng):
    batch, vocab = Dim(3, name="batch"), Dim(K, name="vocab")
    lens = rf.convert_to_tensor(np.array([4, 2, 1]), dims=[batch])
    time = Dim(lens, name="time")
    logits = rng.normal(size=(3, 4, K))
    labels = rng.integers(0, K, size=(3, 4))
    labels[1, 2:] = -1  # padding labels may be anything
    labels[2, 1:] = 99

    def fn(z):
        z = rf.convert_to_tensor(z, dims=[batch, time, vocab], feature_dim=vocab)
        y = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
        lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), 0.1, exclude_labels=[0])
        ce = rf.cross_entropy(estimated=lp, target=y, axis=vocab, estimated_type="log-probs")
        return rf.where(time.get_mask(), ce, 0.0)

    _, (grad,) = backend.value_and_grad(fn, logits)
    mask = np.arange(4)[None, :] < np.array([4, 2, 1])[:, None]
    assert (grad[~mask] == 0).all()
    assert (np.abs(grad[mask]).sum(-1) > 0).all()
    np.testing.assert_allclose(grad[mask].sum(-1), 0.0, atol=1e-12)  # softmax - q' sums to zero


def test_gradcheck_of_label_smoothing_and_smooth_one_hot_in_float64(backend, rng):
    """Against central finite differences in float64 (the analytic gradients of the backend's framework)."""
    batch, vocab = Dim(2, name="batch"), Dim(4, name="vocab")
    prob = rng.dirichlet(np.ones(4), size=2)
    labels = rng.integers(0, 4, size=(2,))
    w = rng.normal(size=(2, 4))

    def fn(raw_prob, raw_a):
        x = rf.convert_to_tensor(raw_prob, dims=[batch, vocab], feature_dim=vocab)
        a = rf.convert_to_tensor(raw_a)
        y = rf.convert_to_tensor(labels, dims=[batch], sparse_dim=vocab)
        out = rf.label_smoothing(x, a) + rf.cast(rf.smooth_one_hot(y, label_prob=1.0 - a), "float64")
        return (out * rf.convert_to_tensor(w, dims=[batch, vocab])).raw_tensor

    assert backend.gradcheck(fn, prob, np.float64(0.3))
