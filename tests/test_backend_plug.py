"""How to add a backend: one package plus one ``register_backend`` call, shown with the NumPy backend ``_mini_backend``.

1. Write a package that exports two classes: ``Backend``, a subclass of :class:`frontend_backends.base.Backend`, and
   ``Trainer``, a subclass of :class:`frontend_backends.train_base.Trainer` (optionally ``Bench``, for ``returnn-ls
   bench``). Their ``@abstractmethod`` s (with those of the kernel mixins it inherits) are
   the whole protocol; their docstrings define each primitive on raw tensors and integer axes. The package never
   imports ``returnn_ls``. ``tests/_mini_backend/`` is a complete example in about 500 lines (forward-only NumPy,
   gradients by finite differences).
2. Register it, once, before use (a framework in this repository gets one line in ``frontend_backends._REGISTRY``
   instead)::

       register_backend("numpy_mini", BackendInfo("_mini_backend", framework="numpy", type_modules=()))

   ``type_modules`` names the modules whose types are the backend's raw tensors; ``()`` here, so numpy inputs go to
   the selected backend.
3. That is all: ``rf.select_backend("numpy_mini")`` runs every public function on it, ``train(config,
   backend="numpy_mini")`` and ``returnn-ls train --backend numpy_mini`` train through its ``Trainer`` (the engine
   asks the registry and the trainer, never a backend name), and an unknown name lists the registered ones.
A subclass that leaves out an abstract method cannot be instantiated (a TypeError naming the method).
"""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import frontend_backends
import returnn_ls as rf
from frontend_backends import BackendInfo
from frontend_backends.base import Backend as BaseBackend
from frontend_backends.train_base import get_trainer
from returnn_ls import Dim, _backend
from returnn_ls.cli import main
from returnn_ls.training.config import load_config_text
from returnn_ls.training.setup import build_setup
from returnn_ls.training.train import train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _mini_backend import Backend as MiniBackend  # noqa: E402

NAME = "numpy_mini"
INFO = BackendInfo("_mini_backend", framework="numpy", type_modules=())

#: A tiny network dict: one softmax output layer (8 x 5 weights + 5 biases: 91 loss evaluations per step of the
#: finite-difference trainer), label smoothing 0.1, SGD with momentum.
CONFIG = """\
extern_data = {"data": {"dim": 8}, "classes": {"dim": 5, "sparse": True}, "alignment": {"dim": 5, "sparse": True}}
train = {"class": "synthetic", "num_seqs": 24, "seed": 1}
dev = {"class": "synthetic", "num_seqs": 8, "seed": 2}
batch_size = 8
num_epochs = 2
learning_rate = 0.2
optimizer = {"class": "sgd", "momentum": 0.9}
network = {
    "output": {"class": "softmax", "from": "data", "target": "alignment", "loss": "ce",
               "loss_opts": {"label_smoothing": 0.1}},
}
"""
#: Relative tolerance between numpy_mini and torch training. numpy_mini computes in float64 with finite-difference
#: gradients exact to ~1e-9 relative; torch computes in float32, so each of its scores is rounded to ~1e-7 relative
#: and its gradients to ~1e-6, which over the 6 SGD steps moves the scores by far less than 1e-5 (measured: at most
#: 1.3e-7 relative on the scores, 1.7e-7 absolute on the trained parameters).
TRAIN_RTOL = 1e-5


@pytest.fixture(scope="module")
def registered():
    """Register the mini backend for this module; afterwards unregister it and restore the backend selection."""
    previous = _backend._selected
    frontend_backends.register_backend(NAME, INFO)
    yield NAME
    frontend_backends.unregister_backend(NAME)
    _backend._selected = previous


@pytest.fixture(autouse=True)
def mini(registered, restore_backend):
    """Select the mini backend for each test (the selection is restored afterwards)."""
    rf.select_backend(registered)
    return frontend_backends.get_backend(registered)


def _on_mini(x: rf.Tensor) -> np.ndarray:
    """:return: the raw array of ``x`` after checking that it was computed by the mini backend"""
    assert x.backend_name == NAME and type(x.raw_tensor) is np.ndarray, (x, type(x.raw_tensor))
    return x.raw_tensor


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    top = z.max(-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))


# -- the public functions run on it ------------------------------------------------------------------------------


