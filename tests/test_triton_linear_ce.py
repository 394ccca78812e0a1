"""The CUDA path of the fused projection + CE (``frontend_backends.torch.linear_ce_cuda``) at small sizes.

The op dispatches to the Triton kernels only for CUDA tensors; without a GPU the tests switch the dispatch on for CPU
tensors (``linear_ce._use_triton`` patched) and the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``,
set by ``tests/conftest.py``, or here when this file runs alone). With CUDA (and without the interpreter) the same
tests run the compiled kernels on CUDA tensors. ``MAX_BLOCK`` is lowered to 64 so that ``K = 130 .. 300`` spans
several column blocks; ``chunk`` from 1 to more than ``N`` frames covers one and many chunks.

Tolerances. float32 (the kernels accumulate in float32): against the CPU op ``rtol=1e-5, atol=1e-6``; against the
float64 references ``rtol=1e-5, atol=1e-5`` (the atol covers gradients summed over frames or labels that cancel to
near 0). bfloat16 inputs are checked against the float64 reference of their exact values with an error bound per
element (:func:`_bf16_bounds`), derived from the only roundings to bfloat16 on this path: the logits ``z``
(``|dz| <= 2**-8 |z|``, one rounding to nearest; a bias added after a rounded matmul rounds twice, hence the bound
``delta = 2**-8 (max|h W| + max|z|)`` per frame), the logit gradient ``G`` written by the kernel (``2**-7`` relative:
the interpreter truncates, compiled kernels round to nearest, ``2**-8``) and the returned gradients (``2**-8``).
A perturbation of at most ``delta`` in every logit changes ``lse`` by at most ``delta`` and the loss by at most
``2 delta``, and each softmax probability by a factor in ``[exp(-2 delta), exp(2 delta)]``; matmuls and sums of
``G`` propagate its per-element bound ``E`` as ``E @ |W|``, ``E^T @ |h|``, ``sum(E)``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from _triton_helpers import DEVICE  # noqa: E402  - sets TRITON_INTERPRET before triton is imported
from _triton_helpers import smoothing_coefficients as _coefficients  # noqa: E402

pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

from frontend_backends.torch import linear_ce, linear_ce_cuda, triton_kernels  # noqa: E402

H = 8


@pytest.fixture(autouse=True)
def triton_path(monkeypatch):
    """Small column blocks, and the op's CUDA path taken for the tensors of this machine."""
    monkeypatch.setattr(triton_kernels, "MAX_BLOCK", 64)
    monkeypatch.setattr(linear_ce, "_use_triton", lambda hidden, weight: True)


def _inputs(n, k, dtype=torch.float32, seed=0) -> dict:
    """:return: hidden ``[n, H]``, weight ``[K, H]`` (the layout of a parameter; the op gets it transposed), bias,
    labels, a mask and per-frame ``dl``, on ``DEVICE``"""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, H, generator=gen), torch.randn(k, H, generator=gen) / 2, torch.randn(k, generator=gen)]
    return {
        "params": [p.to(DEVICE, dtype).requires_grad_() for p in params],
        "y": torch.randint(0, k, (n,), generator=gen).to(DEVICE),
        "mask": (torch.rand(n, generator=gen) < 0.7).to(DEVICE),
        "dl": (torch.rand(n, generator=gen) + 0.5).to(DEVICE),
    }


def _op(h, w, b, y, coefficients, mask, chunk):
    return linear_ce.linear_label_smoothed_cross_entropy(h, w.T, b, y, *coefficients, mask, chunk)


def _value_and_grads(fn, params, dl):
    """:return: [loss, d hidden, d weight, d bias] for the upstream gradient ``dl`` (a tensor, or a float for all)"""
    loss = fn(*params)
    grad_loss = torch.full_like(loss, dl) if isinstance(dl, float) else dl
    return [loss] + list(torch.autograd.grad(loss, params, grad_loss))


def _on_cpu(x: dict) -> dict:
    return {k: [p.detach().cpu().requires_grad_() for p in v] if k == "params" else v.cpu() for k, v in x.items()}


