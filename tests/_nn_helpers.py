"""Helpers of the nn tests: padded batches, gradients w.r.t. inputs and module parameters, numpy references."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

import frontend_backends
import returnn_ls as rf
from frontend_backends.train_base import get_trainer
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
    impl, trainer = frontend_backends.get_backend(name), get_trainer(name)
    params = dict(module.named_parameters()) if module is not None else {}
    rng = np.random.default_rng(seed)
    raws = [impl.convert(a) for a in arrays]
    variables = {f"x{i}": raws[i] for i, a in enumerate(arrays) if a.dtype.kind == "f"}  # ints get no gradient
    variables.update({f"p:{k}": p.raw_tensor for k, p in params.items()})
    result = {}

    def total(raw: dict) -> object:
        outs = result["outs"] = fn(*(raw.get(f"x{i}", x) for i, x in enumerate(raws)))
        terms = []
        for o in outs:
            shape = impl.shape(o.raw_tensor)
            weighted = impl.binary("mul", o.raw_tensor, impl.convert(rng.normal(size=shape).astype(o.dtype)))
            terms.append(impl.reduce("sum", weighted, tuple(range(len(shape)))))
        return sum(terms[1:], terms[0])

    _, grads = trainer.value_and_grad(total, variables)
    x_grads = [trainer.to_numpy(grads[f"x{i}"]) if f"x{i}" in grads else np.zeros(a.shape)
               for i, a in enumerate(arrays)]  # fmt: skip
    return [o.numpy() for o in result["outs"]], x_grads, {k: trainer.to_numpy(grads[f"p:{k}"]) for k in params}


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
