"""ctc_loss against F.ctc_loss, and its smoothed gradient against the posterior recovered from PyTorch's gradient."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

B, T, K, S = 3, 6, 6, 3
IN_LENS = np.array([6, 4, 5])
TGT_LENS = np.array([3, 2, 3])


def setup(rng, blank: int = 0, impossible: bool = False):
    """:return: dims (batch, time, vocab, labels), logits [B,T,K], targets [B,S] without blanks"""
    batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(IN_LENS, dims=[batch]), name="time")
    labels = Dim(rf.convert_to_tensor(TGT_LENS, dims=[batch]), name="labels")
    x = (2 * rng.standard_normal((B, T, K))).astype("float32")
    non_blank = np.array([k for k in range(K) if k != blank])
    y = non_blank[rng.integers(0, K - 1, size=(B, S))]
    if impossible:
        y[2] = [non_blank[1]] * 3  # "a a a" needs 5 frames with blanks between repeats; give it 4
        y[1, 1] = non_blank[2]
    return (batch, time, vocab, labels), x, y


def ctc_fn(dims, y, in_lens=IN_LENS, **kwargs):
    batch, time, vocab, labels = dims
    if in_lens is not IN_LENS:
        time = Dim(rf.convert_to_tensor(in_lens, dims=[batch]), name="time")

    def fn(raw):
        logits = rf.convert_to_tensor(raw, dims=[batch, time, vocab], feature_dim=vocab)
        targets = rf.convert_to_tensor(y, dims=[batch, labels], sparse_dim=vocab)
        return rf.ctc_loss(logits=logits, targets=targets, input_spatial_dim=time, targets_spatial_dim=labels, **kwargs)

    return fn


def torch_ctc(x, y, blank, in_lens=IN_LENS):
    """:return: (F.ctc_loss(reduction="none") in float64, its gradient w.r.t. the logits)"""
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    lp = xt.log_softmax(-1).transpose(0, 1)
    loss = F.ctc_loss(lp, torch.tensor(y), torch.tensor(in_lens), torch.tensor(TGT_LENS), blank=blank, reduction="none")
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_smooth_posterior(q: np.ndarray, a: float, blank: int) -> np.ndarray:
    """Smooth over the non-blank labels, keeping the blank and the total mass (written out)."""
    k = q.shape[-1]
    non_blank = np.arange(k) != blank
    mass = (q * non_blank).sum(-1, keepdims=True)
    smoothed = q * (1 - a) + (mass - q) * a / (k - 2)  # a label keeps 1-a of its mass, gets a/(k-2) of the others'
    return np.where(non_blank, smoothed, q)


@pytest.mark.parametrize("blank", [0, K - 1])
def test_ctc_loss_matches_torch_ctc_loss(backend, rng, blank):
    dims, x, y = setup(rng, blank)
    loss, (grad,) = backend.value_and_grad(ctc_fn(dims, y, blank_index=blank), x)
    ref, ref_grad = torch_ctc(x, y, blank)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-5)
    frames = np.arange(T)[None, :] < IN_LENS[:, None]
    assert np.all(grad[~frames] == 0.0)


@pytest.mark.parametrize("blank", [0, 2])
def test_smoothed_gradient_is_softmax_minus_smoothed_posterior(backend, rng, blank):
    dims, x, y = setup(rng, blank)
    loss, (grad,) = backend.value_and_grad(ctc_fn(dims, y, blank_index=blank, label_smoothing=0.2), x)
    ref, ref_grad = torch_ctc(x, y, blank)
    frames = (np.arange(T)[None, :] < IN_LENS[:, None])[..., None]
    q = np_softmax(x.astype(np.float64)) - ref_grad  # the posterior, recovered from the unsmoothed gradient
    q_smooth = np_smooth_posterior(q, 0.2, blank)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)  # the loss value is not smoothed
    np.testing.assert_allclose(grad, (np_softmax(x) - q_smooth) * frames, atol=1e-5)
    np.testing.assert_allclose(q_smooth.sum(-1), 1.0, rtol=1e-6)  # mass preserved
    np.testing.assert_allclose(grad.sum(-1), 0.0, atol=1e-5)
    assert np.all(grad[..., blank] == pytest.approx(ref_grad[..., blank], abs=1e-5))


def test_tensor_label_smoothing_equals_float(backend, rng):
    dims, x, y = setup(rng)
    a = rf.convert_to_tensor(np.float32(0.3), dims=[])
    _, (grad_t,) = backend.value_and_grad(ctc_fn(dims, y, blank_index=0, label_smoothing=a), x)
    _, (grad_f,) = backend.value_and_grad(ctc_fn(dims, y, blank_index=0, label_smoothing=0.3), x)
    np.testing.assert_allclose(grad_t, grad_f, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_impossible_alignment_gives_inf_or_zero_and_no_nan_gradients(backend, rng, zero_infinity):
    dims, x, y = setup(rng, impossible=True)
    in_lens = np.array([6, 4, 4])
    fn = ctc_fn(dims, y, in_lens=in_lens, blank_index=0, label_smoothing=0.1, zero_infinity=zero_infinity)
    loss, (grad,) = backend.value_and_grad(fn, x)
    ref, _ = torch_ctc(x, y, 0, in_lens)
    assert np.isinf(ref[2])
    assert loss[2] == (0.0 if zero_infinity else np.inf)
    np.testing.assert_allclose(loss[:2], ref[:2], rtol=1e-5)
    assert np.all(np.isfinite(grad)) and np.all(grad[2] == 0.0)
    _, (grad_ok,) = backend.value_and_grad(ctc_fn(dims, y, in_lens=in_lens, blank_index=0, label_smoothing=0.1), x)
    np.testing.assert_allclose(grad[:2], grad_ok[:2], atol=1e-7)


def test_normalized_logits_get_the_true_gradient_minus_the_posterior(backend, rng):
    dims, x, y = setup(rng)
    lp = (x - np.log(np.exp(x.astype(np.float64)).sum(-1, keepdims=True))).astype("float32")
    loss, (grad,) = backend.value_and_grad(ctc_fn(dims, y, blank_index=0, logits_normalized=True), lp)
    ref, ref_grad = torch_ctc(x, y, 0)
    frames = np.arange(T)[None, :] < IN_LENS[:, None]
    q = (np_softmax(x.astype(np.float64)) - ref_grad) * frames[..., None]  # the posterior, from PyTorch's softmax - q
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    np.testing.assert_allclose(grad, -q, atol=1e-5)  # d(-log p(y|x)) / d log-prob = -q, not PyTorch's exp(lp) - q
    np.testing.assert_allclose(grad.sum(-1), -frames.astype(np.float64), atol=1e-5)


def test_several_batch_dims_in_any_order(backend, rng):
    dims, x, y = setup(rng)
    batch, time, vocab, labels = dims
    beam = Dim(2, name="beam")
    x2 = np.stack([x, x[::-1]], axis=0).transpose(2, 0, 3, 1)  # [time, beam, vocab, batch]
    y2 = np.stack([y, y[::-1]], axis=0).transpose(1, 2, 0)  # [batch, labels, beam]
    time2 = Dim(rf.convert_to_tensor(np.stack([IN_LENS, IN_LENS[::-1]]), dims=[beam, batch]), name="time2")
    lab2 = Dim(rf.convert_to_tensor(np.stack([TGT_LENS, TGT_LENS[::-1]]), dims=[beam, batch]), name="lab2")
    logits = rf.convert_to_tensor(x2, dims=[time2, beam, vocab, batch], feature_dim=vocab)
    targets = rf.convert_to_tensor(y2, dims=[batch, lab2, beam], sparse_dim=vocab)
    loss = rf.ctc_loss(logits=logits, targets=targets, input_spatial_dim=time2, targets_spatial_dim=lab2, blank_index=0)
    assert set(loss.dims) == {beam, batch}
    ref, _ = torch_ctc(x, y, 0)
    out = loss.copy_transpose([beam, batch]).numpy()
    np.testing.assert_allclose(out, np.stack([ref, ref[::-1]]), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"blank_index": K}, ValueError, "blank_index"),
        ({"blank_index": 1.0}, TypeError, "blank_index"),
        ({"blank_index": 0, "label_smoothing": 1.5}, ValueError, "label_smoothing"),
        ({"blank_index": 0, "zero_infinity": "yes"}, TypeError, "zero_infinity"),
    ],
)
def test_bad_arguments_raise(backend, rng, kwargs, error, match):
    dims, x, y = setup(rng)
    with pytest.raises(error, match=match):
        ctc_fn(dims, y, **kwargs)(backend.raw(x))


def test_targets_out_of_range_raise(backend, rng):
    dims, x, y = setup(rng)
    y[0, 0] = K
    with pytest.raises(ValueError, match="targets"):
        ctc_fn(dims, y, blank_index=0)(backend.raw(x))


def test_targets_without_the_batch_dims_broadcast(backend, rng):
    """As RETURNN: batch dims that only the logits have broadcast the targets (the same labels for every entry)."""
    dims, x, y = setup(rng)
    batch, time, vocab, labels = dims
    logits = rf.convert_to_tensor(x, dims=[batch, time, vocab], feature_dim=vocab)
    targets = rf.convert_to_tensor(y[0, :2], dims=[Dim(2, name="s")])
    loss = rf.ctc_loss(
        logits=logits, targets=targets, input_spatial_dim=time, targets_spatial_dim=targets.dims[0], blank_index=0
    )
    two = Dim(rf.convert_to_tensor(np.full(B, 2, "int32"), dims=[batch]), name="two")
    ref = ctc_fn((batch, time, vocab, two), np.repeat(y[:1, :2], B, 0), blank_index=0)(backend.raw(x))  # per entry
    np.testing.assert_allclose(loss.numpy(), ref.numpy(), rtol=1e-6)


@pytest.mark.parametrize("blank", [0, 2])
def test_smoothing_the_log_prob_gradient_in_front_of_normalized_ctc_equals_ctc_label_smoothing(backend, rng, blank):
    """``log_softmax -> label_smoothed_log_prob_gradient(exclude_labels=[blank]) -> ctc_loss(logits_normalized)``,
    the pattern RETURNN setups write, gives the gradient of ``ctc_loss(label_smoothing=a)`` w.r.t. the logits."""
    dims, x, y = setup(rng, blank)
    batch, time, vocab, labels = dims

    def path(raw):
        logits = rf.convert_to_tensor(raw, dims=[batch, time, vocab], feature_dim=vocab)
        log_probs = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=vocab), 0.2, exclude_labels=[blank])
        targets = rf.convert_to_tensor(y, dims=[batch, labels], sparse_dim=vocab)
        return rf.ctc_loss(logits=log_probs, targets=targets, input_spatial_dim=time, targets_spatial_dim=labels,
                           blank_index=blank, logits_normalized=True)  # fmt: skip

    loss, (grad,) = backend.value_and_grad(path, x)
    fused_loss, (fused_grad,) = backend.value_and_grad(ctc_fn(dims, y, blank_index=blank, label_smoothing=0.2), x)
    np.testing.assert_allclose(loss, fused_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, fused_grad, atol=1e-6)
    ref, ref_grad = torch_ctc(x, y, blank)  # and both are softmax - q' with q from PyTorch's gradient
    frames = (np.arange(T)[None, :] < IN_LENS[:, None])[..., None]
    q_smooth = np_smooth_posterior(np_softmax(x.astype(np.float64)) - ref_grad, 0.2, blank)
    np.testing.assert_allclose(grad, (np_softmax(x) - q_smooth) * frames, atol=1e-5)
