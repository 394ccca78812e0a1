"""rf.cumsum, clip_by_value, squared_difference, log_add_exp, matmul/dot, random_uniform/random_normal on every
backend, against numpy and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import padded_dims, restore_global_state, time_mask  # noqa: F401 (an autouse fixture)

LENS = [4, 1, 3]
T = 5


def test_cumsum_stays_inside_each_sequence(backend, rng):
    batch, time = padded_dims(LENS)
    feat = Dim(2, name="feat")
    x = rng.standard_normal((3, T, 2)).astype("float32")
    x[~time_mask(LENS, T)] = np.nan
    y = rf.cumsum(rf.convert_to_tensor(x, dims=[batch, time, feat], feature_dim=feat), spatial_dim=time)
    assert y.dims == (batch, time, feat) and y.feature_dim is feat
    for b, n in enumerate(LENS):
        np.testing.assert_allclose(y.numpy()[b, :n], np.cumsum(x[b, :n], axis=0), rtol=1e-6)
        np.testing.assert_allclose(y.numpy()[b, n:], np.broadcast_to(x[b, :n].sum(0), (T - n, 2)), rtol=1e-6)
    counts = rf.cumsum(rf.cast(rf.sequence_mask(time), "int32"), spatial_dim=time)
    assert counts.dtype == "int32"
    np.testing.assert_array_equal(counts.numpy(), np.minimum(np.arange(1, 5), np.array(LENS)[:, None]))
    with pytest.raises(TypeError, match="cumsum: source must be a number tensor"):
        rf.cumsum(rf.sequence_mask(time), spatial_dim=time)
    clean = np.nan_to_num(x).astype("float64")
    assert backend.gradcheck(lambda raw: rf.cumsum(rf.convert_to_tensor(raw, dims=[batch, time, feat]),
                                                   spatial_dim=time).raw_tensor, clean)  # fmt: skip


def test_clip_by_value_with_numbers_and_tensors(backend, rng):
    a, b = Dim(3, name="a"), Dim(4, name="b")
    x = rng.uniform(-2, 2, size=(3, 4))
    xt = rf.convert_to_tensor(x.astype("float32"), dims=[a, b], feature_dim=b)
    y = rf.clip_by_value(xt, -1.0, 0.5)
    assert y.dims == (a, b) and y.feature_dim is b and y.dtype == "float32"
    np.testing.assert_allclose(y.numpy(), np.clip(x, -1, 0.5).astype("float32"))
    np.testing.assert_allclose(rf.clip_by_value(xt, clip_value_max=0.0).numpy(), np.minimum(x, 0).astype("float32"))
    assert rf.clip_by_value(xt) is xt
    hi = rf.convert_to_tensor(np.array([0.0, 0.5, 1.0], "float32"), dims=[a])
    np.testing.assert_allclose(rf.clip_by_value(xt, -1, hi).numpy(), np.clip(x, -1, [[0.0], [0.5], [1.0]]),
                               rtol=1e-6)  # fmt: skip
    ints = rf.convert_to_tensor(np.array([-3, 0, 7]), dims=[a])
    assert rf.clip_by_value(ints, 0, 5).numpy().tolist() == [0, 0, 5]
    other = rf.convert_to_tensor(np.array([1.0, 2.0], "float32"), dims=[Dim(2, name="c")])
    with pytest.raises(ValueError, match="clip_by_value: no operand has all the dims"):
        rf.clip_by_value(hi, other, 3.0)
    assert rf.clip_by_value(hi, other, 3.0, allow_broadcast_all_sources=True).numpy().shape == (3, 2)
    x[np.abs(np.abs(x) - 1) < 1e-3] = 0.0  # no entry at a bound: the gradient is a step there
    assert backend.gradcheck(lambda raw: rf.clip_by_value(rf.convert_to_tensor(raw, dims=[a, b]), -1.0, 1.0)
                             .raw_tensor, x)  # fmt: skip


def test_squared_difference_and_log_add_exp(backend, rng):
    a, b = Dim(3, name="a"), Dim(4, name="b")
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    xt, yt = rf.convert_to_tensor(x.astype("float32"), dims=[a, b]), rf.convert_to_tensor(y.astype("float32"), dims=[b])
    np.testing.assert_allclose(rf.squared_difference(xt, yt).numpy(), (x - y) ** 2, rtol=1e-5)
    np.testing.assert_allclose(rf.log_add_exp(xt, yt).numpy(), np.logaddexp(x, y), rtol=1e-6)
    np.testing.assert_allclose(rf.log_add_exp(xt, 0.5).numpy(), np.logaddexp(x, 0.5), rtol=1e-6)
    inf = rf.convert_to_tensor(np.array([-np.inf, -np.inf, 1000.0, 0.0], "float32"), dims=[b])
    other = rf.convert_to_tensor(np.array([-np.inf, 3.0, 1000.0, -np.inf], "float32"), dims=[b])
    np.testing.assert_allclose(rf.log_add_exp(inf, other).numpy(), [-np.inf, 3.0, 1000.0 + np.log(2), 0.0],
                               rtol=1e-6)  # fmt: skip

    def both(raw_x, raw_y):
        tx, ty = rf.convert_to_tensor(raw_x, dims=[a, b]), rf.convert_to_tensor(raw_y, dims=[b])
        return rf.log_add_exp(tx, ty) + rf.squared_difference(tx, ty)

    assert backend.gradcheck(lambda rx, ry: both(rx, ry).raw_tensor, x, y)
    ties = np.zeros((3, 4))  # log_add_exp(a, a): the gradient splits evenly
    _, (ga, gb) = backend.value_and_grad(lambda rx, ry: rf.log_add_exp(rf.convert_to_tensor(rx, dims=[a, b]),
                                                                        rf.convert_to_tensor(ry, dims=[a, b])),
                                         ties, ties)  # fmt: skip
    np.testing.assert_allclose(ga, 0.5)
    np.testing.assert_allclose(gb, 0.5)
    with pytest.raises(TypeError, match="log_add_exp: needs float operands"):
        rf.log_add_exp(rf.convert_to_tensor(np.array([1, 2]), dims=[Dim(2, name="n")]), 1.0)


def test_matmul_contracts_reduce_dims_batched_over_common_dims(backend, rng):
    batch, heads, q, k, feat = (Dim(n, name=s) for n, s in ((2, "batch"), (3, "heads"), (4, "q"), (5, "k"), (6, "f")))
    a = rng.standard_normal((2, 3, 4, 6))
    b = rng.standard_normal((6, 5, 2, 3))
    at = rf.convert_to_tensor(a.astype("float32"), dims=[batch, heads, q, feat])
    bt = rf.convert_to_tensor(b.astype("float32"), dims=[feat, k, batch, heads])
    y = rf.matmul(at, bt, reduce=feat)
    assert y.dims == (batch, heads, q, k)
    np.testing.assert_allclose(y.numpy(), np.einsum("bhqf,fkbh->bhqk", a, b), rtol=1e-4, atol=1e-5)
    z = rf.dot(at, bt, reduce=[feat, heads])
    assert z.dims == (batch, q, k)
    np.testing.assert_allclose(z.numpy(), np.einsum("bhqf,fkbh->bqk", a, b), rtol=1e-4, atol=1e-5)
    outer = rf.matmul(rf.convert_to_tensor(a[0, 0, :, 0], dims=[q]), rf.convert_to_tensor(b[0, :, 0, 0], dims=[k]),
                      reduce=[])  # fmt: skip
    np.testing.assert_allclose(outer.numpy(), np.outer(a[0, 0, :, 0], b[0, :, 0, 0]), rtol=1e-6)
    small = [Dim(2, name=s) for s in ("b", "h", "q", "k", "f")]
    sa, sb = rng.standard_normal((2, 2, 2, 2)), rng.standard_normal((2, 2, 2, 2))
    assert backend.gradcheck(lambda ra, rb: rf.matmul(rf.convert_to_tensor(ra, dims=[small[i] for i in (0, 1, 2, 4)]),
                                                      rf.convert_to_tensor(rb, dims=[small[i] for i in (4, 3, 0, 1)]),
                                                      reduce=small[4]).raw_tensor, sa, sb)  # fmt: skip
    with pytest.raises(ValueError, match="matmul: reduce dim .* is in neither a"):
        rf.matmul(at, bt, reduce=Dim(2, name="other"))


def test_matmul_over_a_dynamic_dim_ignores_padding(backend, rng):
    batch, time = padded_dims(LENS)
    feat = Dim(3, name="feat")
    weights = rng.random((3, T)).astype("float32")
    values = rng.standard_normal((3, T, 3)).astype("float32")
    values[~time_mask(LENS, T)] = np.nan  # padding of the values: never reaches the result
    wt = rf.convert_to_tensor(weights, dims=[batch, time])
    vt = rf.convert_to_tensor(values, dims=[batch, time, feat])
    y = rf.matmul(wt, vt, reduce=time)
    assert y.dims == (batch, feat)
    expected = [weights[b, :n] @ values[b, :n] for b, n in enumerate(LENS)]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5)
    clean = np.nan_to_num(values).astype("float64")
    _, (gw, gv) = backend.value_and_grad(lambda rw, rv: rf.matmul(rf.convert_to_tensor(rw, dims=[batch, time]),
                                                                   rf.convert_to_tensor(rv, dims=[batch, time, feat]),
                                                                   reduce=time), weights.astype("float64"), clean)
    mask = time_mask(LENS, T)
    np.testing.assert_allclose(gw, np.where(mask, clean.sum(-1), 0.0), rtol=1e-6)
    np.testing.assert_allclose(gv, np.where(mask[..., None], weights[..., None], 0.0) + np.zeros((1, 1, 3)), rtol=1e-6)


def test_random_uniform_and_normal_follow_the_seed(backend):
    batch, feat = Dim(200, name="batch"), Dim(50, name="feat")
    rf.set_random_seed(5)
    u = rf.random_uniform([batch, feat], minval=-2.0, maxval=3.0)
    n = rf.random_normal([batch, feat], mean=1.0, stddev=2.0, dtype="float64")
    assert u.dims == (batch, feat) and u.dtype == "float32" and n.dtype == "float64"
    uv, nv = u.numpy(), n.numpy()
    assert uv.min() >= -2.0 and uv.max() < 3.0 and abs(uv.mean() - 0.5) < 0.05
    assert abs(nv.mean() - 1.0) < 0.05 and abs(nv.std() - 2.0) < 0.05
    rf.set_random_seed(5)
    np.testing.assert_array_equal(rf.random_uniform([batch, feat], minval=-2.0, maxval=3.0).numpy(), uv)
    assert not np.array_equal(rf.random_uniform([batch, feat], minval=-2.0, maxval=3.0).numpy(), uv)
    vocab = Dim(7, name="vocab")
    labels = rf.random_uniform([batch], sparse_dim=vocab, minval=2, maxval=7)
    assert labels.dtype == "int32" and labels.sparse_dim is vocab
    assert set(np.unique(labels.numpy())) == set(range(2, 7))
    labels = rf.random([batch], distribution="uniform", sparse_dim=vocab)  # maxval: the size of the sparse dim
    assert set(np.unique(labels.numpy())) == set(range(7))
    fixed = [rf.random_normal([feat], seed=3, static=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(*fixed)
    scale = rf.convert_to_tensor(np.linspace(0.0, 1.0, 50).astype("float32"), dims=[feat])
    scaled = rf.random_normal([batch, feat], stddev=scale).numpy()
    assert np.all(scaled[:, 0] == 0.0) and abs(scaled[:, -1].std() - 1.0) < 0.15
    time = padded_dims(LENS)[1]
    assert rf.random_uniform([padded_dims(LENS)[0], time]).numpy().shape == (3, 4)


def test_random_errors(backend):
    feat = Dim(3, name="feat")
    with pytest.raises(ValueError, match="random: distribution must be one of"):
        rf.random([feat], distribution="truncated_normal")
    with pytest.raises(ValueError, match="random_uniform: explicit_state is not supported"):
        rf.random_uniform([feat], explicit_state=rf.zeros([feat]))
    with pytest.raises(ValueError, match="random_uniform: static=True needs a seed"):
        rf.random_uniform([feat], static=True)
    with pytest.raises(ValueError, match="random_normal: minval, maxval and bound are not parameters"):
        rf.random([feat], distribution="normal", minval=0.0)
    with pytest.raises(ValueError, match="random_uniform: minval 3 must be < maxval 3"):
        rf.random_uniform([feat], dtype="int32", minval=3, maxval=3)
    other = rf.convert_to_tensor(np.ones(2, "float32"), dims=[Dim(2, name="o")])
    with pytest.raises(ValueError, match="random_normal: the parameters have dims"):
        rf.random_normal([feat], mean=other)
