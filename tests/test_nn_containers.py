"""rf.ModuleList, Sequential and ParameterList built from dicts and lists (names as RETURNN's: a dict's keys, so
rf-style checkpoints carry over), rf.build_dict / build_from_dict, and auxiliary parameters."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

IN, HIDDEN, OUT = Dim(3, name="in"), Dim(4, name="hidden"), Dim(2, name="out")


def test_sequential_from_a_dict_names_its_parameters_by_the_keys(backend):
    seq = rf.Sequential({"proj": rf.Linear(IN, HIDDEN), "act": rf.relu, "3": rf.Linear(HIDDEN, OUT)})
    assert [name for name, _ in seq.named_parameters()] == ["proj.weight", "proj.bias", "2.weight", "2.bias"]
    assert [key for key, _ in seq.items()] == ["proj", "act", "2"] and isinstance(seq["act"], rf.Functional)
    batch = Dim(5, name="batch")
    x = rf.convert_to_tensor(np.random.default_rng(0).normal(size=(5, 3)).astype("float32"), dims=[batch, IN])
    collected = {}
    y = seq(x, collected_outputs=collected)
    assert list(collected) == ["proj", "act", "2"] and collected["2"] is y and y.dims == (batch, OUT)
    expected = np.maximum(x.numpy() @ seq["proj"].weight.numpy(), 0) @ seq[2].weight.numpy()
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_carries_over_between_models_of_the_same_dict(backend):
    def model():
        return rf.Sequential({"encoder": rf.Linear(IN, HIDDEN), "output": rf.Linear(HIDDEN, OUT)})

    rf.set_random_seed(1)
    first = model()
    checkpoint = {name: param.numpy() for name, param in first.named_parameters()}
    rf.set_random_seed(2)
    second = model()
    for name, param in second.named_parameters():
        param.assign(checkpoint[name])
    assert sorted(checkpoint) == ["encoder.bias", "encoder.weight", "output.bias", "output.weight"]
    np.testing.assert_array_equal(second["output"].weight.numpy(), first["output"].weight.numpy())


def test_module_list_indexing_slicing_and_deleting_keep_returnns_names(backend):
    layers = rf.ModuleList([rf.Linear(IN, IN) for _ in range(4)])
    assert [k for k, _ in layers.items()] == ["0", "1", "2", "3"] and len(layers) == 4
    head = layers[:2]
    assert isinstance(head, rf.ModuleList) and [k for k, _ in head.items()] == ["0", "1"] and head[1] is layers[1]
    last = layers[3]
    del layers[1]
    assert [k for k, _ in layers.items()] == ["0", "1", "2"] and layers[2] is last and layers["2"] is last
    layers.append(rf.relu)
    layers[0] = rf.tanh
    assert [type(m).__name__ for m in layers] == ["Functional", "Linear", "Linear", "Functional"]
    named = rf.ModuleList({"a": rf.Linear(IN, IN), "b": rf.Linear(IN, IN)})
    assert [k for k, _ in named[1:].items()] == ["b"] and [k for k, _ in rf.ModuleList(named).items()] == ["a", "b"]
    assert [n for n, _ in named.named_parameters()] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    with pytest.raises(TypeError, match="expected an rf.Module or a function, got int"):
        rf.ModuleList([1])


def test_parameter_list_names_and_iteration(backend):
    params = rf.ParameterList([rf.Parameter([IN]) for _ in range(2)])
    params.append(rf.Parameter([OUT], initial=1.0))
    assert [n for n, _ in params.named_parameters()] == ["0", "1", "2"] and len(params) == 3
    assert params[-1].dims == (OUT,) and list(params)[0] is params[0] and isinstance(params[:2], rf.ParameterList)

    class Model(rf.Module):
        def __init__(self):
            self.scales = rf.ParameterList({"first": rf.Parameter([IN]), "5": rf.Parameter([IN])})

    assert [n for n, _ in Model().named_parameters()] == ["scales.first", "scales.1"]
    with pytest.raises(TypeError, match="ParameterList: expected an rf.Parameter, got Linear"):
        rf.ParameterList([rf.Linear(IN, OUT)])
    with pytest.raises(NotImplementedError):
        params(1)


def test_build_dict_and_build_from_dict_round_trip(backend):
    d = rf.build_dict(rf.BatchNorm, use_mask=True, momentum=0.2)
    assert d == {"class": "rf.BatchNorm", "use_mask": True, "momentum": 0.2}
    norm = rf.build_from_dict(d, IN)
    assert isinstance(norm, rf.BatchNorm) and norm.momentum == 0.2 and norm.in_dim is IN
    linear = rf.build_from_dict({"class": "rf.Linear", "with_bias": False}, IN, out_dim=OUT)
    assert linear.bias is None and linear.out_dim is OUT
    assert rf.build_from_dict({"class": "rf.relu"}) is rf.relu
    leaky = rf.build_from_dict(rf.build_dict(rf.leaky_relu, alpha=0.1))
    assert isinstance(leaky, functools.partial) and leaky.keywords == {"alpha": 0.1}
    # RETURNN's own module paths name the same object here; other paths are imported
    assert rf.build_from_dict({"class": "returnn.frontend.normalization.BatchNorm"}, IN).in_dim is IN
    assert rf.build_dict(functools.reduce)["class"] == "_functools.reduce"
    assert rf.build_from_dict({"class": "collections.OrderedDict", "a": 1}) == {"a": 1}


def test_build_from_dict_errors_name_the_argument():
    with pytest.raises(ValueError, match="build_from_dict: d has no 'class' entry"):
        rf.build_from_dict({"in_dim": IN})
    with pytest.raises(ValueError, match="build_from_dict: 'class' must be a dotted name"):
        rf.build_from_dict({"class": "Linear"})
    with pytest.raises(ValueError, match="build_from_dict: 'class' 'rf.NoSuchModule': returnn_ls has no"):
        rf.build_from_dict({"class": "rf.NoSuchModule"})
    with pytest.raises(ValueError, match="build_from_dict: 'class' 'no_such_package.Model' cannot be imported"):
        rf.build_from_dict({"class": "no_such_package.Model"})
    with pytest.raises(TypeError, match="build_from_dict: d must be a dict, got list"):
        rf.build_from_dict([])
    with pytest.raises(TypeError, match="build_dict: cls must be a class or a function"):
        rf.build_dict("rf.Linear")


def test_auxiliary_parameters_are_not_trainable_by_default(backend):
    running = rf.Parameter([IN], auxiliary=True)
    assert running.auxiliary and not running.trainable
    raw = running.raw_tensor
    assert not (raw.requires_grad if backend.name == "torch" else raw.trainable)
    assert rf.Parameter([IN]).trainable and rf.Parameter([IN], auxiliary=True, trainable=True).trainable
    trainable = [name for name, p in rf.BatchNorm(IN).named_parameters() if p.trainable]
    assert trainable == ["gamma", "beta"]
