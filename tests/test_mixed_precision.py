"""Mixed precision: torch autocast bf16 on CPU and Keras ``mixed_float16`` give finite losses and gradients
within a stated tolerance of float32, and fp16 logits of magnitude 1e4 do not overflow the smoothing sums.

Tolerances against the float32 run (largest error measured on this CPU in brackets): bf16 autocast loss rtol 1e-2
[8e-4], gradient 2e-2 of its largest entry [4.4e-3]; Keras mixed_float16 loss rtol 1e-3 [1.3e-5], gradient 5e-3 of
its largest entry [5.3e-4]; logits of magnitude 1e4: loss rtol 1e-3 fp16 [9e-5] / 5e-3 bf16 [8e-4], gradient atol
5e-3 fp16 [1.6e-3] / 3e-2 bf16 [1.0e-2].
"""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

B, T, F, K = 4, 6, 8, 10
LENS = np.array([6, 4, 5, 1])
_rng = np.random.default_rng(1)
FEATURES = _rng.standard_normal((B, T, F)).astype(np.float32)
WEIGHTS = (_rng.standard_normal((F, K)) / np.sqrt(F)).astype(np.float32)
LABELS = _rng.integers(0, K, size=(B, T))


def _losses(logits_raw, smoothing=0.1):
    """:return: the summed losses (raw scalars) of the ways to train with label smoothing, on ``logits_raw``"""
    batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(LENS, dims=[batch]), name="time")
    z = rf.convert_to_tensor(logits_raw, dims=[batch, time, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(LABELS, dims=[batch, time], sparse_dim=vocab)
    log_prob = rf.log_softmax(z, axis=vocab)
    out = {
        "smoothed_targets": rf.cross_entropy(
            estimated=z, target=rf.label_smoothing(y, smoothing), axis=vocab, estimated_type="logits"
        ),
        "smoothed_gradient": rf.cross_entropy(
            estimated=rf.label_smoothed_log_prob_gradient(log_prob, smoothing, exclude_labels=[0]),
            target=y,
            axis=vocab,
            estimated_type="log-probs",
        ),
    }
    out["fused"] = rf.label_smoothed_cross_entropy(logits=z, targets=y, axis=vocab, smoothing=smoothing)
    return {name: rf.reduce_sum(rf.cast(loss, "float32"), axis=[batch, time]).raw_tensor for name, loss in out.items()}


def _assert_close_to_float32(low, high, loss_rtol, grad_rtol):
    for name in high:
        (loss_low, grad_low), (loss_high, grad_high) = low[name], high[name]
        assert np.isfinite(loss_low) and np.all(np.isfinite(grad_low)), name
        np.testing.assert_allclose(loss_low, loss_high, rtol=loss_rtol, err_msg=name)
        np.testing.assert_allclose(grad_low, grad_high, atol=grad_rtol * np.abs(grad_high).max(), err_msg=name)


def test_torch_autocast_bf16_is_finite_and_close_to_float32(select):
    torch = pytest.importorskip("torch")
    select("torch")
    results = {}
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            weights = torch.tensor(WEIGHTS, requires_grad=True)
            logits = torch.tensor(FEATURES) @ weights
            assert logits.dtype == (torch.bfloat16 if autocast else torch.float32)
            losses = _losses(logits)
        results[autocast] = {}
        for name, loss in losses.items():
            (grad,) = torch.autograd.grad(loss, [weights], retain_graph=True)
            results[autocast][name] = (loss.item(), grad.float().numpy())
    _assert_close_to_float32(results[True], results[False], loss_rtol=1e-2, grad_rtol=2e-2)


@pytest.fixture
def keras_policy():
    keras = pytest.importorskip("keras")
    previous = keras.mixed_precision.global_policy()
    yield keras
    keras.mixed_precision.set_global_policy(previous)


def test_keras_mixed_float16_is_finite_and_close_to_float32(select, keras_policy):
    tf = pytest.importorskip("tensorflow")
    keras = keras_policy
    select("tensorflow")
    results = {}
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        layer = keras.layers.Dense(K, use_bias=False)
        layer.build((None, F))
        layer.kernel.assign(WEIGHTS)
        results[policy] = {}
        for name in _losses(tf.zeros((B, T, K))):
            with tf.GradientTape() as tape:
                logits = layer(tf.constant(FEATURES))
                assert logits.dtype.name == ("float16" if policy == "mixed_float16" else "float32")
                loss = _losses(logits)[name]
            grad = tape.gradient(loss, layer.kernel)
            results[policy][name] = (float(loss), grad.numpy())
    _assert_close_to_float32(results["mixed_float16"], results["float32"], loss_rtol=1e-3, grad_rtol=5e-3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_large_half_precision_logits_do_not_overflow_the_smoothing_sums(backend, dtype):
    logits = np.random.default_rng(2).uniform(-1e4, 1e4, size=(B, T, K)).astype(np.float32)
    logits = logits.astype(np.float16).astype(np.float32)  # representable in fp16, so both runs see the same input
    value_high, (grad_high,) = backend.value_and_grad(lambda z: _stack(_losses(z, 0.3)), logits)
    value_low, (grad_low,) = backend.value_and_grad(lambda z: _stack(_losses(backend.impl.cast(z, dtype), 0.3)), logits)
    assert np.all(np.isfinite(value_low)) and np.all(np.isfinite(grad_low))
    loss_rtol, grad_atol = (1e-3, 5e-3) if dtype == "float16" else (5e-3, 3e-2)
    np.testing.assert_allclose(value_low, value_high, rtol=loss_rtol)
    np.testing.assert_allclose(grad_low, grad_high, atol=grad_atol)


def _stack(losses: dict) -> rf.Tensor:
    total = sum(losses.values())
    return rf.convert_to_tensor(total, dims=())
