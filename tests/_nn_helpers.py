"""Helpers of the nn tests: padded batches, gradients w.r.t. inputs and module parameters, numpy references."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim, _backend


@pytest.fixture(autouse=True)
def restore_global_state():
    """Tests that select a backend or set the global ``batch_dim``'s sizes leave both as they found them."""
    selected, batch_sizes = _backend._selected, rf.batch_dim.dyn_size_ext
    yield
    _backend._selected, rf.batch_dim.dyn_size_ext = selected, batch_sizes


def padded_dims(lengths: Sequence[int], *, batch_name: str = "batch") -> tuple[Dim, Dim]:
    """:return: a static batch dim and a time dim whose sizes are ``lengths`` (on the selected backend)"""
    batch = Dim(len(lengths), name=batch_name)
    time = Dim(rf.convert_to_tensor(np.asarray(lengths, dtype="int32"), dims=[batch]), name="time")
    return batch, time


def time_mask(lengths: Sequence[int], time: int) -> np.ndarray:
    """:return: bool ``[B, T]``, True inside each sequence"""
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


def outputs_and_grads(
    name: str,
    fn: Callable[..., Sequence[rf.Tensor]],
    arrays: Sequence[np.ndarray],
    module: rf.Module | None = None,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, np.ndarray]]:
    """Call ``fn`` on raw tensors of ``arrays``; differentiate ``sum_i sum(out_i * w_i)`` (``w_i`` random, fixed by
    ``seed``) w.r.t. the inputs and the module's parameters.

    :return: (outputs as numpy, input gradients, parameter gradients by name)
    """
    params = dict(module.named_parameters()) if module is not None else {}
    rng = np.random.default_rng(seed)
    if name == "torch":
        import torch

        xs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
        outs = fn(*xs)
        weights = [rng.normal(size=o.raw_tensor.shape).astype(o.dtype) for o in outs]
        sum(((o.raw_tensor * torch.tensor(w)).sum() for o, w in zip(outs, weights)), torch.zeros(())).backward()
        x_grads = [x.grad.numpy() if x.grad is not None else np.zeros(x.shape) for x in xs]
        p_grads = {k: p.raw_tensor.grad.numpy() for k, p in params.items()}
        for p in params.values():
            p.raw_tensor.grad = None
        return [o.numpy() for o in outs], x_grads, p_grads
    import tensorflow as tf

    xs = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch([x for x in xs if x.dtype.is_floating])
        outs = fn(*xs)
        weights = [rng.normal(size=o.raw_tensor.shape).astype(o.dtype) for o in outs]
        total = tf.add_n([tf.reduce_sum(o.raw_tensor * w) for o, w in zip(outs, weights)])
    grads = tape.gradient(total, xs + [p.raw_tensor for p in params.values()])
    grads = [
        np.zeros(v.shape) if g is None else np.asarray(tf.convert_to_tensor(g))  # IndexedSlices of a gather too
        for g, v in zip(grads, xs + list(params.values()))
    ]
    return [o.numpy() for o in outs], grads[: len(xs)], dict(zip(params, grads[len(xs) :]))


def numpy_lstm(x, lengths, h0, c0, ff, rec, bias, reverse=False):
    """The LSTM formula of ``Backend.lstm`` in float64 numpy, one sequence at a time.

    :return: out ``[B, T, H]`` (0 at padding), h ``[B, H]``, c ``[B, H]``
    """
    batch, time, _ = x.shape
    hidden = rec.shape[1]
    out = np.zeros((batch, time, hidden))
    hs, cs = np.array(h0, dtype="float64"), np.array(c0, dtype="float64")
    for b in range(batch):
        h, c = hs[b], cs[b]
        for t in reversed(range(lengths[b])) if reverse else range(lengths[b]):
            i, f, g, o = np.split(ff @ x[b, t] + rec @ h + bias, 4)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            out[b, t] = h
        hs[b], cs[b] = h, c
    return out, hs, cs


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))
