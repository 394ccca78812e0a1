"""Reference values of RETURNN's own array functions (``returnn.frontend`` on its torch backend) on a padded batch,
computed in a process of their own (RETURNN switches an already imported TensorFlow to graph mode):
``python _returnn_array_reference.py IN.npz OUT.npz``.

The input holds ``x`` ``[B, T, F]`` float32, ``lens`` ``[B]``, ``keep`` bool ``[B, T]``, ``starts`` ``[B]``,
``boundaries`` ``[K]`` and ``queries`` ``[B, Q]``. Every output is written in the dim order named in its key's
comment, as numpy.
"""

from __future__ import annotations

import sys

import numpy as np
import returnn.frontend as rrf
import torch
from returnn.tensor import Dim, Tensor


def _tensor(name: str, raw: np.ndarray, dims: list, **kwargs) -> Tensor:
    value = torch.tensor(raw)
    return Tensor(name, dims=dims, dtype=str(value.dtype).split(".")[-1], raw_tensor=value, **kwargs)


def _np(t: Tensor, dims: list) -> np.ndarray:
    return t.copy_transpose(dims).raw_tensor.detach().numpy()


def _sequences(data: dict) -> dict:
    """pad, shift_right, reverse_sequence, cumsum, slice, top_k, gather, masked_select, concat on ``x``"""
    b, f = Dim(data["x"].shape[0], name="batch"), Dim(data["x"].shape[2], name="feat")
    t = Dim(_tensor("lens", data["lens"], [b]), name="time")
    x = _tensor("x", data["x"], [b, t, f], feature_dim=f)
    out = {}
    padded, (pt,) = rrf.pad(x, axes=[t], padding=[(2, 1)], value=0.5, handle_dynamic_dims=True)
    out["pad"], out["pad_sizes"] = _np(padded, [b, pt, f]), pt.dyn_size_ext.raw_tensor.numpy()
    out["shift_right"] = _np(rrf.shift_right(x, axis=t, pad_value=-1.0, amount=2), [b, t, f])
    out["reverse"] = _np(rrf.reverse_sequence(x, axis=t), [b, t, f])
    out["cumsum"] = _np(rrf.cumsum(x, spatial_dim=t), [b, t, f])
    sliced, st = rrf.slice(x, axis=t, start=1)
    out["slice"], out["slice_sizes"] = _np(sliced, [b, st, f]), st.dyn_size_ext.raw_tensor.numpy()
    two = Dim(2, name="two")
    starts = _tensor("starts", data["starts"], [b])
    out["slice_tensor"] = _np(rrf.slice(x, axis=t, start=starts, size=two)[0], [b, two, f])
    values, indices, k_dim = rrf.top_k(x, axis=t, k=2)
    out["top_k_values"], out["top_k_indices"] = _np(values, [b, f, k_dim]), _np(indices, [b, f, k_dim])
    n = Dim(3, name="n")
    idx = _tensor("idx", np.array([-1, 1, 7]), [n])
    out["gather_clip"] = _np(rrf.gather(x, indices=idx, axis=t, clip_to_valid=True), [b, n, f])
    keep = _tensor("keep", data["keep"], [b, t])
    kept, kd = rrf.masked_select(x, mask=keep, dims=[t])
    out["masked_select"], out["masked_select_sizes"] = _np(kept, [b, kd, f]), kd.dyn_size_ext.raw_tensor.numpy()
    joined, jd = rrf.concat((x, t), (x * 2.0, t))
    out["concat"], out["concat_sizes"] = _np(joined, [b, jd, f]), jd.dyn_size_ext.raw_tensor.numpy()
    return out


def _maths(data: dict) -> dict:
    """search_sorted, matmul, log_add_exp, squared_difference, clip_by_value"""
    b, q, k = (Dim(n, name=s) for n, s in zip((*data["queries"].shape, len(data["boundaries"])), "bqk"))
    queries = _tensor("queries", data["queries"], [b, q])
    boundaries = _tensor("boundaries", data["boundaries"], [k])
    f = Dim(data["x"].shape[2], name="feat")
    t = Dim(data["x"].shape[1], name="t_static")
    x = _tensor("x", data["x"], [b, t, f])
    return {
        "search_sorted": _np(rrf.search_sorted(boundaries, queries, axis=k, side="right"), [b, q]),
        "matmul": _np(rrf.matmul(x, x, reduce=t), [b, f]),
        "log_add_exp": _np(rrf.log_add_exp(x, x * 0.5 - 1.0), [b, t, f]),
        "squared_difference": _np(rrf.squared_difference(x, 0.25), [b, t, f]),
        "clip_by_value": _np(rrf.clip_by_value(x, -0.5, 0.5), [b, t, f]),
    }


def main(src: str, dst: str) -> None:
    """Read the inputs from ``src``, write RETURNN's results to ``dst``."""
    rrf.select_backend_torch()
    data = dict(np.load(src))
    np.savez(dst, **_sequences(data), **_maths(data))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
