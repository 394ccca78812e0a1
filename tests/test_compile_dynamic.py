"""``torch.compile(fullgraph=True, dynamic=True)`` with a padded time dim built inside the compiled function: the
fused loss and the gradient-smoothing path give the eager values and gradients for batches of different lengths,
without a graph break. ``tests/gpu`` runs the same check on CUDA tensors (:func:`check_dynamic_time_dim`)."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

torch = pytest.importorskip("torch")
from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402


def _loss(logits, lens, targets, smoothing):
    """Per-sequence sums of the fused loss and of the gradient-smoothing path; the dims are built here, per call."""
    batch, vocab = Dim(logits.shape[0], name="batch"), Dim(logits.shape[2], name="vocab")
    time = Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time")
    z = rf.convert_to_tensor(logits, dims=[batch, time, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(targets, dims=[batch, time], sparse_dim=vocab)
    smoothing = rf.convert_to_tensor(smoothing, dims=())
    fused = rf.label_smoothed_cross_entropy(logits=z, targets=y, axis=vocab, smoothing=smoothing)
    lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), smoothing)
    path = rf.cross_entropy(estimated=lp, target=y, axis=vocab, estimated_type="log-probs")
    return rf.reduce_sum(fused + path, axis=time).raw_tensor


def check_dynamic_time_dim(device: str, backend: str = "aot_eager") -> None:
    """Compile :func:`_loss` once with a dynamic time axis (``mark_dynamic``; the vocabulary stays static) and
    compare it with eager for time lengths 5 and 9."""
    rng = np.random.default_rng(0)
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(_loss, backend=counter, fullgraph=True)
    smoothing = torch.tensor(0.1, device=device)
    for time in (5, 9):
        lens = torch.tensor([time, time - 2, 1], device=device)
        targets = torch.tensor(rng.integers(0, 7, size=(3, time)), device=device)
        logits = torch.tensor(rng.standard_normal((3, time, 7)), dtype=torch.float32, device=device)
        torch._dynamo.mark_dynamic(targets, 1)
        results = []
        for fn in (_loss, compiled):
            x = logits.clone().requires_grad_()
            torch._dynamo.mark_dynamic(x, 1)
            value = fn(x, lens, targets, smoothing)
            results.append((value.detach().cpu().numpy(), torch.autograd.grad(value.sum(), x)[0].cpu().numpy()))
        for eager, got in zip(*results):
            np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-6)
    assert counter.frame_count == 1, f"compiled {counter.frame_count} times for two time lengths"


def test_dynamic_time_dim_compiles_without_graph_breaks(restore_backend):
    rf.select_backend("torch")
    torch._dynamo.reset()
    check_dynamic_time_dim("cpu")
