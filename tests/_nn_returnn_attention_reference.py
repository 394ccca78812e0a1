"""RETURNN's own attention modules, positional encodings, Transformer and Conformer on given parameters and inputs,
in a process of their own (as ``_nn_returnn_modules_reference.py``).

``python _nn_returnn_attention_reference.py IN.npz OUT.npz``: ``IN.npz`` holds ``x`` ``[B, T, 8]``, ``enc``
``[B, S, 6]``, ``labels`` ``[B, T]`` (garbage at padding frames), ``lengths``, ``enc_lengths`` and the parameters as
``<case>/<name>`` (our names, which must be RETURNN's). ``OUT.npz`` gets RETURNN's results by case name and
``<case>:names``: RETURNN's parameter names and sizes, sorted.
"""

from __future__ import annotations

import sys

import numpy as np
import returnn.frontend as rrf
import torch
from _nn_attention_cases import DIMS, make_modules  # this script's folder (tests/) is on sys.path
from returnn.tensor import Dim
from returnn.util.basic import BehaviorVersion


def _load(module, data: dict, case: str, out: dict):
    """Copy the parameters by name (a KeyError names one that differs); note RETURNN's names and sizes."""
    out[f"{case}:names"] = np.array(sorted(f"{n} {list(p.raw_tensor.shape)}" for n, p in module.named_parameters()))
    for name, param in module.named_parameters():
        with torch.no_grad():
            param.raw_tensor.copy_(torch.tensor(data[f"{case}/{name}"]))
    return module


def _np(tensor, dims) -> np.ndarray:
    return tensor.copy_transpose(dims).raw_tensor.detach().numpy()


def main(src: str, dst: str) -> None:
    """Read inputs and parameters from ``src``, write RETURNN's results to ``dst``."""
    rrf.select_backend_torch()
    BehaviorVersion.set(24)
    rrf.init_forward_step_run_ctx()
    data = dict(np.load(src))
    dims = DIMS(Dim)
    batch = Dim(data["x"].shape[0], name="batch")
    time = Dim(rrf.convert_to_tensor(torch.tensor(data["lengths"]), dims=[batch]), name="time")
    enc_time = Dim(rrf.convert_to_tensor(torch.tensor(data["enc_lengths"]), dims=[batch]), name="enc_time")
    x = rrf.convert_to_tensor(torch.tensor(data["x"]), dims=[batch, time, dims.feat], feature_dim=dims.feat)
    enc = rrf.convert_to_tensor(torch.tensor(data["enc"]), dims=[batch, enc_time, dims.enc], feature_dim=dims.enc)
    labels = rrf.convert_to_tensor(torch.tensor(data["labels"]), dims=[batch, time], sparse_dim=dims.vocab)
    modules, out = {}, {}
    for case, module in make_modules(rrf, dims).items():
        modules[case] = _load(module, data, case, out)
    m = modules
    out["self_att"] = _np(m["self_att"](x, axis=time), [batch, time, dims.out])
    out["causal"] = _np(m["causal"](x, axis=time)[0], [batch, time, dims.out])
    out["rel_pos"] = _np(m["rel_pos"](x, axis=time), [batch, time, dims.out])
    out["rel_pos_causal"] = _np(m["rel_pos_causal"](x, axis=time)[0], [batch, time, dims.out])
    out["rope"] = _np(m["rope"](x, axis=time), [batch, time, dims.out])
    out["rope_causal"] = _np(m["rope_causal"](x, axis=time)[0], [batch, time, dims.out])
    out["rel_pos_learned"] = _np(m["rel_pos_learned"](x, axis=time), [batch, time, dims.out])
    out["cross"] = _np(m["cross"](x, m["cross"].transform_encoder(enc, axis=enc_time)), [batch, time, dims.out])
    y, _ = m["conformer"](x, in_spatial_dim=time)
    out["conformer"] = _np(y, [batch, time, dims.model])
    dec = m["decoder"]
    logits, _ = dec(labels, spatial_dim=time, state=dec.default_initial_state(batch_dims=[batch]),
                    encoder=dec.transform_encoder(enc, axis=enc_time))  # fmt: skip
    out["decoder"] = _np(logits, [batch, time, dims.vocab])
    out["encoder"] = _np(m["encoder"](labels, spatial_dim=time), [batch, time, dims.model])
    out["sinusoidal"] = _np(rrf.sinusoidal_positional_encoding(spatial_dim=time, feat_dim=dims.feat),
                            [time, dims.feat])  # fmt: skip
    rel, rel_dim = rrf.relative_positional_encoding(query_spatial_dim=time, key_value_spatial_dim=time,
                                                    feat_dim=dims.feat)  # fmt: skip
    out["relative"] = _np(rel, [rel_dim, dims.feat])
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
