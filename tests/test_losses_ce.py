"""label_smoothed_cross_entropy against PyTorch, Keras and RETURNN's dense path (numpy), on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

B, T, K = 3, 4, 7
LENS = np.array([4, 2, 3])


def np_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_returnn_target(y: np.ndarray, k: int, a: float, excluded: tuple[int, ...] = ()) -> np.ndarray:
    """RETURNN's smoothed target, written out: 1-a at y, a/(K-E-1) on the other included labels."""
    included = np.ones(k, dtype=bool)
    included[list(excluded)] = False
    q = np.where(included, a / (k - len(excluded) - 1), 0.0) * np.ones(y.shape + (k,))
    np.put_along_axis(q, y[..., None], 1.0 - a, axis=-1)
    onehot = np.eye(k)[y]
    return np.where(included[y][..., None], q, onehot)  # an excluded target is not smoothed


def padded_setup(rng):
    """:return: dims (batch, time, vocab) with dynamic time, logits [B,T,K] and targets [B,T] (garbage padding)"""
    batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(LENS, dims=[batch]), name="time")
    x = rng.standard_normal((B, T, K)).astype("float32")
    y = rng.integers(0, K, size=(B, T))
    y[1, 3] = 99  # padding may hold anything (like PyTorch's ignore_index)
    return (batch, time, vocab), x, y


def valid() -> np.ndarray:
    return np.arange(T)[None, :] < LENS[:, None]


def ls_ce(dims, y, **kwargs):
    """:return: fn(raw logits) -> loss, for BackendHelper.value_and_grad"""
    batch, time, vocab = dims

    def fn(raw):
        logits = rf.convert_to_tensor(raw, dims=[batch, time, vocab], feature_dim=vocab)
        targets = rf.convert_to_tensor(y, dims=[batch, time], sparse_dim=vocab)
        return rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, **kwargs)

    return fn