@pytest.mark.parametrize(
    "n, k, chunk, masked",
    [(1, 130, 1, False), (7, 130, 3, True), (33, 300, 8, True), (40, 257, 64, False), (0, 130, 4, True)],
)
@pytest.mark.parametrize("per_frame", [False, True], ids=["uniform_dl", "per_frame_dl"])
def test_matches_cpu_op(n, k, chunk, masked, per_frame):
    x, coefficients = _inputs(n, k), _coefficients(k, 0.1, "returnn", (0,))
    cpu = _on_cpu(x)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(linear_ce, "_use_triton", lambda hidden, weight: False)
        expected = _value_and_grads(
            lambda *p: _op(*p, cpu["y"], [c if c is None else c.cpu() for c in coefficients],
                           cpu["mask"] if masked else None, chunk), cpu["params"], cpu["dl"] if per_frame else 1.5
        )  # fmt: skip
    fn = lambda *p: _op(*p, x["y"], coefficients, x["mask"] if masked else None, chunk)  # noqa: E731
    got = _value_and_grads(fn, x["params"], x["dl"] if per_frame else 1.5)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype == torch.float32
        torch.testing.assert_close(g.cpu(), e, rtol=1e-5, atol=1e-6)


def _float64_reference(x: dict, coefficients, masked: bool, convention: str | None) -> list:
    """:return: [loss, dh, dw, db] in float64 from the exact values of the inputs: torch's
    ``F.cross_entropy(label_smoothing)`` (``convention`` "uniform"), else ``-sum_k q_k log_softmax(z)_k`` with
    ``q = off_y * v + on_y * onehot(y)``; masked frames weighted 0"""
    params = [p.detach().double().requires_grad_() for p in x["params"]]
    off, on, v = (None if c is None else c.double() for c in coefficients)

    def loss_fn(h, w, b):
        z = F.linear(h, w, b)
        if convention == "uniform":
            loss = F.cross_entropy(z, x["y"], label_smoothing=0.2, reduction="none")
        else:
            lp = z.log_softmax(-1)
            vv = torch.ones_like(lp) if v is None else v
            loss = -off[x["y"]] * (lp * vv).sum(-1) - on[x["y"]] * lp.gather(-1, x["y"][:, None])[:, 0]
        return torch.where(x["mask"], loss, 0.0) if masked else loss

    return _value_and_grads(loss_fn, params, x["dl"].double())


@pytest.mark.parametrize(
    "convention, excluded, masked", [("uniform", (), False), ("returnn", (), True), ("returnn", (0, 3), True)]
)
def test_float32_matches_float64_reference(convention, excluded, masked):
    n, k = 29, 170
    x = _inputs(n, k, seed=2)
    x["y"][:4] = torch.tensor([0, 3, 0, 3], device=DEVICE)  # targets that may be excluded
    coefficients = _coefficients(k, 0.2, convention, excluded)
    fn = lambda *p: _op(*p, x["y"], coefficients, x["mask"] if masked else None, 8)  # noqa: E731
    got = _value_and_grads(fn, x["params"], x["dl"])
    expected = _float64_reference(x, coefficients, masked, convention if convention == "uniform" else None)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=1e-5)
    if masked:
        padding = ~x["mask"]
        assert not got[0][padding].any() and not got[1][padding].any()  # exactly 0


def _bf16_bounds(x: dict, coefficients, masked: bool) -> list:
    """:return: per-element bounds of |bfloat16 path - exact| for [loss, dh, dw, db] (module docstring)"""
    h, w, b = (p.detach().double() for p in x["params"])
    z = F.linear(h, w, b)
    delta = 2**-8 * ((h @ w.T).abs().amax(-1) + z.abs().amax(-1)) + 1e-5
    off, on, v = (None if c is None else c.double() for c in coefficients)
    q = off[x["y"], None] * (1.0 if v is None else v) + on[x["y"], None] * F.one_hot(x["y"], z.shape[-1])
    p = z.softmax(-1)
    dl = x["dl"].double()[:, None] * (x["mask"][:, None] if masked else 1.0)  # 0 on masked frames
    e = dl.abs() * ((1 + 2**-7) * p * (torch.expm1(2 * delta)[:, None] + 1e-5) + (2**-7 + 1e-5) * (p - q).abs())
    loss = -(q * z.log_softmax(-1)).sum(-1)
    g = dl * (p - q)
    grads, exact = [e @ w.abs(), e.T @ h.abs(), e.sum(0)], [g @ w, g.T @ h, g.sum(0)]
    loss_bound = 2 * delta + 1e-5 * loss.abs()
    return [loss_bound] + [(1 + 2**-8) * g + 2**-8 * ex.abs() + 1e-6 for g, ex in zip(grads, exact)]


