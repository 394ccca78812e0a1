"""The ``optimizer`` config key maps RETURNN's option names onto the framework's own optimizers: our training step
equals a step of ``torch.optim`` / ``keras.optimizers`` built by hand, clipping follows RETURNN's meaning, and a
non-finite loss changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

import frontend_backends
from frontend_backends.train_base import StepOptions, get_trainer
from returnn_ls.training.config import ConfigError, load_config_text
from returnn_ls.training.optimizer import optimizer_spec

P0 = np.array([[0.5, -1.0, 2.0], [0.25, 0.0, -0.75]], np.float32)
C = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], np.float32)
LR, STEPS = 0.1, 3

#: RETURNN-style option dict -> (torch class and kwargs, keras class and kwargs, L2 weight decay on keras)
CASES = {
    "adam": ({"class": "Adam", "epsilon": 1e-7, "beta1": 0.8, "weight_decay": 0.1},
             ("Adam", {"betas": (0.8, 0.999), "eps": 1e-7, "weight_decay": 0.1}),
             ("Adam", {"beta_1": 0.8, "epsilon": 1e-7}, 0.1)),
    "sgd": ({"class": "sgd", "momentum": 0.9, "nesterov": True},
            ("SGD", {"momentum": 0.9, "nesterov": True}), ("SGD", {"momentum": 0.9, "nesterov": True}, 0.0)),
    "adamw": ({"class": "adamw", "weight_decay": 0.05, "betas": (0.85, 0.99)},
              ("AdamW", {"weight_decay": 0.05, "betas": (0.85, 0.99)}),
              ("AdamW", {"weight_decay": 0.05, "beta_1": 0.85, "beta_2": 0.99, "epsilon": 1e-16}, 0.0)),
    "rmsprop": ({"class": "RMSprop", "decay": 0.8, "momentum": 0.5},
                ("RMSprop", {"alpha": 0.8, "momentum": 0.5}),
                ("RMSprop", {"rho": 0.8, "momentum": 0.5, "epsilon": 1e-16}, 0.0)),
    "nadam": ({"class": "nadam", "eps": 1e-6}, ("NAdam", {"eps": 1e-6}), ("Nadam", {"epsilon": 1e-6}, 0.0)),
    "adagrad": ({"class": "adagrad"}, ("Adagrad", {}), ("Adagrad", {"epsilon": 1e-16}, 0.0)),
}  # fmt: skip


def _config(optimizer: dict, extra: str = ""):
    return load_config_text(f"learning_rate = {LR}\noptimizer = {optimizer!r}\n{extra}", "opt.config")


def _ours(backend_name: str, optimizer: dict) -> np.ndarray:
    trainer = get_trainer(backend_name)
    var = trainer.variables({"w": P0})["w"]
    opt = trainer.create_optimizer([var], optimizer_spec(_config(optimizer), trainer), LR)

    def fn(raw):
        return _loss(backend_name, var, raw["c"]), {}

    for _ in range(STEPS):
        trainer.train_step(fn, {"c": C}, [var], opt, StepOptions(), compiled=False)
    return trainer.to_numpy(var)


def _loss(backend_name: str, var, c):
    """:return: ``sum(var * c) + 0.5 * sum(var * var)`` with the backend's primitives"""
    impl = frontend_backends.get_backend(backend_name)
    axes = tuple(range(len(impl.shape(var))))
    linear = impl.reduce("sum", impl.binary("mul", var, c), axes)
    return impl.binary("add", linear, impl.binary("mul", 0.5, impl.reduce("sum", impl.unary("square", var), axes)))


def _framework(backend_name: str, case: str) -> np.ndarray:
    """Plain framework code: the same loss and steps with the optimizer constructed directly."""
    if backend_name == "torch":
        import torch

        cls, kwargs = CASES[case][1]
        var = torch.tensor(P0, requires_grad=True)
        opt = getattr(torch.optim, cls)([var], lr=LR, **kwargs)
        for _ in range(STEPS):
            opt.zero_grad()
            ((var * torch.tensor(C)).sum() + 0.5 * (var * var).sum()).backward()
            opt.step()
        return var.detach().numpy()
    import keras
    import tensorflow as tf

    cls, kwargs, l2 = CASES[case][2]
    var = tf.Variable(P0)
    opt = getattr(keras.optimizers, cls)(learning_rate=LR, **kwargs)
    for _ in range(STEPS):
        opt.apply_gradients([(tf.constant(C) + var + l2 * var, var)])  # gradient of the loss, plus the L2 term
    return var.numpy()


