"""The Triton kernels (``frontend_backends.torch.triton_ops``) against independent references, at small sizes.

Without a GPU the kernels run on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, set by
``tests/conftest.py`` before it imports triton, or here when this file runs alone).
``use_triton`` is False on CPU, so the tests call the custom ops directly; on a machine with CUDA (and without the
interpreter) the same tests run the compiled kernels on CUDA tensors. ``MAX_BLOCK`` is lowered to 64 so that
``K = 130`` and ``K = 1000`` span several chunks.

Tolerances (the kernels accumulate in float32; the references are float64 torch formulas or torch's own ops):
float32 losses and gradients ``rtol=1e-5, atol=1e-6``; float16/bfloat16 logits: float32 loss ``rtol=1e-5``, gradient
rounded to the logits' dtype ``rtol=2**-10`` (float16) / ``2**-7`` (bfloat16; ``2**-6`` under the interpreter, see
``TOL``), ``atol=1e-6``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from _triton_helpers import COMPILED as _COMPILED  # noqa: E402  - sets TRITON_INTERPRET before triton is imported
from _triton_helpers import DEVICE  # noqa: E402
from _triton_helpers import smoothing_coefficients as _coefficients  # noqa: E402

pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

import returnn_ls as rf  # noqa: E402
from frontend_backends.torch import losses, smoothed_gradient, triton_kernels, triton_ops  # noqa: E402
from returnn_ls import Dim  # noqa: E402

#: rtol of the values rounded to the logits' dtype: twice the rounding error; Triton's interpreter truncates float32 to
#: bfloat16 (compiled kernels round to nearest), an error of up to one bfloat16 ulp (2**-7 relative)
TOL = {torch.float32: 1e-5, torch.float16: 2**-10, torch.bfloat16: 2**-7 if _COMPILED else 2**-6}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(triton_kernels, "MAX_BLOCK", 64)


def _logits(shape, dtype=torch.float32, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=gen)).to(DEVICE, dtype).requires_grad_()


def _labels(shape, num_labels, seed=1) -> torch.Tensor:
    return torch.randint(0, num_labels, shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def _reference(z, y, off, on, v, z_loss, mask):
    """The float64 loss ``-off_y * sum_k v_k lp_k - on_y * lp_y + z_loss * lse**2`` (0 where masked)"""
    zd = z.double()
    lp, lse = zd.log_softmax(-1), zd.logsumexp(-1)
    y = y.clamp(0)
    vv = torch.ones_like(zd) if v is None else v.double()
    loss = -off.double()[y] * (lp * vv).sum(-1) - on.double()[y] * lp.gather(-1, y[..., None])[..., 0]
    loss = loss + z_loss * lse.square()
    return loss if mask is None else torch.where(mask, loss, 0.0)


def _value_and_grad(fn, z, dl):
    loss = fn(z)
    return loss, torch.autograd.grad(loss, z, dl)[0]


def _check(loss, grad, ref_loss, ref_grad, dtype) -> None:
    torch.testing.assert_close(loss.double(), ref_loss.double(), rtol=1e-5, atol=1e-6)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad.double(), ref_grad.double(), rtol=TOL[dtype], atol=1e-6)


@pytest.mark.parametrize("n, k", [(1, 2), (7, 5), (33, 130), (7, 1000)])
@pytest.mark.parametrize("weighted", [False, True])
def test_uniform_matches_torch_cross_entropy(n, k, weighted):
    z, y = _logits((n, k)), _labels((n,), k)
    w = torch.linspace(0.5, 1.5, k, device=DEVICE) if weighted else None
    off, on, v = _coefficients(k, 0.1, "uniform", weight=w)
    dl = torch.randn(n, device=DEVICE)
    loss, grad = _value_and_grad(lambda x: triton_ops.label_smoothed_cross_entropy(x, y, off, on, v, 0.0, None), z, dl)
    ref = lambda x: F.cross_entropy(x, y, weight=w, label_smoothing=0.1, reduction="none")  # noqa: E731
    _check(loss, grad, *_value_and_grad(ref, z, dl), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("excluded, z_loss", [((), 0.0), ((0, 3), 1e-3)])
def test_returnn_convention_masks_and_dtypes(dtype, excluded, z_loss):
    b, t, k = 3, 11, 130
    z, y = _logits((b, t, k), dtype), _labels((b, t), k)
    mask = torch.arange(t, device=DEVICE) < torch.tensor([[11], [4], [0]], device=DEVICE)
    y = torch.where(mask, y, -100)  # labels of masked frames are never read
    off, on, v = _coefficients(k, 0.2, "returnn", excluded)
    dl = torch.randn(b, t, device=DEVICE)
    fused = lambda x: triton_ops.label_smoothed_cross_entropy(x, y, off, on, v, z_loss, mask)  # noqa: E731
    loss, grad = _value_and_grad(fused, z, dl)
    assert loss.dtype == torch.float32
    ref_loss, ref_grad = _value_and_grad(lambda x: _reference(x, y, off, on, v, z_loss, mask), z, dl)
    _check(loss, grad, ref_loss, ref_grad, dtype)
    assert torch.equal(loss[~mask], torch.zeros_like(loss[~mask]))
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))  # exactly 0


def test_broadcast_mask_and_bad_label():
    z, y = _logits((2, 3, 5)), _labels((2, 3), 5)
    y[0, 1] = 7  # out of range on a kept frame: NaN there, as the torch kernels give under torch.compile
    mask = torch.tensor([[True], [False]], device=DEVICE)
    off, on, _ = _coefficients(5, 0.1, "returnn")
    loss, grad = _value_and_grad(lambda x: triton_ops.label_smoothed_cross_entropy(x, y, off, on, None, 0.0, mask),
                                 z, torch.ones(2, 3, device=DEVICE))  # fmt: skip
    assert loss[0, 1].isnan() and grad[0, 1].isnan().all() and not loss[0, [0, 2]].isnan().any()
    assert torch.equal(grad[1], torch.zeros_like(grad[1])) and torch.equal(loss[1], torch.zeros_like(loss[1]))


@pytest.mark.parametrize("layout", ["transposed", "row_stride"])
def test_non_contiguous_logits(layout):
    n, k = 9, 130
    base = _logits((k, n) if layout == "transposed" else (n, k + 7))
    z = base.T if layout == "transposed" else base[:, 3 : 3 + k]
    y = _labels((n,), k)
    off, on, v = _coefficients(k, 0.1, "uniform")
    dl = torch.randn(n, device=DEVICE)
    loss, grad = _value_and_grad(lambda x: triton_ops.label_smoothed_cross_entropy(x, y, off, on, v, 0.0, None), z, dl)
    ref = lambda x: F.cross_entropy(x, y, label_smoothing=0.1, reduction="none")  # noqa: E731
    _check(loss, grad, *_value_and_grad(ref, z, dl), torch.float32)


class _SmoothedGradient(torch.autograd.Function):
    """Reference of ``scaled_gradient_ext`` over the last axis: identity; ``g * scale + shift * sum(|g| * w)``."""

    @staticmethod
    def forward(ctx, x, scale, shift, sum_weight):  # noqa: D102
        ctx.factors = scale, shift, sum_weight
        return x.clone()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        scale, shift, sum_weight = ctx.factors
        return g * scale + shift * (g.abs() * sum_weight).sum(-1, keepdim=True), None, None, None


def _nll_reference(z, y, scale, shift, sum_weight):
    """``log_softmax -> smoothed gradient -> gather``, composed in float64"""
    as64 = [f.double() if isinstance(f, torch.Tensor) else f for f in (scale, shift, sum_weight)]
    lp = _SmoothedGradient.apply(z.double().log_softmax(-1), as64[0], as64[1], 1.0 if as64[2] is None else as64[2])
    return -lp.gather(-1, y[..., None])[..., 0]


def _factors(form: str, k: int, dtype):
    """:return: (scale, shift, sum_weight) in the forms the backend passes (aligned to ``[B, T, K]``)"""
    a, excluded = 0.1, torch.arange(k, device=DEVICE) == 0
    if form == "float":
        return 1.0 - k * a / (k - 1), -a / (k - 1), None
    if form == "one_value":  # e.g. a smoothing schedule: scalar tensors
        return (torch.full((1, 1, 1), 1.0 - k * a / (k - 1), device=DEVICE, dtype=dtype),
                torch.full((1, 1, 1), -a / (k - 1), device=DEVICE, dtype=dtype), None)  # fmt: skip
    floor = a / (k - 2)  # per label: label 0 excluded (label_smoothed_log_prob_gradient(exclude_labels=[0]))
    scale = torch.where(excluded, 1.0, 1.0 - (k - 1) * floor).to(dtype).view(1, 1, k)
    shift = torch.where(excluded, 0.0, -floor).to(dtype).view(1, 1, k)
    return scale, shift, (~excluded).to(dtype).view(1, 1, k)


@pytest.mark.parametrize("form", ["float", "one_value", "per_label"])
@pytest.mark.parametrize("dtype, k", [(torch.float32, 5), (torch.float32, 1000), (torch.bfloat16, 130)])
def test_smoothed_nll_matches_composed_autograd(form, dtype, k):
    b, t = 2, 5
    z, y = _logits((b, t, k), dtype), _labels((b, t), k)
    scale, shift, sum_weight = _factors(form, k, dtype)
    assert triton_ops.supports_factors(z, scale, shift, sum_weight)
    dl = torch.randn(b, t, device=DEVICE).to(dtype)
    loss, grad = _value_and_grad(lambda x: triton_ops.log_softmax_smoothed_nll(x, y, scale, shift, sum_weight), z, dl)
    assert loss.dtype == dtype
    ref_loss, ref_grad = _value_and_grad(lambda x: _nll_reference(x, y, scale, shift, sum_weight), z, dl)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=TOL[dtype], atol=1e-6)
    torch.testing.assert_close(grad.double(), ref_grad.double(), rtol=TOL[dtype], atol=1e-6)
    assert not triton_ops.supports_factors(z, torch.ones(b, 1, k, device=DEVICE), shift, sum_weight)  # per frame


def _public_api(case: str):
    batch, vocab = Dim(3, name="batch"), Dim(7, name="vocab")
    time = Dim(rf.convert_to_tensor(torch.tensor([6, 3, 1], device=DEVICE), dims=[batch]), name="time")
    z, y = _logits((3, 6, 7)), _labels((3, 6), 7)
    y[1, 4:] = -100  # padding may hold any label
    logits = rf.convert_to_tensor(z, dims=[batch, time, vocab], feature_dim=vocab)
    targets = rf.convert_to_tensor(y, dims=[batch, time], sparse_dim=vocab)
    if case == "fused":
        w = rf.convert_to_tensor(torch.linspace(0.5, 1.5, 7, device=DEVICE), dims=[vocab])
        loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.1, weight=w,
                                               exclude_labels=[0], z_loss=1e-3)  # fmt: skip
    else:
        lp = rf.log_softmax(logits, axis=vocab)
        lp = rf.label_smoothed_log_prob_gradient(lp, 0.1, exclude_labels=[0] if case == "excluded" else None)
        loss = rf.cross_entropy(estimated=lp, target=targets, axis=vocab, estimated_type="log-probs")
    raw = loss.copy_transpose([batch, time]).raw_tensor
    return raw, torch.autograd.grad(raw, z, torch.linspace(-1, 2, 18, device=DEVICE).view(3, 6))[0]


class _TritonNLL:
    """Stands for ``LogSoftmaxSmoothedNLL``: the backend's arguments go to the Triton op, as the CUDA dispatch does."""

    calls = 0

    @staticmethod
    def apply(logits, log_probs, targets, scale, shift, sum_weight):  # noqa: D102
        assert triton_ops.supports_factors(logits, scale, shift, sum_weight)
        _TritonNLL.calls += 1
        return triton_ops.log_softmax_smoothed_nll(logits, targets, scale, shift, sum_weight)


