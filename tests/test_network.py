"""Network dicts: every layer class runs on both backends, bad networks give clear errors with file and line."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import returnn_ls as rf
from frontend_backends.train_base import get_trainer
from returnn_ls import _backend
from returnn_ls.training.config import ConfigError, load_config_text
from returnn_ls.training.datasets import SyntheticDataset
from returnn_ls.training.layers import LAYER_CLASSES
from returnn_ls.training.network import ExternData, Network, replace_smoothing

EXTERN = {"data": {"dim": 6}, "classes": {"dim": 5, "sparse": True}, "alignment": {"dim": 5, "sparse": True}}
BASE = {
    "enc": {"class": "linear", "from": "data", "n_out": 12, "activation": "tanh"},
    "logits": {"class": "linear", "from": "enc", "n_out": 5},
}
#: Networks that together use every layer class.
NETWORKS = {
    "softmax_ce": {"out": {"class": "softmax", "from": "enc", "target": "alignment", "loss": "ce",
                           "loss_opts": {"label_smoothing": 0.1, "label_smoothing_convention": "uniform"}}},
    "softmax_ctc": {"out": {"class": "softmax", "from": "enc", "target": "classes", "loss": "ctc",
                            "loss_opts": {"label_smoothing": 0.1, "blank_index": 0}}},
    "gradient_ops": {
        "lp": {"class": "log_softmax", "from": "logits"},
        "scaled": {"class": "scaled_grad", "from": "lp", "scale": 0.5, "shift": 0.01,
                   "scale_shift_by_sum_over_axis": "F"},
        "sm": {"class": "label_smoothed_log_prob_gradient", "from": "scaled", "smoothing": 0.2,
               "exclude_labels": [0]},
        "ce": {"class": "cross_entropy", "from": "sm", "target": "alignment", "loss": True},
    },
    "dense_targets": {
        "probs": {"class": "softmax", "from": "enc", "n_out": 5},
        "smoothed_probs": {"class": "label_smoothing", "from": "probs", "smoothing": 0.1},
        "one_hot": {"class": "smooth_one_hot", "from": "alignment", "label_prob": 0.9},
        "targets": {"class": "label_smoothing", "from": "data:alignment", "smoothing": 0.1},
        "ce": {"class": "cross_entropy", "from": ["logits", "one_hot"], "loss": True},
        "ce2": {"class": "cross_entropy", "from": ["smoothed_probs", "targets"], "loss": True},
    },
    "losses": {
        "lsce": {"class": "label_smoothed_cross_entropy", "from": "logits", "target": "alignment",
                 "smoothing": 0.1, "weight": [1.0, 2.0, 1.0, 1.0, 0.5], "convention": "uniform", "loss": True},
        "ctc": {"class": "ctc_loss", "from": "logits", "target": "classes", "blank_index": 0,
                "label_smoothing": 0.1, "loss": True},
        "relax": {"class": "label_relaxation_loss", "from": "logits", "target": "alignment", "alpha": 0.1,
                  "loss": True},
    },
}  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_backend():
    previous = _backend._selected
    yield
    _backend._selected = previous


def _run(backend_name: str, network: dict, seed: int = 0) -> tuple[Network, float, dict]:
    """:return: the network, its first loss and the gradients (numpy) for one batch of the synthetic task"""
    rf.select_backend(backend_name)
    net = Network(network, ExternData(EXTERN))
    data = SyntheticDataset(input_dim=6, num_labels=5, num_seqs=4, seed=seed)
    tensors = net.extern.tensors(next(data.batches(4)))
    trainer = get_trainer(backend_name)
    variables = trainer.variables(net.init_params(seed))
    value, grads = trainer.value_and_grad(lambda vs: net(vs, tensors).loss.raw_tensor, variables)
    return net, float(trainer.to_numpy(value)), {k: trainer.to_numpy(g) for k, g in grads.items()}


def test_networks_cover_every_layer_class():
    used = {layer["class"] for net in NETWORKS.values() for layer in {**BASE, **net}.values()}
    assert used == set(LAYER_CLASSES)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_layer_classes_give_finite_loss_and_gradients(backend, name):
    net, loss, grads = _run(backend.name, {**BASE, **NETWORKS[name]})
    assert np.isfinite(loss) and loss > 0
    assert np.abs(grads["enc/W"]).sum() > 0  # every network's losses depend on the first layer
    assert set(grads) == set(net.param_dims())


def test_softmax_ce_layer_equals_label_smoothed_cross_entropy(backend):
    network = {"out": {"class": "softmax", "from": "data", "target": "alignment", "loss": "ce",
                       "loss_opts": {"label_smoothing": 0.2}}}  # fmt: skip
    net = Network(network, ExternData(EXTERN))
    data = SyntheticDataset(input_dim=6, num_labels=5, num_seqs=3, seed=1)
    batch = next(data.batches(3))
    tensors = net.extern.tensors(batch)
    params = net.init_params(0)
    loss = net(params, tensors).loss.numpy()
    logits = batch["data"] @ params["out/W"] + params["out/b"]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = np.full(log_probs.shape, 0.2 / 4)
    np.put_along_axis(target, batch["alignment"][..., None], 0.8, axis=-1)
    per_frame = -(target * log_probs).sum(-1)
    mask = np.arange(per_frame.shape[1])[None] < batch["data_len"][:, None]
    np.testing.assert_allclose(loss, per_frame[mask].mean(), rtol=1e-5)


@pytest.mark.parametrize("name", ["softmax_ce", "losses"])
def test_same_initial_parameters_and_first_loss_on_both_backends(name):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    network = {**BASE, **NETWORKS[name]}
    _, loss_torch, grads_torch = _run("torch", network)
    _, loss_tf, grads_tf = _run("tensorflow", network)
    np.testing.assert_allclose(loss_torch, loss_tf, rtol=1e-5)
    for key in grads_torch:
        np.testing.assert_allclose(grads_torch[key], grads_tf[key], rtol=1e-4, atol=1e-6)


def test_init_params_are_seeded_per_layer():
    net = Network({**BASE, **NETWORKS["losses"]}, ExternData(EXTERN))
    first, again, other = net.init_params(3), net.init_params(3), net.init_params(4)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["enc/W"], other["enc/W"])
    assert first["enc/W"].shape == (6, 12) and first["logits/b"].shape == (5,)


def test_order_follows_from_not_dict_order():
    network = {"ce": {"class": "cross_entropy", "from": "lp", "target": "alignment", "loss": True},
               "lp": {"class": "log_softmax", "from": "logits"}, **BASE}  # fmt: skip
    order = Network(network, ExternData(EXTERN)).order
    assert order.index("enc") < order.index("logits") < order.index("lp") < order.index("ce")


def test_replace_smoothing_sets_every_option():
    network = {**BASE, **NETWORKS["dense_targets"], **NETWORKS["losses"], **NETWORKS["softmax_ce"]}
    replaced, count = replace_smoothing(network, 0.3)
    assert replaced["smoothed_probs"]["smoothing"] == 0.3 and replaced["one_hot"]["label_prob"] == 0.7
    assert replaced["ctc"]["label_smoothing"] == 0.3 and replaced["lsce"]["smoothing"] == 0.3
    assert replaced["out"]["loss_opts"] == {"label_smoothing": 0.3, "label_smoothing_convention": "uniform"}
    assert count == 6 and network["ctc"]["label_smoothing"] == 0.1  # the input is not modified


CONFIG = """\
extern_data = {"data": {"dim": 6}, "classes": {"dim": 5, "sparse": True}}
network = {
    "enc": {"class": "linear", "from": "data", "n_out": 12},
    "out": %s,
}
"""
BAD_LAYERS = {
    "unknown class": ('{"class": "sofmax", "from": "enc"}', ["unknown layer class 'sofmax'", "did you mean 'softmax'",
                                                              "known:", "label_relaxation_loss"]),
    "misspelled option": ('{"class": "linear", "from": "enc", "n_outt": 5}', ["unknown option 'n_outt'",
                                                                              "did you mean 'n_out'"]),
    "missing from": ('{"class": "log_softmax", "from": "encc"}', ["missing layer 'encc'", "did you mean 'enc'"]),
    "cycle": ('{"class": "linear", "from": "out", "n_out": 5}', ["cycle: out -> out"]),
    "bad target": ('{"class": "ctc_loss", "from": "enc", "target": "clases", "loss": True}',
                   ["target 'clases' is not a sparse key of extern_data", "did you mean 'classes'"]),
    "no loss": ('{"class": "log_softmax", "from": "enc"}', ["no layer with a loss"]),
    "bad loss_opts": ('{"class": "softmax", "from": "enc", "target": "classes", "loss": "ce", '
                      '"loss_opts": {"label_smothing": 0.1}}', ["loss_opts key 'label_smothing'", "'label_smoothing'"]),
    "missing option": ('{"class": "label_relaxation_loss", "from": "enc", "target": "classes", "loss": True}',
                       ["missing option 'alpha'"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_LAYERS))
def test_bad_network_names_file_line_and_fix(case):
    layer, expected = BAD_LAYERS[case]
    config = load_config_text(CONFIG % layer, "bad.config")
    with pytest.raises(ConfigError) as info:
        Network(config.get("network"), ExternData(config.get("extern_data"), config), config)
    message = str(info.value)
    line = 2 if case == "no loss" else 4  # the line of the layer (or of "network =")
    assert message.startswith(f"bad.config:{line}: "), message
    for part in expected:
        assert part in message, message


def test_cycle_over_several_layers_is_reported():
    network = {"a": {"class": "log_softmax", "from": "b"}, "b": {"class": "log_softmax", "from": "a"},
               "l": {"class": "cross_entropy", "from": "a", "target": "classes", "loss": True}}  # fmt: skip
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        Network(network, ExternData(EXTERN))


def test_bad_extern_data_is_reported():
    keys = {"data": SimpleNamespace(dim=3, sparse=False), "classes": SimpleNamespace(dim=4, sparse=True)}
    with pytest.raises(ConfigError, match="extern_data key 'targets' is not yielded"):
        ExternData({"data": {"dim": 3}, "targets": {"dim": 4, "sparse": True}}, data_keys=keys)
    with pytest.raises(ConfigError, match="did you mean 'sparse'"):
        ExternData({"data": {"dim": 3}, "classes": {"dim": 4, "spars": True}})
