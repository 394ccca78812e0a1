"""RETURNN's elementwise functions (``rf.add`` ... ``rf.round``, ``safe_log``, ``gating``, ``lerp``), the reductions
``reduce_any``/``reduce_all``/``reduce_logmeanexp``, splitting and merging dims, ``one_hot`` and ``RMSNorm``:
each against numpy on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

UNARY = {
    "neg": np.negative, "reciprocal": np.reciprocal, "expm1": np.expm1, "log1p": np.log1p, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "square": np.square, "sin": np.sin, "cos": np.cos, "ceil": np.ceil,
    "floor": np.floor, "round": np.round, "identity": lambda x: x,
}  # fmt: skip
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "true_divide": np.true_divide,
    "floor_divide": np.floor_divide, "ceil_divide": lambda a, b: -np.floor_divide(-a, b), "mod": np.mod,
    "pow": np.power,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_functions_match_numpy(backend, rng, name):
    dim = Dim(7, name="d")
    x = np.concatenate([[0.5, 1.5, -2.5, 2.5], rng.uniform(0.01, 3.0, size=3)])  # halves: round to even
    if name == "log1p":
        x = np.abs(x)
    out = getattr(rf, name)(rf.convert_to_tensor(x, dims=[dim]))
    assert out.dims == (dim,) and out.dtype == "float64"
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_allclose(out.numpy(), UNARY[name](x), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_functions_match_numpy_with_dims_and_numbers(backend, name):
    a_dim, b_dim = Dim(4, name="a"), Dim(3, name="b")
    a = np.array([-7.0, -1.0, 5.0, 7.0])
    b = np.array([-3.0, 2.0, 3.0])
    ta, tb = rf.convert_to_tensor(a, dims=[a_dim]), rf.convert_to_tensor(b, dims=[b_dim])
    out = getattr(rf, name)(ta, tb)  # broadcast by dims: [a, b]
    assert out.dims == (a_dim, b_dim)
    np.testing.assert_allclose(out.numpy(), BINARY[name](a[:, None], b[None, :]), rtol=1e-12)
    np.testing.assert_allclose(getattr(rf, name)(ta, 2.0).numpy(), BINARY[name](a, 2.0), rtol=1e-12)
    if name in ("floor_divide", "ceil_divide", "mod"):  # integers stay integers
        ints = getattr(rf, name)(rf.cast(ta, "int32"), 3)
        assert ints.dtype == "int32"
        np.testing.assert_array_equal(ints.numpy(), BINARY[name](a.astype("int32"), 3))


def test_safe_log_is_finite_at_zero_in_every_float_dtype(backend):
    dim = Dim(3, name="d")
    for dtype in ("float32", "float64"):
        x = rf.convert_to_tensor(np.array([0.0, 1e-30, 2.0], dtype), dims=[dim])
        out = rf.safe_log(x).numpy()
        tiny = np.finfo(dtype).tiny  # the smallest normal number: not flushed to zero by any CPU
        np.testing.assert_allclose(out, np.log([tiny, 1e-30, 2.0]).astype(dtype), rtol=1e-6)
    np.testing.assert_allclose(rf.safe_log(x, eps=0.5).numpy(), np.log([0.5, 0.5, 2.0]), rtol=1e-12)
    with pytest.raises(TypeError, match="safe_log: a must have a float dtype"):
        rf.safe_log(rf.cast(x, "int32"))


def test_gating_is_glu_and_lerp_interpolates(backend, rng):
    batch, feat = Dim(2, name="batch"), Dim(6, name="feat")
    x = rng.normal(size=(2, 6))
    out, half = rf.gating(rf.convert_to_tensor(x, dims=[batch, feat], feature_dim=feat))
    assert half.dimension == 3 and out.dims == (batch, half)
    np.testing.assert_allclose(out.numpy(), x[:, :3] / (1 + np.exp(-x[:, 3:])), rtol=1e-12)
    with pytest.raises(ValueError, match="axis must be a static dim of even size"):
        rf.gating(rf.convert_to_tensor(x[:, :5], dims=[batch, Dim(5, name="odd")]), axis=batch * 1 + 1)
    start, end = rng.normal(size=(2, 6)), rng.normal(size=(6,))
    weight = rng.uniform(size=(2,))
    got = rf.lerp(rf.convert_to_tensor(start, dims=[batch, feat]), rf.convert_to_tensor(end, dims=[feat]),
                  rf.convert_to_tensor(weight, dims=[batch]))  # fmt: skip
    np.testing.assert_allclose(got.copy_transpose([batch, feat]).numpy(), start + weight[:, None] * (end - start),
                               rtol=1e-12)  # fmt: skip


def _padded(rng):
    batch = Dim(3, name="batch")
    lens = np.array([4, 1, 3])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    return batch, time, lens


def test_reduce_any_all_and_logmeanexp_ignore_padding(backend, rng):
    batch, time, lens = _padded(rng)
    flags = np.array([[False, False, False, True], [True, False, True, True], [True, True, True, False]])
    t = rf.convert_to_tensor(flags, dims=[batch, time])
    valid = np.arange(4)[None, :] < lens[:, None]
    np.testing.assert_array_equal(rf.reduce_any(t, axis=time).numpy(), (flags & valid).any(1))
    np.testing.assert_array_equal(rf.reduce_all(t, axis=time).numpy(), (flags | ~valid).all(1))
    x = rng.normal(size=(3, 4)) * 5
    lme = rf.reduce_logmeanexp(rf.convert_to_tensor(x, dims=[batch, time]), axis=time).numpy()
    np.testing.assert_allclose(lme, [np.log(np.mean(np.exp(x[b, :n]))) for b, n in enumerate(lens)], rtol=1e-12)
    feat = Dim(4, name="feat")
    static = rf.reduce_logmeanexp(rf.convert_to_tensor(x, dims=[batch, feat]), axis=feat).numpy()
    np.testing.assert_allclose(static, np.log(np.mean(np.exp(x), axis=1)), rtol=1e-12)


def test_split_split_dims_and_merge_dims_match_numpy(backend, rng):
    batch, feat = Dim(2, name="batch"), Dim(6, name="feat")
    x = rng.normal(size=(2, 6))
    t = rf.convert_to_tensor(x, dims=[batch, feat])
    a_dim, b_dim = Dim(2, name="a"), Dim(4, name="b")
    a, b = rf.split(t, axis=feat, out_dims=[a_dim, b_dim])
    np.testing.assert_array_equal(a.numpy(), x[:, :2])
    np.testing.assert_array_equal(b.copy_transpose([batch, b_dim]).numpy(), x[:, 2:])
    with pytest.raises(ValueError, match="must add up to"):
        rf.split(t, axis=feat, out_dims=[a_dim, a_dim])
    heads, per_head = Dim(3, name="heads"), Dim(2, name="per_head")
    split = rf.split_dims(t, axis=feat, dims=[heads, per_head])
    assert split.dims == (batch, heads, per_head)
    np.testing.assert_array_equal(split.numpy(), x.reshape(2, 3, 2))
    merged, merged_dim = rf.merge_dims(split, dims=[heads, per_head])
    assert merged_dim.dimension == 6 and merged.dims == (batch, merged_dim)
    np.testing.assert_array_equal(merged.numpy(), x)
    swapped, _ = rf.merge_dims(split, dims=[per_head, heads])  # the given order, row-major
    np.testing.assert_array_equal(swapped.numpy(), x.reshape(2, 3, 2).transpose(0, 2, 1).reshape(2, 6))


def test_merge_dims_of_a_dynamic_dim_keeps_the_sequence_lengths(backend, rng):
    batch, time, lens = _padded(rng)
    feat = Dim(2, name="feat")
    x = rng.normal(size=(3, 4, 2))
    merged, out_dim = rf.merge_dims(rf.convert_to_tensor(x, dims=[batch, time, feat]), dims=[time, feat])
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), lens * 2)  # time * feat: the frames per sequence
    np.testing.assert_array_equal(merged.copy_transpose([batch, out_dim]).numpy(), x.reshape(3, 8))


def test_one_hot_and_sparse_to_dense(backend):
    frames, vocab = Dim(3, name="frames"), Dim(4, name="vocab")
    labels = rf.convert_to_tensor(np.array([2, 0, 3]), dims=[frames], sparse_dim=vocab)
    hot = rf.one_hot(labels)
    assert hot.dims == (frames, vocab) and hot.dtype == "float32"
    np.testing.assert_array_equal(hot.numpy(), np.eye(4)[[2, 0, 3]])
    dense = rf.sparse_to_dense(labels, label_value=0.9, other_value=0.1 / 3)
    np.testing.assert_allclose(dense.numpy(), np.where(np.eye(4)[[2, 0, 3]] > 0, 0.9, 0.1 / 3), rtol=1e-6)
    with pytest.raises(ValueError, match="labels has no sparse_dim"):
        rf.one_hot(rf.convert_to_tensor(np.array([1, 2, 0]), dims=[frames]))


def test_rms_norm_matches_numpy_with_returnn_parameter_names(backend, rng):
    batch, feat = Dim(3, name="batch"), Dim(5, name="feat")
    norm = rf.RMSNorm(feat, with_bias=True)
    assert [name for name, _ in norm.named_parameters()] == ["scale", "bias"]
    scale, bias = rng.normal(size=5), rng.normal(size=5)
    norm.scale.initial, norm.bias.initial = scale, bias
    x = rng.normal(size=(3, 5)).astype("float32")
    out = norm(rf.convert_to_tensor(x, dims=[batch, feat], feature_dim=feat))
    ref = x / np.sqrt(np.mean(x.astype("float64") ** 2, axis=1, keepdims=True) + 1e-6) * scale + bias
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.copy_transpose([batch, feat]).numpy(), ref, rtol=1e-5)
    assert [name for name, _ in rf.RMSNorm(feat).named_parameters()] == ["scale"]


def test_maximum_and_minimum_with_a_number_keep_the_tensors_precision(backend):
    dim = Dim(2, name="d")
    x = rf.convert_to_tensor(np.array([0.0, 1.0]), dims=[dim])
    np.testing.assert_array_equal(rf.maximum(x, 0.1).numpy(), [0.1, 1.0])  # 0.1 as float64, not float32's
    np.testing.assert_array_equal(rf.minimum(0.1, x).numpy(), [0.0, 0.1])
    ints = rf.maximum(rf.cast(x, "int32"), 0.5)
    np.testing.assert_array_equal(ints.numpy(), [0.5, 1.0])