@pytest.mark.parametrize("case", ["fused", "smoothed", "excluded"])
def test_public_api_with_the_triton_ops(restore_backend, monkeypatch, case):
    rf.select_backend("torch")
    monkeypatch.setenv(triton_ops.ENV_VAR, "0")  # with CUDA: the torch kernels for the expected values
    expected = _public_api(case)
    calls = []
    fused = lambda *args: calls.append(1) or triton_ops.label_smoothed_cross_entropy(*args)  # noqa: E731
    monkeypatch.setattr(losses, "label_smoothed_cross_entropy", fused)
    monkeypatch.setattr(smoothed_gradient, "LogSoftmaxSmoothedNLL", _TritonNLL)
    before = _TritonNLL.calls
    loss, grad = _public_api(case)
    assert len(calls) + _TritonNLL.calls - before == 1
    torch.testing.assert_close(loss, expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expected[1], rtol=1e-5, atol=1e-6)
    if case == "fused":  # padding frames (cross_entropy leaves them to the caller)
        assert torch.equal(grad[1, 3:], torch.zeros_like(grad[1, 3:]))


def _compiled_case(z, y, off, on, v, mask, scale, shift):
    ce = triton_ops.label_smoothed_cross_entropy(z, y, off, on, v, 1e-3, mask)
    return ce + triton_ops.log_softmax_smoothed_nll(z, y, scale, shift, v)


