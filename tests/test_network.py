"""Network dicts: every layer class runs on both backends, bad networks give clear errors with file and line."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _network_helpers import SYNTHETIC, build, frame_keys, synthetic_batch

import returnn_ls as rf
from frontend_backends.train_base import get_trainer
from returnn_ls.training.config import ConfigError, load_config_text
from returnn_ls.training.layers import LAYER_CLASSES
from returnn_ls.training.network import ExternData, Network, replace_smoothing

EXTERN = SYNTHETIC
TWELVE_AX = {"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}}
LOSS = {"loss": {"class": "softmax", "n_out": 2, "from": "data", "target": "classes", "loss": "ce"}}
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
    "returnn_layers": {
        "conv": {"class": "conv", "from": "enc", "n_out": 6, "filter_size": (3,), "padding": "same"},
        "norm": {"class": "layer_norm", "from": ["conv", "data"]},
        "fw": {"class": "rec", "unit": "nativelstm2", "n_out": 5, "from": "norm"},
        "bw": {"class": "rec", "unit": "BasicLSTM", "n_out": 4, "direction": -1, "from": "norm"},
        "cat": {"class": "copy", "from": ["fw", "bw"]},
        "drop": {"class": "dropout", "from": "cat", "dropout": 0.1},
        "out": {"class": "softmax", "from": "drop", "target": "alignment", "loss": "ce",
                "loss_opts": {"label_smoothing": 0.1}},
    },
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("restore_backend")


def _run(backend_name: str, network: dict, seed: int = 0) -> tuple[float, dict]:
    """:return: the first loss of the network's model (parameters from ``seed``) on a batch of the synthetic task,
    and its gradients (numpy) by parameter name"""
    rf.select_backend(backend_name)
    batch, keys = synthetic_batch(4, seed)
    model, extern = build(network, SYNTHETIC, keys, seed)
    tensors = extern.tensors(batch)
    trainer = get_trainer(backend_name)
    params = {name: p.raw_tensor for name, p in model.named_parameters()}
    value, grads = trainer.value_and_grad(lambda _: model(tensors).loss.raw_tensor, params)
    return float(trainer.to_numpy(value)), {k: trainer.to_numpy(g) for k, g in grads.items()}


def test_networks_cover_every_layer_class():
    used = {layer["class"] for net in NETWORKS.values() for layer in {**BASE, **net}.values()}
    assert used == set(LAYER_CLASSES)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_layer_classes_give_finite_loss_and_gradients(backend, name):
    loss, grads = _run(backend.name, {**BASE, **NETWORKS[name]})
    assert np.isfinite(loss) and loss > 0
    assert np.abs(grads["enc.weight"]).sum() > 0  # every network's losses depend on the first layer
    assert all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("convention", ["returnn", "uniform"])
def test_softmax_ce_layer_is_label_smoothed_cross_entropy_minus_the_target_entropy(backend, convention):
    network = {"out": {"class": "softmax", "target": "alignment", "loss": "ce",
                       "loss_opts": {"label_smoothing": 0.2, "label_smoothing_convention": convention}}}  # fmt: skip
    batch, keys = synthetic_batch(3, 1)
    model, extern = build(network, EXTERN, keys)
    out = model(extern.tensors(batch))
    params = {name: backend.numpy(p) for name, p in model.named_parameters()}
    logits = batch.data["data"] @ params["out.weight"] + params["out.bias"]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    off = 0.2 / 4 if convention == "returnn" else 0.2 / 5
    target = np.full(log_probs.shape, off)
    np.put_along_axis(target, batch.data["alignment"][..., None], 0.8 + (off if convention == "uniform" else 0.0), -1)
    per_frame = -(target * log_probs).sum(-1) + (target * np.log(target)).sum(-1)  # KL: RETURNN's score
    mask = np.arange(per_frame.shape[1])[None] < batch.lengths["data"][:, None]
    np.testing.assert_allclose(backend.numpy(out.loss), per_frame[mask].mean(), rtol=1e-5)


@pytest.mark.parametrize("name", ["softmax_ce", "losses", "returnn_layers"])
def test_same_initial_parameters_and_first_loss_on_both_backends(name):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    network = {**BASE, **NETWORKS[name]}
    loss_torch, grads_torch = _run("torch", network)
    loss_tf, grads_tf = _run("tensorflow", network)
    np.testing.assert_allclose(loss_torch, loss_tf, rtol=1e-5)
    for key in grads_torch:
        np.testing.assert_allclose(grads_torch[key], grads_tf[key], rtol=1e-4, atol=1e-6)


def test_gradient_op_in_front_of_ctc_loss_equals_ctc_loss_label_smoothing(backend):
    smoothed_ctc = {
        "ctc": {"class": "ctc_loss", "from": "logits", "target": "classes", "label_smoothing": 0.2, "loss": True}
    }
    gradient_op = {
        "lp": {"class": "log_softmax", "from": "logits"},
        "sm": {"class": "label_smoothed_log_prob_gradient", "from": "lp", "smoothing": 0.2, "exclude_labels": [0]},
        "ctc": {"class": "ctc_loss", "from": "sm", "target": "classes", "loss": True},
    }  # fmt: skip
    loss_ref, grads_ref = _run(backend.name, {**BASE, **smoothed_ctc})
    loss, grads = _run(backend.name, {**BASE, **gradient_op})
    unsmoothed_loss, unsmoothed = _run(
        backend.name, {**BASE, **smoothed_ctc, "ctc": {**smoothed_ctc["ctc"], "label_smoothing": 0.0}}
    )
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
    for key in grads_ref:
        np.testing.assert_allclose(grads[key], grads_ref[key], rtol=1e-4, atol=1e-6)
    assert not np.allclose(unsmoothed["logits.weight"], grads_ref["logits.weight"], rtol=1e-3)  # can fail
    model, _ = build({**BASE, **gradient_op}, EXTERN, synthetic_batch(2)[1])
    assert not any(layer.warnings for layer in model.network.layers.values())


def test_parameters_are_the_layer_modules_parameters_drawn_from_the_seed(backend):
    batch, keys = synthetic_batch()
    model, _ = build({**BASE, **NETWORKS["losses"]}, EXTERN, keys, seed=3)
    first = {name: backend.numpy(p) for name, p in model.named_parameters()}
    assert list(first) == ["enc.weight", "enc.bias", "logits.weight", "logits.bias"]
    assert isinstance(model.layers["enc"], rf.Linear) and first["enc.weight"].shape == (6, 12)
    again, _ = build({**BASE, **NETWORKS["losses"]}, EXTERN, keys, seed=3)
    other, _ = build({**BASE, **NETWORKS["losses"]}, EXTERN, keys, seed=4)
    assert all(np.array_equal(first[n], backend.numpy(p)) for n, p in again.named_parameters())
    assert not np.array_equal(first["enc.weight"], backend.numpy(dict(other.named_parameters())["enc.weight"]))
    limit = np.sqrt(6 / (6 + 12))  # Glorot uniform, as RETURNN's linear layer
    assert np.abs(first["enc.weight"]).max() <= limit and np.abs(first["enc.weight"]).max() > 0.8 * limit
    assert not first["enc.bias"].any()


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
    "returnn class": ('{"class": "subnetwork", "from": "enc", "subnetwork": {}}',
                      ["layer class 'subnetwork' is RETURNN's but not supported by returnn-ls", "'rec'"]),
    "subnetwork unit": ('{"class": "rec", "from": "enc", "n_out": 5, "unit": {"output": {"class": "copy"}}}',
                        ["subnetwork unit", "is RETURNN's but not supported", "'nativelstm2'"]),
    "gru unit": ('{"class": "rec", "from": "enc", "n_out": 5, "unit": "GRU"}',
                 ["unit 'GRU' is not supported", "'lstmblockfused'"]),
    "lstm unit typo": ('{"class": "rec", "from": "enc", "n_out": 5, "unit": "nativlstm"}',
                       ["did you mean 'nativelstm'"]),
    "returnn option": ('{"class": "rec", "from": "enc", "n_out": 5, "unit_opts": {}}',
                       ["RETURNN's option 'unit_opts' is not supported", "'direction'"]),
    "bad direction": ('{"class": "rec", "from": "enc", "n_out": 5, "direction": 2}', ["'direction' must be 1"]),
    "2-d conv": ('{"class": "conv", "from": "enc", "n_out": 5, "filter_size": (3, 3), "padding": "same"}',
                 ["'filter_size' must have one entry", "(3,)"]),
    "conv padding": ('{"class": "conv", "from": "enc", "n_out": 5, "filter_size": (3,), "padding": "causal"}',
                     ["'padding' must be 'same' or 'valid'"]),
    "activation": ('{"class": "linear", "from": "enc", "n_out": 5, "activation": "rellu"}',
                   ["unknown activation 'rellu'", "did you mean 'relu'"]),
    "ce on label sequences": ('{"class": "softmax", "from": "enc", "loss": "ce"}',
                              ["target 'classes' has a time dim of its own", "loss 'ctc'"]),
    "dropout value": ('{"class": "dropout", "from": "enc", "dropout": 1.0}', ["'dropout' must be a float in [0, 1)"]),
    "loss on linear": ('{"class": "linear", "from": "enc", "n_out": 5, "loss": "ce"}', ["'class': 'softmax'"]),
    "concat of labels": ('{"class": "copy", "from": ["enc", "data:classes"]}',
                         ["input 'classes' is sparse; only features can be concatenated"]),
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


def test_default_from_is_data_and_default_target_is_classes():
    network = Network(
        {
            "out": {"class": "softmax", "loss": "ce"},
            "lp": {"class": "log_softmax", "from": "out"},
            "ce": {"class": "cross_entropy", "from": "lp"},
        },
        ExternData(TWELVE_AX, data_keys=frame_keys(9, 2)),
    )
    assert network.layers["out"].sources == ["data"] and network.layers["out"].target == "classes"
    assert network.layers["out"].node.dim.dimension == 2  # n_out from the target
    assert network.layers["ce"].target == "classes" and not network.layers["ce"].contributes
    assert (
        Network(
            {"out": {"class": "softmax", "n_out": 2, "from": "data"}, **LOSS},
            ExternData(TWELVE_AX, data_keys=frame_keys(9, 2)),
        )
        .layers["out"]
        .target
        is None
    )


def test_unsupported_returnn_layer_classes_are_named_as_returnn_s():
    for name in ("attention", "choice", "decide", "eval", "subnetwork", "reduce", "pool"):
        with pytest.raises(ConfigError, match=f"layer class '{name}' is RETURNN's but not supported"):
            Network({"x": {"class": name}, **LOSS}, ExternData(TWELVE_AX))


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