@pytest.mark.parametrize("excluded", [(), (0,), (0, 5)])
def test_returnn_convention_matches_dense_numpy_path(backend, rng, excluded):
    dims, x, y = padded_setup(rng)
    y[0, 0] = excluded[-1] if excluded else 0  # one frame whose target is an excluded label
    loss, (grad,) = backend.value_and_grad(ls_ce(dims, y, smoothing=0.2, exclude_labels=excluded or None), x)
    y_safe = np.where(valid(), y, 0)
    q = np_returnn_target(y_safe, K, 0.2, excluded)
    ref = -(q * np_log_softmax(x)).sum(-1) * valid()
    ref_grad = (np.exp(np_log_softmax(x)) - q) * valid()[..., None]
    assert loss.dtype == np.float32 and loss.shape == (B, T)
    np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_returnn_convention_equals_cross_entropy_of_label_smoothing(backend, rng):
    dims, x, y = padded_setup(rng)
    batch, time, vocab = dims
    fused, _ = backend.value_and_grad(ls_ce(dims, y, smoothing=0.1), x)
    y_safe = np.where(valid(), y, 0)
    target = rf.label_smoothing(rf.convert_to_tensor(y_safe, dims=[batch, time], sparse_dim=vocab), 0.1)
    logits = rf.convert_to_tensor(x, dims=[batch, time, vocab], feature_dim=vocab)
    dense = rf.cross_entropy(estimated=logits, target=target, axis=vocab, estimated_type="logits")
    np.testing.assert_allclose(fused, dense.numpy() * valid(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_weight", [False, True])
def test_uniform_matches_torch_cross_entropy(backend, rng, with_weight):
    import torch
    import torch.nn.functional as F

    dims, x, y = padded_setup(rng)
    w = (rng.random(K) + 0.2).astype("float32")
    weight = rf.convert_to_tensor(w, dims=[dims[2]]) if with_weight else None
    loss, (grad,) = backend.value_and_grad(ls_ce(dims, y, smoothing=0.3, convention="uniform", weight=weight), x)
    xt = torch.tensor(x, requires_grad=True)
    ref = F.cross_entropy(
        xt.permute(0, 2, 1), torch.tensor(np.where(valid(), y, -100)), weight=torch.tensor(w) if with_weight else None,
        label_smoothing=0.3, reduction="none", ignore_index=-100,
    )  # fmt: skip
    ref.sum().backward()
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_class_axis_not_last_matches_torch(backend, rng):
    import torch
    import torch.nn.functional as F

    batch, vocab, time = Dim(2, name="batch"), Dim(K, name="vocab"), Dim(5, name="time")
    x = rng.standard_normal((2, K, 5)).astype("float32")  # [batch, vocab, time], as F.cross_entropy takes it
    y = rng.integers(0, K, size=(5, 2))  # targets [time, batch]: another order again

    def fn(raw):
        logits = rf.convert_to_tensor(raw, dims=[batch, vocab, time])
        targets = rf.convert_to_tensor(y, dims=[time, batch], sparse_dim=vocab)
        return rf.label_smoothed_cross_entropy(
            logits=logits, targets=targets, axis=vocab, smoothing=0.2, convention="uniform"
        )

    loss, (grad,) = backend.value_and_grad(fn, x)
    xt = torch.tensor(x, requires_grad=True)
    ref = F.cross_entropy(xt, torch.tensor(y.T), label_smoothing=0.2, reduction="none")
    ref.sum().backward()
    np.testing.assert_allclose(loss, ref.detach().numpy().T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_uniform_matches_keras_categorical_crossentropy(backend, rng):
    import keras

    batch, vocab = Dim(6, name="batch"), Dim(K, name="vocab")
    x = (3 * rng.standard_normal((6, K))).astype("float32")
    y = rng.integers(0, K, size=(6,))

    def fn(raw):
        logits = rf.convert_to_tensor(raw, dims=[batch, vocab], feature_dim=vocab)
        targets = rf.convert_to_tensor(y, dims=[batch], sparse_dim=vocab)
        return rf.label_smoothed_cross_entropy(
            logits=logits, targets=targets, axis=vocab, smoothing=0.25, convention="uniform"
        )

    loss, _ = backend.value_and_grad(fn, x)
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.25, reduction=None)
    ref = np.asarray(cce(np.eye(K, dtype="float32")[y], x))
    np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-6)


def test_padded_frames_get_zero_loss_and_exactly_zero_gradient(backend, rng):
    dims, x, y = padded_setup(rng)
    x[1, 2:] = 1e30  # huge logits on padding must not leak into the loss or the gradient
    loss, (grad,) = backend.value_and_grad(ls_ce(dims, y, smoothing=0.1, z_loss=1e-3), x)
    assert np.all(loss[~valid()] == 0.0) and np.all(grad[~valid()] == 0.0)
    assert np.all(np.isfinite(loss)) and np.all(loss[valid()] > 0)


def test_z_loss_adds_squared_logsumexp(backend, rng):
    dims, x, y = padded_setup(rng)
    x += 5.0
    base, (g0,) = backend.value_and_grad(ls_ce(dims, y, smoothing=0.1), x)
    loss, (g1,) = backend.value_and_grad(ls_ce(dims, y, smoothing=0.1, z_loss=0.01), x)
    lse = np.log(np.exp(x.astype(np.float64)).sum(-1))
    np.testing.assert_allclose(loss - base, 0.01 * lse**2 * valid(), rtol=1e-4, atol=1e-5)
    softmax = np.exp(np_log_softmax(x))
    np.testing.assert_allclose(g1 - g0, 0.02 * (lse[..., None] * softmax) * valid()[..., None], atol=1e-5)


def test_gradient_matches_finite_differences(backend, rng):
    dims, x, y = padded_setup(rng)
    x64 = x.astype(np.float64)
    w = rf.convert_to_tensor(rng.random(K) + 0.5, dims=[dims[2]], dtype="float64")
    fn = ls_ce(dims, y, smoothing=0.3, exclude_labels=[1], weight=w, z_loss=0.05)
    _, (grad,) = backend.value_and_grad(fn, x64)
    eps, i = 1e-6, (0, 1, 3)
    plus, minus = x64.copy(), x64.copy()
    plus[i] += eps
    minus[i] -= eps
    numeric = (backend.value_and_grad(fn, plus)[0].sum() - backend.value_and_grad(fn, minus)[0].sum()) / (2 * eps)
    np.testing.assert_allclose(grad[i], numeric, rtol=1e-6)


def test_tensor_smoothing_equals_float_smoothing(backend, rng):
    dims, x, y = padded_setup(rng)
    a = rf.convert_to_tensor(np.float32(0.15), dims=[])
    loss_t, (grad_t,) = backend.value_and_grad(ls_ce(dims, y, smoothing=a), x)
    loss_f, (grad_f,) = backend.value_and_grad(ls_ce(dims, y, smoothing=0.15), x)
    np.testing.assert_allclose(loss_t, loss_f, rtol=1e-6)
    np.testing.assert_allclose(grad_t, grad_f, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_accumulates_in_float32(backend, rng, dtype):
    batch, vocab = Dim(4, name="batch"), Dim(4096, name="vocab")
    # Sum of logits ~ 4096 * 40: overflows float16 if summed in half precision.
    x = (40.0 + rng.standard_normal((4, 4096))).astype("float32")
    y = rng.integers(0, 4096, size=(4,))
    logits = rf.cast(rf.convert_to_tensor(x, dims=[batch, vocab], feature_dim=vocab), dtype)
    targets = rf.convert_to_tensor(y, dims=[batch], sparse_dim=vocab)
    loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.1)
    assert loss.dtype == "float32"
    x_half = rf.cast(logits, "float32").numpy().astype(np.float64)  # the values as rounded to half precision
    q = np_returnn_target(y, 4096, 0.1)
    np.testing.assert_allclose(loss.numpy(), -(q * np_log_softmax(x_half)).sum(-1), rtol=1e-4)


def test_half_precision_gradient_has_the_logits_dtype(backend, rng):
    dims, x, y = padded_setup(rng)
    batch, time, vocab = dims

    def fn(raw):
        logits = rf.cast(rf.convert_to_tensor(raw, dims=[batch, time, vocab]), "float16")
        targets = rf.convert_to_tensor(y, dims=[batch, time], sparse_dim=vocab)
        out = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.1)
        assert out.dtype == "float32"
        return out

    loss, (grad,) = backend.value_and_grad(fn, x)
    ref_loss, (ref_grad,) = backend.value_and_grad(ls_ce(dims, y, smoothing=0.1), x)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(grad, ref_grad, atol=2e-3)


