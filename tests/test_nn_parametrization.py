"""Parametrized parameters (``register_parametrization``, ``remove_parametrization``, ``is_parametrized``,
``weight_dropout``, ``weight_noise``), ``dropout_broadcast_default``, integer parameters, slicing of module lists
and ``build_from_dict`` of functions."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


@pytest.fixture
def train_ctx():
    """A train step's run context (dropout and noise on); reset after the test."""
    yield rf.init_train_step_run_ctx(train_flag=True)
    rf.reset_run_ctx()


def test_parametrized_weight_reads_through_the_parametrization(backend, train_ctx):
    in_dim, out_dim = Dim(7, name="in"), Dim(13, name="out")
    rf.set_random_seed(1)
    mod = rf.Linear(in_dim, out_dim)
    orig, bias, attributes = mod.weight, mod.bias, list(vars(mod))
    rf.register_parametrization(mod, "weight", functools.partial(rf.dropout, drop_prob=0.5))
    assert rf.is_parametrized(mod) and rf.is_parametrized(mod, "weight") and not rf.is_parametrized(mod, "bias")
    weight = mod.weight
    assert weight is not orig and not isinstance(weight, rf.Parameter) and weight.dims == orig.dims
    w, o = weight.numpy(), orig.numpy()
    dropped = w == 0
    assert 0.2 < dropped.mean() < 0.8  # 91 entries, each dropped with probability 0.5
    np.testing.assert_allclose(w[~dropped], 2 * o[~dropped], rtol=1e-6)
    assert list(mod.named_parameters()) == [("weight", orig), ("bias", bias)]  # the order kept (optimizer states)
    x = rf.convert_to_tensor(np.ones((2, 7), "float32"), dims=[Dim(2, name="batch"), in_dim])
    assert mod(x).dims[-1] is out_dim  # the module's own code reads the parametrized weight
    rf.init_train_step_run_ctx(train_flag=False)
    assert mod.weight is orig  # no dropout in evaluation
    rf.remove_parametrization(mod, "weight")
    assert mod.weight is orig and not rf.is_parametrized(mod)
    assert list(mod.named_parameters()) == [("weight", orig), ("bias", bias)] and list(vars(mod)) == attributes


def test_assigning_a_parametrized_parameter_replaces_the_original(backend, train_ctx):
    mod = rf.Linear(Dim(3, name="in"), Dim(4, name="out"))
    rf.register_parametrization(mod, "weight", lambda p: p * 2.0)
    new = rf.Parameter(mod.weight.dims)
    new.initial = 1.5
    mod.weight = new
    assert dict(mod.named_parameters())["weight"] is new
    np.testing.assert_array_equal(mod.weight.numpy(), np.full((3, 4), 3.0))
    with pytest.raises(TypeError, match="is parametrized: it takes an rf.Parameter"):
        mod.weight = 1.0


def test_register_parametrization_checks_its_arguments(backend):
    mod = rf.Linear(Dim(3, name="in"), Dim(4, name="out"))
    with pytest.raises(TypeError, match="must be an rf.Parameter"):
        rf.register_parametrization(mod, "in_dim", lambda p: p)
    with pytest.raises(ValueError, match="keep_existing_param=True"):
        rf.register_parametrization(mod, "weight", lambda p: p, keep_existing_param=False)
    with pytest.raises(ValueError, match="must not have parameters"):
        rf.register_parametrization(mod, "weight", rf.Linear(Dim(2), Dim(2)))
    rf.register_parametrization(mod, "weight", lambda p: p)
    with pytest.raises(ValueError, match="already parametrized"):
        rf.register_parametrization(mod, "weight", lambda p: p)
    with pytest.raises(ValueError, match="not parametrized"):
        rf.remove_parametrization(mod, "bias")
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = mod.missing


def test_weight_noise_has_the_given_std_in_training_only(backend, train_ctx):
    big = Dim(200, name="big")
    mod = rf.Linear(big, Dim(100, name="out"))
    orig = mod.weight
    rf.weight_noise(mod, "weight", std=0.1)
    noise = mod.weight.numpy() - orig.numpy()
    assert abs(noise.mean()) < 0.005 and 0.095 < noise.std() < 0.105  # 20,000 draws
    assert not np.array_equal(noise, mod.weight.numpy() - orig.numpy())  # drawn anew at each access
    rf.init_train_step_run_ctx(train_flag=False)
    assert mod.weight is orig
    with pytest.raises(ValueError, match="std must be a float >= 0"):
        rf.weight_noise(rf.Linear(big, big), "weight", std=-1.0)


