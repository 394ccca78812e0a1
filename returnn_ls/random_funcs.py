"""Random tensors, as in ``returnn.frontend``: ``random``, ``random_uniform``, ``random_normal``,
``random_choice_with_replacement``, ``random_choice_without_replacement``; and a journal that replays the draws of
one run in another (for tests that compare backends).

The numbers come from the framework generator that dropout uses (:func:`returnn_ls.nn.init.get_generator`), which
:func:`returnn_ls.set_random_seed` resets: the same seed gives the same numbers again (per framework; torch and
TensorFlow draw different numbers). ``seed=`` (with ``static=True``) draws from a generator of its own made from that
seed instead, so the same call gives the same numbers every time.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

from frontend_backends.array_kernels import DISTRIBUTIONS
from returnn_ls import _backend
from returnn_ls.array_funcs import _check_dims, dim_length
from returnn_ls.dim import Dim
from returnn_ls.nn import init
from returnn_ls.ops import cast, common_backend
from returnn_ls.tensor import Tensor

__all__ = ["RandomJournal", "random", "random_choice_with_replacement", "random_choice_without_replacement",
           "random_journal_record", "random_journal_replay", "random_normal", "random_uniform"]  # fmt: skip

_DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64")
_DEFAULTS = {"uniform": ("minval", 0, "maxval", 1), "normal": ("mean", 0.0, "stddev", 1.0)}


def random(
    dims: Sequence[Dim], *, dtype: str | None = None, device: str | None = None, sparse_dim: Dim | None = None,
    feature_dim: Dim | None = None, distribution: str, mean: Any = None, stddev: Any = None, bound: Any = None,
    minval: Any = None, maxval: Any = None, seed: int | None = None, algorithm: str | None = None,
    explicit_state: Tensor | None = None, auto_update_state: bool | None = None, static: bool | None = None,
    out: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """:return: random numbers over ``dims``: ``distribution="uniform"`` in ``[minval, maxval)`` (``bound``: in
    ``[-bound, bound)``; integers for an integer ``dtype``), ``"normal"`` with ``mean`` and ``stddev``. The
    parameters are numbers or Tensors over some of ``dims``; no gradient flows to them.

    :param dtype: default ``"int32"`` with a ``sparse_dim`` (then ``maxval`` defaults to its size), else
        ``"float32"``
    :param device: default: the device of a Tensor parameter, else the framework's default device
    :param seed: with ``static=True``: draw from a generator made from this seed (the same numbers every call)
    ``algorithm``, ``explicit_state``, ``auto_update_state`` and ``out`` (RETURNN's TensorFlow state handling) must
    be None; ``distribution="truncated_normal"`` is not supported.
    """
    func = f"random_{distribution}" if distribution in DISTRIBUTIONS else "random"
    dims = _check_dims(dims, func)
    unsupported = {"algorithm": algorithm, "explicit_state": explicit_state, "auto_update_state": auto_update_state,
                   "out": out}  # fmt: skip
    dtype = _check_options(distribution, dtype, sparse_dim, bound, unsupported, func)
    if distribution == "uniform" and bound is not None:
        minval, maxval = -bound, bound
    if distribution == "uniform" and maxval is None and sparse_dim is not None:
        maxval = sparse_dim.dimension
    a, b = _parameters(distribution, mean, stddev, minval, maxval, dtype, func)
    generator = _generator(seed, static, func)
    tensors = [v for v in (a, b) if isinstance(v, Tensor)]
    backend = common_backend(*tensors) if tensors else _backend.selected_backend()
    like = tensors[0].raw_tensor if tensors else None
    if device is not None:  # made there directly (a scalar to take the device from)
        like = backend.full_on_device([], 0, "float32", device)
    shape = [dim_length(d) for d in dims]
    if _journal is not None and _journal.replaying:
        return Tensor(_journal.replay(backend, shape, dtype, like), dims, sparse_dim=sparse_dim,
                      feature_dim=feature_dim, backend=backend)  # fmt: skip
    if tensors:  # the standard distribution, then scaled and shifted by dims
        standard = backend.random(shape, distribution, dtype, 0.0, 1.0, generator(backend), like=like)
        raw = _scaled(Tensor(standard, dims, backend=backend), distribution, a, b, func)
    else:
        raw = backend.random(shape, distribution, dtype, a, b, generator(backend), like=like)
    if _journal is not None:
        _journal.record(backend, raw)
    return Tensor(raw, dims, sparse_dim=sparse_dim, feature_dim=feature_dim, backend=backend)


class RandomJournal:
    """The random numbers of a run, recorded (as numpy) to be replayed in another run, e.g. on another backend: then
    both runs see the same numbers (as RETURNN's ``random_journal_record`` / ``random_journal_replay`` of its
    tests). Only for testing: recording reads every draw back to the host."""

    def __init__(self, entries: list | None = None):
        self.entries: list = [] if entries is None else entries
        self.replaying = entries is not None
        self.position = 0

    def record(self, backend: Any, raw: Any) -> None:
        self.entries.append(backend.to_numpy(raw))

    def replay(self, backend: Any, shape: Sequence[Any], dtype: str, like: Any) -> Any:
        """:return: the next recorded draw, as a raw tensor of ``backend``; a ValueError if it does not fit"""
        if self.position >= len(self.entries):
            raise ValueError(f"random journal: draw {self.position + 1} was not recorded ({len(self.entries)} were)")
        value = self.entries[self.position]
        self.position += 1
        want = tuple(int(n) for n in shape)
        if value.shape != want:
            raise ValueError(f"random journal: draw {self.position} has shape {value.shape}, the replay wants {want}")
        return backend.convert(value, dtype, like=like)

    def reached_end(self) -> bool:
        """:return: whether a replay used every recorded draw"""
        return self.position == len(self.entries)


_journal: RandomJournal | None = None


@contextlib.contextmanager
def random_journal_record() -> Iterator[RandomJournal]:
    """Within the context, record every draw of :func:`random` into the journal it yields."""
    global _journal
    previous, _journal = _journal, RandomJournal()
    try:
        yield _journal
    finally:
        _journal = previous


@contextlib.contextmanager
def random_journal_replay(journal: RandomJournal) -> Iterator[RandomJournal]:
    """Within the context, :func:`random` returns the draws recorded in ``journal``, in order, instead of drawing."""
    global _journal
    previous, _journal = _journal, RandomJournal(journal.entries)
    try:
        yield _journal
    finally:
        _journal = previous


def random_choice_with_replacement(dims: Sequence[Dim], *, probs: Tensor, axis: Dim) -> Tensor:
    """Draw indices into ``axis`` with the (unnormalised) probabilities ``probs``, independently for every entry
    of ``dims`` (by inverting the cumulative distribution at a uniform draw of :func:`random_uniform`).

    :param dims: the dims of the result: the other dims of ``probs`` and new ones (how many draws)
    :param probs: ``[common dims..., axis]``, >= 0
    :param axis: the dim to draw from
    :return: int64 ``[dims...]`` with ``sparse_dim=axis``
    Example: ``labels = rf.random_choice_with_replacement([batch_dim], probs=rf.softmax(logits, axis=vocab_dim),
    axis=vocab_dim)``
    """
    from returnn_ls.index_funcs import search_sorted_along
    from returnn_ls.math_funcs import clip_by_value, cumsum
    from returnn_ls.ops import axes_of
    from returnn_ls.reduce import reduce_sum

    func = "random_choice_with_replacement"
    dims = _check_dims(dims, func)
    axes_of(probs, axis, func)
    missing = [d for d in probs.dims if d is not axis and d not in dims]
    if missing:
        raise ValueError(f"{func}: dims {list(dims)} must have the other dims {missing} of probs")
    cdf = cumsum(probs, spatial_dim=axis)
    total = reduce_sum(probs, axis=axis)
    draw = random_uniform(dims, dtype=probs.dtype, device=probs.backend.device_name(probs.raw_tensor))
    index = search_sorted_along(cdf, draw * total, axis, "right", "int64")
    out = clip_by_value(index, 0, dim_length(axis, probs) - 1).copy_transpose(dims)
    out.sparse_dim = axis
    return out


def _scaled(x: Tensor, distribution: str, a: Any, b: Any, func: str) -> Any:
    """:return: the raw ``x * b + a`` (normal) or ``x * (b - a) + a`` (uniform), over ``x``'s dims"""
    out = x * b + a if distribution == "normal" else x * (b - a) + a
    extra = [d for d in out.dims if d not in x.dims]
    if extra:
        raise ValueError(f"{func}: the parameters have dims {extra} that are not in dims {list(x.dims)}")
    return out.copy_transpose(x.dims).raw_tensor


def _check_options(distribution: str, dtype: str | None, sparse_dim: Dim | None, bound: Any, unsupported: dict,
                   func: str) -> str:  # fmt: skip
    """:return: the dtype (RETURNN's default if None), after checking the options of :func:`random`"""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"{func}: distribution must be one of {list(DISTRIBUTIONS)}, got {distribution!r}")
    for name, v in unsupported.items():
        if v is not None:
            raise ValueError(f"{func}: {name} is not supported (RETURNN's TensorFlow random state); leave it None")
    dtype = dtype or ("int32" if sparse_dim is not None else "float32")
    if dtype not in _DTYPES:
        raise ValueError(f"{func}: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    if bound is not None and distribution != "uniform":
        raise ValueError(f"{func}: bound is a parameter of the uniform distribution only")
    return dtype


def _parameters(distribution: str, mean: Any, stddev: Any, minval: Any, maxval: Any, dtype: str,
                func: str) -> tuple[Any, Any]:  # fmt: skip
    """:return: the two parameters (numbers, or float Tensors without gradient) with their defaults"""
    first, second = (minval, maxval) if distribution == "uniform" else (mean, stddev)
    unused = (mean, stddev) if distribution == "uniform" else (minval, maxval)
    if any(v is not None for v in unused):
        names = "mean and stddev" if distribution == "uniform" else "minval, maxval and bound"
        raise ValueError(f"{func}: {names} are not parameters of the {distribution} distribution")
    name_a, default_a, name_b, default_b = _DEFAULTS[distribution]
    out = []
    for name, v, default in ((name_a, first, default_a), (name_b, second, default_b)):
        v = default if v is None else v
        if isinstance(v, Tensor):
            if dtype.startswith("int") or dtype == "bool":
                raise TypeError(f"{func}: {name} as a Tensor needs a float dtype, got {dtype!r}")
            v = v.copy_template(v.backend.stop_gradient(cast(v, dtype).raw_tensor))
        elif not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"{func}: {name} must be a number or a Tensor, got {type(v).__name__}")
        out.append(v)
    if distribution == "uniform" and dtype.startswith("int") and not out[0] < out[1]:
        raise ValueError(f"{func}: minval {out[0]} must be < maxval {out[1]} for integers")
    return out[0], out[1]


