"""On CUDA: ``torch.compile(fullgraph=True)`` with a dynamic time dim through the fused loss and the
gradient-smoothing path (the Triton custom ops), eager values and gradients, one compilation for two lengths."""

from __future__ import annotations

import pytest

import returnn_ls as rf

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_dynamic_time_dim_compiles_on_cuda(restore_backend, compiler):
    from test_compile_dynamic import check_dynamic_time_dim

    rf.select_backend("torch")
    torch._dynamo.reset()
    check_dynamic_time_dim("cuda", backend=compiler)
