"""Attention modules, positional encodings, Transformer encoder/decoder and Conformer encoder: the parameter names
(with sizes) and the outputs of RETURNN's own rf modules (``returnn.frontend`` on its torch backend, behavior
version 24) for the same parameters and inputs.

RETURNN runs in a subprocess (``_nn_returnn_attention_reference.py``), once for all tests here; the modules of both
sides are built by the same code (``_nn_attention_cases.py``) and the parameters copied by name, so a name of ours
that RETURNN does not have fails there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim, _backend
from tests._nn_attention_cases import DIMS, ENC_LENGTHS, LENGTHS, make_modules
from tests._nn_helpers import restore_global_state, time_mask  # noqa: F401 (restore_global_state: autouse)

T, S = max(LENGTHS), max(ENC_LENGTHS)  # padded lengths (RETURNN masks over the longest sequence)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Inputs (garbage at padding frames) and parameters (random), and RETURNN's results on them."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, T, 8)).astype("float32")
    x[~time_mask(np.array(LENGTHS), T)] = 50.0
    enc = rng.normal(size=(3, S, 6)).astype("float32")
    enc[~time_mask(np.array(ENC_LENGTHS), S)] = -50.0
    data = {"x": x, "enc": enc, "labels": rng.integers(0, 11, size=(3, T)).astype("int32"),
            "lengths": np.array(LENGTHS, "int32"), "enc_lengths": np.array(ENC_LENGTHS, "int32")}  # fmt: skip
    previous = _backend._selected
    rf.select_backend("torch")
    for case_name, module in make_modules(rf, DIMS(Dim)).items():
        for name, param in module.named_parameters():
            scale = 0.1 if name.endswith("running_mean") else 0.5
            value = rng.normal(scale=scale, size=param.numpy().shape)
            data[f"{case_name}/{name}"] = (np.abs(value) + 0.5 if "running_variance" in name else value).astype("f4")
    _backend._selected = previous
    folder = tmp_path_factory.mktemp("returnn_nn_attention")
    np.savez(folder / "in.npz", **data)
    script = Path(__file__).with_name("_nn_returnn_attention_reference.py")
    proc = subprocess.run([sys.executable, str(script), str(folder / "in.npz"), str(folder / "out.npz")],
                          timeout=300, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, dict(np.load(folder / "out.npz"))


def _setup(data: dict, ref: dict) -> tuple:
    """:return: our modules with the parameters loaded (names and sizes checked against RETURNN's), dims, inputs"""
    dims = DIMS(Dim)
    modules = make_modules(rf, dims)
    for case_name, module in modules.items():
        names = sorted(f"{n} {list(p.numpy().shape)}" for n, p in module.named_parameters())
        assert names == list(ref[f"{case_name}:names"]), case_name
        for name, param in module.named_parameters():
            param.assign(data[f"{case_name}/{name}"])
    batch = Dim(3, name="batch")
    time = Dim(rf.convert_to_tensor(data["lengths"], dims=[batch]), name="time")
    enc_time = Dim(rf.convert_to_tensor(data["enc_lengths"], dims=[batch]), name="enc_time")
    inputs = {"x": rf.convert_to_tensor(data["x"], dims=[batch, time, dims.feat], feature_dim=dims.feat),
              "enc": rf.convert_to_tensor(data["enc"], dims=[batch, enc_time, dims.enc], feature_dim=dims.enc),
              "labels": rf.convert_to_tensor(data["labels"], dims=[batch, time], sparse_dim=dims.vocab)}  # fmt: skip
    return modules, dims, batch, time, enc_time, inputs


def _close_valid(ours: rf.Tensor, theirs: np.ndarray, dims: list[Dim], tol: float = 1e-5) -> None:
    """Compare at the frames inside the sequences (the frames after a sequence's end are unspecified)."""
    value = ours.copy_transpose(dims).numpy()
    assert value.shape == theirs.shape
    mask = time_mask(np.array(LENGTHS), value.shape[1])
    np.testing.assert_allclose(value[mask], theirs[mask], rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["self_att", "causal", "rel_pos", "rel_pos_causal", "rel_pos_learned", "cross", "rope",
                                  "rope_causal"])
def test_attention_modules_equal_returnn(backend, case, name):
    data, ref = case
    modules, dims, batch, time, enc_time, inputs = _setup(data, ref)
    module, x = modules[name], inputs["x"]
    if name == "cross":
        out = module(x, module.transform_encoder(inputs["enc"], axis=enc_time))
    elif name in ("causal", "rel_pos_causal", "rope_causal"):
        out, state = module(x, axis=time)
        assert state.accum_axis is time
    else:
        out = module(x, axis=time)
    assert out.feature_dim is dims.out
    _close_valid(out, ref[name], [batch, time, dims.out])


def test_conformer_encoder_equals_returnn(backend, case):
    data, ref = case
    modules, dims, batch, time, _, inputs = _setup(data, ref)
    y, out_time = modules["conformer"](inputs["x"], in_spatial_dim=time)
    assert out_time is time
    _close_valid(y, ref["conformer"], [batch, time, dims.model], tol=1e-4)


def test_transformer_decoder_and_encoder_equal_returnn(backend, case):
    data, ref = case
    modules, dims, batch, time, enc_time, inputs = _setup(data, ref)
    dec = modules["decoder"]
    assert dec.logits.weight is dec.input_embedding.weight  # shared, as RETURNN's default
    logits, state = dec(inputs["labels"], spatial_dim=time, state=dec.default_initial_state(batch_dims=[batch]),
                        encoder=dec.transform_encoder(inputs["enc"], axis=enc_time))  # fmt: skip
    _close_valid(logits, ref["decoder"], [batch, time, dims.vocab], tol=1e-4)
    np.testing.assert_array_equal(state.pos.numpy(), LENGTHS)
    _close_valid(modules["encoder"](inputs["labels"], spatial_dim=time), ref["encoder"], [batch, time, dims.model],
                 tol=1e-4)  # fmt: skip


def test_positional_encodings_equal_returnn(backend, case):
    data, ref = case
    _, dims, _, time, _, _ = _setup(data, ref)
    enc = rf.sinusoidal_positional_encoding(spatial_dim=time, feat_dim=dims.feat)
    np.testing.assert_allclose(enc.copy_transpose([time, dims.feat]).numpy(), ref["sinusoidal"], rtol=1e-5, atol=1e-6)
    rel, rel_dim = rf.relative_positional_encoding(query_spatial_dim=time, key_value_spatial_dim=time,
                                                   feat_dim=dims.feat)  # fmt: skip
    np.testing.assert_allclose(rel.copy_transpose([rel_dim, dims.feat]).numpy(), ref["relative"], rtol=1e-5,
                               atol=1e-6)  # fmt: skip