def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    k = 130
    z, y = _logits((4, 6, k)), _labels((4, 6), k)
    off, on, v = _coefficients(k, 0.1, "returnn", excluded=(0,))
    mask = torch.arange(6, device=DEVICE) < torch.tensor([[6], [2], [5], [0]], device=DEVICE)
    scale, shift, _ = _factors("per_label", k, torch.float32)
    args = (y, off, on, v, mask, scale, shift)
    dl = torch.randn(4, 6, device=DEVICE)
    eager = _value_and_grad(lambda x: _compiled_case(x, *args), z, dl)
    compiled_fn = torch.compile(_compiled_case, fullgraph=True, backend="aot_eager")
    compiled = _value_and_grad(lambda x: compiled_fn(x, *args), z, dl)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-7)


def test_factory_calls_pass_a_device(monkeypatch):
    """Every torch factory call of the ops (forward and backward) passes ``device=`` (as ``test_devices`` checks)."""
    found = []

    def guard(name, fn):
        def wrapper(*args, **kwargs):
            module = sys._getframe(1).f_globals.get("__name__", "")
            if "device" not in kwargs and module.startswith("frontend_backends"):
                found.append(f"torch.{name} in {module}:{sys._getframe(1).f_lineno}")
            return fn(*args, **kwargs)

        return wrapper

    z, y = _logits((3, 7)), _labels((3,), 7)
    off, on, v = _coefficients(7, 0.1, "uniform", excluded=(1,))
    for name in ("empty", "zeros", "ones", "full", "tensor", "arange", "empty_strided"):
        monkeypatch.setattr(torch, name, guard(name, getattr(torch, name)))
    total = triton_ops.label_smoothed_cross_entropy(z, y, off, on, v, 0.0, None).sum()
    total = total + triton_ops.log_softmax_smoothed_nll(z, y, 0.9, -0.01, None).sum()
    total.backward()
    assert not found, found


