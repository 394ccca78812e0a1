"""Same numbers as RETURNN's own frontend (``returnn.frontend`` on its torch backend), on each of our backends.

RETURNN and dm-tree are installed by the Makefile's dev set-up, so these tests run in CI. RETURNN runs in a
subprocess (``_returnn_reference.py``): it switches an already imported TensorFlow to graph mode.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import returnn_ls as rf

K, SMOOTHING, LABEL_PROB = 7, 0.1, 0.6
EXCLUDE_CASES = {"none": None, "blank": [0], "two": [0, 4]}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Inputs, and RETURNN's results on them."""
    rng = np.random.default_rng(7)
    q = rng.dirichlet(np.ones(K), size=(2, 3)).astype("float32")
    q[0, 0] = np.eye(K)[0]  # a blank-only frame, where RETURNN adds mass
    inputs = {
        "x": np.log(rng.dirichlet(np.ones(K), size=(2, 3))).astype("float32"),
        "q": q,
        "probs": rng.dirichlet(np.ones(K), size=4).astype("float32"),
        "labels": rng.integers(0, K, size=4).astype("int32"),
        "smoothing": np.float32(SMOOTHING),
        "label_prob": np.float32(LABEL_PROB),
    }
    folder = tmp_path_factory.mktemp("returnn")
    np.savez(folder / "in.npz", **inputs)
    script = Path(__file__).with_name("_returnn_reference.py")
    subprocess.run(
        [sys.executable, str(script), str(folder / "in.npz"), str(folder / "out.npz")], check=True, timeout=300
    )
    return inputs, dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("exclude", list(EXCLUDE_CASES))
def test_log_prob_gradient_with_returnn_compat_equals_returnn(backend, case, exclude):
    inputs, reference = case
    dims = [rf.Dim(2, name="b"), rf.Dim(3, name="t"), rf.Dim(K, name="v")]

    def ours(raw_x):
        t = rf.convert_to_tensor(raw_x, dims=dims, feature_dim=dims[2])
        lp = rf.label_smoothed_log_prob_gradient(
            t, SMOOTHING, exclude_labels=EXCLUDE_CASES[exclude], returnn_compat=True
        )
        return lp * rf.convert_to_tensor(-inputs["q"], dims=dims)

    _, (grad,) = backend.value_and_grad(ours, inputs["x"])
    np.testing.assert_allclose(grad, reference[f"grad_{exclude}"], rtol=1e-6, atol=1e-7)


def test_label_smoothing_and_smooth_one_hot_equal_returnn(backend, case):
    inputs, reference = case
    b, v = rf.Dim(4, name="b"), rf.Dim(K, name="v")
    dense = rf.label_smoothing(rf.convert_to_tensor(inputs["probs"], dims=[b, v], feature_dim=v), SMOOTHING)
    y = rf.convert_to_tensor(inputs["labels"], dims=[b], sparse_dim=v)
    np.testing.assert_allclose(dense.numpy(), reference["dense"], rtol=1e-6)
    np.testing.assert_allclose(rf.label_smoothing(y, SMOOTHING).numpy(), reference["sparse"], rtol=1e-6)
    np.testing.assert_allclose(rf.smooth_one_hot(y, label_prob=LABEL_PROB).numpy(), reference["one_hot"], rtol=1e-6)
