"""Reference values from RETURNN's own frontend, computed in a process of their own.

RETURNN's ``select_backend_torch()`` switches TensorFlow to graph mode when TensorFlow is already imported,
so the parity tests run RETURNN here, in a subprocess: ``python _returnn_reference.py IN.npz OUT.npz``.
"""

from __future__ import annotations

import sys

import numpy as np
import returnn.frontend as rrf
import torch
from returnn.tensor import Dim, Tensor

EXCLUDE_CASES = {"none": None, "blank": [0], "two": [0, 4]}


def _tensor(raw, dims, **kwargs):
    return Tensor("x", dims=dims, dtype=str(raw.dtype).split(".")[-1], raw_tensor=raw, **kwargs)


def log_prob_gradients(x: np.ndarray, q: np.ndarray, smoothing: float) -> dict[str, np.ndarray]:
    """:return: the gradient of sum(lslpg(x) * -q) for each case of EXCLUDE_CASES"""
    out = {}
    for name, excluded in EXCLUDE_CASES.items():
        dims = [Dim(n, name=f"d{i}") for i, n in enumerate(x.shape)]
        raw = torch.tensor(x, requires_grad=True)
        y = rrf.label_smoothed_log_prob_gradient(
            _tensor(raw, dims, feature_dim=dims[-1]), smoothing, exclude_labels=excluded
        )
        (y.raw_tensor * torch.tensor(-q)).sum().backward()
        out[f"grad_{name}"] = raw.grad.numpy()
    return out


def smoothing_values(probs: np.ndarray, labels: np.ndarray, smoothing: float, label_prob: float) -> dict:
    """:return: label_smoothing of dense probs and of sparse labels, and smooth_one_hot of the labels"""
    batch, vocab = Dim(probs.shape[0], name="b"), Dim(probs.shape[1], name="v")
    dense = rrf.label_smoothing(_tensor(torch.tensor(probs), [batch, vocab], feature_dim=vocab), smoothing)
    sparse_in = _tensor(torch.tensor(labels), [batch], sparse_dim=vocab)
    return {
        "dense": dense.raw_tensor.numpy(),
        "sparse": rrf.label_smoothing(sparse_in, smoothing).raw_tensor.numpy(),
        "one_hot": rrf.smooth_one_hot(sparse_in, label_prob=label_prob).raw_tensor.numpy(),
    }


def main(src: str, dst: str) -> None:
    """Read the inputs from ``src``, write RETURNN's results to ``dst``."""
    rrf.select_backend_torch()
    data = np.load(src)
    results = log_prob_gradients(data["x"], data["q"], float(data["smoothing"]))
    results.update(smoothing_values(data["probs"], data["labels"], float(data["smoothing"]), float(data["label_prob"])))
    np.savez(dst, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
