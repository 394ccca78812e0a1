"""TensorFlow trainer: ``tf.Variable`` parameters, ``tf.GradientTape``, ``keras.optimizers`` updates.

A step runs compiled (``tf.function`` with an input signature whose batch and time axes are ``None``: one trace
for all batch shapes) or eagerly. The update is applied inside the step only when the loss and the gradient
norm are finite (``tf.cond``), so a non-finite batch never changes the parameters or the optimizer state.
``weight_decay`` of classes other than ``adamw`` is an L2 term added to the gradient, as in ``torch.optim``
(Keras' own ``weight_decay`` is decoupled).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from frontend_backends.train_base import MAPPED_OPTIMIZERS, OptimizerSpec, StepOptions, StepResult, Trainer

_CLASSES = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
    "adamax": keras.optimizers.Adamax,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
}
_RENAME = {"beta1": "beta_1", "beta2": "beta_2"}


class TensorFlowTrainer(Trainer):
    """The :class:`Trainer` of the tensorflow backend."""

    name = "tensorflow"
    compiles_step = "tf.function"

    def __init__(self) -> None:
        self._compiled: dict[tuple[int, str], Any] = {}
        self.signature: dict[str, tuple[int | None, ...]] | None = None

    def resolve_device(self, requested: str | None) -> str:
        """As RETURNN: ``None`` is the first GPU TensorFlow sees (``cuda:0``), else ``cpu``; ``"gpu"``/``"cuda"``
        the first GPU, ``"cuda:N"`` GPU N (errors without one)."""
        gpus = tf.config.list_physical_devices("GPU")
        if requested is None:
            requested = "gpu" if gpus else "cpu"
        if requested == "cpu":
            return "cpu"
        kind, _, index = str(requested).partition(":") if isinstance(requested, str) else ("", "", "")
        if kind not in ("gpu", "cuda") or (kind == "gpu" and index) or (index and not index.isdigit()):
            raise ValueError(f"must be 'cpu', 'gpu', 'cuda' or 'cuda:N', got {requested!r}")
        if int(index or 0) >= len(gpus):
            raise ValueError(f"{requested!r}: TensorFlow sees {len(gpus)} GPUs here; use 'cpu' or leave device unset")
        return f"cuda:{int(index or 0)}"

    def _tf_device(self) -> str:
        return "/CPU:0" if self.device == "cpu" else f"/GPU:{self.device.partition(':')[2]}"

    @contextmanager
    def device_scope(self) -> Iterator[None]:
        with tf.device(self._tf_device()):
            yield

    def set_input_signature(self, signature: dict[str, tuple[int | None, ...]]) -> None:
        """The compiled step's ``input_signature``: ``None`` axes (batch, time) make one trace for all batches."""
        self.signature = dict(signature)

    def optimizer_defaults(self, name: str) -> dict[str, float]:
        """``epsilon`` 1e-16, as RETURNN's TF engine sets it (Keras' own default is 1e-7)."""
        return {"epsilon": 1e-16} if "epsilon" in MAPPED_OPTIMIZERS.get(name, ()) else {}

    def variables(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: tf.Variable(np.asarray(v, dtype=np.float32), name=k.replace("/", "_")) for k, v in arrays.items()}

    def value_and_grad(self, fn: Callable[[dict[str, Any]], Any], variables: dict[str, Any]) -> tuple[Any, dict]:
        keys = list(variables)
        with tf.GradientTape() as tape:
            tape.watch(list(variables.values()))
            value = fn(variables)
        grads = tape.gradient(value, [variables[k] for k in keys])
        out = {k: g if g is not None else tf.zeros_like(variables[k]) for k, g in zip(keys, grads)}
        return value, out

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, tf.IndexedSlices):  # the gradient of a gather
            x = tf.convert_to_tensor(x)
        return np.asarray(x.numpy()) if hasattr(x, "numpy") else np.asarray(x)

    def assign(self, variable: Any, value: np.ndarray) -> None:
        variable.assign(np.asarray(value, dtype=variable.dtype.as_numpy_dtype))

    def seed(self, seed: int) -> None:
        tf.random.set_seed(seed)
        tf.random.get_global_generator().reset_from_seed(seed)

    def create_optimizer(self, params: list[Any], spec: OptimizerSpec, learning_rate: float) -> Any:
        if spec.name not in _CLASSES:
            raise ValueError(f"optimizer: class {spec.name!r} has no keras.optimizers equivalent here; "
                             f"choose one of {sorted(_CLASSES)}")  # fmt: skip
        options = dict(spec.options)
        weight_decay = options.pop("weight_decay", 0.0)
        if options.pop("dampening", 0.0):
            raise ValueError("optimizer: 'dampening' is not available in keras.optimizers.SGD")
        kwargs = {_RENAME.get(k, k): v for k, v in options.items()}
        if spec.name == "adamw":
            kwargs["weight_decay"] = weight_decay if "weight_decay" in spec.options else 0.01  # torch's default
            weight_decay = 0.0
        try:
            optimizer = _CLASSES[spec.name](learning_rate=learning_rate, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"optimizer: keras.optimizers.{_CLASSES[spec.name].__name__}: {exc}") from None
        optimizer.build(params)
        optimizer.returnn_ls_l2 = float(weight_decay)
        return optimizer

    def set_learning_rate(self, optimizer: Any, learning_rate: float) -> None:
        optimizer.learning_rate.assign(learning_rate)

    def _spec(self, inputs: dict[str, np.ndarray]) -> dict[str, tf.TensorSpec]:
        signature = self.signature or {}
        return {
            k: tf.TensorSpec(signature.get(k, (None,) * v.ndim), tf.as_dtype(v.dtype), name=k.replace(":", "_"))
            for k, v in inputs.items()
        }

    def _function(self, key: tuple[int, str], body: Callable, inputs: dict[str, np.ndarray], compiled: bool):
        if not compiled:
            return body
        if key not in self._compiled:
            self._compiled[key] = tf.function(body, input_signature=[self._spec(inputs)], autograph=False)
        return self._compiled[key]

    def train_step(self, fn: Callable, inputs: dict[str, np.ndarray], params: list[Any], optimizer: Any,
                   options: StepOptions, compiled: bool) -> StepResult:  # fmt: skip
        def body(raw_inputs: dict[str, Any]) -> tuple[dict, Any, Any]:
            with tf.GradientTape() as tape:
                total, outputs = fn(raw_inputs)
            grads = tape.gradient(total, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            if optimizer.returnn_ls_l2:
                grads = [g + optimizer.returnn_ls_l2 * p for g, p in zip(grads, params)]
            norm = tf.linalg.global_norm(grads)
            finite = tf.math.is_finite(tf.cast(total, tf.float32)) & tf.math.is_finite(norm)
            if options.clip_value:
                grads = [tf.clip_by_value(g, -options.clip_value, options.clip_value) for g in grads]
            if options.clip_global_norm:
                grads, _ = tf.clip_by_global_norm(grads, options.clip_global_norm)

            def apply() -> tf.Tensor:
                optimizer.apply_gradients(zip(grads, params))
                return tf.constant(True)

            tf.cond(finite, apply, lambda: tf.constant(False))
            return outputs, finite, norm

        step = self._function((id(fn), "train"), body, inputs, compiled)
        with tf.device(self._tf_device()):
            outputs, finite, norm = step({k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        return StepResult({k: self.to_numpy(v) for k, v in outputs.items()}, bool(finite), float(norm))

    def eval_step(self, fn: Callable, inputs: dict[str, np.ndarray], compiled: bool) -> StepResult:
        def body(raw_inputs: dict[str, Any]) -> tuple[dict, Any]:
            total, outputs = fn(raw_inputs)
            return outputs, tf.reduce_all(tf.math.is_finite(tf.cast(total, tf.float32)))

        step = self._function((id(fn), "eval"), body, inputs, compiled)
        with tf.device(self._tf_device()):
            outputs, finite = step({k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        return StepResult({k: self.to_numpy(v) for k, v in outputs.items()}, bool(finite))

    def optimizer_state(self, optimizer: Any, params: list[Any]) -> tuple[dict, dict[str, np.ndarray]]:
        names = [v.path for v in optimizer.variables]
        arrays = {f"{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
        return {"class": type(optimizer).__name__, "variables": names}, arrays

    def load_optimizer_state(self, optimizer: Any, params: list[Any], meta: dict, arrays: dict[str, Any]) -> None:
        names = [v.path for v in optimizer.variables]
        if meta.get("class") != type(optimizer).__name__ or len(meta.get("variables", ())) != len(names):
            raise ValueError(f"the checkpoint has a {meta.get('class')} optimizer with {len(meta.get('variables', ()))}"
                             f" variables, the config a {type(optimizer).__name__} with {len(names)}")  # fmt: skip
        for i, variable in enumerate(optimizer.variables):
            variable.assign(np.asarray(arrays[f"{i}"]))
