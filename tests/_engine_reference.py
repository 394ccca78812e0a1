"""RETURNN's own run context and learning-rate control on given inputs, in a process of its own.

    python _engine_reference.py IN.json OUT.json

``IN.json`` has ``"run_ctx"`` (arrays for :func:`run_ctx_reductions`), ``"lr_control"`` (cases for
:func:`lr_control_rates`) and ``"lr_files"`` (learning-rate files to read with RETURNN, :func:`read_lr_files`).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def run_ctx_reductions(data: dict) -> dict:
    """:return: per marked loss RETURNN's summed loss, inverse norm factor and scaled reduced loss; and the total"""
    import returnn.frontend as rf
    import torch
    from returnn.tensor import Dim, Tensor, batch_dim

    rf.select_backend_torch()
    lens, target_lens = np.array(data["lens"], np.int32), np.array(data["target_lens"], np.int32)
    batch_dim.dyn_size_ext = Tensor("b", dims=(), dtype="int32", raw_tensor=torch.tensor(len(lens), dtype=torch.int32))
    time = Dim(Tensor("lens", dims=[batch_dim], dtype="int32", raw_tensor=torch.tensor(lens)), name="time")
    frame = torch.tensor(np.array(data["frame"], np.float32))
    rf.init_train_step_run_ctx(train_flag=True)
    ctx = rf.get_run_ctx()
    ctx.mark_as_loss(Tensor("a", dims=[batch_dim, time], dtype="float32", raw_tensor=frame), "ce")
    ctx.mark_as_loss(Tensor("b", dims=[batch_dim, time], dtype="float32", raw_tensor=frame * 2), "ce_norm",
                     scale=0.5, use_normalized_loss=True)  # fmt: skip
    seq = Tensor("s", dims=[batch_dim], dtype="float32", raw_tensor=torch.tensor(np.array(data["seq"], np.float32)))
    norm = Tensor("n", dims=[batch_dim], dtype="int32", raw_tensor=torch.tensor(target_lens))
    ctx.mark_as_loss(seq, "ctc", use_normalized_loss=True, custom_inv_norm_factor=norm)
    ctx.mark_as_loss(Tensor("e", dims=[batch_dim, time], dtype="bool", raw_tensor=frame > 0.5), "fer", as_error=True)
    ctx.mark_as_loss(torch.tensor(np.array(data["packed"], np.float32)), "packed", scale=2.0)
    ctx.mark_as_loss(frame * 3, "raw_dims", dims=[batch_dim, time], use_normalized_loss=True)
    out = {}
    for name, loss in ctx.losses.items():
        norm = loss.get_inv_norm_factor()
        out[name] = [float(loss.get_summed_loss().raw_tensor), float(norm.raw_tensor if hasattr(norm, "raw_tensor")
                     else norm), float(loss.get_scaled_reduced_loss().raw_tensor)]  # fmt: skip
    out["total"] = float(ctx.total_loss().raw_tensor)
    return out


class _Config:
    """The few typed accessors of RETURNN's Config that the learning-rate control reads."""

    def __init__(self, values: dict):
        self.values = values

    def typed_value(self, key, default=None):
        return self.values.get(key, default)

    opt_typed_value = typed_value
    value = typed_value

    def float(self, key, default):
        return float(self.values.get(key, default))

    def int(self, key, default):
        return int(self.values.get(key, default))

    def bool(self, key, default):
        return bool(self.values.get(key, default))

    def float_list(self, key):
        return self.values.get(key) or []


def lr_control_rates(cases: list[dict]) -> list[list[float]]:
    """:return: per case the learning rate RETURNN's control gives each epoch, fed the case's scores"""
    from returnn.learning_rate_control import learning_rate_control_type

    results = []
    for case in cases:
        config = _Config(case["config"])
        control = learning_rate_control_type(case["config"].get("learning_rate_control", "constant"))
        control = control(**control.load_initial_kwargs_from_config(config))
        rates = []
        for epoch, scores in enumerate(case["scores"], start=1):
            rates.append(control.get_learning_rate_for_epoch(epoch))
            control.set_epoch_error(epoch, scores)
        results.append(rates)
    return results


def read_lr_files(paths: list[str]) -> list[dict]:
    """:return: the epoch data RETURNN reads from each file: ``{epoch: [learning rate, scores]}``"""
    from returnn.learning_rate_control import LearningRateControl

    out = []
    for path in paths:
        control = LearningRateControl(default_learning_rate=1.0, filename=path)
        out.append({str(e): [d.learning_rate, d.error] for e, d in control.epoch_data.items()})
    return out


def main(src: str, dst: str) -> None:
    """Compute what ``src`` asks for with RETURNN; write it to ``dst``."""
    with open(src) as f:
        request = json.load(f)
    result = {}
    if "run_ctx" in request:
        result["run_ctx"] = run_ctx_reductions(request["run_ctx"])
    if "lr_control" in request:
        result["lr_control"] = lr_control_rates(request["lr_control"])
    if "lr_files" in request:
        result["lr_files"] = read_lr_files(request["lr_files"])
    with open(dst, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
