"""Parameter initialisation, drawn in numpy from one seeded generator.

Initial values are numpy arrays, so the same seed and the same order of parameter creation give the same
parameters on every backend (and the same first loss). :func:`set_random_seed` resets the generator; the training
loop calls it with the config's ``seed`` before ``get_model``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from returnn_ls.dim import Dim

__all__ = ["Glorot", "ParamInit", "VarianceScaling", "Zeros", "get_rng", "set_random_seed"]

_rng = np.random.default_rng(0)


def set_random_seed(seed: int) -> None:
    """Reset the generator that parameter initial values are drawn from."""
    global _rng
    _rng = np.random.default_rng(seed)


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

    The fans follow the convention of RETURNN's frontend: the last dim is the output (fan out), the others are
    the input (fan in), e.g. ``[in, out]`` for a weight matrix and ``[filter, in, out]`` for a convolution.

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
        fan_out = shape[-1] if shape else 1
        fan_in = math.prod(shape[:-1]) if len(shape) > 1 else fan_out
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


class Glorot(VarianceScaling):
    """Glorot/Xavier uniform: variance ``1 / fan_avg`` (the default of weights)."""

    def __init__(self):
        super().__init__(1.0, "fan_avg", "uniform")
