"""The torch path of label_smoothed_cross_entropy allocates no [frames x K] tensor besides the gradient.

Measured as the growth of the peak resident memory of a fresh process during forward and backward, in units of
the logits' size; the same measurement of F.cross_entropy(label_smoothing=...) shows that it can see extra
buffers.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

N, K = 1024, 16384  # 64 MB of float32 logits

SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import torch
    import torch.nn.functional as F
    import returnn_ls as rf
    from returnn_ls import Dim

    def run(x, y, mode):
        if mode == "fused":
            b, v = Dim(x.shape[0], name="b"), Dim(x.shape[1], name="v")
            loss = rf.label_smoothed_cross_entropy(
                logits=rf.convert_to_tensor(x, dims=[b, v]), targets=rf.convert_to_tensor(y, dims=[b], sparse_dim=v),
                axis=v, smoothing=0.1, convention="uniform",
            ).raw_tensor
        else:
            loss = F.cross_entropy(x, y, label_smoothing=0.1, reduction="none")
        loss.sum().backward()

    mode, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run(torch.randn(8, k, requires_grad=True), torch.randint(0, k, (8,)), mode)  # warm up kernels
    x = torch.randn(n, k).requires_grad_()
    y = torch.randint(0, k, (n,))
    before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
    run(x, y, mode)
    # VmHWM (peak RSS of this process image); unlike ru_maxrss it does not inherit the parent's peak at fork
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    peak = int(status["VmHWM"].split()[0]) * 1024
    print((peak - before) / x.numel() / 4)
    """
)


def _extra_buffers(mode: str) -> float:
    """:return: peak memory growth during forward+backward, in units of the logits' size"""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(N), str(K)], capture_output=True, text=True, check=True, timeout=120
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_fused_torch_path_allocates_only_the_gradient():
    fused = _extra_buffers("fused")
    dense = _extra_buffers("dense")
    assert dense > 1.8, f"the measurement should see F.cross_entropy's extra buffers, got {dense:.2f}"
    assert fused < 1.3, f"fused label-smoothed CE grew memory by {fused:.2f} x the logits (gradient = 1.0)"


def test_second_backward_through_the_same_graph_raises_clearly():
    import torch

    import returnn_ls as rf
    from returnn_ls import Dim

    batch, vocab = Dim(2, name="batch"), Dim(5, name="vocab")
    x = torch.randn(2, 5, requires_grad=True)
    targets = rf.convert_to_tensor(torch.tensor([1, 3]), dims=[batch], sparse_dim=vocab)
    logits = rf.convert_to_tensor(x, dims=[batch, vocab])
    loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.1).raw_tensor
    loss.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once"):
        loss.sum().backward()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("requires_grad", [True, False])
def test_chunked_rows_give_the_same_result(monkeypatch, dtype, requires_grad):
    import torch

    import returnn_ls as rf
    from frontend_backends.torch import losses as torch_losses
    from returnn_ls import Dim

    batch, vocab = Dim(9, name="batch"), Dim(6, name="vocab")
    x = torch.randn(9, 6).to(getattr(torch, dtype))
    targets = rf.convert_to_tensor(torch.randint(0, 6, (9,)), dims=[batch], sparse_dim=vocab)

    def run():
        raw = x.clone().requires_grad_(requires_grad)
        logits = rf.convert_to_tensor(raw, dims=[batch, vocab])
        loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.2).raw_tensor
        if requires_grad:
            loss.sum().backward()
        return loss.detach(), raw.grad

    whole = run()
    monkeypatch.setattr(torch_losses, "CHUNK_ELEMENTS", 12)  # 2 rows per chunk
    chunked = run()
    torch.testing.assert_close(chunked[0], whole[0], rtol=0, atol=0)
    if requires_grad:
        torch.testing.assert_close(chunked[1], whole[1], rtol=0, atol=0)


def test_huge_page_buffers_give_the_same_results(monkeypatch):
    """The fused kernels' large buffers (transparent huge pages, see ``custom_ops.large_empty``) hold the same
    numbers as ordinary ones: every buffer is made that way when the size threshold is 0."""
    import torch

    import returnn_ls as rf
    from frontend_backends.torch import custom_ops
    from returnn_ls import Dim

    rf.select_backend("torch")
    batch, vocab, hid = Dim(6, name="batch"), Dim(5, name="vocab"), Dim(3, name="hidden")
    x, h = torch.randn(6, 5), torch.randn(6, 3)
    w = torch.randn(5, 3)
    targets = rf.convert_to_tensor(torch.randint(0, 5, (6,)), dims=[batch], sparse_dim=vocab)

    def run():
        raw_x, raw_h, raw_w = (t.clone().requires_grad_() for t in (x, h, w))
        logits = rf.convert_to_tensor(raw_x, dims=[batch, vocab], feature_dim=vocab)
        fused = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.1)
        log_probs = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=vocab), 0.1)
        path = rf.cross_entropy(estimated=log_probs, target=targets, axis=vocab, estimated_type="log-probs")
        hidden, weight = rf.convert_to_tensor(raw_h, dims=[batch, hid]), rf.convert_to_tensor(raw_w, dims=[vocab, hid])
        linear = rf.linear_label_smoothed_cross_entropy(
            hidden=hidden, weight=weight, targets=targets, axis=vocab, smoothing=0.1
        )
        total = sum(loss.raw_tensor.sum() for loss in (fused, path, linear))
        return [total.detach()] + list(torch.autograd.grad(total, (raw_x, raw_h, raw_w)))

    ordinary = run()
    monkeypatch.setattr(custom_ops, "HUGE_PAGE_MIN_BYTES", 0)
    for got, want in zip(run(), ordinary):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch._dynamo.reset()  # and the fake kernels, which trace the ops under torch.compile, make no such buffers
    for got, want in zip(torch.compile(run, backend="aot_eager")(), ordinary):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
