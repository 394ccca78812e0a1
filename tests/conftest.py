"""Test fixtures: every test that takes ``backend`` runs once per backend (ids ``[torch]``, ``[tensorflow]``).

The per-framework code of the tests lives here, in :class:`BackendHelper`, so the test bodies are the same for
both backends.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import frontend_backends
import returnn_ls as rf
from returnn_ls import _backend
from returnn_ls.training.config import ENV_VAR

BACKENDS = ["torch", "tensorflow"]

#: The warnings the test suite ignores, each with the reason. Everything else is shown (and fixed at its source).
IGNORED_WARNINGS = (
    # torch 2.13's inductor imports modules of its own that use torch.jit.script_method; not our code
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in IGNORED_WARNINGS:
        config.addinivalue_line("filterwarnings", line)


class BackendHelper:
    """Creates raw tensors and takes gradients for one backend."""

    def __init__(self, name: str):
        self.name = name
        self.impl = frontend_backends.get_backend(name)

    def raw(self, array: Any, dtype: str | None = None) -> Any:
        """:return: a raw tensor copy of ``array``"""
        return self.impl.convert(np.asarray(array), dtype)

    def numpy(self, x: Any) -> np.ndarray:
        """:return: numpy value of a Tensor or raw tensor"""
        raw = x.raw_tensor if isinstance(x, rf.Tensor) else x
        return self.impl.to_numpy(raw)

    def value_and_grad(self, fn: Callable[..., rf.Tensor], *arrays: np.ndarray) -> tuple[np.ndarray, list]:
        """Call ``fn`` on raw tensors of ``arrays``; differentiate the sum of its result w.r.t. each input.

        :return: (value of ``fn`` as numpy, [gradient as numpy per input])
        """
        if self.name == "torch":
            import torch

            xs = [torch.tensor(a, requires_grad=True) for a in arrays]
            out = fn(*xs)
            out.raw_tensor.sum().backward()
            grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in xs]
            return self.numpy(out), [g.numpy() for g in grads]
        import tensorflow as tf

        xs = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            out = fn(*xs)
            total = tf.reduce_sum(out.raw_tensor)
        grads = tape.gradient(total, xs)
        grads = [g if g is not None else tf.zeros_like(x) for g, x in zip(grads, xs)]
        return self.numpy(out), [np.asarray(g) for g in grads]

    def gradcheck(self, fn: Callable[..., Any], *arrays: np.ndarray) -> bool:
        """Check the analytic gradient of ``fn`` (raw float64 tensors -> raw tensor) against finite differences
        with the framework's own checker: ``torch.autograd.gradcheck`` or ``tf.test.compute_gradient``."""
        if self.name == "torch":
            import torch

            xs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
            return torch.autograd.gradcheck(fn, xs, eps=1e-6, atol=1e-7)
        import tensorflow as tf

        xs = [tf.constant(a, dtype=tf.float64) for a in arrays]
        theoretical, numerical = tf.test.compute_gradient(fn, xs, delta=1e-6)
        for t, n in zip(theoretical, numerical):
            np.testing.assert_allclose(t, n, atol=1e-7)
        return True


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(params=BACKENDS)
def backend(request) -> BackendHelper:
    """Select each backend in turn; yields a :class:`BackendHelper`."""
    name = request.param
    if not _installed(name):
        if os.environ.get("CI"):
            pytest.fail(f"backend {name} is not installed in CI")
        pytest.skip(f"{name} is not installed")
    previous = _backend._selected
    rf.select_backend(name)
    yield BackendHelper(name)
    _backend._selected = previous


@pytest.fixture
def restore_backend() -> None:
    """Restore the backend selection after a test that selects one itself."""
    previous = _backend._selected
    yield
    _backend._selected = previous


@pytest.fixture
def select(restore_backend) -> Callable[[str], None]:
    """:return: ``rf.select_backend``; the previous selection is restored after the test"""
    return rf.select_backend


@pytest.fixture
def cli_isolated(restore_backend, monkeypatch) -> None:
    """For tests of the command line: no backend from the environment, the backend selection restored."""
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator."""
    return np.random.default_rng(42)
