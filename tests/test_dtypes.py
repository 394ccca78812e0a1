"""Dtype promotion: one fixed lattice (``frontend_backends.common.result_dtype``), the same on every backend, in every
order of the operands and under every hash seed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import returnn_ls as rf
from frontend_backends.common import DTYPE_LATTICE, result_dtype
from returnn_ls import Dim

DTYPES = list(DTYPE_LATTICE)


def test_lattice_agrees_with_torch_promote_types():
    """torch's promotion table is an independent reference: it also sends float16 + bfloat16 to float32."""
    torch = pytest.importorskip("torch")
    for a, b in itertools.product(DTYPES, repeat=2):
        expected = str(torch.promote_types(getattr(torch, a), getattr(torch, b))).removeprefix("torch.")
        assert result_dtype(a, b) == expected, (a, b)


def test_lattice_is_a_join():
    """Commutative, associative, idempotent: the result of several dtypes does not depend on their order."""
    for a, b, c in itertools.product(DTYPES, repeat=3):
        assert result_dtype(a, b) == result_dtype(b, a)
        assert result_dtype(result_dtype(a, b), c) == result_dtype(a, result_dtype(b, c)) == result_dtype(a, b, c)
    assert all(result_dtype(a, a) == a for a in DTYPES)
    with pytest.raises(ValueError, match="result_dtype: dtypes must be some of .*got \\['float8'\\]"):
        result_dtype("float8")


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [("float16", "bfloat16", "float32"), ("bfloat16", "float16", "float32"), ("int32", "float16", "float16"),
     ("int32", "int64", "int64"), ("int64", "float64", "float64"), ("float32", "float64", "float64")],
)  # fmt: skip
def test_binary_ops_promote_by_the_lattice(backend, left, right, expected):
    frames = Dim(3, name="frames")
    a_np, b_np = np.array([1.5, -2.0, 3.0]), np.array([0.5, 4.0, -1.0])
    if left.startswith("int"):
        a_np = np.array([1, -2, 3])
    if right.startswith("int"):
        b_np = np.array([5, 4, -1])
    a = rf.convert_to_tensor(backend.raw(a_np, left), dims=[frames])
    b = rf.convert_to_tensor(backend.raw(b_np, right), dims=[frames])
    out = a + b
    assert out.dtype == expected
    np.testing.assert_allclose(backend.numpy(rf.cast(out, "float64")), a_np + b_np)


def test_python_float_with_an_int_tensor_gives_float32(backend):
    frames = Dim(2, name="frames")
    x = rf.convert_to_tensor(backend.raw(np.array([1, 2]), "int32"), dims=[frames])
    out = x * 0.5
    assert out.dtype == "float32"
    np.testing.assert_allclose(backend.numpy(out), [0.5, 1.0])
    assert (x * 2).dtype == "int32"


def test_half_precision_mix_is_float32_under_every_hash_seed():
    """Set iteration order depends on PYTHONHASHSEED: the promotion must not."""
    pytest.importorskip("torch")
    code = (
        "import numpy as np, returnn_ls as rf; rf.select_backend('torch'); d = rf.Dim(2, name='d')\n"
        "a = rf.convert_to_tensor(np.ones(2, 'float16'), dims=[d])\n"
        "b = rf.cast(rf.convert_to_tensor(np.ones(2, 'float32'), dims=[d]), 'bfloat16')\n"
        "print((a + b).dtype, (b + a).dtype, (a * b - b).dtype)"
    )
    for seed in ("0", "1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["float32"] * 3, (seed, out.stdout)
