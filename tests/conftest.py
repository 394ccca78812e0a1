"""Test fixtures: every test that takes ``backend`` runs once per registered backend (ids ``[torch]``,
``[tensorflow]``), parametrized from the registry (``frontend_backends.backend_names()``).

:class:`BackendHelper` builds raw tensors and takes gradients through the backend's own objects (its ``Backend``
and ``Trainer``), so the test bodies are the same for every backend and a new backend needs no branch here.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

if importlib.util.find_spec("triton") is not None:
    if not glob.glob("/dev/nvidia[0-9]*"):  # no GPU: Triton kernels run on CPU tensors under its interpreter, which
        os.environ.setdefault("TRITON_INTERPRET", "1")  # must be on before triton wraps its own library functions
    import triton  # noqa: F401  - before any test module imports TensorFlow (TF first, then Triton, aborts the
    # process: both bundle LLVM; see frontend_backends/tensorflow/__init__.py)

import frontend_backends
import returnn_ls as rf
from frontend_backends.train_base import get_trainer
from returnn_ls import _backend
from returnn_ls.training.config import ENV_VAR

BACKENDS = list(frontend_backends.backend_names())

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
        self.trainer = get_trainer(name)

    def raw(self, array: Any, dtype: str | None = None) -> Any:
        """:return: a raw tensor copy of ``array``"""
        return self.impl.convert(np.asarray(array), dtype)

    def numpy(self, x: Any) -> np.ndarray:
        """:return: numpy value of a Tensor or raw tensor"""
        raw = x.raw_tensor if isinstance(x, rf.Tensor) else x
        return self.impl.to_numpy(raw)

    def _sum(self, raw: Any) -> Any:
        return self.impl.reduce("sum", raw, tuple(range(len(self.impl.shape(raw)))))

    def value_and_grad(self, fn: Callable[..., rf.Tensor], *arrays: np.ndarray) -> tuple[np.ndarray, list]:
        """Call ``fn`` on raw tensors of ``arrays``; differentiate the sum of its result w.r.t. each input
        (with the backend's trainer, which watches the inputs).

        :return: (value of ``fn`` as numpy, [gradient as numpy per input])
        """
        inputs = {str(i): self.raw(a) for i, a in enumerate(arrays)}
        result = {}

        def total(raw: dict[str, Any]) -> Any:
            result["out"] = fn(*(raw[str(i)] for i in range(len(arrays))))
            return self._sum(result["out"].raw_tensor)

        _, grads = self.trainer.value_and_grad(total, inputs)
        return self.numpy(result["out"]), [self.trainer.to_numpy(grads[str(i)]) for i in range(len(arrays))]

    def gradcheck(self, fn: Callable[..., Any], *arrays: np.ndarray, eps: float = 1e-6, atol: float = 1e-7) -> bool:
        """Check the analytic gradient of ``fn`` (raw float64 tensors -> raw tensor) against central finite
        differences in float64: the vector-Jacobian products with three random cotangents, entry by entry.

        :raise AssertionError: naming the input and entry where they differ by more than ``atol``
        """
        xs = [np.array(a, dtype=np.float64) for a in arrays]
        out = self.impl.to_numpy(fn(*(self.raw(x) for x in xs)))
        for trial, cotangent in enumerate(np.random.default_rng(0).standard_normal((3, *out.shape))):
            weight = self.raw(cotangent)

            def total(raw: dict[str, Any], weight=weight) -> Any:
                return self._sum(self.impl.binary("mul", fn(*(raw[str(i)] for i in range(len(xs)))), weight))

            _, grads = self.trainer.value_and_grad(total, {str(i): self.raw(x) for i, x in enumerate(xs)})
            for i, x in enumerate(xs):
                numeric = np.zeros_like(x)
                for j in np.ndindex(x.shape):
                    plus, minus = x.copy(), x.copy()
                    plus[j], minus[j] = x[j] + eps, x[j] - eps
                    values = [self.impl.to_numpy(fn(*(self.raw(p) for p in (*xs[:i], v, *xs[i + 1:]))))
                              for v in (plus, minus)]  # fmt: skip
                    numeric[j] = ((values[0] - values[1]) * cotangent).sum() / (2 * eps)
                analytic = self.trainer.to_numpy(grads[str(i)])
                np.testing.assert_allclose(analytic, numeric, atol=atol, err_msg=f"input {i}, cotangent {trial}")
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
