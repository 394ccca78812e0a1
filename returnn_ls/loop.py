"""Loops and conditionals as in ``returnn.frontend``: ``cond``, ``while_loop`` and ``scan``, run as Python control
flow (eagerly: PyTorch, TensorFlow eager, or traced by ``torch.compile`` with a graph break where a condition is
read). Inside ``tf.function`` a condition that is a tensor cannot be read: there they raise a ValueError saying so
(write ``tf.cond``/``tf.while_loop`` on the raw tensors, or run the loop eagerly).

State and outputs are nested structures (tuples, lists, dicts) of Tensors; ``None`` leaves stay ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from returnn_ls.array_funcs import dim_length, full, stack
from returnn_ls.dim import Dim
from returnn_ls.dim_funcs import replace_dim
from returnn_ls.index_funcs import gather
from returnn_ls.nested import map_structure
from returnn_ls.ops import cast, where
from returnn_ls.reduce import reduce_any
from returnn_ls.tensor import Tensor

__all__ = ["cond", "scan", "while_loop"]


def _truth(value: Any, func: str) -> bool:
    """:return: a Python bool of ``value``, a bool or a scalar bool Tensor (read on the host)"""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if not isinstance(value, Tensor) or value.dims or value.dtype != "bool":
        raise TypeError(f"{func}: the condition must be a bool or a scalar bool Tensor, got {value!r}")
    if not value.backend.executing_eagerly():
        raise ValueError(f"{func}: the condition is a tensor of a graph being traced (tf.function), which Python "
                         "control flow cannot read; run the loop eagerly, or use tf.cond/tf.while_loop")  # fmt: skip
    return bool(value.numpy())


def cond(pred: bool | Tensor, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    """:return: ``true_fn()`` if ``pred`` (a bool or a scalar bool Tensor) else ``false_fn()``"""
    return true_fn() if _truth(pred, "cond") else false_fn()


def while_loop(cond: Callable[[Any], bool | Tensor], body: Callable[[Any], Any], initial: Any) -> Any:
    """``state = initial; while cond(state): state = body(state)``; :return: the final state"""
    state = initial
    while _truth(cond(state), "while_loop"):
        state = body(state)
    return state


def _keep_where(mask: Tensor, new: Any, old: Any) -> Any:
    """:return: ``new`` where ``mask`` is true, else ``old``, leaf by leaf"""
    return map_structure(lambda n, o: where(mask, n, o) if isinstance(n, Tensor) else n, new, old)


def _stacked(outputs: list[Any], spatial_dim: Dim) -> Any:
    """:return: the per-step outputs stacked along ``spatial_dim``, leaf by leaf"""
    def leaf(*steps: Any) -> Any:
        if steps[0] is None:
            return None
        out, step_dim = stack(list(steps))
        return replace_dim(out, in_dim=step_dim, out_dim=spatial_dim)[0]

    return map_structure(leaf, *outputs)


def scan(
    *, spatial_dim: Dim | None = None, cond_dims: Sequence[Dim] | None = None, cond_before_body: bool = True,
    initial: Any = None, xs: Any = None, ys: Any = None, cond: Callable[[Any, Any], Tensor] | None = None,
    body: Callable[[Any, Any], tuple[Any, Any]], max_seq_len: int | Tensor | None = None,
    return_tensor_arrays: bool = False,
) -> tuple[Any, Any, Dim]:  # fmt: skip
    """``y, state = body(x, state)`` step by step, as RETURNN's ``rf.scan``.

    - With a known ``spatial_dim``: one step per frame, ``x`` the frame of ``xs`` (None without ``xs``); for a
      dynamic dim each sequence's state stops changing after its last frame.
    - Without (``spatial_dim`` None or of unknown size): ``cond(None, state)`` (over ``cond_dims``) says which
      entries go on; the loop ends when none does (or after ``max_seq_len`` steps); an entry whose ``cond`` turns
      false keeps its state from before that step, and its length is the number of steps it ran.

    :param ys: accepted for RETURNN's signature (the outputs' templates; the outputs' structure is what ``body``
        returns)
    :param return_tensor_arrays: only False
    :return: the outputs stacked along the loop's dim, the final state, and that dim (the new one gets its
        lengths, ``[cond_dims]``)
    :raise ValueError: for a combination of arguments RETURNN does not allow, or a loop that ran no step
    """
    del ys
    if return_tensor_arrays:
        raise ValueError("scan: return_tensor_arrays=True is not supported")
    known = spatial_dim is not None and (spatial_dim.dimension is not None or spatial_dim.dyn_size_ext is not None)
    if known:
        if cond is not None or max_seq_len is not None:
            raise ValueError(f"scan: spatial_dim {spatial_dim} has a size; cond and max_seq_len are for a new dim")
        outputs, state = _scan_over(spatial_dim, initial, xs, body)
    else:
        if cond is None or cond_dims is None or xs is not None:
            raise ValueError("scan: without a spatial_dim of known size, give cond and cond_dims (and no xs)")
        spatial_dim = spatial_dim if spatial_dim is not None else Dim(None, name="scan_dim")
        outputs, state, lengths = _scan_until(cond, cond_dims, cond_before_body, initial, body, max_seq_len)
        spatial_dim.dyn_size_ext = lengths
    if not outputs:
        raise ValueError(f"scan: the loop over {spatial_dim} ran no step, so its outputs have no frames to stack")
    return _stacked(outputs, spatial_dim), state, spatial_dim


def _scan_over(spatial_dim: Dim, state: Any, xs: Any, body: Callable) -> tuple[list, Any]:
    length = dim_length(spatial_dim)
    length = length if isinstance(length, int) else int(np.asarray(spatial_dim.dyn_size_ext.numpy()).max())
    sizes = spatial_dim.get_size_tensor() if spatial_dim.dimension is None else None
    outputs = []
    for i in range(length):
        frame = None if xs is None else map_structure(
            lambda x, i=i: gather(x, indices=i, axis=spatial_dim) if isinstance(x, Tensor) else x, xs)  # fmt: skip
        y, new_state = body(frame, state)
        state = new_state if sizes is None else _keep_where(sizes > i, new_state, state)
        outputs.append(y)
    return outputs, state


def _scan_until(cond: Callable, cond_dims: Sequence[Dim], cond_before_body: bool, state: Any, body: Callable,
                max_seq_len: Any) -> tuple[list, Any, Tensor]:  # fmt: skip
    running = cond(None, state) if cond_before_body else full(dims=list(cond_dims), fill_value=True)
    if not isinstance(running, Tensor) or running.dtype != "bool" or set(running.dims) != set(cond_dims):
        raise ValueError(f"scan: cond must give a bool Tensor over cond_dims {list(cond_dims)}, got {running!r}")
    lengths = cast(full(dims=list(cond_dims), fill_value=0), "int32")
    outputs: list = []
    while _truth(reduce_any(running, axis=list(running.dims)) if running.dims else running, "scan") and (
            max_seq_len is None or _truth(len(outputs) < max_seq_len, "scan")):  # fmt: skip
        lengths = lengths + cast(running, "int32")
        y, new_state = body(None, state)
        outputs.append(y)
        still = cond(None, new_state) & running
        state = _keep_where(still, new_state, state)
        running = still
    return outputs, state, lengths
