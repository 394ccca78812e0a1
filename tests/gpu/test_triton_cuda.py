"""The CUDA dispatch to the Triton kernels against the CPU kernels, at the sizes of a real run (GPU only).

Skipped without CUDA (and under ``TRITON_INTERPRET=1``, which would interpret 8192 programs per call). On a GPU machine:
``.venv/bin/python -m pytest -q -p no:cacheprovider tests/gpu``. The public functions run on CUDA tensors, where
``rf.label_smoothed_cross_entropy`` and ``rf.log_softmax -> rf.label_smoothed_log_prob_gradient -> rf.cross_entropy``
dispatch to the Triton ops (each test checks that they did), and on CPU copies of the same values, where the torch
kernels run. bfloat16 logits are compared with the CPU result of their float32 values: the loss of the fused CE is
float32 on both (``rtol=1e-5``), the gradients (and the loss of the gradient path) are rounded to bfloat16 on CUDA
(``rtol=2**-7``, twice bfloat16's rounding); float32 gradients ``rtol=1e-4, atol=1e-6``.

``rf.linear_label_smoothed_cross_entropy`` (the fused projection, through ``linear_ce_cuda``) at 4096 x 512 x 32000,
float32 and bfloat16, is compared with the CPU op on the float32 values within per-element error bounds computed in
float64 on the GPU (:func:`_projection_bounds`); its host syncs are counted with CUDA's sync debug mode.
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


# -- the fused projection: rf.linear_label_smoothed_cross_entropy through frontend_backends.torch.linear_ce_cuda --

PB, PT, HID, VOCAB = 4, 1024, 512, 32000  # 4096 frames
P_LENS = [PT, PT - 24, 517, 3]
_CPU_RESULTS: dict = {}


@pytest.fixture
def linear_ce_cuda(restore_backend, monkeypatch):
    """The module of the CUDA projection path, with its ``forward`` counting its calls in ``calls``."""
    pytest.importorskip("triton")
    from frontend_backends.torch import linear_ce_cuda, triton_ops

    monkeypatch.delenv(triton_ops.ENV_VAR, raising=False)
    calls, forward = [], linear_ce_cuda.forward
    monkeypatch.setattr(linear_ce_cuda, "forward", lambda *a: calls.append("forward") or forward(*a))
    monkeypatch.setattr(linear_ce_cuda, "calls", calls, raising=False)
    rf.select_backend("torch")
    yield linear_ce_cuda
    torch.cuda.empty_cache()


def _projection_inputs(seed: int = 1) -> dict:
    """:return: CPU float32 values exactly representable in bfloat16: hidden ``[B, T, H]``, weight ``[K, H]``
    (logits of standard deviation ~3), bias, labels (some the excluded label 0, padding any), per-frame ``dl``"""
    gen = torch.Generator().manual_seed(seed)
    data = {"h": torch.randn(PB, PT, HID, generator=gen), "w": torch.randn(VOCAB, HID, generator=gen) * 3 / HID**0.5,
            "b": torch.randn(VOCAB, generator=gen), "dl": torch.rand(PB, PT, generator=gen) + 0.5}  # fmt: skip
    data = {k: v.bfloat16().float() for k, v in data.items()}
    data["labels"] = torch.randint(0, VOCAB, (PB, PT), generator=gen)
    data["labels"][:, ::97] = 0
    return data


def _run_projection(data: dict, device: str, dtype: torch.dtype, per_frame: bool) -> list:
    """:return: [loss [B, T], d hidden, d weight, d bias] on the CPU, for ``dl`` per frame or 1 on all frames"""
    params = [data[k].to(device, dtype, copy=True).requires_grad_() for k in ("h", "w", "b")]
    batch, hid, vocab = Dim(PB, name="batch"), Dim(HID, name="hidden"), Dim(VOCAB, name="vocab")
    time = Dim(rf.convert_to_tensor(torch.tensor(P_LENS, device=device), dims=[batch]), name="time")
    loss = rf.linear_label_smoothed_cross_entropy(
        hidden=rf.convert_to_tensor(params[0], dims=[batch, time, hid]), weight=rf.convert_to_tensor(
            params[1], dims=[vocab, hid]), bias=rf.convert_to_tensor(params[2], dims=[vocab]),
        targets=rf.convert_to_tensor(data["labels"].to(device), dims=[batch, time], sparse_dim=vocab),
        axis=vocab, smoothing=0.1, exclude_labels=[0],
    )  # fmt: skip
    raw = loss.copy_transpose([batch, time]).raw_tensor
    dl = data["dl"] if per_frame else torch.ones_like(data["dl"])
    grads = torch.autograd.grad(raw, params, dl.to(device, raw.dtype))
    return [raw.detach().cpu()] + [g.cpu() for g in grads]


def _projection_bounds(data: dict, dtype: torch.dtype, per_frame: bool) -> list:
    """:return: bounds of |CUDA result - CPU float32 result| for [loss, dh, dw, db], computed on the GPU in float64.

    Logit errors per frame ``delta``: float32 matmuls of ``H`` terms on both devices (``2 H 2**-24 max|h||W|``),
    bfloat16 logits one or two roundings (``2**-8 (max|hW| + max|z|)``). ``delta`` bounds the loss error by
    ``2 delta``, the softmax by a factor ``exp(+-2 delta)``; the logit gradient rounds to bfloat16 (``2**-7``),
    sums of ``n`` float32 terms err by at most ``n 2**-24`` of the sum of magnitudes (both devices), and the
    returned bfloat16 gradients round once (``2**-8``). See tests/test_triton_linear_ce.py.
    """
    h, w, b = (data[k].to("cuda", torch.float64) for k in ("h", "w", "b"))
    h = h.reshape(-1, HID)
    valid = (torch.arange(PT) < torch.tensor(P_LENS)[:, None]).reshape(-1).to("cuda")
    dl = (data["dl"] if per_frame else torch.ones_like(data["dl"])).reshape(-1, 1).to("cuda", torch.float64)
    dl = dl * valid[:, None]
    y = data["labels"].reshape(-1).to("cuda")
    hw = h @ w.T
    z = hw + b
    delta = 2 * HID * 2**-24 * (h.abs() @ w.abs().T).amax(-1) + 2**-23 * z.abs().amax(-1)
    g_rel, out_rel = (2**-7, 2**-8) if dtype == torch.bfloat16 else (1e-6, 0.0)
    if dtype == torch.bfloat16:
        delta = delta + 2**-8 * (hw.abs().amax(-1) + z.abs().amax(-1))
    del hw
    floor = 0.1 / (VOCAB - 2)
    q = torch.full_like(z, floor)
    q[:, 0] = 0.0
    q[y != 0] = q[y != 0].scatter_(1, y[y != 0, None], 0.9)
    q[y == 0] = torch.nn.functional.one_hot(y[y == 0], VOCAB).double()
    p = z.softmax(-1)
    loss = -(q * z.log_softmax(-1)).sum(-1) * valid
    del z
    g = dl * (p - q)
    e = dl.abs() * ((1 + g_rel) * p * (torch.expm1(2 * delta)[:, None] + 1e-5) + g_rel * (p - q).abs())
    del p, q
    gamma_k, gamma_n = 2 * VOCAB * 2**-24, 2 * PB * PT * 2**-24
    bounds = [(2 * delta + gamma_k * (1 + loss.abs())) * valid,
              e @ w.abs() + gamma_k * (g.abs() @ w.abs()) + out_rel * (g @ w).abs(),
              e.T @ h.abs() + gamma_n * (g.abs().T @ h.abs()) + out_rel * (g.T @ h).abs(),
              e.sum(0) + gamma_n * g.abs().sum(0) + out_rel * g.sum(0).abs()]  # fmt: skip
    return [x.cpu() for x in bounds]


@pytest.mark.parametrize("per_frame", [False, True], ids=["uniform_dl", "per_frame_dl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_projection_cuda_matches_cpu(linear_ce_cuda, dtype, per_frame):
    data = _projection_inputs()
    got = _run_projection(data, "cuda", dtype, per_frame)
    assert linear_ce_cuda.calls == ["forward"]
    assert got[0].dtype == torch.float32 and all(g.dtype == dtype for g in got[1:])
    if per_frame not in _CPU_RESULTS:
        _CPU_RESULTS[per_frame] = _run_projection(data, "cpu", torch.float32, per_frame)
    expected = _CPU_RESULTS[per_frame]
    for name, g, e, bound in zip(("loss", "dh", "dw", "db"), got, expected, _projection_bounds(data, dtype, per_frame)):
        error = (g.double() - e.double()).abs().reshape(bound.shape)
        worst = float((error / bound.clamp_min(1e-30)).max())
        print(f"{dtype} per_frame={per_frame} {name}: max error {float(error.max()):.3g}, max error/bound {worst:.3g}")
        assert worst <= 1.0
    padding = torch.arange(PT) >= torch.tensor(P_LENS)[:, None]
    assert not got[0][padding].any() and not got[1][padding].any()  # exactly 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_projection_host_syncs(linear_ce_cuda, dtype):
    """No host sync in the forward pass, at most one per backward call (CUDA's sync debug mode counts them)."""
    import warnings

    from frontend_backends.torch import linear_ce

    gen = torch.Generator(device="cuda").manual_seed(0)
    shapes = ((2048, HID), (VOCAB, HID))
    h, w = (torch.randn(s, device="cuda", generator=gen).to(dtype).requires_grad_() for s in shapes)
    y = torch.randint(0, VOCAB, (2048,), device="cuda", generator=gen)
    mask = torch.arange(2048, device="cuda") < 2000
    off, on = torch.full((VOCAB,), 0.1 / VOCAB, device="cuda"), torch.full((VOCAB,), 0.9, device="cuda")
    for dl in (torch.ones(2048, device="cuda"), torch.rand(2048, device="cuda", generator=gen)):
        for _ in range(2):  # the first call compiles the kernels; the second is counted
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    loss = linear_ce.linear_label_smoothed_cross_entropy(h, w.T, None, y, off, on, None, mask, 512)
                    forward_syncs = len(caught)
                    torch.autograd.grad(loss, (h, w), dl)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
        syncs = [str(c.message)[:80] for c in caught]
        assert forward_syncs == 0 and len(syncs) <= 1, syncs