def test_use_triton_only_for_cuda(monkeypatch):
    cpu = torch.zeros(2, 3)
    assert not triton_ops.use_triton(cpu) and not triton_ops.use_triton(torch.zeros(2, 3, device="meta"))
    if torch.cuda.is_available():
        assert triton_ops.use_triton(cpu.cuda()) and not triton_ops.use_triton(cpu.cuda().double())
        monkeypatch.setenv(triton_ops.ENV_VAR, "0")
        assert not triton_ops.use_triton(cpu.cuda())


def test_cpu_use_never_imports_the_triton_ops():
    code = """
import sys, torch
import returnn_ls as rf
from returnn_ls import Dim
rf.select_backend("torch")
b, k = Dim(2, name="b"), Dim(5, name="k")
z = torch.randn(2, 5, requires_grad=True)
logits = rf.convert_to_tensor(z, dims=[b, k], feature_dim=k)
y = rf.convert_to_tensor(torch.tensor([1, 3]), dims=[b], sparse_dim=k)
ce = rf.label_smoothed_cross_entropy(logits=logits, targets=y, axis=k, smoothing=0.1)
lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=k), 0.1)
nll = rf.cross_entropy(estimated=lp, target=y, axis=k, estimated_type="log-probs")
(ce.raw_tensor.sum() + nll.raw_tensor.sum()).backward()
assert not [m for m in sys.modules if m.startswith("frontend_backends.torch.triton")], "Triton ops imported"
"""  # (triton itself may be imported: torch._dynamo looks for it)
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
