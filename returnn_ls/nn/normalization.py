"""``LayerNorm``, ``RMSNorm``, ``BatchNorm`` and ``Normalize`` (as ``returnn.frontend``, same parameters), and the
functions ``moments`` and ``normalize``."""

from __future__ import annotations

from collections.abc import Sequence

from returnn_ls import _validate
from returnn_ls.dim import Dim
from returnn_ls.gradient import stop_gradient
from returnn_ls.nn._utils import check_input, check_static_dim, raw_param, train_flag
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.ops import align, cast, common_backend, maximum, unary, where
from returnn_ls.reduce import num_entries, reduce_mean
from returnn_ls.tensor import Tensor

__all__ = ["BatchNorm", "LayerNorm", "Normalize", "RMSNorm", "moments", "normalize"]


def _norm_dims(in_dim: Dim | Sequence[Dim], eps: float, func: str) -> list[Dim]:
    """:return: ``in_dim`` as a list of static dims; :raise ValueError: for no dims or ``eps`` < 0"""
    dims = [in_dim] if isinstance(in_dim, Dim) else list(in_dim)
    if not dims:
        raise ValueError(f"{func}: in_dim must be a Dim or a non-empty sequence of Dims")
    for dim in dims:
        check_static_dim(dim, "in_dim", func)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"{func}: eps must be a float >= 0, got {eps!r}")
    return dims


class LayerNorm(Module):
    """Layer normalization (Ba et al. 2016) over ``in_dim`` (the feature dim, or several dims):
    ``(x - mean) / sqrt(var + eps) * scale + bias``, with the biased variance.

    Parameters (RETURNN's names): ``scale`` ``[in_dim]`` (ones), ``bias`` ``[in_dim]`` (zeros). One fused
    framework op (``torch.nn.functional.layer_norm``; ``tf.nn.moments`` + ``tf.nn.batch_normalization``).

    :param in_dim: the dim (or dims) to normalize over
    :param eps: added to the variance
    :param with_bias: whether there is a bias

    Example::

        norm = rf.LayerNorm(model_dim)
        y = norm(x)
    """

    def __init__(self, in_dim: Dim | Sequence[Dim], *, eps: float = 1e-6, with_bias: bool = True):
        dims = _norm_dims(in_dim, eps, "LayerNorm")
        self.in_dim = in_dim
        self.eps = float(eps)
        self.scale = Parameter(dims, initial=1.0)
        self.bias = Parameter(dims, initial=0.0) if with_bias else None

    def __call__(self, x: Tensor) -> Tensor:
        in_dims = self.scale.dims
        check_input(x, "LayerNorm", *(("in_dim", d) for d in in_dims))
        backend = common_backend(x, self.scale)
        others = tuple(d for d in x.dims if d not in in_dims)
        bias = raw_param(self.bias, x) if self.bias is not None else None
        raw = backend.layer_norm(align(x, others + in_dims), raw_param(self.scale, x), bias, len(in_dims), self.eps)
        return x.copy_template(raw, others + in_dims)

    def __repr__(self) -> str:
        return f"<LayerNorm {self.in_dim}>"


class RMSNorm(Module):
    """Root-mean-square normalization (Zhang and Sennrich 2019) over ``in_dim``: ``x / sqrt(mean(x**2) + eps) *
    scale (+ bias)``; unlike :class:`LayerNorm` no mean is subtracted, and there is no bias by default.

    Parameters (RETURNN's names): ``scale`` ``[in_dim]`` (ones), ``bias`` ``[in_dim]`` (zeros, with ``with_bias``).
    Half-precision input is normalized in float32 and returned in its dtype.

    :param in_dim: the dim (or dims) to normalize over
    :param eps: added to the mean square
    :param with_bias: whether there is a bias

    Example: ``norm = rf.RMSNorm(model_dim); y = norm(x)``
    """

    def __init__(self, in_dim: Dim | Sequence[Dim], *, eps: float = 1e-6, with_bias: bool = False):
        dims = _norm_dims(in_dim, eps, "RMSNorm")
        self.in_dim = in_dim
        self.eps = float(eps)
        self.scale = Parameter(dims, initial=1.0)
        self.bias = Parameter(dims, initial=0.0) if with_bias else None

    def __call__(self, x: Tensor) -> Tensor:
        in_dims = list(self.scale.dims)
        check_input(x, "RMSNorm", *(("in_dim", d) for d in in_dims))
        wide = cast(x, "float32") if x.dtype in ("float16", "bfloat16") else x
        mean_square = reduce_mean(unary("square", wide), axis=in_dims)
        out = wide * unary("rsqrt", mean_square + self.eps) * self.scale
        if self.bias is not None:
            out = out + self.bias
        return cast(out, x.dtype) if out.dtype != x.dtype else out

    def __repr__(self) -> str:
        return f"<RMSNorm {self.in_dim}>"


