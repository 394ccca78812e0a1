"""rf.scatter and its modes (sum, max, min, mean, logsumexp, logmeanexp, argmax), scatter_count, on every backend,
against numpy loops: padding frames of the scattered dim never contribute, entries without frames get the fill
value, gradients reach exactly the frames that were scattered (and for max, the maximum)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import frontend_backends
import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import padded_dims, restore_global_state  # noqa: F401 (an autouse fixture)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _mini_backend import Backend as MiniBackend  # noqa: E402

LENS = [5, 2, 0]
T, N_OUT, F = 6, 4, 2


def _case(rng):
    """:return: (batch, time, out, feat dims, data [B, T, F] with NaN padding, indices [B, T] with junk padding)"""
    batch, time = padded_dims(LENS)
    out, feat = Dim(N_OUT, name="out"), Dim(F, name="feat")
    x = rng.standard_normal((len(LENS), T, F)).astype("float32")
    idx = rng.integers(0, N_OUT, (len(LENS), T)).astype("int32")
    valid = np.arange(T)[None, :] < np.asarray(LENS)[:, None]
    x[~valid] = np.nan
    idx[~valid] = 99  # out of range: must never be used
    return batch, time, out, feat, x, idx


def _reference(x, idx, reduce, fill):
    """:return: numpy ``[B, N_OUT, F]``: ``reduce`` of the frames per target entry, ``fill`` where none"""
    out = np.full((len(LENS), N_OUT, F), fill, dtype=np.float64)
    for b, n in enumerate(LENS):
        for o in range(N_OUT):
            rows = x[b, :n][idx[b, :n] == o]
            if len(rows):
                out[b, o] = reduce(rows.astype(np.float64))
    return out


@pytest.mark.parametrize("mode, reduce, fill", [("sum", lambda r: r.sum(0), 0.0), ("max", lambda r: r.max(0), -np.inf),
                                                ("min", lambda r: r.min(0), np.inf)])  # fmt: skip
def test_scatter_reduces_valid_frames_per_target(backend, rng, mode, reduce, fill):
    batch, time, out, feat, x, idx = _case(rng)
    indices = rf.convert_to_tensor(idx, dims=[batch, time], sparse_dim=out)
    x_t = rf.convert_to_tensor(x, dims=[batch, time, feat], feature_dim=feat)
    y = rf.scatter(x_t, indices=indices, indices_dim=time, mode=mode)
    assert y.dims == (batch, out, feat) and y.feature_dim is feat and y.dtype == "float32"
    np.testing.assert_allclose(y.numpy(), _reference(x, idx, reduce, fill), rtol=1e-6)
    y = rf.scatter(x_t, indices=indices, indices_dim=time, mode=mode, fill_value=-7.0, out_dim=out)
    np.testing.assert_allclose(y.numpy(), _reference(x, idx, reduce, -7.0), rtol=1e-6)


def test_scatter_gradient_reaches_scattered_frames_and_the_maximum(backend, rng):
    batch, time, out, feat, x, idx = _case(rng)
    x = np.nan_to_num(x)
    w = rng.standard_normal((len(LENS), N_OUT, F)).astype("float32")

    def fn(mode):
        def run(raw_x):
            indices = rf.convert_to_tensor(idx, dims=[batch, time], sparse_dim=out)
            y = rf.scatter(rf.convert_to_tensor(raw_x, dims=[batch, time, feat]), indices=indices, indices_dim=time,
                           mode=mode, fill_value=0.0)  # fmt: skip
            return y * rf.convert_to_tensor(w, dims=[batch, out, feat])
        return run

    valid = np.arange(T)[None, :] < np.asarray(LENS)[:, None]
    _, (grad,) = backend.value_and_grad(fn("sum"), x)
    expected = np.zeros_like(x)
    for b, n in enumerate(LENS):
        expected[b, :n] = w[b, idx[b, :n]]
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    _, (grad,) = backend.value_and_grad(fn("max"), x)
    top = _reference(x, idx, lambda r: r.max(0), 0.0)
    expected = np.zeros_like(x)
    for b, n in enumerate(LENS):
        at_max = x[b, :n] == top[b, idx[b, :n]]
        expected[b, :n] = np.where(at_max, w[b, idx[b, :n]], 0.0)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    assert not grad[~valid].any()


def test_scatter_mean_count_and_logmeanexp(backend, rng):
    batch, time, out, feat, x, idx = _case(rng)
    indices = rf.convert_to_tensor(idx, dims=[batch, time], sparse_dim=out)
    x_t = rf.convert_to_tensor(x, dims=[batch, time, feat])
    counts = rf.scatter_count(indices=indices, indices_dim=time)
    ref_counts = _reference(np.ones_like(x), idx, lambda r: len(r), 0)[..., 0]
    assert counts.dtype == "int32" and counts.dims == (batch, out)
    np.testing.assert_array_equal(counts.numpy(), ref_counts)
    mean = rf.scatter_mean(x_t, indices=indices, indices_dim=time)
    np.testing.assert_allclose(mean.numpy(), _reference(x, idx, lambda r: r.mean(0), 0.0), rtol=1e-5, atol=1e-6)
    same = rf.scatter(x_t, indices=indices, indices_dim=time, mode="mean", fill_value=3.0)
    np.testing.assert_allclose(same.numpy(), _reference(x, idx, lambda r: r.mean(0), 3.0), rtol=1e-5, atol=1e-6)
    big = rf.convert_to_tensor(x * 50, dims=[batch, time, feat])  # exp overflows without the max shift
    lse = rf.scatter(big, indices=indices, indices_dim=time, mode="logsumexp")
    ref = _reference(x * 50, idx, lambda r: np.log(np.exp(r - r.max(0)).sum(0)) + r.max(0), -np.inf)
    np.testing.assert_allclose(lse.numpy(), ref, rtol=1e-5)
    lme = rf.scatter_logmeanexp(big, indices=indices, indices_dim=time)
    ref = _reference(x * 50, idx, lambda r: np.log(np.exp(r - r.max(0)).mean(0)) + r.max(0), -np.inf)
    np.testing.assert_allclose(lme.numpy(), ref, rtol=1e-5)


def test_scatter_argmax_first_maximum_position(backend, rng):
    batch, time, out, _, x, idx = _case(rng)
    x = np.round(x[..., 0] * 2)  # ties: the first position wins
    indices = rf.convert_to_tensor(idx, dims=[batch, time], sparse_dim=out)
    y = rf.scatter(rf.convert_to_tensor(x, dims=[batch, time]), indices=indices, indices_dim=time, mode="argmax")
    assert y.sparse_dim is time and y.dims == (batch, out)
    ref = np.full((len(LENS), N_OUT), -1)
    for b, n in enumerate(LENS):
        for o in range(N_OUT):
            hits = [t for t in range(n) if idx[b, t] == o]
            if hits:
                ref[b, o] = max(hits, key=lambda t: (x[b, t], -t))
    np.testing.assert_array_equal(y.numpy(), ref)
    y = rf.scatter_argmax(rf.convert_to_tensor(x, dims=[batch, time]), indices=indices, indices_dim=time,
                          invalid_idx=T)  # fmt: skip
    np.testing.assert_array_equal(y.numpy(), np.where(ref < 0, T, ref))


def test_scatter_into_a_dynamic_out_dim_and_several_out_dims(backend, rng):
    batch, time, out, feat, x, idx = _case(rng)
    out_lens = np.array([3, 1, 0], dtype="int32")
    dyn = Dim(rf.convert_to_tensor(out_lens, dims=[batch]), name="dyn_out")
    small = np.minimum(idx, 2)
    indices = rf.convert_to_tensor(small, dims=[batch, time])
    y = rf.scatter(rf.convert_to_tensor(x, dims=[batch, time, feat]), indices=indices, indices_dim=time,
                   out_dim=dyn, mode="max")  # fmt: skip
    ref = _reference(x, small, lambda r: r.max(0), -np.inf)[:, :3]
    ref[np.arange(3)[None, :] >= out_lens[:, None]] = 0.0  # padding of the out dim is 0, as in RETURNN
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6)
    two, half = Dim(2, name="two"), Dim(2, name="half")
    indices = rf.convert_to_tensor(idx, dims=[batch, time])
    y = rf.scatter(rf.convert_to_tensor(x, dims=[batch, time, feat]), indices=indices, indices_dim=time,
                   out_dim=[two, half])  # fmt: skip
    assert y.dims == (batch, two, half, feat)
    np.testing.assert_allclose(y.numpy().reshape(len(LENS), N_OUT, F), _reference(x, idx, lambda r: r.sum(0), 0.0),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_scatter_without_padding_fills_and_broadcasts_the_source(backend):
    n, states = Dim(3, name="n"), Dim(7, name="states")
    starts = rf.convert_to_tensor(np.array([2, 4, 5], dtype="int32"), dims=[n], sparse_dim=states)
    y = rf.scatter(rf.zeros([n]), indices=starts, indices_dim=[n], fill_value=float("-inf"))
    np.testing.assert_array_equal(y.numpy(), [-np.inf, -np.inf, 0, -np.inf, 0, 0, -np.inf])
    scalar = rf.convert_to_tensor(np.float32(2.0))
    y = rf.scatter(scalar, indices=starts, indices_dim=n)  # the source lacks the indices dim: broadcast
    np.testing.assert_array_equal(y.numpy(), [0, 0, 2, 0, 2, 2, 0])


def test_scatter_rejects_bad_arguments(backend):
    n, states = Dim(3, name="n"), Dim(7, name="states")
    idx = rf.convert_to_tensor(np.array([2, 4, 5], dtype="int32"), dims=[n])
    x = rf.zeros([n])
    with pytest.raises(ValueError, match="scatter: mode must be one of"):
        rf.scatter(x, indices=idx, indices_dim=n, out_dim=states, mode="prod")
    with pytest.raises(ValueError, match="scatter: without out_dim, indices must have a sparse_dim"):
        rf.scatter(x, indices=idx, indices_dim=n)
    with pytest.raises(ValueError, match="scatter: indices_dim must be"):
        rf.scatter(x, indices=idx, indices_dim=states, out_dim=states)
    with pytest.raises(TypeError, match="scatter: indices must have an integer dtype"):
        rf.scatter(x, indices=x, indices_dim=n, out_dim=states)
    with pytest.raises(ValueError, match="scatter_logsumexp: fill_value is not supported"):
        rf.scatter_logsumexp(x, indices=idx, indices_dim=n, out_dim=states, fill_value=0.0)


@pytest.mark.parametrize("name", ["torch", "tensorflow", "mini"])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_scatter_kernel_equals_numpy(name, dtype):
    impl = MiniBackend() if name == "mini" else frontend_backends.get_backend(name)
    x = (np.random.default_rng(0).standard_normal((6, 2)) * 10).astype(dtype)
    idx = np.array([3, 0, 3, 1, 0, 3])
    for mode, reduce in (("sum", np.add), ("max", np.maximum), ("min", np.minimum)):
        expected = np.full((5, 2), -5, dtype)
        for j in range(5):
            if (idx == j).any():
                expected[j] = reduce.reduce(x[idx == j], axis=0)
        got = impl.to_numpy(impl.scatter(impl.convert(x), impl.convert(idx, "int64"), 5, mode, -5))
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