@pytest.mark.parametrize("case", sorted(CASES))
def test_our_step_is_the_framework_optimizers_step(backend, case):
    ours = _ours(backend.name, CASES[case][0])
    np.testing.assert_allclose(ours, _framework(backend.name, case), rtol=1e-6, atol=1e-7)
    assert np.abs(ours - P0).max() > 1e-3


SAME = [{"class": "adam", "epsilon": 1e-8, "beta2": 0.99}, {"class": "sgd", "momentum": 0.5},
        {"class": "adamw", "weight_decay": 0.1, "epsilon": 1e-8}]  # fmt: skip


@pytest.mark.parametrize("optimizer", SAME)
def test_same_optimizer_options_give_the_same_step_on_both_backends(optimizer):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    np.testing.assert_allclose(_ours("torch", optimizer), _ours("tensorflow", optimizer), rtol=1e-5, atol=5e-6)


def _one_step(backend_name: str, optimizer: dict, options: StepOptions, total_scale: float = 1.0) -> tuple:
    """:return: the parameters after one step, the step's result and the optimizer state (meta, arrays)"""
    trainer = get_trainer(backend_name)
    var = trainer.variables({"w": P0})["w"]
    opt = trainer.create_optimizer([var], optimizer_spec(_config(optimizer), trainer), LR)

    def fn(raw):
        return _loss(backend_name, var, raw["c"]) * total_scale, {}

    result = trainer.train_step(fn, {"c": C}, [var], opt, options, compiled=trainer.compiles_step is not None)
    return trainer.to_numpy(var), result, trainer.optimizer_state(opt, [var])


def test_gradient_clip_clips_each_entry_and_global_norm_rescales(backend):
    grad = C + P0  # the gradient of the loss at P0; one SGD step
    value = _one_step(backend.name, {"class": "sgd"}, StepOptions(clip_value=0.5))[0]
    np.testing.assert_allclose(value, P0 - LR * np.clip(grad, -0.5, 0.5), rtol=1e-6)
    value = _one_step(backend.name, {"class": "sgd"}, StepOptions(clip_global_norm=1.0))[0]
    np.testing.assert_allclose(value, P0 - LR * grad / np.linalg.norm(grad), rtol=1e-5)


def test_non_finite_loss_changes_neither_parameters_nor_optimizer_state(backend):
    value, result, (meta, arrays) = _one_step(backend.name, {"class": "adam"}, StepOptions(), float("nan"))
    assert not result.finite
    np.testing.assert_array_equal(value, P0)
    if backend.name == "torch":
        assert arrays == {}  # torch.optim.Adam creates its state in the first step
    else:  # keras: the iteration counter and the moments are still 0
        names = meta["variables"]
        assert len(names) == 4 and all(
            not np.any(arrays[str(i)]) for i, n in enumerate(names) if "learning_rate" not in n
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optimizer = {'class': 'adam', 'epsilonn': 1e-8}", "opt.config:2: optimizer: unknown option 'epsilonn'.*"
         "did you mean 'epsilon'"),
        ("optimizer = {'class': 'adam', 'learning_rate': 0.1}", "set 'learning_rate' outside of the optimizer dict"),
        ("optimizer = {'class': 'adam', 'beta1': 'high'}", r"optimizer\['beta1'\] must be a number >= 0"),
        ("optimizer = {'class': 'lbfgs'}", "class 'lbfgs' is not available on tensorflow"),
        ("optimizer = 3", "optimizer must be a dict like"),
    ],
)  # fmt: skip
def test_bad_optimizer_options_name_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        config = load_config_text("learning_rate = 0.1\n" + text + "\n", "opt.config")
        optimizer_spec(config, get_trainer("tensorflow"))


def test_old_style_and_default_optimizers():
    assert optimizer_spec(load_config_text("nadam = True\n"), get_trainer("torch")).name == "nadam"
    assert optimizer_spec(load_config_text("x = 1\n"), get_trainer("torch")).name == "adam"  # no optimizer: Adam
    # RETURNN's TF engine sets epsilon from optimizer_epsilon (default 1e-16); torch keeps torch's default
    assert optimizer_spec(load_config_text("adam = True\n"), get_trainer("tensorflow")).options == {"epsilon": 1e-16}
    assert optimizer_spec(load_config_text("adam = True\n"), get_trainer("torch")).options == {}
    text = "optimizer = 'sgd'\nmomentum = 0.9\noptimizer_epsilon = 1e-3\n"
    spec = optimizer_spec(load_config_text(text), get_trainer("torch"))
    assert spec.options == {"momentum": 0.9}
