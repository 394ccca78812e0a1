"""Parameter initialisation, drawn in numpy from one seeded generator, and the random state of dropout.

Initial values are numpy arrays, so the same seed and the same order of parameter creation give the same
parameters on every backend (and the same first loss). :func:`set_random_seed` resets the generator, and the
framework generator that :func:`returnn_ls.dropout` draws its masks from; the training loop calls it with the
config's ``seed`` before ``get_model``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from frontend_backends import Backend
from returnn_ls.dim import Dim

__all__ = ["Glorot", "ParamInit", "VarianceScaling", "Zeros", "get_generator", "get_rng", "set_random_seed"]

_seed = 0
_rng = np.random.default_rng(_seed)
#: backend -> the framework generator of dropout masks (``torch.Generator``, ``tf.random.Generator``); keyed by the
#: backend object, so that a backend unregistered since stays seedable and a new one of that name gets its own
_generators: dict[Backend, Any] = {}


def set_random_seed(seed: int) -> None:
    """Reset the generator that parameter initial values are drawn from, and the generators of dropout masks.

    The dropout generators are reset in place (a ``tf.function`` that uses one keeps working).

    :param seed: a non-negative int

    Example::

        rf.set_random_seed(42)
        model = Model()  # the same parameters on every backend for the same seed
    """
    global _rng, _seed
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"set_random_seed: seed must be a non-negative int, got {seed!r}")
    _seed = int(seed)
    _rng = np.random.default_rng(_seed)
    for backend, generator in _generators.items():
        backend.seed_generator(generator, _seed)


def get_generator(backend: Backend) -> Any:
    """:return: the framework generator that dropout masks on ``backend`` are drawn from (seeded by
    :func:`set_random_seed`, created on first use)"""
    if backend not in _generators:
        _generators[backend] = backend.random_generator(_seed)
    return _generators[backend]


def get_rng() -> np.random.Generator:
    """:return: the generator parameter initial values are drawn from"""
    return _rng


class ParamInit:
    """An initialiser: called with the parameter's dims, it returns a numpy array of their sizes."""

    def __call__(self, dims: Sequence[Dim], dtype: str) -> np.ndarray:
        raise NotImplementedError


class Zeros(ParamInit):
    """All zeros (biases)."""

    def __call__(self, dims: Sequence[Dim], dtype: str) -> np.ndarray:
        return np.zeros([d.dimension for d in dims], dtype=dtype)


class VarianceScaling(ParamInit):
    """Variance scaling (as TensorFlow's and RETURNN's): variance ``scale / fan``.

    The fans follow RETURNN's frontend: ``[in, out]`` for a weight matrix; ``[out, in, *filter]`` for a
    convolution filter (fan in ``in * prod(filter)``, fan out ``out * prod(filter)``); one dim is both fans.

    :param scale: the variance factor
    :param mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``
    :param distribution: ``"uniform"``, ``"normal"`` or ``"truncated_normal"``
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_avg", distribution: str = "uniform"):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
        if distribution not in ("uniform", "normal", "truncated_normal"):
            raise ValueError(f"VarianceScaling: unknown distribution {distribution!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, dims: Sequence[Dim], dtype: str) -> np.ndarray:
        shape = [d.dimension for d in dims]
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = get_rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, size=shape)
        elif self.distribution == "normal":
            values = rng.normal(0.0, math.sqrt(variance), size=shape)
        else:  # truncated at two standard deviations; 0.8796 is the std of the truncated unit normal
            std = math.sqrt(variance) / 0.87962566103423978
            values = rng.normal(0.0, std, size=shape)
            outside = np.abs(values) > 2 * std
            while outside.any():  # redraw the values outside the interval
                values[outside] = rng.normal(0.0, std, size=int(outside.sum()))
                outside = np.abs(values) > 2 * std
        return values.astype(dtype)


def _fans(shape: list[int]) -> tuple[int, int]:
    """:return: (fan in, fan out) of a parameter of ``shape`` (see :class:`VarianceScaling`)"""
    if not shape:
        return 1, 1
    if len(shape) <= 2:
        return shape[0], shape[-1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


class Glorot(VarianceScaling):
    """Glorot/Xavier uniform: variance ``1 / fan_avg`` (the default of weights)."""

    def __init__(self):
        super().__init__(1.0, "fan_avg", "uniform")