@pytest.mark.parametrize("per_frame", [False, True], ids=["uniform_dl", "per_frame_dl"])
@pytest.mark.parametrize("masked", [False, True])
def test_bfloat16_within_rounding_bounds(per_frame, masked):
    n, k = 23, 200
    x = _inputs(n, k, torch.bfloat16, seed=3)
    if not per_frame:
        x["dl"] = torch.full_like(x["dl"], 0.75)
    coefficients = _coefficients(k, 0.1, "returnn", (0,))
    fn = lambda *p: _op(*p, x["y"], coefficients, x["mask"] if masked else None, 6)  # noqa: E731
    got = _value_and_grads(fn, x["params"], x["dl"])
    assert got[0].dtype == torch.float32 and all(g.dtype == torch.bfloat16 for g in got[1:])
    expected = _float64_reference(x, coefficients, masked, None)
    for g, e, bound in zip(got, expected, _bf16_bounds(x, coefficients, masked)):
        error = (g.double() - e).abs()
        assert bool((error <= bound).all()), f"largest error / bound: {float((error / bound).max()):.3g}"


def test_one_host_read_per_backward_and_none_forward(monkeypatch):
    """The CUDA path reads nothing from the device in the forward pass and one boolean in the backward pass (both
    branches); counted at the Python methods that read a tensor's value, called from the two modules"""
    reads = []
    modules = ("frontend_backends.torch.linear_ce", "frontend_backends.torch.linear_ce_cuda")
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero", "numpy"):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, _name=name, **kwargs):
            import sys

            if sys._getframe(1).f_globals.get("__name__") in modules:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    x, coefficients = _inputs(17, 130), _coefficients(130, 0.1, "uniform")
    for dl in (x["dl"], torch.full_like(x["dl"], 2.0)):
        loss = _op(*x["params"], x["y"], coefficients, x["mask"], 5)
        assert reads == []
        torch.autograd.grad(loss, x["params"], dl)
        assert reads == ["item"]
        reads.clear()


def test_uniform_value_on_the_device():
    dl = torch.tensor([3.0, 2.0, 2.0, 5.0], device=DEVICE)
    valid = torch.tensor([False, True, True, False], device=DEVICE)
    assert [float(t) for t in linear_ce_cuda.uniform_value(dl, valid)] == [1.0, 2.0]
    assert [float(t) for t in linear_ce_cuda.uniform_value(dl, None)] == [0.0, 3.0]
    assert [float(t) for t in linear_ce_cuda.uniform_value(dl, torch.zeros_like(valid))] == [1.0, 0.0]
    nan = torch.tensor([float("nan"), float("nan")], device=DEVICE)
    assert not bool(linear_ce_cuda.uniform_value(nan, None)[0])  # NaN on a valid frame: recomputed, as on the CPU


def _compiled_case(h, w, b, y, off, on, mask, frame_weights):
    return (_op(h, w, b, y, (off, on, None), mask, 4) * frame_weights).sum()


@pytest.mark.parametrize("per_frame", [False, True], ids=["uniform_dl", "per_frame_dl"])
def test_torch_compile_fullgraph_matches_eager(per_frame):
    x, (off, on, _) = _inputs(13, 140), _coefficients(140, 0.1, "returnn")
    weights = x["dl"] if per_frame else torch.ones_like(x["dl"])
    args = (x["y"], off, on, x["mask"], weights)
    eager = _value_and_grads(lambda *p: _compiled_case(*p, *args), x["params"], 1.0)
    torch._dynamo.reset()
    compiled_fn = torch.compile(_compiled_case, fullgraph=True, backend="aot_eager")
    compiled = _value_and_grads(lambda *p: compiled_fn(*p, *args), x["params"], 1.0)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-7)
