"""Both backends give the same numbers on the same inputs, and TF works eagerly, in tf.function and with XLA."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


def _smoothed_ce_grad(raw_logits, labels, lens, smoothing):
    """Frame-level CE through gradient smoothing with the blank excluded, padding masked; returns the Tensor."""
    batch, vocab = Dim(labels.shape[0], name="batch"), Dim(raw_logits.shape[-1], name="vocab")
    time = Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time")
    z = rf.convert_to_tensor(raw_logits, dims=[batch, time, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
    lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), smoothing, exclude_labels=[0])
    ce = rf.cross_entropy(estimated=lp, target=y, axis=vocab, estimated_type="log-probs")
    return rf.where(time.get_mask(), ce, 0.0)


def test_torch_and_tensorflow_agree(rng):
    import tensorflow as tf
    import torch

    logits = rng.normal(size=(3, 5, 7)).astype("float32")
    labels = rng.integers(0, 7, size=(3, 5))
    lens = np.array([5, 3, 1])
    results = {}
    zt = torch.tensor(logits, requires_grad=True)
    rf.select_backend("torch")
    loss_t = _smoothed_ce_grad(zt, labels, lens, 0.2)
    loss_t.raw_tensor.sum().backward()
    results["torch"] = (loss_t.numpy(), zt.grad.numpy())
    zf = tf.constant(logits)
    rf.select_backend("tensorflow")
    with tf.GradientTape() as tape:
        tape.watch(zf)
        loss_f = _smoothed_ce_grad(zf, labels, lens, 0.2)
        total = tf.reduce_sum(loss_f.raw_tensor)
    results["tensorflow"] = (loss_f.numpy(), tape.gradient(total, zf).numpy())
    np.testing.assert_allclose(results["torch"][0], results["tensorflow"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["torch"][1], results["tensorflow"][1], rtol=1e-5, atol=1e-6)


def _np_expected_grad(logits, labels, lens, a):
    k = logits.shape[-1]
    soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    target = np.zeros_like(soft)
    np.put_along_axis(target, labels[..., None], 1.0, axis=-1)
    smoothed = np.where(
        np.arange(k) == 0, target, target * (1 - (k - 1) * a / (k - 2)) + a / (k - 2) * (1 - target[..., :1])
    )
    mask = np.arange(logits.shape[1])[None, :] < lens[:, None]
    return np.where(mask[..., None], soft - smoothed, 0.0)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_tensorflow_eager_function_and_xla_give_the_same_gradient(rng, mode):
    import tensorflow as tf

    rf.select_backend("tensorflow")
    logits = rng.normal(size=(2, 4, 6)).astype("float32")
    labels = rng.integers(0, 6, size=(2, 4))
    lens = np.array([4, 2])
    traces = []

    def step(z, a):
        traces.append(1)
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tf.reduce_sum(_smoothed_ce_grad(z, labels, lens, rf.convert_to_tensor(a)).raw_tensor)
        return loss, tape.gradient(loss, z)

    if mode != "eager":
        step = tf.function(step, jit_compile=(mode == "xla"))
    for a in (0.1, 0.3):  # a tensor-valued smoothing (a schedule) must not retrace
        _, grad = step(tf.constant(logits), tf.constant(a, tf.float32))
        np.testing.assert_allclose(grad.numpy(), _np_expected_grad(logits, labels, lens, a), rtol=1e-5, atol=1e-6)
    assert len(traces) == (2 if mode == "eager" else 1)