class BatchNorm(Module):
    """Batch normalization (Ioffe & Szegedy 2015) of ``in_dim``, with statistics over all the other dims.

    Parameters (RETURNN's names, in its order): ``running_mean`` ``[in_dim]`` (0) and ``running_variance``
    ``[in_dim]`` (1), auxiliary and not trainable (with ``track_running_stats``); ``gamma`` ``[in_dim]`` (1) and
    ``beta`` ``[in_dim]`` (0) (with ``affine``). As RETURNN decides: while training (the run context's train flag
    for ``BatchNorm.__call__``, i.e. ``rf.get_run_ctx().train_flag`` unless set for it alone) or without running
    statistics, ``x`` is normalized with the mean and (biased) variance of the current batch, and the running
    statistics move towards them by ``momentum``; otherwise with the running statistics:
    ``(x - mean) / sqrt(variance + eps) * gamma + beta``.

    Masking, as RETURNN: if ``x`` has dims with padding besides ``in_dim``, ``use_mask`` (None: True) leaves the
    padding frames out of the statistics, and the running variance moves towards the biased variance; without
    masking (``use_mask=False`` or no padding) the statistics run over all entries, padding included, and the running
    variance moves towards the unbiased variance (``n / (n - 1)``, as ``torch.nn.functional.batch_norm``, the
    kernel RETURNN uses then).

    :param in_dim: the feature dim
    :param affine: whether there are ``gamma`` and ``beta``
    :param momentum: the weight of the current batch in the update of the running statistics
    :param eps: added to the variance
    :param track_running_stats: whether there are running statistics (False: batch statistics also in evaluation)
    :param use_mask: whether padding frames are left out of the statistics (None: True)
    :param distributed: None or False (statistics across workers are not supported)

    Example::

        norm = rf.BatchNorm(hidden_dim)
        y = norm(x)  # x: [batch, time, hidden_dim]
    """

    def __init__(self, in_dim: Dim, *, affine: bool = True, momentum: float = 0.1, eps: float = 1e-3,
                 track_running_stats: bool = True, use_mask: bool | None = None,
                 distributed: bool | None = None):  # fmt: skip
        func = "BatchNorm"
        self.in_dim = check_static_dim(in_dim, "in_dim", func)
        if use_mask is not None and not isinstance(use_mask, bool):
            raise TypeError(f"{func}: use_mask must be None or a bool, got {type(use_mask).__name__}")
        if distributed:
            raise ValueError(f"{func}: distributed=True (statistics across workers) is not supported")
        self.use_mask = use_mask
        self.momentum = _validate.check_fraction(momentum, "momentum", func)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            raise ValueError(f"{func}: eps must be a float >= 0, got {eps!r}")
        self.eps = float(eps)
        self.running_mean = Parameter([in_dim], initial=0.0, auxiliary=True) if track_running_stats else None
        self.running_variance = Parameter([in_dim], initial=1.0, auxiliary=True) if track_running_stats else None
        self.affine = affine
        self.gamma = Parameter([in_dim], initial=1.0) if affine else None
        self.beta = Parameter([in_dim], initial=0.0) if affine else None

    def __call__(self, source: Tensor) -> Tensor:
        check_input(source, "BatchNorm", ("in_dim", self.in_dim))
        axes = [d for d in source.dims if d is not self.in_dim]
        use_mask = any(d.is_padded() for d in axes) and self.use_mask is not False
        train = train_flag(BatchNorm.__call__)
        if self.running_mean is None or train:
            mean, variance = _moments(source, axes, use_mask)
            if self.running_mean is not None:
                self._update(mean, variance, 1.0 if use_mask else _correction(source, axes))
        else:
            mean, variance = (cast(p, source.dtype) if p.dtype != source.dtype else p
                              for p in (self.running_mean, self.running_variance))  # fmt: skip
        out = (source - mean) / unary("sqrt", variance + self.eps)
        if self.gamma is not None:
            out = out * (cast(self.gamma, source.dtype) if self.gamma.dtype != source.dtype else self.gamma)
            out = out + (cast(self.beta, source.dtype) if self.beta.dtype != source.dtype else self.beta)
        out.feature_dim = self.in_dim
        return out

    def _update(self, mean: Tensor, variance: Tensor, correction: Tensor | float) -> None:
        """Move the running statistics towards ``mean`` and ``variance * correction`` (no gradient); not for a batch
        without frames (NaN statistics), as RETURNN."""
        for param, value in ((self.running_mean, mean), (self.running_variance, variance * correction)):
            value = stop_gradient(cast(value, param.dtype) if value.dtype != param.dtype else value)
            param.assign(where(value == value, param + (value - param) * self.momentum, param))

    def __repr__(self) -> str:
        return f"<BatchNorm {self.in_dim}>"