def _call(dims, x, y, **kwargs):
    batch, time, vocab = dims
    logits = rf.convert_to_tensor(x, dims=[batch, time, vocab], feature_dim=vocab)
    targets = rf.convert_to_tensor(y, dims=[batch, time], sparse_dim=vocab)
    return rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"smoothing": 0.1, "convention": "keras"}, ValueError, "convention"),
        ({"smoothing": 1.5}, ValueError, "smoothing"),
        ({"smoothing": "0.1"}, TypeError, "smoothing"),
        ({"smoothing": 0.1, "exclude_labels": [K]}, ValueError, "exclude_labels"),
        ({"smoothing": 0.1, "z_loss": -1.0}, ValueError, "z_loss"),
    ],
)
def test_bad_arguments_raise(backend, rng, kwargs, error, match):
    dims, x, y = padded_setup(rng)
    with pytest.raises(error, match=match):
        _call(dims, x, y, **kwargs)


@pytest.mark.parametrize("bad_label", [-1, K])
def test_targets_out_of_range_raise(backend, rng, bad_label):
    dims, x, y = padded_setup(rng)
    y[0, 1] = bad_label
    with pytest.raises(ValueError, match="targets"):
        _call(dims, x, y, smoothing=0.1)


def test_weight_must_have_dims_axis_and_be_non_negative(backend, rng):
    dims, x, y = padded_setup(rng)
    batch, time, vocab = dims
    with pytest.raises(ValueError, match="weight"):
        _call(dims, x, y, smoothing=0.1, weight=rf.convert_to_tensor(np.ones((B, K), "float32"), dims=[batch, vocab]))
    with pytest.raises(ValueError, match="weight"):
        _call(dims, x, y, smoothing=0.1, weight=rf.convert_to_tensor(-np.ones(K, "float32"), dims=[vocab]))
    with pytest.raises(TypeError, match="weight"):
        _call(dims, x, y, smoothing=0.1, weight=np.ones(K, "float32"))


def test_targets_must_be_int_with_the_frame_dims(backend, rng):
    dims, x, y = padded_setup(rng)
    batch, time, vocab = dims
    logits = rf.convert_to_tensor(x, dims=[batch, time, vocab], feature_dim=vocab)
    with pytest.raises(TypeError, match="targets"):
        rf.label_smoothed_cross_entropy(
            logits=logits, targets=rf.convert_to_tensor(y.astype("float32"), dims=[batch, time]), axis=vocab,
            smoothing=0.1,
        )  # fmt: skip
    with pytest.raises(ValueError, match="targets"):
        rf.label_smoothed_cross_entropy(
            logits=logits, targets=rf.convert_to_tensor(y[:, 0], dims=[batch]), axis=vocab, smoothing=0.1
        )
