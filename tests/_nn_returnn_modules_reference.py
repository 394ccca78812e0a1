"""RETURNN's own BatchNorm, grouped/strided Conv1d, pooling and ZoneoutLSTM on given parameters and inputs, in a
process of their own (as ``_nn_returnn_reference.py``).

``python _nn_returnn_modules_reference.py IN.npz OUT.npz``: ``IN.npz`` holds ``x`` ``[B, T, 6]`` (garbage at padding
frames), ``lengths``, ``h0``/``c0`` ``[B, 5]`` and the parameters as ``<case>/<name>`` (our names, which must be
RETURNN's). ``OUT.npz`` gets RETURNN's results by case name, the output lengths as ``<case>_lengths``, and
``<case>:names``: RETURNN's ``named_parameters()`` as ``"name [sizes]"``, in its order.
"""

from __future__ import annotations

import sys

import numpy as np
import returnn.frontend as rrf
import torch
from _nn_modules_cases import CONVS, POOLS, ZONEOUTS  # this script's folder (tests/) is on sys.path
from returnn.config import Config, global_config_ctx
from returnn.tensor import Dim
from returnn.util.basic import BehaviorVersion

IN, OUT, ZONEOUT = Dim(6, name="in"), Dim(4, name="out"), Dim(5, name="zoneout")



def _load(module, data: dict, case: str, out: dict):
    """Copy the parameters by name (a KeyError names one that differs); note RETURNN's names and sizes."""
    out[f"{case}:names"] = np.array([f"{n} {list(p.raw_tensor.shape)}" for n, p in module.named_parameters()])
    for name, param in module.named_parameters():
        with torch.no_grad():
            param.raw_tensor.copy_(torch.tensor(data[f"{case}/{name}"]))
    return module


def _np(tensor, dims) -> np.ndarray:
    return tensor.copy_transpose(dims).raw_tensor.detach().numpy()


def _batch_norms(data: dict, x, batch, time, out: dict) -> None:
    for case, kwargs, train in (("bn_eval", {}, False), ("bn_train_mask", {}, True),
                                ("bn_train_nomask", {"use_mask": False}, True)):  # fmt: skip
        norm = _load(rrf.BatchNorm(IN, **kwargs), data, case, out)
        rrf.init_train_step_run_ctx(train_flag=train)
        out[case] = _np(norm(x), [batch, time, IN])
        out[f"{case}_running_mean"] = norm.running_mean.raw_tensor.detach().numpy()
        out[f"{case}_running_variance"] = norm.running_variance.raw_tensor.detach().numpy()
    rrf.init_forward_step_run_ctx()


def _convs_and_pools(data: dict, x, batch, time, out: dict) -> None:
    for case, kwargs in CONVS.items():
        kwargs = dict(kwargs)
        conv = _load(rrf.Conv1d(IN, OUT, kwargs.pop("filter_size"), **kwargs), data, case, out)
        for suffix, consistent in (("", True), ("_old", False)):
            with global_config_ctx(Config({"rf_use_consistent_same_padding": consistent})):
                y, out_time = conv(x, in_spatial_dim=time)
            out[case + suffix] = _np(y, [batch, out_time, OUT])
        out[f"{case}_lengths"] = out_time.dyn_size_ext.raw_tensor.numpy()
    for case, kwargs in POOLS.items():
        y, out_time = rrf.pool1d(x, in_spatial_dim=time, **kwargs)
        out[case] = _np(y, [batch, out_time, IN])
        out[f"{case}_lengths"] = out_time.dyn_size_ext.raw_tensor.numpy()


def _zoneouts(data: dict, x, batch, time, out: dict) -> None:
    h, c = (rrf.convert_to_tensor(torch.tensor(data[k]), dims=[batch, ZONEOUT], feature_dim=ZONEOUT)
            for k in ("h0", "c0"))  # fmt: skip
    state = rrf.LstmState(h=h, c=c)
    for case, kwargs in ZONEOUTS.items():
        lstm = _load(rrf.ZoneoutLSTM(IN, ZONEOUT, **kwargs), data, case, out)
        y, new_state = lstm(x, state=state, spatial_dim=time)  # evaluation: no train step
        out[case] = _np(y, [batch, time, ZONEOUT])
        out[f"{case}_h"], out[f"{case}_c"] = (_np(new_state[k], [batch, ZONEOUT]) for k in ("h", "c"))


def _containers(data: dict, x, batch, time, out: dict) -> None:
    """Parameter names of a Sequential and a ParameterList built from dicts (keys that are numbers: positions)."""
    seq = _load(rrf.Sequential({"proj": rrf.Linear(IN, OUT), "act": rrf.relu, "9": rrf.Linear(OUT, OUT)}), data,
                "sequential", out)  # fmt: skip
    out["sequential"] = _np(seq(x), [batch, time, OUT])
    params = rrf.ParameterList({"scale": rrf.Parameter([IN]), "7": rrf.Parameter([OUT])})
    out["parameter_list:names"] = np.array([f"{n} {list(p.raw_tensor.shape)}" for n, p in params.named_parameters()])


def main(src: str, dst: str) -> None:
    """Read inputs and parameters from ``src``, write RETURNN's results to ``dst``."""
    rrf.select_backend_torch()
    BehaviorVersion.set(24)  # padding frames masked (use_mask); consistent strided "same" padding
    data = dict(np.load(src))
    batch = Dim(data["x"].shape[0], name="batch")
    time = Dim(rrf.convert_to_tensor(torch.tensor(data["lengths"]), dims=[batch]), name="time")
    x = rrf.convert_to_tensor(torch.tensor(data["x"]), dims=[batch, time, IN], feature_dim=IN)
    out: dict[str, np.ndarray] = {}
    _batch_norms(data, x, batch, time, out)
    _convs_and_pools(data, x, batch, time, out)
    _zoneouts(data, x, batch, time, out)
    _containers(data, x, batch, time, out)
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
