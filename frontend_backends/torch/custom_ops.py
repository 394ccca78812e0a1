"""Shared plumbing of the ``torch.library`` custom ops of this backend (fused CE, CTC, fused projection).

Each fused loss is a custom op that returns the loss and, when a gradient is wanted, a buffer of the logits' size
from which the backward pass makes the gradient without another buffer of that size. A custom op is one node of a
``torch.compile`` graph (``fullgraph=True`` works): its fake kernel gives the output shapes, and the backward
registered with ``register_autograd`` is traced like any other function. In eager mode the backward writes into
the saved buffer in place (so it can run once per forward); under ``torch.compile`` it is functional and
inductor reuses the saved buffer (a donated buffer) for the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: The namespace of this backend's ops: ``torch.ops.returnn_ls.<name>``.
NAMESPACE = "returnn_ls"


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """:return: the dtype losses accumulate in: float64 for float64 input, else float32 (half precision too)"""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def is_compiling() -> bool:
    """:return: whether dynamo or AOTAutograd is tracing (then kernels must be functional, not in place)"""
    return bool(torch.compiler.is_compiling())


def no_gradient_buffer(like: torch.Tensor) -> torch.Tensor:
    """:return: the empty tensor a custom op returns in place of its gradient buffer when no gradient is wanted"""
    return like.new_empty((0,))


def register_buffer_autograd(op: Any, name: str, num_inputs: int, buffer_index: int, make_grad: Callable) -> None:
    """Register the backward of a custom op whose output ``buffer_index`` is a buffer of its first input's size.

    The buffer is kept on ``ctx`` (not saved: ``make_grad`` may write it in place), marked non-differentiable,
    and no zero gradients are materialized for it. The inputs and the other outputs (but not the loss, output 0)
    are saved. ``make_grad(buffer, grad_loss, inputs, outputs)`` returns the gradient of input 0, where
    ``outputs`` holds the outputs after the loss, with None in place of the buffer.

    :param name: the public function's name, for the error of a second backward (``retain_graph=True``)
    """

    def setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(*output[1:])
        ctx.buffer = output[buffer_index]
        saved = list(inputs) + [None if i == buffer_index else x for i, x in enumerate(output) if i > 0]
        ctx.save_for_backward(*[x if isinstance(x, torch.Tensor) else None for x in saved])
        ctx.constants = [None if isinstance(x, torch.Tensor) else x for x in saved]
        ctx.num_inputs = len(inputs)

    def backward(ctx, grad_loss, *_):
        buffer, ctx.buffer = ctx.buffer, None
        if buffer is None:
            raise RuntimeError(f"{name}: backward can run only once per forward (no retain_graph)")
        if grad_loss is None:
            return (None,) * num_inputs
        saved = [t if c is None else c for t, c in zip(ctx.saved_tensors, ctx.constants)]
        inputs, outputs = saved[: ctx.num_inputs], saved[ctx.num_inputs :]
        return (make_grad(buffer, grad_loss, inputs, outputs),) + (None,) * (num_inputs - 1)

    op.register_autograd(backward, setup_context=setup_context)
