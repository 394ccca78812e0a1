"""Same numbers as RETURNN's own frontend (``returnn.frontend`` on its torch backend), on each of our backends.

RETURNN and dm-tree are installed by the Makefile's dev set-up, so these tests run in CI.
"""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf

K = 7


@pytest.fixture(scope="module")
def returnn():
    """RETURNN's frontend and tensor modules, with its torch backend selected."""
    import returnn.frontend as rrf
    import returnn.tensor as rtensor

    rrf.select_backend_torch()
    return rrf, rtensor


def _returnn_tensor(rtensor, raw, dims, **kwargs):
    return rtensor.Tensor("x", dims=dims, dtype=str(raw.dtype).split(".")[-1], raw_tensor=raw, **kwargs)


@pytest.mark.parametrize("exclude_labels", [None, [0], [0, 4]])
def test_log_prob_gradient_with_returnn_compat_equals_returnn(backend, returnn, rng, exclude_labels):
    import torch

    rrf, rtensor = returnn
    x = np.log(rng.dirichlet(np.ones(K), size=(2, 3))).astype("float32")
    q = rng.dirichlet(np.ones(K), size=(2, 3)).astype("float32")
    q[0, 0] = np.eye(K)[0]  # a blank-only frame, where RETURNN adds mass
    rdims = [rtensor.Dim(2, name="b"), rtensor.Dim(3, name="t"), rtensor.Dim(K, name="v")]
    raw = torch.tensor(x, requires_grad=True)
    out = rrf.label_smoothed_log_prob_gradient(
        _returnn_tensor(rtensor, raw, rdims, feature_dim=rdims[2]), 0.1, exclude_labels=exclude_labels
    )
    (out.raw_tensor * torch.tensor(-q)).sum().backward()
    dims = [rf.Dim(2, name="b"), rf.Dim(3, name="t"), rf.Dim(K, name="v")]

    def ours(raw_x):
        t = rf.convert_to_tensor(raw_x, dims=dims, feature_dim=dims[2])
        lp = rf.label_smoothed_log_prob_gradient(t, 0.1, exclude_labels=exclude_labels, returnn_compat=True)
        return lp * rf.convert_to_tensor(-q, dims=dims)

    _, (grad,) = backend.value_and_grad(ours, x)
    np.testing.assert_allclose(grad, raw.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_label_smoothing_and_smooth_one_hot_equal_returnn(backend, returnn, rng):
    import torch

    rrf, rtensor = returnn
    probs = rng.dirichlet(np.ones(K), size=4).astype("float32")
    labels = rng.integers(0, K, size=4).astype("int32")
    rb, rv = rtensor.Dim(4, name="b"), rtensor.Dim(K, name="v")
    ref_dense = rrf.label_smoothing(_returnn_tensor(rtensor, torch.tensor(probs), [rb, rv], feature_dim=rv), 0.2)
    ref_sparse = rrf.label_smoothing(_returnn_tensor(rtensor, torch.tensor(labels), [rb], sparse_dim=rv), 0.2)
    ref_one_hot = rrf.smooth_one_hot(
        _returnn_tensor(rtensor, torch.tensor(labels), [rb], sparse_dim=rv), label_prob=0.6
    )
    b, v = rf.Dim(4, name="b"), rf.Dim(K, name="v")
    dense = rf.label_smoothing(rf.convert_to_tensor(probs, dims=[b, v], feature_dim=v), 0.2)
    y = rf.convert_to_tensor(labels, dims=[b], sparse_dim=v)
    np.testing.assert_allclose(dense.numpy(), ref_dense.raw_tensor.numpy(), rtol=1e-6)
    np.testing.assert_allclose(rf.label_smoothing(y, 0.2).numpy(), ref_sparse.raw_tensor.numpy(), rtol=1e-6)
    np.testing.assert_allclose(rf.smooth_one_hot(y, label_prob=0.6).numpy(), ref_one_hot.raw_tensor.numpy(), rtol=1e-6)