def _moments(source: Tensor, axes: list[Dim], use_mask: bool) -> tuple[Tensor, Tensor]:
    """:return: :func:`moments` of ``source`` over ``axes`` (in float32 for half precision), in ``source``'s dtype"""
    mean, variance = moments(source, axes, use_mask=use_mask)
    if mean.dtype != source.dtype:
        mean, variance = cast(mean, source.dtype), cast(variance, source.dtype)
    return mean, variance


def _correction(source: Tensor, axes: list[Dim]) -> Tensor | float:
    """:return: ``n / (n - 1)`` for the ``n`` entries (padding included) of ``source`` per feature (1 for n = 1)"""
    n = num_entries(source, axes, use_mask=False, dtype="float32")
    if isinstance(n, float):
        return n / max(n - 1.0, 1.0)
    return n / maximum(n - 1.0, 1.0)


def moments(x: Tensor, axis: Dim | Sequence[Dim], *, use_mask: bool = True, correction: float = 0,
            distributed: bool = False, compute_dtype: str | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """:return: the mean and the variance ``sum((x - mean)**2) / (n - correction)`` over ``axis`` (``n`` the number
    of entries, the padding of dynamic dims left out with ``use_mask``), with ``axis`` removed

    :param correction: 0 (default): the biased variance; 1: Bessel's correction
    :param distributed: accepted for RETURNN's signature; only False (the statistics of this process)
    :param compute_dtype: the dtype to compute in; default: float32 for half-precision input, else its dtype
    """
    if distributed:
        raise ValueError("moments: distributed=True is not supported; the statistics are those of this process")
    axes = list(axis) if not isinstance(axis, Dim) else [axis]
    compute_dtype = compute_dtype or ("float32" if x.dtype in ("float16", "bfloat16") else x.dtype)
    x = cast(x, compute_dtype) if x.dtype != compute_dtype else x
    mean = reduce_mean(x, axis=axes, use_mask=use_mask)
    variance = reduce_mean(unary("square", x - mean), axis=axes, use_mask=use_mask)
    if correction:
        count = num_entries(x, axes, use_mask=use_mask, dtype=variance.dtype)
        denominator = max(count - correction, 0.0) if isinstance(count, float) else maximum(count - correction, 0.0)
        variance = variance * count / denominator
    return mean, variance


def normalize(a: Tensor, *, axis: Dim | Sequence[Dim], epsilon: float = 1e-6) -> Tensor:
    """:return: ``(a - mean) / sqrt(variance + epsilon)`` with :func:`moments` over ``axis``"""
    mean, variance = moments(a, axis=axis)
    return (a - mean) * unary("rsqrt", variance + epsilon)


class Normalize(Module):
    """:func:`normalize`, then ``* scale + bias`` (parameters ``scale`` (1) and ``bias`` (0) over ``param_dims``).

    Example: ``norm = rf.Normalize(param_dims=feat_dim); y = norm(x, axis=feat_dim)``
    """

    def __init__(self, *, param_dims: Dim | Sequence[Dim], epsilon: float = 1e-6, scale: bool = True,
                 bias: bool = True):  # fmt: skip
        dims = [param_dims] if isinstance(param_dims, Dim) else list(param_dims)
        self.epsilon = float(epsilon)
        self.scale = Parameter(dims, initial=1.0) if scale else None
        self.bias = Parameter(dims, initial=0.0) if bias else None

    def __call__(self, a: Tensor, *, axis: Dim | Sequence[Dim]) -> Tensor:
        out = normalize(a, axis=axis, epsilon=self.epsilon)
        if self.scale is not None:
            out = self.scale * out
        return out + self.bias if self.bias is not None else out