def _generator(seed: Any, static: bool | None, func: str) -> Any:
    """:return: a function backend -> the generator to draw from"""
    if seed is None:
        if static:
            raise ValueError(f"{func}: static=True needs a seed")
        return init.get_generator
    if static is False or not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{func}: seed must be an int >= 0 and goes with static=True (or None), got seed={seed!r}, "
                         f"static={static!r}")  # fmt: skip
    return lambda backend: backend.random_generator(int(seed))


def random_uniform(
    dims: Sequence[Dim], *, dtype: str | None = None, device: str | None = None, sparse_dim: Dim | None = None,
    feature_dim: Dim | None = None, minval: Any = 0, maxval: Any = 1, seed: int | None = None,
    algorithm: str | None = None, explicit_state: Tensor | None = None, auto_update_state: bool | None = None,
    static: bool | None = None, out: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """:return: uniform random numbers in ``[minval, maxval)`` over ``dims`` (see :func:`random`). Example:
    ``noise = rf.random_uniform([batch_dim, feat_dim], minval=-0.1, maxval=0.1)``"""
    return random(dims, dtype=dtype, device=device, sparse_dim=sparse_dim, feature_dim=feature_dim,
                  distribution="uniform", minval=minval, maxval=maxval, seed=seed, algorithm=algorithm,
                  explicit_state=explicit_state, auto_update_state=auto_update_state, static=static, out=out)


def random_normal(
    dims: Sequence[Dim], *, dtype: str | None = None, device: str | None = None, sparse_dim: Dim | None = None,
    feature_dim: Dim | None = None, mean: Any = 0.0, stddev: Any = 1.0, seed: int | None = None,
    algorithm: str | None = None, explicit_state: Tensor | None = None, auto_update_state: bool | None = None,
    static: bool | None = None, out: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """:return: normal random numbers with ``mean`` and ``stddev`` over ``dims`` (see :func:`random`). Example:
    ``noise = rf.random_normal([batch_dim, feat_dim], stddev=0.01)``"""
    return random(dims, dtype=dtype, device=device, sparse_dim=sparse_dim, feature_dim=feature_dim,
                  distribution="normal", mean=mean, stddev=stddev, seed=seed, algorithm=algorithm,
                  explicit_state=explicit_state, auto_update_state=auto_update_state, static=static, out=out)


def random_choice_without_replacement(
    *, log_probs: Tensor, axis: Dim | Sequence[Dim], num_samples_dim: Dim, noise_scale: float | Tensor = 1.0
) -> Tensor | Sequence[Tensor]:
    """Draw ``num_samples_dim`` distinct indices into ``axis`` with the probabilities ``exp(log_probs)`` (the
    Gumbel-top-k trick: the top ``k`` of ``log_probs`` plus Gumbel noise, drawn by :func:`random_uniform`).

    :param log_probs: ``[other dims..., axis]`` (unnormalised log-probabilities are fine)
    :param axis: the dim to draw from, or several (then one index Tensor per dim, as :func:`returnn_ls.top_k`)
    :param num_samples_dim: how many to draw (a static dim of size <= the size of ``axis``)
    :param noise_scale: scales the noise; 0 gives :func:`returnn_ls.top_k`
    :return: int64 ``[other dims..., num_samples_dim]`` with ``sparse_dim=axis``
    Example: ``hyps = rf.random_choice_without_replacement(log_probs=lp, axis=vocab_dim, num_samples_dim=beam_dim)``
    """
    from returnn_ls.index_funcs import top_k
    from returnn_ls.ops import log

    func = "random_choice_without_replacement"
    if not isinstance(log_probs, Tensor):
        raise TypeError(f"{func}: log_probs must be a Tensor, got {type(log_probs).__name__}")
    if not isinstance(num_samples_dim, Dim):
        raise TypeError(f"{func}: num_samples_dim must be a Dim, got {type(num_samples_dim).__name__}")
    device = log_probs.backend.device_name(log_probs.raw_tensor)
    draw = random_uniform(log_probs.dims, dtype=log_probs.dtype, device=device)
    noise = -log(-log(draw))  # Gumbel(0, 1)
    if not isinstance(noise_scale, (int, float)) or noise_scale != 1.0:
        noise = noise * noise_scale
    _, indices, _ = top_k(log_probs + noise, axis=axis, k_dim=num_samples_dim)
    return indices
