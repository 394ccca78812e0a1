"""Shared plumbing of the ``torch.library`` custom ops of this backend (fused CE, CTC, fused projection).

Each fused loss is a custom op that returns the loss and, when a gradient is wanted, a buffer of the logits' size
from which the backward pass makes the gradient without another buffer of that size. A custom op is one node of a
``torch.compile`` graph (``fullgraph=True`` works): its fake kernel gives the output shapes, and the backward
registered with ``register_autograd`` is traced like any other function. In eager mode the backward writes into
the saved buffer in place (so it can run once per forward); under ``torch.compile`` it is functional and
inductor reuses the saved buffer (a donated buffer) for the result.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable, Sequence
from typing import Any

import torch

#: The namespace of this backend's ops: ``torch.ops.returnn_ls.<name>``.
NAMESPACE = "returnn_ls"


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """:return: the dtype losses accumulate in: float64 for float64 input, else float32 (half precision too)"""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def is_compiling() -> bool:
    """:return: whether dynamo or AOTAutograd is tracing (then kernels must be functional, not in place).

    ``torch.compiler.is_compiling()`` alone is not enough: torch 2.11 reports False while AOTAutograd traces a
    backward, so a tracing context or an active proxy mode counts too.
    """
    if torch.compiler.is_compiling():
        return True
    from torch._guards import TracingContext
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return TracingContext.try_get() is not None or get_proxy_mode() is not None


#: Buffers of at least this many bytes come from :func:`large_empty` with transparent huge pages.
HUGE_PAGE_MIN_BYTES = 16 << 20
_HUGE_PAGES = hasattr(mmap, "MADV_HUGEPAGE")  # Linux


def large_empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """:return: an uninitialized contiguous tensor on ``device``; a large CPU one backed by transparent huge pages
    (on other devices: the framework's caching allocator, ``torch.empty``).

    A fresh buffer of the logits' size is page-faulted on its first write, 4 KiB at a time: for 164 MB that cost
    ~60 ms on a 2-core VM, more than the arithmetic of the fused CE. Memory mapped with ``madvise(MADV_HUGEPAGE)``
    faults in 2 MiB pages (~8 ms), where the system allows it (``/sys/kernel/mm/transparent_hugepage/enabled``
    ``always`` or ``madvise``; else this is an ordinary mapping). PyTorch does the same for all its allocations
    when the environment variable ``THP_MEM_ALLOC_ENABLE=1`` is set. The memory is returned to the system when the
    tensor is freed.
    """
    nbytes = math.prod(shape) * dtype.itemsize
    if torch.device(device).type != "cpu" or not _HUGE_PAGES or nbytes < HUGE_PAGE_MIN_BYTES:
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    region.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(region, dtype=dtype).view(tuple(shape))


def no_gradient_buffer(like: torch.Tensor) -> torch.Tensor:
    """:return: the empty tensor a custom op returns in place of its gradient buffer when no gradient is wanted"""
    return like.new_empty((0,))


def register_buffer_autograd(op: Any, name: str, num_inputs: int, buffers: tuple[int, ...], make_grads: Callable):
    """Register the backward of a custom op whose outputs ``buffers`` are buffers the gradients are made from.

    The buffers are kept on ``ctx`` (not saved: ``make_grads`` may write them in place), all outputs but the loss
    (output 0) are marked non-differentiable, and no zero gradients are materialized for them. The inputs and the
    other outputs are saved. ``make_grads(buffers, grad_loss, inputs, outputs)`` returns the gradients of the
    first inputs (a tuple); ``outputs`` holds the outputs after the loss, with None in place of the buffers.

    :param name: the public function's name, for the error of a second backward (``retain_graph=True``)
    """

    def setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(*output[1:])
        ctx.buffers = [output[i] for i in buffers]
        saved = list(inputs) + [None if i in buffers else x for i, x in enumerate(output) if i > 0]
        ctx.save_for_backward(*[x if isinstance(x, torch.Tensor) else None for x in saved])
        ctx.constants = [None if isinstance(x, torch.Tensor) else x for x in saved]
        ctx.num_inputs = len(inputs)

    def backward(ctx, grad_loss, *_):
        kept, ctx.buffers = ctx.buffers, None
        if kept is None:
            raise RuntimeError(f"{name}: backward can run only once per forward (no retain_graph)")
        if grad_loss is None:
            return (None,) * num_inputs
        saved = [t if c is None else c for t, c in zip(ctx.saved_tensors, ctx.constants)]
        inputs, outputs = saved[: ctx.num_inputs], saved[ctx.num_inputs :]
        grads = tuple(make_grads(kept, grad_loss, inputs, outputs))
        return grads + (None,) * (num_inputs - len(grads))

    op.register_autograd(backward, setup_context=setup_context)
