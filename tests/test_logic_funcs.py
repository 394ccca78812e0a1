"""rf.equal / not_equal / less / less_equal / greater / greater_equal and rf.is_finite / is_infinite /
is_neg_infinite on every backend, against numpy."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

VALUES = np.array([0.5, -np.inf, np.inf, np.nan, -2.0, 3.0], dtype="float32")


@pytest.mark.parametrize("name, op", [("equal", np.equal), ("not_equal", np.not_equal), ("less", np.less),
                                      ("less_equal", np.less_equal), ("greater", np.greater),
                                      ("greater_equal", np.greater_equal)])  # fmt: skip
def test_named_comparisons_broadcast_by_dims(backend, rng, name, op):
    a_dim, b_dim = Dim(3, name="a"), Dim(4, name="b")
    a, b = rng.integers(0, 3, 3).astype("int32"), rng.integers(0, 3, 4).astype("int32")
    out = getattr(rf, name)(rf.convert_to_tensor(a, dims=[a_dim]), rf.convert_to_tensor(b, dims=[b_dim]))
    assert out.dims == (a_dim, b_dim) and out.dtype == "bool"
    np.testing.assert_array_equal(out.numpy(), op(a[:, None], b[None, :]))
    np.testing.assert_array_equal(getattr(rf, name)(rf.convert_to_tensor(a, dims=[a_dim]), 1).numpy(), op(a, 1))


def test_is_finite_is_infinite_is_neg_infinite(backend):
    n = Dim(len(VALUES), name="n")
    x = rf.convert_to_tensor(VALUES, dims=[n])
    np.testing.assert_array_equal(rf.is_finite(x).numpy(), np.isfinite(VALUES))
    np.testing.assert_array_equal(rf.is_infinite(x).numpy(), np.isinf(VALUES))
    np.testing.assert_array_equal(rf.is_neg_infinite(x).numpy(), VALUES == -np.inf)
    ints = rf.convert_to_tensor(np.array([1, -5, 0], dtype="int32"), dims=[Dim(3, name="m")])
    assert rf.is_finite(ints).numpy().all() and not rf.is_infinite(ints).numpy().any()
    assert not rf.is_neg_infinite(ints).numpy().any()
    with pytest.raises(TypeError, match="is_finite: expected a Tensor"):
        rf.is_finite(1.0)
