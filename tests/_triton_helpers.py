"""Shared by the Triton kernel tests: where the kernels run (compiled on CUDA, else under Triton's interpreter on
CPU tensors; the interpreter must be switched on before triton wraps the kernels) and the smoothing coefficients
the frontend passes to them."""

from __future__ import annotations

import os

import torch

#: the kernels are compiled for CUDA (a GPU, interpreter off); else they run under the interpreter on the CPU
COMPILED = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
if not COMPILED:
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEVICE = "cuda" if COMPILED else "cpu"


def smoothing_coefficients(num_labels: int, a: float, convention: str, excluded=(), weight=None) -> tuple:
    """:return: (off, on, v) as ``returnn_ls.fused_ce.smoothing_coefficients`` builds them (float32, on DEVICE)"""
    included = torch.ones(num_labels, dtype=torch.bool, device=DEVICE)
    included[list(excluded)] = False
    num = num_labels - len(excluded)
    floor = a / (num - 1 if convention == "returnn" else num)
    on_target = 1.0 - a + (0.0 if convention == "returnn" else floor)
    off = torch.where(included, floor, 0.0)
    on = torch.where(included, on_target - floor, 1.0)
    v = included.float() if excluded else None
    if weight is not None:
        on, v = on * weight, weight if v is None else v * weight
    return off, on, v