def test_label_smoothing_and_smooth_one_hot_follow_their_formulas():
    frames, vocab = Dim(4, name="frames"), Dim(5, name="vocab")
    labels = np.array([0, 3, 4, 1])
    sparse = rf.convert_to_tensor(labels, dims=[frames], sparse_dim=vocab)
    one_hot = np.eye(5)[labels]
    smoothed = _on_mini(rf.label_smoothing(sparse, 0.1))
    np.testing.assert_allclose(smoothed, one_hot * 0.9 + (1 - one_hot) * 0.1 / 4, rtol=1e-6)
    probs = np.random.default_rng(0).dirichlet(np.ones(5), size=4).astype("float32")
    dense = rf.convert_to_tensor(probs, dims=[frames, vocab], feature_dim=vocab)
    out = _on_mini(rf.label_smoothing(dense, 0.2))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, probs * (1 - 5 * 0.2 / 4) + 0.2 / 4, rtol=1e-6)
    np.testing.assert_allclose(_on_mini(rf.smooth_one_hot(sparse, label_prob=0.8)),
                               one_hot * 0.8 + (1 - one_hot) * 0.2 / 4, rtol=1e-6)  # fmt: skip


def test_cross_entropy_sparse_and_dense_equal_torch_and_numpy():
    frames, vocab = Dim(6, name="frames"), Dim(7, name="vocab")
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(6, 7)).astype("float32"), rng.integers(0, 7, size=6)
    z = rf.convert_to_tensor(logits, dims=[frames, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(labels, dims=[frames], sparse_dim=vocab)
    sparse = _on_mini(rf.cross_entropy(estimated=z, target=y, axis=vocab, estimated_type="logits"))
    reference = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none").numpy()
    np.testing.assert_allclose(sparse, reference, rtol=1e-5)
    target = rng.dirichlet(np.ones(7), size=6).astype("float32")
    q = rf.convert_to_tensor(target, dims=[frames, vocab], feature_dim=vocab)
    dense = _on_mini(rf.cross_entropy(estimated=z, target=q, axis=vocab, estimated_type="logits"))
    np.testing.assert_allclose(dense, -(target * _log_softmax(logits)).sum(-1), rtol=1e-5)


def _padded_batch(rng: np.random.Generator, lengths: list[int], num_labels: int):
    """:return: (batch, time, vocab dims, logits, targets: -100 at padding frames)"""
    batch, vocab = Dim(len(lengths), name="batch"), Dim(num_labels, name="vocab")
    time = Dim(rf.convert_to_tensor(np.array(lengths, "int32"), dims=[batch]), name="time")
    logits = rng.normal(size=(len(lengths), max(lengths), num_labels)).astype("float32")
    targets = rng.integers(0, num_labels, size=(len(lengths), max(lengths)))
    targets[np.arange(max(lengths))[None, :] >= np.array(lengths)[:, None]] = -100
    return batch, time, vocab, logits, targets


@pytest.mark.parametrize("convention", ["returnn", "uniform"])
def test_label_smoothed_cross_entropy_both_conventions_with_padding(convention):
    batch, time, vocab, logits, targets = _padded_batch(np.random.default_rng(2), [4, 2, 3], 6)
    weight = np.array([1.0, 2.0, 0.5, 1.0, 1.5, 1.0], "float32")
    z = rf.convert_to_tensor(logits, dims=[batch, time, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(targets, dims=[batch, time], sparse_dim=vocab)
    w = rf.convert_to_tensor(weight, dims=[vocab])
    before = (logits.copy(), targets.copy())
    loss = rf.label_smoothed_cross_entropy(logits=z, targets=y, axis=vocab, smoothing=0.1, convention=convention,
                                           weight=w if convention == "uniform" else None)  # fmt: skip
    out = _on_mini(loss)
    valid = targets != -100
    if convention == "uniform":  # PyTorch's convention, weights included
        reference = F.cross_entropy(torch.from_numpy(logits).transpose(1, 2), torch.from_numpy(targets),
                                    weight=torch.from_numpy(weight), label_smoothing=0.1, reduction="none")  # fmt: skip
        reference = reference.numpy()
    else:  # RETURNN's: 1 - a on the target, a / (K - 1) on every other label
        one_hot = np.eye(6)[np.where(valid, targets, 0)]
        reference = -((one_hot * 0.9 + (1 - one_hot) * 0.1 / 5) * _log_softmax(logits)).sum(-1)
    assert loss.dims == (batch, time) and out.dtype == np.float32
    np.testing.assert_allclose(out[valid], reference[valid], rtol=1e-5)
    assert (out[~valid] == 0.0).all() and (~valid).sum() == 3
    np.testing.assert_array_equal(before[0], logits)  # the inputs are not modified in place
    np.testing.assert_array_equal(z.raw_tensor, logits)


def test_linear_label_smoothed_cross_entropy_equals_the_explicit_projection():
    batch, time, vocab, _, targets = _padded_batch(np.random.default_rng(3), [3, 1], 5)
    hidden_dim = Dim(4, name="hidden")
    rng = np.random.default_rng(4)
    hidden, weight = rng.normal(size=(2, 3, 4)).astype("float32"), rng.normal(size=(4, 5)).astype("float32")
    h = rf.convert_to_tensor(hidden, dims=[batch, time, hidden_dim], feature_dim=hidden_dim)
    w = rf.convert_to_tensor(weight, dims=[hidden_dim, vocab])
    y = rf.convert_to_tensor(targets, dims=[batch, time], sparse_dim=vocab)
    loss = _on_mini(rf.linear_label_smoothed_cross_entropy(hidden=h, weight=w, targets=y, axis=vocab,
                                                           smoothing=0.1, chunk_size=2))  # fmt: skip
    valid = targets != -100
    one_hot = np.eye(5)[np.where(valid, targets, 0)]
    reference = -((one_hot * 0.9 + (1 - one_hot) * 0.1 / 4) * _log_softmax(hidden @ weight)).sum(-1)
    np.testing.assert_allclose(loss, np.where(valid, reference, 0.0), rtol=1e-5, atol=1e-6)


def test_reduce_mean_over_a_dynamic_dim_ignores_padding():
    batch, feat = Dim(3, name="batch"), Dim(2, name="feat")
    lengths = np.array([4, 1, 3])
    time = Dim(rf.convert_to_tensor(lengths.astype("int32"), dims=[batch]), name="time")
    values = np.random.default_rng(5).normal(size=(3, 4, 2)).astype("float32")
    valid = np.arange(4)[None, :] < lengths[:, None]
    values[~valid] = 1e6  # padding that would dominate any mean that includes it
    x = rf.convert_to_tensor(values, dims=[batch, time, feat])
    mean = rf.reduce_mean(x, axis=time)
    assert mean.dims == (batch, feat)
    reference = np.stack([values[b, : lengths[b]].mean(0) for b in range(3)])
    np.testing.assert_allclose(_on_mini(mean), reference, rtol=1e-6)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_loss_forward_equals_torch(zero_infinity):
    in_lens, tgt_lens = np.array([8, 6, 5, 2]), np.array([3, 2, 3, 2])
    # repeated labels (need a blank between them), and a last sequence that cannot be aligned (2 frames, [4, 4])
    labels = np.array([[1, 2, 2], [5, 3, 0], [4, 1, 4], [4, 4, 0]])
    batch, vocab = Dim(4, name="batch"), Dim(6, name="vocab")
    time = Dim(rf.convert_to_tensor(in_lens.astype("int32"), dims=[batch]), name="time")
    label_dim = Dim(rf.convert_to_tensor(tgt_lens.astype("int32"), dims=[batch]), name="labels")
    logits = np.random.default_rng(6).normal(size=(4, 8, 6)).astype("float32")
    z = rf.convert_to_tensor(logits, dims=[batch, time, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(labels, dims=[batch, label_dim], sparse_dim=vocab)
    loss = rf.ctc_loss(logits=z, targets=y, input_spatial_dim=time, targets_spatial_dim=label_dim, blank_index=0,
                       label_smoothing=0.1, zero_infinity=zero_infinity)  # fmt: skip
    log_probs = torch.from_numpy(logits).log_softmax(-1).transpose(0, 1)
    reference = F.ctc_loss(log_probs, torch.from_numpy(labels), torch.from_numpy(in_lens), torch.from_numpy(tgt_lens),
                           blank=0, reduction="none", zero_infinity=zero_infinity).numpy()  # fmt: skip
    out = _on_mini(loss)
    assert loss.dims == (batch,) and out[3] == (0.0 if zero_infinity else np.inf) and reference[3] == out[3]
    np.testing.assert_allclose(out[:3], reference[:3], rtol=1e-5)


def test_bfloat16_is_a_clear_type_error():
    x = rf.convert_to_tensor(np.ones(3, "float32"), dims=[Dim(3, name="x")])
    with pytest.raises(TypeError, match="numpy has no bfloat16"):
        rf.cast(x, "bfloat16")


def test_finite_difference_gradient_equals_torch_autograd():
    frames, vocab = Dim(3, name="frames"), Dim(4, name="vocab")
    rng = np.random.default_rng(7)
    logits, labels = rng.normal(size=(3, 4)), np.array([2, 0, 3])
    y = rf.convert_to_tensor(labels, dims=[frames], sparse_dim=vocab)

    # smoothing 0.25 of 4 labels: every coefficient is exact in float32 (the frontend makes them in float32 even for
    # float64 logits, returnn_ls/fused_ce.py:97-98, which would cost ~1e-8 relative against torch's float64 loss)
    def fn(variables):
        z = rf.convert_to_tensor(variables["z"], dims=[frames, vocab], feature_dim=vocab)
        loss = rf.label_smoothed_cross_entropy(logits=z, targets=y, axis=vocab, smoothing=0.25, convention="uniform")
        return rf.reduce_sum(loss, axis=frames).raw_tensor

    trainer = get_trainer(NAME)
    value, grads = trainer.value_and_grad(fn, trainer.variables({"z": logits}))
    z = torch.tensor(logits, requires_grad=True)
    reference = F.cross_entropy(z, torch.from_numpy(labels), label_smoothing=0.25, reduction="sum")
    reference.backward()
    assert value.dtype == np.float64 and float(value) == pytest.approx(reference.item(), rel=1e-12)
    np.testing.assert_allclose(grads["z"], z.grad.numpy(), rtol=1e-7, atol=1e-9)


def test_layer_kernels_equal_the_torch_backends(mini):
    """The raw layer primitives (no Dims) against the torch backend's, which run on torch's own kernels."""
    theirs, rng = frontend_backends.get_backend("torch"), np.random.default_rng(8)

    def to_torch(a: Any) -> Any:
        return [to_torch(v) for v in a] if isinstance(a, list) else torch.from_numpy(a) if hasattr(a, "shape") else a

    def same(kernel: str, *args: Any, **kwargs: Any) -> None:
        ours = getattr(mini, kernel)(*args, **kwargs)
        expected = getattr(theirs, kernel)(*map(to_torch, args), **kwargs)
        ours, expected = (ours, expected) if isinstance(ours, tuple) else ((ours,), (expected,))
        for a, b in zip(ours, expected, strict=True):
            assert type(a) is np.ndarray
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-9, err_msg=f"{kernel} {kwargs}")

    x = rng.normal(size=(2, 7, 3))
    for activation in ("gelu", "silu", "elu", "selu", "softplus", "log_sigmoid", "leaky_relu"):
        same("activation", x, name=activation, alpha=0.1)
    for padding, stride, dilation, width in (("same", 1, 1, 4), ("same", 2, 2, 3), ("valid", 2, 1, 3),
                                             ("valid", 1, 3, 2)):  # fmt: skip
        same("conv1d", x, rng.normal(size=(4, 3, width)), rng.normal(size=4), padding=padding, stride=stride,
             dilation=dilation)  # fmt: skip
    weights = (rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), rng.normal(size=8))
    for reverse in (False, True):
        same("lstm", x, np.array([7, 4]), rng.normal(size=(2, 2)), None, *weights, reverse=reverse)
    same("embedding", rng.normal(size=(5, 3)), np.array([[4, 0], [2, 2]]))
    same("layer_norm", x, rng.normal(size=3), rng.normal(size=3), num_axes=1, eps=1e-5)
    same("masked_select", x, np.array([[True, False, True, True, False, False, True]]))
    for op in ("argmin", "argmax"):
        same("arg_reduce", op, np.array([[1.0, 3.0, 3.0], [0.0, -1.0, -1.0]]), axis=1)  # the first of equal ones
    same("concat", [x[:1], x[:, :2]], axis=1)  # broadcast along the other axes
    generator = mini.random_generator(3)
    first = mini.dropout(np.ones((4, 5, 6)), 0.5, (1,), generator)
    mini.seed_generator(generator, 3)
    np.testing.assert_array_equal(mini.dropout(np.ones((4, 5, 6)), 0.5, (1,), generator), first)
    assert set(np.unique(first)) == {0.0, 2.0} and (first == first[:, :1]).all()  # scaled, shared along axis 1


# -- the engine and the command line pick it up ------------------------------------------------------------------


def test_engine_trains_it_like_torch_from_the_same_seed(tmp_path):
    initial = {}
    for name in (NAME, "torch"):
        setup = build_setup(load_config_text(CONFIG), name, out_dir=str(tmp_path / "init"))
        initial[name] = {k: setup.trainer.to_numpy(v) for k, v in setup.task.parameters().items()}
    assert set(initial[NAME]) == set(initial["torch"]) == {"output.weight", "output.bias"}
    for key, value in initial[NAME].items():
        np.testing.assert_array_equal(value, initial["torch"][key])  # exactly (float64 holds float32's values)
    runs = {name: train(load_config_text(CONFIG), backend=name, out_dir=str(tmp_path / name), progress=False,
                        log=lambda s: None) for name in (NAME, "torch")}  # fmt: skip
    assert json.loads((tmp_path / NAME / "metrics.json").read_text())["backend"] == NAME
    history = {name: run["history"] for name, run in runs.items()}
    assert len(history[NAME]) == len(history["torch"]) == 2
    for ours, theirs in zip(history[NAME], history["torch"]):
        for group in ("train_scores", "dev_scores"):
            assert list(ours[group]) == list(theirs[group]) == ["score", "error"]
            for key, value in ours[group].items():
                assert value == pytest.approx(theirs[group][key], rel=TRAIN_RTOL), (group, key)
        assert ours["dev_loss"] == pytest.approx(theirs["dev_loss"], rel=TRAIN_RTOL)
    assert history[NAME][1]["train_scores"]["score"] < 0.9 * history[NAME][0]["train_scores"]["score"]
    trained = {name: np.load(tmp_path / name / "model.npz") for name in runs}
    for key in initial[NAME]:
        np.testing.assert_allclose(trained[NAME][key], trained["torch"][key], rtol=TRAIN_RTOL, atol=1e-6)
        assert not np.allclose(trained[NAME][key], initial[NAME][key])


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """The checkpoint holds the optimizer's momentum buffers (``optimizer_state``); without them (or with a wrong
    ``load_optimizer_state``) the second epoch of the resumed run would differ."""
    quiet = {"progress": False, "log": lambda s: None}
    whole = train(load_config_text(CONFIG), backend=NAME, out_dir=str(tmp_path / "whole"), **quiet)
    train(load_config_text(CONFIG), backend=NAME, out_dir=str(tmp_path / "split"), epochs=1, **quiet)
    resumed = train(load_config_text(CONFIG), backend=NAME, out_dir=str(tmp_path / "split"), epochs=2, **quiet)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][1]["train_scores"] == whole["history"][1]["train_scores"]
    assert resumed["history"][1]["dev_scores"] == whole["history"][1]["dev_scores"]


@pytest.mark.usefixtures("cli_isolated")
def test_cli_trains_it_and_rejects_unknown_names(tmp_path, capsys):
    config = tmp_path / "tiny.config"
    config.write_text(CONFIG.replace("num_epochs = 2", "num_epochs = 1"))
    out = tmp_path / "out"
    assert main(["train", str(config), "--backend", NAME, "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == NAME and [h["epoch"] for h in metrics["history"]] == [1]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train", str(config), "--backend", "nope", "--out", str(out), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and f"'{NAME}'" in err, err
    with pytest.raises(ValueError, match=r"unknown backend 'nope'.*'numpy_mini'"):
        rf.select_backend("nope")


# -- the protocol is enforced, the registry is checked ------------------------------------------------------------

#: Every method of the protocol: the ``@abstractmethod`` s of ``Backend`` and of the classes it inherits.
_PROTOCOL = sorted({n for cls in BaseBackend.__mro__ for n, v in vars(cls).items()
                    if getattr(v, "__isabstractmethod__", False)})  # fmt: skip


@pytest.mark.parametrize("missing", _PROTOCOL)
def test_a_backend_without_one_abstract_method_cannot_be_instantiated(missing, monkeypatch):
    namespace = {k: v for k, v in vars(MiniBackend).items() if callable(v) and k != missing}
    incomplete = type("IncompleteBackend", (BaseBackend,), namespace)
    package = types.ModuleType("_incomplete_backend")
    package.Backend = incomplete
    monkeypatch.setitem(sys.modules, "_incomplete_backend", package)
    frontend_backends.register_backend("incomplete", BackendInfo("_incomplete_backend", "numpy", ()))
    try:
        try:
            frontend_backends.get_backend("incomplete")
        except TypeError as exc:
            assert missing in str(exc), exc
        else:
            raise AssertionError(f"a backend without {missing} was instantiated")
    finally:
        frontend_backends.unregister_backend("incomplete")


def test_register_backend_refuses_a_taken_name_and_taken_type_modules():
    with pytest.raises(ValueError, match="'numpy_mini' is registered already"):
        frontend_backends.register_backend(NAME, INFO)
    frontend_backends.register_backend(NAME, INFO, replace=True)
    assert frontend_backends.backend_names().count(NAME) == 1
    with pytest.raises(ValueError, match=r"type modules \['torch'\] belong to backend 'torch'"):
        frontend_backends.register_backend("numpy_other", BackendInfo("_mini_backend", "numpy", ("torch",)))
    assert "numpy_other" not in frontend_backends.backend_names()
    assert frontend_backends.backend_name_of(torch.zeros(1)) == "torch"
