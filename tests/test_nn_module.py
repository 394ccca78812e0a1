"""rf.Module, ModuleList, Sequential, Functional, Parameter, State, parameter initialisation and seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

IN, HIDDEN, OUT = Dim(3, name="in"), Dim(4, name="hidden"), Dim(2, name="out")


class _Model(rf.Module):
    def __init__(self):
        self.encoder = rf.Sequential(rf.Linear(IN, HIDDEN), rf.relu, rf.LayerNorm(HIDDEN))
        self.lstm = rf.LSTM(HIDDEN, HIDDEN)
        self.shared = self.encoder  # the same module twice: its parameters count once
        self.output = rf.Linear(HIDDEN, OUT)

    def __call__(self, x, *, spatial_dim):
        y, _ = self.lstm(rf.dropout(self.encoder(x), 0.2), spatial_dim=spatial_dim)
        return self.output(y)


def test_parameters_are_found_by_walking_the_attributes(backend):
    model = _Model()
    names = [name for name, _ in model.named_parameters()]
    assert names == [  # breadth first, as RETURNN: the modules of each level in attribute order
        "lstm.ff_weight", "lstm.rec_weight", "lstm.bias", "output.weight", "output.bias",
        "encoder.0.weight", "encoder.0.bias", "encoder.2.scale", "encoder.2.bias",
    ]  # fmt: skip
    raw_type = "Parameter" if backend.name == "torch" else "ResourceVariable"
    assert all(type(p.raw_tensor).__name__ == raw_type and p.trainable for p in model.parameters())
    assert isinstance(model.encoder[1], rf.Functional) and len(model.encoder) == 3
    assert [n for n, _ in model.named_modules()][:3] == ["", "encoder", "lstm"]


def test_parameter_initial_follows_returnn(backend):
    weight = rf.Parameter([IN, OUT])
    weight.initial = 0.5
    np.testing.assert_array_equal(weight.numpy(), np.full((3, 2), 0.5, "float32"))
    weight.initial = rf.init.Zeros()
    assert weight.initial.__class__ is rf.init.Zeros and not weight.numpy().any()
    with pytest.raises(ValueError, match="Parameter: initial value of shape"):
        weight.initial = np.zeros(3)
    frozen = rf.Parameter([OUT], trainable=False)
    raw = frozen.raw_tensor
    assert frozen.trainable is False and not (raw.requires_grad if backend.name == "torch" else raw.trainable)


def test_glorot_has_returnn_fans_for_matrices_and_filters(backend):
    rf.set_random_seed(0)
    big_in, big_out, filter_dim = Dim(60, name="i"), Dim(40, name="o"), Dim(5, name="k")
    matrix = rf.Parameter([big_in, big_out], initial=rf.init.Glorot()).numpy()
    conv = rf.Parameter([big_out, big_in, filter_dim], initial=rf.init.Glorot()).numpy()
    # Glorot uniform: limit sqrt(6 / (fan_in + fan_out)); for [out, in, k] the fans are in*k and out*k (RETURNN)
    for value, limit in ((matrix, math.sqrt(6 / 100)), (conv, math.sqrt(6 / (100 * 5)))):
        assert np.abs(value).max() <= limit and np.abs(value).max() > 0.98 * limit
        np.testing.assert_allclose(value.var(), limit**2 / 3, rtol=0.1)


def _build_and_run(name: str, seed: int):
    """:return: the parameters and the output of a model built from ``seed`` on backend ``name``"""
    rf.select_backend(name)
    rf.set_random_seed(seed)
    model = _Model()
    batch, time = Dim(2, name="batch"), Dim(None, name="time")
    time.dyn_size_ext = rf.convert_to_tensor(np.array([4, 2], "int32"), dims=[batch])
    x = rf.convert_to_tensor(np.linspace(-1, 1, 24, dtype="float32").reshape(2, 4, 3), dims=[batch, time, IN])
    rf.init_train_step_run_ctx(train_flag=True)
    try:
        y = model(x, spatial_dim=time)
    finally:
        rf.reset_run_ctx()
    return {k: p.numpy() for k, p in model.named_parameters()}, y.copy_transpose([batch, time, OUT]).numpy()


def test_same_seed_gives_the_same_parameters_and_outputs():
    """Twice per backend the same parameters and outputs (dropout included); parameters equal across backends."""
    runs = {name: [_build_and_run(name, 11) for _ in range(2)] for name in ("torch", "tensorflow")}
    for first, second in runs.values():
        for key in first[0]:
            np.testing.assert_array_equal(first[0][key], second[0][key])
        np.testing.assert_array_equal(first[1], second[1])
    for key, value in runs["torch"][0][0].items():
        np.testing.assert_array_equal(value, runs["tensorflow"][0][0][key])
    other = _build_and_run("torch", 12)
    assert (other[0]["lstm.ff_weight"] != runs["torch"][0][0]["lstm.ff_weight"]).any()


def test_set_random_seed_rejects_bad_seeds():
    with pytest.raises(ValueError, match="set_random_seed: seed must be a non-negative int"):
        rf.set_random_seed(-1)
    with pytest.raises(ValueError, match="set_random_seed: seed must be a non-negative int"):
        rf.set_random_seed(1.5)


def test_state_entries_are_attributes():
    state = rf.LstmState(h=1, c=2)
    assert state.h == 1 and state["c"] == 2 and isinstance(state, rf.State)
    state.h = 3
    assert state["h"] == 3 and type(state)(state.items()) == state
    assert repr(rf.State(a=1)) == "State(a=1)"
    with pytest.raises(AttributeError, match="LstmState has no entry 'x'"):
        _ = state.x
