"""rf.Linear, Embedding, LayerNorm, Conv1d: against numpy, torch.nn and Keras layers with the same weights."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import (
    outputs_and_grads,
    padded_dims,
    restore_global_state,  # noqa: F401 (an autouse fixture)
    time_mask,
)

LENGTHS = [6, 3, 5]


def test_linear_equals_numpy_with_gradients(backend, rng):
    in_dim, out_dim = Dim(4, name="in"), Dim(3, name="out")
    linear = rf.Linear(in_dim, out_dim)
    linear.bias.assign(rng.normal(size=3))
    batch, time = padded_dims(LENGTHS)
    x = rng.normal(size=(3, 6, 4)).astype("float32")

    def fn(raw):
        return [linear(rf.convert_to_tensor(raw, dims=[time, batch, in_dim]))]

    (y,), (gx,), grads = outputs_and_grads(backend.name, fn, [x.transpose(1, 0, 2)], linear)
    w, b = linear.weight.numpy(), linear.bias.numpy()
    np.testing.assert_allclose(y, x.transpose(1, 0, 2) @ w + b, rtol=1e-5, atol=1e-6)
    upstream = np.random.default_rng(0).normal(size=y.shape)  # the weights outputs_and_grads uses
    np.testing.assert_allclose(gx, upstream @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["weight"], np.einsum("tbi,tbo->io", x.transpose(1, 0, 2), upstream), rtol=1e-5)
    np.testing.assert_allclose(grads["bias"], upstream.sum((0, 1)), rtol=1e-5)


def test_linear_with_the_same_in_and_out_dim_and_without_bias(backend, rng):
    dim, batch = Dim(3, name="model"), Dim(2, name="batch")
    linear = rf.Linear(dim, dim, with_bias=False)
    assert linear.bias is None and [n for n, _ in linear.named_parameters()] == ["weight"]
    x = rng.normal(size=(2, 3)).astype("float32")
    y = linear(rf.convert_to_tensor(x, dims=[batch, dim]))
    assert y.dims == (batch, dim) and y.feature_dim is dim
    np.testing.assert_allclose(y.numpy(), x @ linear.weight.numpy(), rtol=1e-6, atol=1e-6)


def test_linear_rejects_a_tensor_without_its_in_dim(backend):
    in_dim, other = Dim(4, name="in"), Dim(5, name="other")
    linear = rf.Linear(in_dim, Dim(2, name="out"))
    with pytest.raises(ValueError, match=r"Linear: source .* does not have in_dim Dim\('in', 4\)"):
        linear(rf.convert_to_tensor(np.zeros(5, "float32"), dims=[other]))
    with pytest.raises(TypeError, match="Linear: source must be a returnn_ls.Tensor"):
        linear(np.zeros(4, "float32"))
    with pytest.raises(TypeError, match="Linear: in_dim must be a returnn_ls.Dim"):
        rf.Linear(4, other)


def test_embedding_equals_indexing_with_scatter_added_gradient(backend, rng):
    vocab, model = Dim(5, name="vocab"), Dim(3, name="model")
    embed = rf.Embedding(vocab, model)
    batch, time = padded_dims(LENGTHS)
    labels = rng.integers(0, 5, size=(3, 6)).astype("int32")

    def fn(raw):
        y = embed(rf.convert_to_tensor(raw, dims=[batch, time], sparse_dim=vocab))
        assert y.dims == (batch, time, model) and y.feature_dim is model
        return [y]

    (y,), _, grads = outputs_and_grads(backend.name, fn, [labels], embed)
    np.testing.assert_allclose(y, embed.weight.numpy()[labels], rtol=1e-6)
    expected = np.zeros((5, 3))
    np.add.at(expected, labels, np.random.default_rng(0).normal(size=y.shape))
    np.testing.assert_allclose(grads["weight"], expected, rtol=1e-5, atol=1e-6)


def test_embedding_errors(backend):
    vocab, other = Dim(5, name="vocab"), Dim(6, name="other")
    embed = rf.Embedding(vocab, Dim(3, name="model"))
    batch = Dim(2, name="batch")
    with pytest.raises(ValueError, match="Embedding: source .* must be class indices with sparse_dim"):
        embed(rf.convert_to_tensor(np.array([1, 2], "int32"), dims=[batch], sparse_dim=other))
    with pytest.raises(ValueError, match=r"labels outside \[0, 5\)"):
        embed(rf.convert_to_tensor(np.array([1, 5], "int32"), dims=[batch], sparse_dim=vocab))


def test_layer_norm_equals_torch_layer_norm_with_gradients(backend, rng):
    import torch

    feature, batch = Dim(6, name="feature"), Dim(4, name="batch")
    norm = rf.LayerNorm(feature, eps=1e-3)
    norm.scale.assign(rng.normal(size=6))
    norm.bias.assign(rng.normal(size=6))
    x = (rng.normal(size=(6, 4)) * 3 + 1).astype("float32")  # feature first: the module moves it last

    def fn(raw):
        return [norm(rf.convert_to_tensor(raw, dims=[feature, batch]))]

    (y,), (gx,), grads = outputs_and_grads(backend.name, fn, [x], norm)
    ref = torch.nn.LayerNorm(6, eps=1e-3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(norm.scale.numpy()))
        ref.bias.copy_(torch.tensor(norm.bias.numpy()))
    xt = torch.tensor(x.T.copy(), requires_grad=True)
    out = ref(xt)
    (out * torch.tensor(np.random.default_rng(0).normal(size=y.shape).astype("float32"))).sum().backward()
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, xt.grad.numpy().T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["scale"], ref.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["bias"], ref.bias.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_layer_norm_over_two_dims_without_bias_equals_numpy(backend, rng):
    a, b, batch = Dim(2, name="a"), Dim(3, name="b"), Dim(4, name="batch")
    norm = rf.LayerNorm([a, b], with_bias=False)
    assert norm.bias is None
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    y = norm(rf.convert_to_tensor(x, dims=[batch, a, b]))
    flat = x.reshape(4, 6)
    ref = (flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(y.copy_transpose([batch, a, b]).numpy(), ref.reshape(4, 2, 3), rtol=1e-5, atol=1e-5)


def _conv_input(rng, in_channels: int):
    """:return: input ``[B, T, C]`` with garbage at the padding frames, and the same input with zeros there"""
    x = rng.normal(size=(len(LENGTHS), max(LENGTHS), in_channels)).astype("float32")
    zeroed = np.where(time_mask(LENGTHS, x.shape[1])[:, :, None], x, 0.0).astype("float32")
    x[~time_mask(LENGTHS, x.shape[1])] = 50.0
    return x, zeroed


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # the reference's, for filter 4
@pytest.mark.parametrize(
    "padding, filter_size, dilation", [("same", 3, 1), ("same", 4, 1), ("valid", 3, 1), ("same", 3, 2)]
)
def test_conv1d_equals_torch_conv1d_on_the_zeroed_input(backend, rng, padding, filter_size, dilation):
    import torch

    in_dim, out_dim = Dim(2, name="in"), Dim(3, name="out")
    conv = rf.Conv1d(in_dim, out_dim, filter_size, padding=padding, dilation_rate=dilation)
    conv.bias.assign(rng.normal(size=3))
    x, zeroed = _conv_input(rng, 2)
    batch, time = padded_dims(LENGTHS)

    def fn(raw):
        y, out_time = conv(rf.convert_to_tensor(raw, dims=[batch, time, in_dim]), in_spatial_dim=time)
        assert y.dims == (batch, out_time, out_dim) and y.feature_dim is out_dim
        assert (out_time is time) == (padding == "same")
        return [y]

    (y,), (gx,), _ = outputs_and_grads(backend.name, fn, [x], conv)
    ref = torch.nn.Conv1d(2, 3, filter_size, padding=padding, dilation=dilation)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(conv.filter.numpy()))
        ref.bias.copy_(torch.tensor(conv.bias.numpy()))
    expected = ref(torch.tensor(zeroed).transpose(1, 2)).transpose(1, 2).detach().numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert (gx[~time_mask(LENGTHS, x.shape[1])] == 0).all()  # the zeroed padding gets no gradient


def test_conv1d_strided_equals_keras_conv1d_and_has_the_out_lengths(backend, rng):
    import keras

    in_dim, out_dim = Dim(2, name="in"), Dim(3, name="out")
    x, zeroed = _conv_input(rng, 2)
    for padding in ("same", "valid"):  # Keras's "same" is RETURNN's before behavior version 24: by the padded length
        conv = rf.Conv1d(in_dim, out_dim, 3, padding=padding, strides=2, use_consistent_same_padding=False)
        batch, time = padded_dims(LENGTHS)
        y, out_time = conv(rf.convert_to_tensor(x, dims=[batch, time, in_dim]), in_spatial_dim=time)
        ref = keras.layers.Conv1D(3, 3, strides=2, padding=padding)
        ref.build((None, None, 2))
        ref.set_weights([conv.filter.numpy().transpose(2, 1, 0), conv.bias.numpy()])
        np.testing.assert_allclose(y.numpy(), np.asarray(ref(zeroed)), rtol=1e-5, atol=1e-5)
        lengths = np.array(LENGTHS)
        expected = -(-lengths // 2) if padding == "same" else np.maximum((lengths - 3) // 2 + 1, 0)
        np.testing.assert_array_equal(out_time.dyn_size_ext.numpy(), expected)


def test_conv1d_static_time_and_input_gradient_by_finite_differences(backend, rng):
    in_dim, out_dim, time, batch = Dim(2, name="in"), Dim(2, name="out"), Dim(7, name="time"), Dim(2, name="b")
    conv = rf.Conv1d(in_dim, out_dim, 3, padding="valid", strides=2)
    _, out_time = conv(rf.convert_to_tensor(np.zeros((2, 7, 2), "float32"), dims=[batch, time, in_dim]),
                       in_spatial_dim=time)  # fmt: skip
    assert out_time.dimension == 3

    def fn(raw):
        return conv(rf.convert_to_tensor(raw, dims=[batch, time, in_dim]), in_spatial_dim=time)[0].raw_tensor

    assert backend.gradcheck(fn, rng.normal(size=(2, 7, 2)))


def test_conv1d_errors(backend):
    in_dim, out_dim = Dim(2, name="in"), Dim(3, name="out")
    with pytest.raises(ValueError, match=r"Conv1d: padding must be one of \['same', 'valid'\]"):
        rf.Conv1d(in_dim, out_dim, 3, padding="causal")
    with pytest.raises(ValueError, match="Conv1d: filter_size must be an int >= 1"):
        rf.Conv1d(in_dim, out_dim, 0, padding="same")
    with pytest.raises(ValueError, match=r"Conv1d: out_dim Dim\('out', 3\) is not divisible by groups=2"):
        rf.Conv1d(in_dim, out_dim, 3, padding="same", groups=2)
    with pytest.raises(ValueError, match="Conv1d: groups must be an int >= 1"):
        rf.Conv1d(in_dim, out_dim, 3, padding="same", groups=0)
    conv = rf.Conv1d(in_dim, out_dim, 3, padding="same")
    batch, time = padded_dims([2, 1])
    x = rf.convert_to_tensor(np.zeros((2, 2, 2), "float32"), dims=[batch, time, in_dim])
    with pytest.raises(ValueError, match="Conv1d: source .* does not have in_spatial_dim"):
        conv(x, in_spatial_dim=Dim(2, name="other"))