def test_weight_noise_on_a_convolution_filter_and_weight_dropout(backend, train_ctx):
    in_dim, out_dim, time = Dim(7, name="in"), Dim(13, name="out"), Dim(11, name="time")
    conv = rf.Conv1d(in_dim, out_dim, 3, padding="same")
    rf.weight_noise(conv, "filter", std=0.1)
    out, out_time = conv(rf.random_normal([time, in_dim]), in_spatial_dim=time)
    assert set(out.dims) == {out_time, out_dim} and np.isfinite(out.numpy()).all()
    mod = rf.Linear(in_dim, out_dim)
    rf.weight_dropout(mod, "weight", drop_prob=0.5)
    assert (mod.weight.numpy() == 0).any() and rf.is_parametrized(mod, "weight")


def test_dropout_broadcast_default_shares_the_mask_over_the_other_dims(backend):
    batch, time, feature = Dim(4, name="batch"), Dim(5, name="time"), Dim(64, name="feature")
    assert rf.dropout_broadcast_default() is True
    x = rf.convert_to_tensor(np.ones((4, 5, 64), "float32"), dims=[batch, time, feature])
    out = rf.dropout(x, 0.5, axis=rf.dropout_broadcast_default() and feature, on_forward=True).numpy()
    assert (out == out[:1, :1, :]).all() and 0 < (out[0, 0] == 0).sum() < 64
    per_entry = rf.dropout(x, 0.5, axis=False and feature, on_forward=True).numpy()
    assert not (per_entry == per_entry[:1, :1, :]).all()


def test_module_list_slices_can_be_read_assigned_and_deleted(backend):
    dims = [Dim(3 + i, name=f"d{i}") for i in range(5)]
    layers = rf.ModuleList([rf.Linear(a, b) for a, b in zip(dims, dims[1:])])
    orig = layers[:]
    assert isinstance(orig, rf.ModuleList) and [k for k, _ in orig.items()] == ["0", "1", "2", "3"]
    del layers[2:]
    assert [k for k, _ in layers.items()] == ["0", "1"] and list(layers) == list(orig)[:2]
    layers[:] = orig
    assert [k for k, _ in layers.items()] == ["0", "1", "2", "3"] and list(layers) == list(orig)
    layers[1:3] = [orig[3]]
    assert list(layers) == [orig[0], orig[3], orig[3]] and [k for k, _ in layers.items()] == ["0", "1", "2"]
    named = rf.Sequential({"proj": orig[0], "out": orig[1]})
    named[:1] = [orig[2], orig[3]]
    assert [k for k, _ in named.items()] == ["0", "1", "out"]
    with pytest.raises(TypeError, match="index must be an int, a str or a slice"):
        layers[1.0] = orig[0]


def test_build_from_dict_of_combine_is_a_partial(backend):
    func = rf.build_from_dict({"class": "rf.combine", "kind": "+", "b": 1.0})
    assert isinstance(func, functools.partial) and func.func is rf.combine
    assert func.keywords == {"kind": "+", "b": 1.0}
    x = rf.convert_to_tensor(np.array([1.0, 2.0], "float32"), dims=[Dim(2)])
    np.testing.assert_array_equal(func(x).numpy(), [2.0, 3.0])
    assert rf.build_from_dict({"class": "rf.combine"}) is rf.combine


def test_integer_parameters_are_not_trainable(backend):
    param = rf.Parameter([Dim(3, name="d")], dtype="int64", initial=4)
    assert not param.trainable and param.numpy().tolist() == [4, 4, 4]
    assert rf.Parameter([Dim(3)], dtype="float32").trainable


def test_dropout_under_a_random_journal_replays_the_mask_on_another_backend(select):
    from returnn_ls.random_funcs import random_journal_record, random_journal_replay

    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    time, feature = Dim(4, name="time"), Dim(6, name="feature")
    outs = []
    with random_journal_record() as journal:
        select("torch")
        outs.append(rf.dropout(rf.convert_to_tensor(x, dims=[time, feature]), 0.5, axis=feature, on_forward=True))
    with random_journal_replay(journal):
        select("tensorflow")
        outs.append(rf.dropout(rf.convert_to_tensor(x, dims=[time, feature]), 0.5, axis=feature, on_forward=True))
    ref, other = (o.numpy() for o in outs)
    np.testing.assert_allclose(other, ref, rtol=1e-6)
    kept = ref[0] != 0
    assert 0 < kept.sum() < 6  # one mask per feature, shared over time
    np.testing.assert_allclose(ref[:, kept], 2 * x[:, kept], rtol=1e-6)
    assert (ref[:, ~kept] == 0).all()
