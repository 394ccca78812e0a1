"""The CUDA dispatch to the Triton kernels against the CPU kernels, at the sizes of a real run (GPU only).

Skipped without CUDA (and under ``TRITON_INTERPRET=1``, which would interpret 8192 programs per call). On a GPU machine:
``.venv/bin/python -m pytest -q -p no:cacheprovider tests/gpu``. The public functions run on CUDA tensors, where
``rf.label_smoothed_cross_entropy`` and ``rf.log_softmax -> rf.label_smoothed_log_prob_gradient -> rf.cross_entropy``
dispatch to the Triton ops (each test checks that they did), and on CPU copies of the same values, where the torch
kernels run. bfloat16 logits are compared with the CPU result of their float32 values: the loss of the fused CE is
float32 on both (``rtol=1e-5``), the gradients (and the loss of the gradient path) are rounded to bfloat16 on CUDA
(``rtol=2**-7``, twice bfloat16's rounding); float32 gradients ``rtol=1e-4, atol=1e-6``.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"), reason="Triton's interpreter is on"),
]

import returnn_ls as rf  # noqa: E402
from returnn_ls import Dim  # noqa: E402

B, T, K = 8, 1024, 32000  # 8192 frames
#: rtol of the gradients (atol 1e-6): float32 allows for the GPU's approximate ``exp`` and another summation order
GRAD_RTOL = {torch.float32: 1e-4, torch.bfloat16: 2**-7}


@pytest.fixture
def triton_ops(restore_backend, monkeypatch):
    """The module of the Triton ops, with its public functions counting their calls in ``calls``."""
    pytest.importorskip("triton")
    from frontend_backends.torch import triton_ops

    monkeypatch.delenv(triton_ops.ENV_VAR, raising=False)
    calls = []
    for name in ("label_smoothed_cross_entropy", "log_softmax_smoothed_nll"):
        fn = getattr(triton_ops, name)
        monkeypatch.setattr(triton_ops, name, lambda *a, fn=fn, name=name: calls.append(name) or fn(*a))
    monkeypatch.setattr(triton_ops, "calls", calls, raising=False)
    rf.select_backend("torch")
    yield triton_ops
    torch.cuda.empty_cache()


def _inputs(dtype: torch.dtype, seed: int = 0) -> dict:
    """:return: the logits, labels and lengths on the CPU (float32 values exactly representable in ``dtype``)"""
    gen = torch.Generator().manual_seed(seed)
    logits = (4 * torch.randn(B, T, K, generator=gen)).to(dtype).float()
    labels = torch.randint(0, K, (B, T), generator=gen)
    lens = torch.tensor([T, T - 1, T // 2, 1, T, 700, 3 * T // 4, 17])
    labels[torch.arange(T) >= lens[:, None]] = -100  # padding may hold any label
    dl = (torch.rand(B, T, generator=gen) + 0.5).to(dtype).float()  # an upstream gradient that differs per frame
    return {"logits": logits, "labels": labels, "lens": lens, "dl": dl}


def _run(case: str, data: dict, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """:return: (loss [B, T], gradient w.r.t. the logits [B, T, K]) of ``case`` on ``device``, on the CPU"""
    z = data["logits"].to(device, dtype).requires_grad_()
    batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(data["lens"].to(device), dims=[batch]), name="time")
    logits = rf.convert_to_tensor(z, dims=[batch, time, vocab], feature_dim=vocab)
    targets = rf.convert_to_tensor(data["labels"].to(device), dims=[batch, time], sparse_dim=vocab)
    if case == "fused":
        weight = rf.convert_to_tensor(torch.linspace(0.5, 1.5, K, device=device), dims=[vocab])
        loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.1,
                                               convention="uniform", exclude_labels=[0], weight=weight,
                                               z_loss=1e-4)  # fmt: skip
    else:
        lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=vocab), 0.1, exclude_labels=[0])
        loss = rf.cross_entropy(estimated=lp, target=targets, axis=vocab, estimated_type="log-probs")
    raw = loss.copy_transpose([batch, time]).raw_tensor
    (grad,) = torch.autograd.grad(raw, z, data["dl"].to(device, raw.dtype))
    return raw.detach().cpu(), grad.cpu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("case", ["fused", "gradient_path"])
def test_cuda_dispatch_matches_cpu(triton_ops, case, dtype):
    data = _inputs(dtype)
    loss, grad = _run(case, data, "cuda", dtype)
    assert triton_ops.calls == ["label_smoothed_cross_entropy" if case == "fused" else "log_softmax_smoothed_nll"]
    assert grad.dtype == dtype
    expected_loss, expected_grad = _run(case, data, "cpu", torch.float32)
    rtol = 2**-7 if case == "gradient_path" and dtype == torch.bfloat16 else 1e-5  # that loss is rounded to bf16
    torch.testing.assert_close(loss.float(), expected_loss, rtol=rtol, atol=1e-4)
    del data
    torch.testing.assert_close(grad.float(), expected_grad, rtol=GRAD_RTOL[dtype], atol=1e-6)
    if case == "fused":
        padding = torch.arange(T) >= torch.tensor([T, T - 1, T // 2, 1, T, 700, 3 * T // 4, 17])[:, None]
        assert not loss[padding].any() and not grad[padding].any()  # exactly 0


def test_switched_off_by_the_environment(triton_ops, monkeypatch):
    monkeypatch.setenv(triton_ops.ENV_VAR, "0")
    z = torch.randn(4, 7, K // 100, device="cuda", requires_grad=True)
    assert not triton_ops.use_triton(z)
    monkeypatch.setenv(triton_ops.ENV_VAR, "1")
    assert triton_ops.use_triton(z) and not triton_ops.use_triton(z.detach().double())


def test_more_than_2_31_elements(triton_ops):
    """Rows past element 2**31 (64-bit row offsets): the last rows of a 16640 x 131072 bfloat16 tensor."""
    n, k = 16640, 131072
    if torch.cuda.mem_get_info()[0] < 3 * n * k * 2:
        pytest.skip("needs ~13 GB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
    y = torch.randint(0, k, (n,), device="cuda", generator=gen)
    off, on = torch.full((k,), 0.1 / k, device="cuda"), torch.full((k,), 0.9, device="cuda")
    loss = triton_ops.label_smoothed_cross_entropy(z, y, off, on, None, 0.0, None)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    tail = slice(n - 8, n)
    zt = z[tail].detach().float().cpu()
    expected = torch.nn.functional.cross_entropy(zt.requires_grad_(), y[tail].cpu(), label_smoothing=0.1,
                                                 reduction="none")  # fmt: skip
    (expected_grad,) = torch.autograd.grad(expected.sum(), zt)
    torch.testing.assert_close(loss[tail].cpu(), expected.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad[tail].float().cpu(), expected_grad, rtol=2**-7, atol=1e-6)
