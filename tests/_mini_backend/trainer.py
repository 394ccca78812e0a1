"""The mini backend's trainer: gradients by central finite differences, optimizers written in numpy.

**Only for tiny models**: one training step evaluates the step function ``2 * n + 1`` times for ``n`` parameter
entries. For accuracy everything runs in float64: the backend keeps its parameters in float64
(:meth:`_mini_backend.backend.MiniBackend.create_parameter`), and float inputs are fed as float64 here. With the
step ``h = FD_STEP * max(1, |w|)`` the central difference ``(L(w + h) - L(w - h)) / 2h`` then has a truncation
error of about ``h**2 * L''' / 6`` (~1e-12) and a rounding error of about ``eps64 * |L| / h`` (~1e-10): the
gradients are exact to ~1e-9 relative, far below float32 rounding. Dropout masks are the same in every evaluation
of one step (the backend's generators are replayed), so a step is differentiated as one function.

The optimizers follow ``torch.optim``'s formulas (``sgd`` with momentum, dampening, Nesterov and weight decay;
``adam``, ``adamw`` with ``amsgrad``); other classes are a ValueError that names the class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from _mini_backend.backend import generator_states, restore_generator_states
from frontend_backends.train_base import OptimizerSpec, StepOptions, StepResult, Trainer

__all__ = ["FD_STEP", "MiniOptimizer", "MiniTrainer"]

#: The relative step of the central differences (see the module docstring).
FD_STEP = 1e-6
#: The optimizer classes and their options with torch's defaults.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.01, "amsgrad": False},
}


@dataclass
class MiniOptimizer:
    """An optimizer of the mini trainer: its class, options, the parameters and one state dict per parameter."""

    name: str
    options: dict[str, Any]
    params: list[np.ndarray]
    learning_rate: float
    slots: list[dict[str, np.ndarray]] = field(default_factory=list)
    steps: int = 0


def _sgd(p: np.ndarray, g: np.ndarray, slot: dict, opts: dict, lr: float) -> None:
    """One ``torch.optim.SGD`` update of ``p`` (in place)."""
    if opts["weight_decay"]:
        g = g + opts["weight_decay"] * p
    if opts["momentum"]:
        old = slot.get("momentum_buffer")
        buf = g.copy() if old is None else opts["momentum"] * old + (1.0 - opts["dampening"]) * g
        slot["momentum_buffer"] = buf
        g = g + opts["momentum"] * buf if opts["nesterov"] else buf
    p -= lr * g


def _adam(p: np.ndarray, g: np.ndarray, slot: dict, opts: dict, lr: float, step: int, decoupled: bool) -> None:
    """One ``torch.optim.Adam`` (``decoupled``: ``AdamW``) update of ``p`` (in place)."""
    if decoupled:
        p *= 1.0 - lr * opts["weight_decay"]
    elif opts["weight_decay"]:
        g = g + opts["weight_decay"] * p
    beta1, beta2 = opts["beta1"], opts["beta2"]
    slot["exp_avg"] = beta1 * slot.get("exp_avg", np.zeros_like(p)) + (1.0 - beta1) * g
    slot["exp_avg_sq"] = beta2 * slot.get("exp_avg_sq", np.zeros_like(p)) + (1.0 - beta2) * g * g
    second = slot["exp_avg_sq"]
    if opts["amsgrad"]:
        second = slot["max_exp_avg_sq"] = np.maximum(slot.get("max_exp_avg_sq", second), second)
    denom = np.sqrt(second) / math.sqrt(1.0 - beta2**step) + opts["epsilon"]
    p -= lr / (1.0 - beta1**step) * slot["exp_avg"] / denom


def _entry_gradient(loss_at: Callable[[], float], param: np.ndarray) -> np.ndarray:
    """:return: the central-difference gradient of ``loss_at()`` w.r.t. each entry of ``param`` (perturbed in place
    and restored exactly)"""
    grad = np.zeros(param.shape, np.float64)
    for i in range(param.size):
        old = param.flat[i]
        step = FD_STEP * max(1.0, abs(float(old)))
        param.flat[i] = old + step
        up = loss_at()
        param.flat[i] = old - step
        down = loss_at()
        param.flat[i] = old
        grad.flat[i] = (up - down) / (2.0 * step)
    return grad


def _clip(grads: list[np.ndarray], options: StepOptions) -> list[np.ndarray]:
    """:return: ``grads`` clipped as ``torch.nn.utils.clip_grad_value_`` then ``clip_grad_norm_`` would"""
    if options.clip_value:
        grads = [np.clip(g, -options.clip_value, options.clip_value) for g in grads]
    if options.clip_global_norm:
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        scale = min(1.0, options.clip_global_norm / (norm + 1e-6))
        grads = [g * scale for g in grads]
    return grads


class MiniTrainer(Trainer):
    """The :class:`Trainer` of the mini backend (see the module docstring)."""

    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """:return: float64 copies of ``arrays`` (float64 rather than float32: see the module docstring)"""
        return {k: np.array(v, np.float64) for k, v in arrays.items()}

    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        work = {k: np.array(v, np.float64) for k, v in variables.items()}
        value = np.array(fn(work))
        grads = {k: _entry_gradient(lambda: float(fn(work)), work[k]).astype(np.asarray(v).dtype)
                 for k, v in variables.items()}  # fmt: skip
        return value, grads

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x)

    def assign(self, variable: Any, value: np.ndarray) -> None:
        variable[...] = np.asarray(value)

    def seed(self, seed: int) -> None:
        np.random.seed(seed % 2**32)

    def create_optimizer(self, params: list[Any], spec: OptimizerSpec, learning_rate: float) -> Any:
        if spec.name not in _DEFAULTS:
            raise ValueError(f"optimizer: class {spec.name!r} is not available on numpy_mini; choose one of "
                             f"{sorted(_DEFAULTS)}")  # fmt: skip
        unknown = sorted(set(spec.options) - set(_DEFAULTS[spec.name]) | set(spec.passthrough))
        if unknown:
            raise ValueError(f"optimizer: numpy_mini's {spec.name} does not take the options {unknown}")
        options = {**_DEFAULTS[spec.name], **spec.options}
        return MiniOptimizer(spec.name, options, list(params), learning_rate, [{} for _ in params])

    def set_learning_rate(self, optimizer: Any, learning_rate: float) -> None:
        optimizer.learning_rate = learning_rate

    def _inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:return: copies of ``inputs``, float arrays as float64 (see the module docstring)"""
        return {k: np.array(v, np.float64 if np.asarray(v).dtype.kind == "f" else None) for k, v in inputs.items()}

    def _gradients(self, fn: Callable, raw: dict[str, np.ndarray], params: list[np.ndarray], states: list
                   ) -> list[np.ndarray]:  # fmt: skip
        """:return: the gradient of ``fn(raw)[0]`` w.r.t. each of ``params``, each evaluation starting from the random
        ``states`` (the generators' states before the step's first evaluation)"""

        def loss_at() -> float:
            restore_generator_states(states)
            return float(fn(raw)[0])

        return [_entry_gradient(loss_at, p) for p in params]

    def train_step(self, fn: Callable, inputs: dict[str, np.ndarray], params: list[Any], optimizer: Any,
                   options: StepOptions, compiled: bool) -> StepResult:  # fmt: skip
        raw = self._inputs(inputs)
        before = generator_states()
        total, outputs = fn(raw)
        result = StepResult({k: np.array(v) for k, v in outputs.items()}, bool(np.isfinite(total)))
        if not result.finite:  # no update, so no gradient needed
            return result
        after = generator_states()  # the random state advances by one evaluation per step
        grads = self._gradients(fn, raw, params, before)
        restore_generator_states(after)
        result.grad_norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        result.finite = math.isfinite(result.grad_norm)
        if result.finite:
            self._update(optimizer, _clip(grads, options))
        return result

    def _update(self, optimizer: MiniOptimizer, grads: list[np.ndarray]) -> None:
        """Apply one step of ``optimizer`` to its parameters (in place)."""
        optimizer.steps += 1
        for p, g, slot in zip(optimizer.params, grads, optimizer.slots):
            if optimizer.name == "sgd":
                _sgd(p, g, slot, optimizer.options, optimizer.learning_rate)
            else:
                decoupled = optimizer.name == "adamw"
                _adam(p, g, slot, optimizer.options, optimizer.learning_rate, optimizer.steps, decoupled)

    def eval_step(self, fn: Callable, inputs: dict[str, np.ndarray], compiled: bool) -> StepResult:
        total, outputs = fn(self._inputs(inputs))
        return StepResult({k: np.array(v) for k, v in outputs.items()}, bool(np.all(np.isfinite(total))))

    def optimizer_state(self, optimizer: Any, params: list[Any]) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"{i}/{key}": np.array(v) for i, slot in enumerate(optimizer.slots) for key, v in slot.items()}
        meta = {"class": optimizer.name, "steps": optimizer.steps, "options": dict(optimizer.options),
                "slots": [sorted(slot) for slot in optimizer.slots]}  # fmt: skip
        return meta, arrays

    def load_optimizer_state(self, optimizer: Any, params: list[Any], meta: dict, arrays: dict[str, Any]) -> None:
        if meta.get("class") != optimizer.name:
            raise ValueError(f"the checkpoint has a {meta.get('class')} optimizer, the config a {optimizer.name}")
        if len(meta["slots"]) != len(optimizer.params):
            raise ValueError(f"the checkpoint's optimizer has {len(meta['slots'])} parameters, the model "
                             f"{len(optimizer.params)}")  # fmt: skip
        optimizer.steps = int(meta["steps"])
        optimizer.slots = [{k: np.array(arrays[f"{i}/{k}"]) for k in keys} for i, keys in enumerate(meta["slots"])]
