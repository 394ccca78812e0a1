"""Grouped Conv1d, pool1d/max_pool1d and BatchNorm against the frameworks' own ops (``torch.nn.functional``,
Keras), with gradients (:func:`tests._nn_helpers.outputs_and_grads`: ``sum(out * w)``, ``w`` from seed 0), in
TensorFlow graph mode, and on the NumPy mini backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import outputs_and_grads, padded_dims, restore_global_state, time_mask  # noqa: F401

IN, OUT, TIME, BATCH = Dim(6, name="in"), Dim(4, name="out"), Dim(9, name="time"), Dim(2, name="batch")


def _torch_grads(fn, *arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """:return: ``fn(*tensors)`` and the gradients of ``sum(out * w)`` (``w`` as :func:`outputs_and_grads`), float64"""
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    (out * torch.tensor(np.random.default_rng(0).normal(size=tuple(out.shape)))).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "same"), (2, "valid")])
def test_grouped_conv1d_equals_torch_grouped_conv1d_with_gradients(backend, rng, strides, padding):
    conv = rf.Conv1d(IN, OUT, 3, padding=padding, strides=strides, groups=2)
    assert conv.filter.dims[1].dimension == 3 and [n for n, _ in conv.named_parameters()] == ["filter", "bias"]
    conv.bias.assign(rng.normal(size=4))
    x = rng.normal(size=(2, 9, 6)).astype("float32")

    def fn(raw):
        return [conv(rf.convert_to_tensor(raw, dims=[BATCH, TIME, IN]), in_spatial_dim=TIME)[0]]

    (y,), (gx,), grads = outputs_and_grads(backend.name, fn, [x], conv)
    pads = (1, 1) if padding == "same" else (0, 0)  # consistent "same": (filter - 1) // 2 frames on the left
    ref, (rx, rw, rb) = _torch_grads(lambda a, w, b: F.conv1d(F.pad(a.transpose(1, 2), pads), w, b, stride=strides,
                                                              groups=2).transpose(1, 2),
                                     x, conv.filter.numpy(), conv.bias.numpy())  # fmt: skip
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    for ours, theirs in ((gx, rx), (grads["filter"], rw), (grads["bias"], rb)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


POOLS = [  # (pool1d kwargs, the torch reference on [N, C, T])
    (dict(mode="max", pool_size=2), lambda a: F.max_pool1d(a, 2)),
    (dict(mode="max", pool_size=3, strides=2, padding="same"), lambda a: F.max_pool1d(a, 3, 2, padding=1)),
    (dict(mode="max", pool_size=2, strides=1, dilation_rate=3), lambda a: F.max_pool1d(a, 2, 1, dilation=3)),
    (dict(mode="max", pool_size=2, strides=3, dilation_rate=2), lambda a: F.max_pool1d(a, 2, 3, dilation=2)),
    (dict(mode="avg", pool_size=3, strides=2), lambda a: F.avg_pool1d(a, 3, 2)),
    (dict(mode="avg", pool_size=3, strides=2, padding="same"),
     lambda a: F.avg_pool1d(a, 3, 2, padding=1, count_include_pad=False)),
    (dict(mode="avg", pool_size=2, strides=3), lambda a: F.avg_pool1d(a, 2, 3)),
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(POOLS)))
def test_pool1d_equals_torch_pooling_with_gradients(backend, rng, index):
    kwargs, reference = POOLS[index]
    x = rng.normal(size=(2, 9, 6)).astype("float32")

    def fn(raw):
        out, out_time = rf.pool1d(rf.convert_to_tensor(raw, dims=[BATCH, TIME, IN], feature_dim=IN),
                                  in_spatial_dim=TIME, **kwargs)  # fmt: skip
        assert out.dims == (BATCH, out_time, IN) and out.feature_dim is IN and out_time.dimension is not None
        return [out]

    (y,), (gx,), _ = outputs_and_grads(backend.name, fn, [x])
    ref, (rx,) = _torch_grads(lambda a: reference(a.transpose(1, 2)).transpose(1, 2), x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-6)


def test_max_pool1d_on_padded_sequences_and_without_a_feature_dim(backend, rng):
    batch, time = padded_dims([7, 2, 5])
    x = rng.normal(size=(3, 7)).astype("float32") - 5.0  # negative: padding (0) must not win the max
    y, out_time = rf.max_pool1d(rf.convert_to_tensor(x, dims=[batch, time]), pool_size=2, in_spatial_dim=time)
    assert y.dims == (batch, out_time) and list(out_time.dyn_size_ext.numpy()) == [3, 1, 2]
    expected = np.zeros((3, 3), "float32")
    for b, n in enumerate([7, 2, 5]):
        expected[b, : n // 2] = x[b, : n // 2 * 2].reshape(-1, 2).max(-1)
    np.testing.assert_allclose(y.numpy(), expected)


def test_pool1d_errors(backend):
    x = rf.convert_to_tensor(np.zeros((2, 9, 6), "float32"), dims=[BATCH, TIME, IN])
    with pytest.raises(ValueError, match=r"pool1d: mode must be one of \['max', 'avg'\]"):
        rf.pool1d(x, mode="sum", pool_size=2, in_spatial_dim=TIME)
    with pytest.raises(ValueError, match="pool1d: pool_size must be an int >= 1"):
        rf.pool1d(x, mode="max", pool_size=0, in_spatial_dim=TIME)
    with pytest.raises(ValueError, match="pool1d: dilation_rate > 1 is only supported for mode='max'"):
        rf.pool1d(x, mode="avg", pool_size=2, dilation_rate=2, in_spatial_dim=TIME)
    with pytest.raises(ValueError, match="pool1d: in_spatial_dim .* is not one of the source's dims"):
        rf.pool1d(x, mode="max", pool_size=2, in_spatial_dim=Dim(3, name="other"))


def test_batch_norm_equals_torch_batch_norm_in_training_and_evaluation(backend, rng):
    norm = rf.BatchNorm(IN, momentum=0.2, eps=1e-3)
    assert [n for n, _ in norm.named_parameters()] == ["running_mean", "running_variance", "gamma", "beta"]
    assert [p.trainable for p in norm.parameters()] == [False, False, True, True]
    norm.gamma.assign(rng.uniform(0.5, 2, size=6))
    norm.beta.assign(rng.normal(size=6))
    x = (rng.normal(size=(2, 9, 6)) * 3 + 1).astype("float32")

    def fn(raw):
        return [norm(rf.convert_to_tensor(raw, dims=[BATCH, TIME, IN]))]

    mean, var = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    rf.init_train_step_run_ctx(train_flag=True)
    try:
        (y,), (gx,), grads = outputs_and_grads(backend.name, fn, [x], norm)
    finally:
        rf.reset_run_ctx()
    ref, (rx, rg, rb) = _torch_grads(lambda a, g, b: F.batch_norm(a.reshape(18, 6), mean, var, g, b, True, 0.2, 1e-3)
                                     .reshape(2, 9, 6), x, norm.gamma.numpy(), norm.beta.numpy())  # fmt: skip
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    for ours, theirs in ((gx, rx), (grads["gamma"], rg), (grads["beta"], rb)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.running_mean.numpy(), mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.running_variance.numpy(), var.numpy(), rtol=1e-5)  # unbiased, as torch
    y_eval = fn(backend.raw(x))[0].numpy()  # not training: the running statistics
    expected = F.batch_norm(torch.tensor(x).reshape(18, 6), mean.float(), var.float(), torch.tensor(norm.gamma.numpy()),
                            torch.tensor(norm.beta.numpy()), False, 0.2, 1e-3).reshape(2, 9, 6)  # fmt: skip
    np.testing.assert_allclose(y_eval, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_batch_norm_masks_padding_frames_and_without_running_stats_uses_the_batch(backend, rng):
    lengths = [7, 2, 5]
    batch, time = padded_dims(lengths)
    x = rng.normal(size=(3, 7, 6)).astype("float32")
    x[~time_mask(lengths, 7)] = 100.0
    valid = x[time_mask(lengths, 7)].astype("float64")
    mean, var = valid.mean(0), valid.var(0)
    for norm in (rf.BatchNorm(IN), rf.BatchNorm(IN, track_running_stats=False, affine=False)):
        rf.init_train_step_run_ctx(train_flag=norm.running_mean is not None)
        try:
            y = norm(rf.convert_to_tensor(x, dims=[batch, time, IN])).copy_transpose([batch, time, IN]).numpy()
        finally:
            rf.reset_run_ctx()
        np.testing.assert_allclose(y[time_mask(lengths, 7)], (valid - mean) / np.sqrt(var + 1e-3), rtol=1e-4,
                                   atol=1e-4)  # fmt: skip
    assert [n for n, _ in norm.named_parameters()] == []
    np.testing.assert_allclose(rf.BatchNorm(IN).running_variance.numpy(), 1.0)
    with pytest.raises(ValueError, match="BatchNorm: distributed=True .* is not supported"):
        rf.BatchNorm(IN, distributed=True)
    with pytest.raises(ValueError, match="BatchNorm: momentum must be"):
        rf.BatchNorm(IN, momentum=1.5)


def test_grouped_conv_pool_and_batch_norm_inside_tf_function_equal_eager(rng):
    """Traced once for any time length: the padding, the pooling's mask and BatchNorm's update of its running
    statistics (while training) inside the graph."""
    import tensorflow as tf

    rf.select_backend("tensorflow")
    conv, norm = rf.Conv1d(IN, OUT, 4, padding="same", strides=2, groups=2), rf.BatchNorm(OUT)
    batch, time = Dim(2, name="batch"), Dim(None, name="time")

    def step(raw_x, lengths):
        time.dyn_size_ext = rf.convert_to_tensor(lengths, dims=[batch])
        y, out_time = conv(rf.convert_to_tensor(raw_x, dims=[batch, time, IN]), in_spatial_dim=time)
        with rf.get_run_ctx().train_flag_ctx(True):
            y = norm(y)
        y, pool_time = rf.pool1d(y, mode="avg", pool_size=3, strides=2, padding="same", in_spatial_dim=out_time)
        return y.copy_transpose([batch, pool_time, OUT]).raw_tensor, pool_time.dyn_size_ext.raw_tensor

    graph = tf.function(step, input_signature=[tf.TensorSpec([2, None, 6]), tf.TensorSpec([2], tf.int32)])
    x, lengths = rng.normal(size=(2, 9, 6)).astype("float32"), np.array([9, 4], "int32")
    results = []
    for fn in (graph, step):
        norm.running_mean.assign(0.0)
        results.append([t.numpy() for t in fn(tf.constant(x), tf.constant(lengths))] + [norm.running_mean.numpy()])
    assert np.abs(results[0][2]).max() > 1e-3  # updated inside the graph
    for ours, eager in zip(*results):
        np.testing.assert_allclose(ours, eager, rtol=1e-5, atol=1e-6)
