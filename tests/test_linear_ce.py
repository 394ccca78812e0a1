"""``linear_label_smoothed_cross_entropy``: the same loss and gradients as the unfused projection + CE."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf

B, T, H, K = 3, 5, 4, 7
LENS = np.array([5, 2, 4])


def _smoothed_target(y: np.ndarray, a: float, convention: str, excluded: tuple[int, ...]) -> np.ndarray:
    """:return: the dense smoothed target ``[..., K]`` (numpy reference); an excluded target is not smoothed"""
    included = np.ones(K, bool)
    included[list(excluded)] = False
    floor = a / (included.sum() - 1 if convention == "returnn" else included.sum())
    on = 1.0 - a + (0.0 if convention == "returnn" else floor)
    onehot = np.eye(K)[y]
    smoothed = np.where(included, floor, 0.0) * (1 - onehot) + on * onehot
    return np.where(included[y][..., None], smoothed, onehot)


def _numpy_reference(h, w, b, y, dl, a, convention, excluded):
    """:return: (loss, [dh, dw, db]) in float64 for ``w`` of shape ``[K, H]`` and upstream gradient ``dl``"""
    z = h.astype("float64") @ w.T.astype("float64") + b
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    q = _smoothed_target(y, a, convention, excluded)
    loss = -(q * (z - lse[..., None])).sum(-1)
    g = (np.exp(z - lse[..., None]) - q) * dl[..., None]
    return loss, [g @ w, np.einsum("btk,bth->kh", g, h), g.sum((0, 1))]


def _dims():
    b, h, k = rf.Dim(B, name="b"), rf.Dim(H, name="h"), rf.Dim(K, name="k")
    t = rf.Dim(rf.convert_to_tensor(LENS, dims=[b]), name="t")
    return b, t, h, k


def _fused(y, dl, dims, **kwargs):
    b, t, h, k = dims

    def fn(raw_h, raw_w, raw_b):
        loss = rf.linear_label_smoothed_cross_entropy(
            hidden=rf.convert_to_tensor(raw_h, dims=[b, t, h]),
            weight=rf.convert_to_tensor(raw_w, dims=[k, h]),
            bias=rf.convert_to_tensor(raw_b, dims=[k]),
            targets=rf.convert_to_tensor(y.T, dims=[t, b], sparse_dim=k),  # other dim order than hidden
            axis=k,
            **kwargs,
        )
        return loss * rf.convert_to_tensor(dl.T, dims=[t, b])

    return fn


@pytest.mark.parametrize("chunk_size", [1, 4, 100])
@pytest.mark.parametrize(
    "convention, excluded", [("returnn", ()), ("uniform", ()), ("returnn", (0,)), ("uniform", (0, 3))]
)
def test_loss_and_gradients_equal_numpy_reference(backend, rng, convention, excluded, chunk_size):
    h = rng.standard_normal((B, T, H)).astype("float32")
    w, bias = rng.standard_normal((K, H)).astype("float32"), rng.standard_normal(K).astype("float32")
    y = rng.integers(0, K, (B, T))
    y[0, :2] = 0  # a target that may be excluded
    dl = rng.uniform(0.5, 2.0, (B, T)).astype("float32")  # an arbitrary per-frame upstream gradient
    dims = _dims()
    fn = _fused(y, dl, dims, smoothing=0.1, convention=convention, exclude_labels=excluded, chunk_size=chunk_size)
    value, grads = backend.value_and_grad(fn, h, w, bias)
    valid = np.arange(T)[None, :] < LENS[:, None]
    ref_loss, ref_grads = _numpy_reference(h, w, bias, y, dl * valid, 0.1, convention, excluded)
    np.testing.assert_allclose(value.T, ref_loss * dl * valid, rtol=1e-5, atol=1e-5)
    for got, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_padding_frames_get_zero_loss_and_gradient(backend, rng):
    h = rng.standard_normal((B, T, H)).astype("float32")
    w, bias = rng.standard_normal((K, H)).astype("float32"), np.zeros(K, "float32")
    y = rng.integers(0, K, (B, T))
    fn = _fused(y, np.ones((B, T), "float32"), _dims(), smoothing=0.2, chunk_size=3)
    value, (dh, _, _) = backend.value_and_grad(fn, h, w, bias)
    padding = np.arange(T)[None, :] >= LENS[:, None]
    assert np.all(value.T[padding] == 0.0)
    assert np.all(dh[padding] == 0.0)
    assert np.all(value.T[~padding] > 0.0)


def test_equals_unfused_projection_and_cross_entropy(backend, rng):
    """Against ``cross_entropy(estimated=h @ W + b, target=label_smoothing(targets, a))`` built from our ops."""
    n, hd, kd = rf.Dim(6, name="n"), rf.Dim(H, name="h"), rf.Dim(K, name="k")
    h = rng.standard_normal((6, H)).astype("float32")
    w = rng.standard_normal((H, K)).astype("float32")
    y = rf.convert_to_tensor(rng.integers(0, K, 6), dims=[n], sparse_dim=kd)

    def fused(raw_h, raw_w):
        hidden, weight = rf.convert_to_tensor(raw_h, dims=[n, hd]), rf.convert_to_tensor(raw_w, dims=[hd, kd])
        return rf.linear_label_smoothed_cross_entropy(
            hidden=hidden, weight=weight, targets=y, axis=kd, smoothing=0.3, chunk_size=4
        )

    def unfused(raw_h, raw_w):
        logits = rf.convert_to_tensor(rf.convert_to_tensor(raw_h, dims=[n, hd]).backend.matmul(raw_h, raw_w),
                                      dims=[n, kd])  # fmt: skip
        target = rf.label_smoothing(y, 0.3)
        return rf.cross_entropy(estimated=logits, target=target, axis=kd, estimated_type="logits")

    value, grads = backend.value_and_grad(fused, h, w)
    ref_value, ref_grads = backend.value_and_grad(unfused, h, w)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-6)
    for got, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_uniform_convention_equals_torch_cross_entropy(rng):
    torch = pytest.importorskip("torch")
    rf.select_backend("torch")
    h = torch.tensor(rng.standard_normal((10, H)).astype("float32"), requires_grad=True)
    w = torch.tensor(rng.standard_normal((K, H)).astype("float32"), requires_grad=True)
    y = torch.tensor(rng.integers(0, K, 10))
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, label_smoothing=0.2, reduction="none")
    ref_grads = torch.autograd.grad(ref.sum(), (h, w))
    n, hd, kd = rf.Dim(10, name="n"), rf.Dim(H, name="h"), rf.Dim(K, name="k")
    loss = rf.linear_label_smoothed_cross_entropy(
        hidden=rf.convert_to_tensor(h, dims=[n, hd]), weight=rf.convert_to_tensor(w, dims=[kd, hd]),
        targets=rf.convert_to_tensor(y, dims=[n], sparse_dim=kd), axis=kd, smoothing=0.2, convention="uniform",
        chunk_size=3,
    )  # fmt: skip
    grads = torch.autograd.grad(loss.raw_tensor.sum(), (h, w))
    torch.testing.assert_close(loss.raw_tensor, ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_works_inside_tf_function(rng):
    tf = pytest.importorskip("tensorflow")
    rf.select_backend("tensorflow")
    n, hd, kd = rf.Dim(9, name="n"), rf.Dim(H, name="h"), rf.Dim(K, name="k")
    h = rng.standard_normal((9, H)).astype("float32")
    w = rng.standard_normal((H, K)).astype("float32")
    y = rng.integers(0, K, 9)

    def loss_and_grad(raw_h, raw_w):
        with tf.GradientTape() as tape:
            tape.watch([raw_h, raw_w])
            loss = rf.linear_label_smoothed_cross_entropy(
                hidden=rf.convert_to_tensor(raw_h, dims=[n, hd]), weight=rf.convert_to_tensor(raw_w, dims=[hd, kd]),
                targets=rf.convert_to_tensor(y, dims=[n], sparse_dim=kd), axis=kd, smoothing=0.1, chunk_size=4,
            )  # fmt: skip
            total = tf.reduce_sum(loss.raw_tensor)
        return total, tape.gradient(total, [raw_h, raw_w])

    args = (tf.constant(h), tf.constant(w))
    eager = loss_and_grad(*args)
    graph = tf.function(loss_and_grad)(*args)
    np.testing.assert_allclose(graph[0].numpy(), eager[0].numpy(), rtol=1e-6)
    for got, want in zip(graph[1], eager[1]):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


def test_rejects_weight_without_the_class_axis(backend):
    n, hd, kd, other = rf.Dim(2, name="n"), rf.Dim(H, name="h"), rf.Dim(K, name="k"), rf.Dim(K, name="o")
    hidden = rf.convert_to_tensor(np.zeros((2, H), "float32"), dims=[n, hd])
    weight = rf.convert_to_tensor(np.zeros((H, K), "float32"), dims=[hd, other])
    targets = rf.convert_to_tensor(np.zeros(2, "int64"), dims=[n], sparse_dim=kd)
    with pytest.raises(ValueError, match="not one of the tensor"):
        rf.linear_label_smoothed_cross_entropy(hidden=hidden, weight=weight, targets=targets, axis=kd, smoothing=0.1)
