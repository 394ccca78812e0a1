"""rf activations, dropout, pack_padded, reduce_argmax/argmin, concat and concat_features against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import (
    padded_dims,
    restore_global_state,  # noqa: F401 (an autouse fixture)
    time_mask,
)

LENGTHS = [5, 2, 4]
_erf = np.vectorize(math.erf)
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805
ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "relu_square": lambda x: np.maximum(x, 0) ** 2,
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_equals_numpy_and_finite_differences(backend, rng, name):
    dims = [Dim(3, name="a"), Dim(4, name="b")]
    x = rng.normal(size=(3, 4)) * 2
    x[0, :2] = [0.3, -0.3]
    y = getattr(rf, name)(rf.convert_to_tensor(x.astype("float32"), dims=dims, feature_dim=dims[1]))
    assert y.dims == tuple(dims) and y.feature_dim is dims[1]
    np.testing.assert_allclose(y.numpy(), ACTIVATIONS[name](x.astype("float32")), rtol=1e-5, atol=1e-6)
    assert backend.gradcheck(lambda raw: getattr(rf, name)(rf.convert_to_tensor(raw, dims=dims)).raw_tensor, x)


def test_leaky_relu_alpha_and_bad_input(backend):
    x = rf.convert_to_tensor(np.array([-2.0, 3.0], "float32"), dims=[Dim(2, name="a")])
    np.testing.assert_allclose(rf.leaky_relu(x, alpha=0.01).numpy(), [-0.02, 3.0], rtol=1e-6)
    with pytest.raises(TypeError, match="leaky_relu: alpha must be a float"):
        rf.leaky_relu(x, alpha="0.1")
    with pytest.raises(TypeError, match="gelu: a must have a float dtype"):
        rf.gelu(rf.convert_to_tensor(np.array([1, 2]), dims=[Dim(2, name="a")]))


def _dropout_input(shape=(40, 50, 6)):
    dims = [Dim(n, name=f"d{i}") for i, n in enumerate(shape)]
    return rf.convert_to_tensor(np.full(shape, 2.0, "float32"), dims=dims), dims


def test_dropout_is_identity_outside_training_and_scales_kept_entries_in_training(backend):
    x, dims = _dropout_input()
    rf.reset_run_ctx()
    assert rf.dropout(x, 0.3) is x
    rf.init_train_step_run_ctx(train_flag=True)
    try:
        y = rf.dropout(x, 0.3).numpy()
        with rf.get_run_ctx().train_flag_ctx(False):
            assert rf.dropout(x, 0.3) is x
    finally:
        rf.reset_run_ctx()
    assert set(np.unique(y)) <= {0.0, np.float32(2.0 / 0.7)}
    assert abs((y == 0).mean() - 0.3) < 0.02  # 12000 entries: 5 standard deviations
    z = rf.dropout(x, 0.5, axis=dims[1], on_forward=True).numpy()  # one mask along d1, shared over d0 and d2
    assert (z == z[:1, :, :1]).all() and set(np.unique(z)) == {0.0, 4.0}


def test_dropout_masks_are_reproducible_from_the_seed_and_the_gradient_is_the_mask(backend):
    x, _ = _dropout_input((30, 20))
    rf.set_random_seed(7)
    first = [rf.dropout(x, 0.5, on_forward=True).numpy() for _ in range(2)]
    rf.set_random_seed(7)
    again = [rf.dropout(x, 0.5, on_forward=True).numpy() for _ in range(2)]
    rf.set_random_seed(8)
    other = rf.dropout(x, 0.5, on_forward=True).numpy()
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert (first[0] != first[1]).any() and (first[0] != other).any()
    dims = x.dims
    rf.set_random_seed(7)
    out, (grad,) = backend.value_and_grad(
        lambda raw: rf.dropout(rf.convert_to_tensor(raw, dims=dims), 0.5, on_forward=True), x.numpy()
    )
    np.testing.assert_array_equal(out, first[0])
    np.testing.assert_allclose(grad, out / 2.0)  # x is 2 everywhere: d out / d x = mask / keep = out / x


def test_dropout_errors(backend):
    x, dims = _dropout_input((2, 3))
    with pytest.raises(ValueError, match=r"dropout: drop_prob must be in \[0, 1\)"):
        rf.dropout(x, 1.0)
    with pytest.raises(ValueError, match=r"dropout: drop_prob must be in \[0, 1\)"):
        rf.dropout(x, -0.1)
    with pytest.raises(ValueError, match="dropout: axis=True is not valid"):
        rf.dropout(x, 0.1, axis=True)
    with pytest.raises(ValueError, match="dropout: axis .* is not one of the source's dims"):
        rf.dropout(x, 0.1, axis=Dim(3, name="other"))


def test_tensorflow_dropout_inside_tf_function_draws_new_masks_and_follows_the_seed():
    import tensorflow as tf

    rf.select_backend("tensorflow")
    x, dims = _dropout_input((20, 30))
    step = tf.function(lambda raw: rf.dropout(rf.convert_to_tensor(raw, dims=dims), 0.5, on_forward=True).raw_tensor)
    rf.set_random_seed(3)
    first = [step(x.raw_tensor).numpy() for _ in range(2)]
    rf.set_random_seed(3)
    assert (first[0] != first[1]).any()
    np.testing.assert_array_equal(step(x.raw_tensor).numpy(), first[0])


@pytest.mark.parametrize("order", ["batch_major", "time_major"])
def test_pack_padded_keeps_the_valid_frames_in_row_major_order(backend, rng, order):
    batch, time = padded_dims(LENGTHS)
    feature = Dim(2, name="feature")
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    source = rf.convert_to_tensor(x, dims=[batch, time, feature], feature_dim=feature)
    dims = (batch, time) if order == "batch_major" else (time, batch)
    packed, pack_dim = rf.pack_padded(source, dims=dims, enforce_sorted=False)
    assert packed.dims == (pack_dim, feature) and packed.feature_dim is feature
    mask = time_mask(LENGTHS, 5)
    expected = x[mask] if order == "batch_major" else x.transpose(1, 0, 2)[mask.T]
    np.testing.assert_allclose(packed.numpy(), expected)
    assert int(pack_dim.dyn_size_ext.numpy()) == sum(LENGTHS) and not pack_dim.is_padded()
    labels = rf.convert_to_tensor(rng.integers(0, 2, size=(3, 5)).astype("int32"), dims=[batch, time])
    packed_labels, same_dim = rf.pack_padded(labels, dims=dims, out_dim=pack_dim)
    assert same_dim is pack_dim and packed_labels.dims == (pack_dim,)


def test_pack_padded_of_unpadded_dims_flattens_and_errors(backend, rng):
    a, b = Dim(2, name="a"), Dim(3, name="b")
    x = rng.normal(size=(2, 3)).astype("float32")
    packed, pack_dim = rf.pack_padded(rf.convert_to_tensor(x, dims=[a, b]), dims=[b, a])
    np.testing.assert_allclose(packed.numpy(), x.T.reshape(-1))
    batch, time = padded_dims(LENGTHS)
    y = rf.convert_to_tensor(np.zeros((3, 5), "float32"), dims=[batch, time])
    with pytest.raises(ValueError, match="pack_padded: enforce_sorted=True is not supported"):
        rf.pack_padded(y, dims=[batch, time], enforce_sorted=True)
    per_seq, per_seq_dim = rf.pack_padded(y, dims=[time])  # sizes vary along batch: a packed dim per entry
    assert per_seq.dims == (batch, per_seq_dim)
    np.testing.assert_array_equal(per_seq_dim.dyn_size_ext.numpy(), LENGTHS)


@pytest.mark.parametrize("mode", ["argmax", "argmin"])
def test_reduce_argmax_and_argmin_ignore_padding_frames(backend, rng, mode):
    batch, time = padded_dims(LENGTHS)
    x = rng.normal(size=(3, 5)).astype("float32")
    x[~time_mask(LENGTHS, 5)] = 100.0 if mode == "argmax" else -100.0
    fn = getattr(rf, f"reduce_{mode}")
    best = fn(rf.convert_to_tensor(x, dims=[batch, time]), axis=time)
    assert best.dims == (batch,) and best.sparse_dim is time and best.dtype == "int64"
    masked = np.where(time_mask(LENGTHS, 5), x, -np.inf if mode == "argmax" else np.inf)
    np.testing.assert_array_equal(best.numpy(), getattr(np, mode)(masked, axis=1))
    unmasked = fn(rf.convert_to_tensor(x, dims=[batch, time]), axis=time, use_mask=False)
    np.testing.assert_array_equal(unmasked.numpy(), getattr(np, mode)(x, axis=1))
    with pytest.raises(ValueError, match=f"reduce_{mode}: axis must be one Dim"):
        fn(rf.convert_to_tensor(x, dims=[batch, time]), axis=[batch, time])


def test_concat_features_and_concat_with_broadcast(backend, rng):
    batch, time = Dim(2, name="batch"), Dim(3, name="time")
    f1, f2 = Dim(2, name="f1"), Dim(4, name="f2")
    a = rng.normal(size=(2, 3, 2)).astype("float32")
    b = rng.normal(size=(3, 2, 4)).astype("float32")
    ta = rf.convert_to_tensor(a, dims=[batch, time, f1], feature_dim=f1)
    tb = rf.convert_to_tensor(b, dims=[time, batch, f2], feature_dim=f2)
    y = rf.concat_features(ta, tb)
    assert y.dims[:2] == (batch, time) and y.feature_dim is y.dims[2] and y.dims[2].dimension == 6
    np.testing.assert_allclose(y.numpy(), np.concatenate([a, b.transpose(1, 0, 2)], axis=-1))
    c = rng.normal(size=(4,)).astype("float32")
    tc = rf.convert_to_tensor(c, dims=[f2], feature_dim=f2)
    with pytest.raises(ValueError, match="concat: sources\\[1\\] has other dims .* allow_broadcast=True"):
        rf.concat_features(ta, tc)
    z, z_dim = rf.concat((ta, f1), (tc, f2), allow_broadcast=True)
    assert z.dims == (batch, time, z_dim) and z_dim.dimension == 6
    np.testing.assert_allclose(z.numpy(), np.concatenate([a, np.broadcast_to(c, (2, 3, 4))], axis=-1))
    with pytest.raises(ValueError, match="concat_features: sources\\[0\\] .* has no feature_dim"):
        rf.concat_features(rf.convert_to_tensor(a, dims=[batch, time, f1]))


def test_concat_dim_is_the_dim_of_every_concatenation_of_the_same_dims(backend, rng):
    batch, lstm_dim, out_dim = Dim(2, name="batch"), Dim(3, name="lstm"), Dim(4, name="out")
    linear = rf.Linear(rf.concat_dim(lstm_dim, lstm_dim), out_dim)  # built before any data
    forward, backward = (rf.convert_to_tensor(rng.normal(size=(2, 3)).astype("float32"), dims=[batch, lstm_dim],
                                              feature_dim=lstm_dim) for _ in range(2))  # fmt: skip
    both = rf.concat_features(forward, backward)
    assert both.feature_dim is rf.concat_dim(lstm_dim, lstm_dim) is rf.concat_features(backward, forward).feature_dim
    assert rf.concat_dim(lstm_dim) is not both.feature_dim and both.feature_dim.dimension == 6
    expected = np.concatenate([forward.numpy(), backward.numpy()], -1) @ linear.weight.numpy()
    np.testing.assert_allclose(linear(both).numpy(), expected + linear.bias.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match=r"concat_dim: dims\[0\] must be a static Dim"):
        rf.concat_dim(Dim(None, name="time"))
