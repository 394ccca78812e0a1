"""The array primitives (``frontend_backends.array_kernels.ArrayKernels``) on raw tensors: torch, TensorFlow, the
NumPy mini backend and the protocol's default implementations give numpy's results; and the rf array functions run
on the mini backend (registered for this module) with the values of torch."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import frontend_backends
import returnn_ls as rf
from frontend_backends import BackendInfo
from frontend_backends.array_kernels import ArrayKernels
from returnn_ls import Dim, _backend

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _mini_backend import Backend as MiniBackend  # noqa: E402

MINI = "numpy_mini_array"
X = np.random.default_rng(3).standard_normal((2, 5, 3)).astype("float32")

#: name -> (call on a backend and raw X, numpy result)
CASES = {
    "gather_batched": (lambda b, x: b.gather(x, b.convert(np.array([[4, 0, 4], [1, 2, 3]])), 1),
                       np.take_along_axis(X, np.array([[4, 0, 4], [1, 2, 3]])[:, :, None], 1)),
    "gather_plain": (lambda b, x: b.gather(x, b.convert(np.array([[1], [0]])), 0), X[[[1], [0]]]),
    "flip": (lambda b, x: b.flip(x, 1), X[:, ::-1]),
    "cumsum": (lambda b, x: b.cumsum(x, 1), np.cumsum(X, 1)),
    "top_k": (lambda b, x: b.top_k(x, 2, True)[0], -np.sort(-X, -1)[..., :2]),
    "top_k_indices": (lambda b, x: b.top_k(x, 2, True)[1], np.argsort(-X, -1)[..., :2]),
    "pad": (lambda b, x: b.pad(x, [(0, 0), (2, 1), (0, 1)], -1.0), np.pad(X, ((0, 0), (2, 1), (0, 1)),
                                                                          constant_values=-1.0)),
    "slice": (lambda b, x: b.slice(x, 1, 1, -1, 2), X[:, 1:-1:2]),
    "reshape": (lambda b, x: b.reshape(x, [2, -1]), X.reshape(2, -1)),
    "squeeze": (lambda b, x: b.squeeze(b.slice(x, 1, 0, 1, None), 1), X[:, 0]),
    "broadcast_to": (lambda b, x: b.broadcast_to(b.slice(x, 0, 0, 1, None), [3, 5, 3]),
                     np.broadcast_to(X[:1], (3, 5, 3))),
    "einsum": (lambda b, x: b.einsum("btf,bsf->bts", x, x), np.einsum("btf,bsf->bts", X, X)),
    "clip": (lambda b, x: b.clip(x, -0.5, 0.5), np.clip(X, -0.5, 0.5)),
    "clip_tensor": (lambda b, x: b.clip(x, b.slice(x, 1, 0, 1, None), None), np.maximum(X, X[:, :1])),
    "log_add_exp": (lambda b, x: b.log_add_exp(x, b.slice(x, 0, 1, 2, None)), np.logaddexp(X, X[1:2])),
    "search_sorted": (lambda b, x: b.search_sorted(b.cumsum(b.unary("abs", x), 2), b.slice(x, 2, 0, 2, None),
                                                   "right", "int64"),
                      np.array([[np.searchsorted(row, v, "right") for row, v in zip(np.cumsum(np.abs(X), 2)[i],
                                                                                     X[i, :, :2])]
                                for i in range(2)])),
    "full_on_device": (lambda b, x: b.full_on_device([2, 3], 4.0, "float32", "cpu"), np.full((2, 3), 4.0)),
}  # fmt: skip
#: the primitives with a default implementation in ArrayKernels (checked through it too)
DEFAULTS = ("flip", "squeeze", "broadcast_to", "clip", "clip_tensor", "log_add_exp", "full_on_device")


def _backends() -> dict:
    out = {"mini": MiniBackend()}
    for name in ("torch", "tensorflow"):
        if name in frontend_backends.backend_names():
            out[name] = frontend_backends.get_backend(name)
    return out


class _Defaults:
    """A backend whose array primitives with a default use that default (``ArrayKernels``'s method)."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        if name in ("flip", "squeeze", "broadcast_to", "clip", "log_add_exp", "full_on_device"):
            return getattr(ArrayKernels, name).__get__(self._backend)
        return getattr(self._backend, name)


PAIRS = [(name, case) for name in ("torch", "tensorflow", "mini") for case in CASES]
PAIRS += [(name, case) for name in ("torch-defaults", "mini-defaults") for case in CASES
          if case.removesuffix("_tensor") in DEFAULTS]  # fmt: skip


@pytest.mark.parametrize(("name", "case"), PAIRS)
def test_primitive_equals_numpy(name, case):
    backends = _backends()
    if name.split("-")[0] not in backends:
        pytest.skip(f"{name} is not installed")
    impl = backends[name.split("-")[0]]
    impl = _Defaults(impl) if name.endswith("-defaults") else impl
    fn, expected = CASES[case]
    got = np.asarray(impl.to_numpy(fn(impl, impl.convert(X))))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if case in ("top_k_indices", "search_sorted"):
        assert got.dtype == np.int64


def test_random_draws_from_the_generator_in_range(restore_backend):
    for name, impl in _backends().items():
        generator = impl.random_generator(4)
        ints = impl.to_numpy(impl.random([2000], "uniform", "int64", 3, 6, generator))
        assert set(np.unique(ints)) == {3, 4, 5} and ints.dtype == np.int64, name
        floats = impl.to_numpy(impl.random([2000], "normal", "float64", -1.0, 0.5, generator))
        assert abs(floats.mean() + 1.0) < 0.05 and abs(floats.std() - 0.5) < 0.05, name
        impl.seed_generator(generator, 4)
        again = impl.to_numpy(impl.random([2000], "uniform", "int64", 3, 6, generator))
        np.testing.assert_array_equal(again, ints, err_msg=name)


@pytest.fixture(scope="module")
def mini():
    """The mini backend registered for this module (under a name of its own)."""
    previous = _backend._selected
    frontend_backends.register_backend(MINI, BackendInfo("_mini_backend", framework="numpy", type_modules=()))
    yield MINI
    frontend_backends.unregister_backend(MINI)
    _backend._selected = previous


def _program(rng: np.random.Generator) -> list[np.ndarray]:
    """The rf array functions on a padded batch of the selected backend; :return: their values"""
    batch = Dim(3, name="batch")
    time = Dim(rf.convert_to_tensor(np.array([4, 1, 3], "int32"), dims=[batch]), name="time")
    feat = Dim(2, name="feat")
    x = rf.convert_to_tensor(rng.standard_normal((3, 5, 2)).astype("float32"), dims=[batch, time, feat])
    padded, (ptime,) = rf.pad(x, axes=[time], padding=[(1, 2)], mode="reflect")
    values, indices, _ = rf.top_k(x, axis=time, k=1)
    kept, kept_dim = rf.masked_select(x, mask=x > 0.0, dims=[time])
    joined, joined_dim = rf.concat((x, time), (x, time))
    outs = [rf.reverse_sequence(x, axis=time), rf.shift_right(x, axis=time, pad_value=0.5), values, indices,
            rf.cumsum(x, spatial_dim=time), rf.slice(x, axis=time, start=1)[0], kept, joined,
            rf.matmul(x, x, reduce=time), rf.where(rf.sequence_mask(ptime, padded), padded, 0.0),
            rf.gather(x, indices=rf.convert_to_tensor(np.array([2, 0, 1]), dims=[batch]), axis=time,
                      clip_to_valid=True), rf.log_add_exp(x, 0.0), rf.clip_by_value(x, -0.3, 0.3)]  # fmt: skip
    masked = (time, time, None, None, time, None, kept_dim, joined_dim)
    masks = [rf.sequence_mask(d, o) if d is not None else None for d, o in zip(masked, outs)]
    masks += [None] * (len(outs) - len(masked))
    return [o.numpy() if m is None else np.where(_mask_like(o, m), o.numpy(), 0) for o, m in zip(outs, masks)]


def _mask_like(out: rf.Tensor, mask: rf.Tensor) -> np.ndarray:
    """:return: ``mask`` as numpy, broadcast to ``out``'s axes"""
    return rf.where(mask, rf.ones_like(out), 0.0).copy_transpose(out.dims).numpy() > 0


def test_rf_array_functions_on_the_mini_backend_equal_torch(mini, restore_backend):
    pytest.importorskip("torch")
    rf.select_backend("torch")
    expected = _program(np.random.default_rng(0))
    rf.select_backend(mini)
    got = _program(np.random.default_rng(0))
    for i, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=f"output {i}")
