"""Positional encodings (as ``returnn.frontend``): absolute sinusoidal ones, the relative ones of Transformer-XL and a
learned relative one.

``sinusoidal_encoding(indices)``: for ``K = feat_dim / 2`` frequencies ``w_k = base ** (-k / (K - 1))``, the first
half of the features is ``sin(i * w_k)``, the second ``cos(i * w_k)`` (computed as ``sin(i * w_k + pi / 2)``).
``relative_positional_encoding`` uses ``w_k = 10000 ** (-2k / feat_dim)`` on the relative positions ``j - i`` (key
frame minus query frame) from ``-(Tq - 1)`` to ``Tk - 1``: one row per distance, over a dim of ``Tq + Tk - 1``.
"""

from __future__ import annotations

import math
from typing import Any

from returnn_ls.array_funcs import dim_length, dim_of_size
from returnn_ls.dim import Dim, single_step_dim
from returnn_ls.math_funcs import clip_by_value
from returnn_ls.nn import init
from returnn_ls.nn._att_utils import sin, sizes_on
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.ops import align, cast, exp, range_over_dim
from returnn_ls.tensor import Tensor, convert_to_tensor

__all__ = ["LearnedRelativePositionalEncoding", "relative_positional_encoding", "sinusoidal_encoding",
           "sinusoidal_positional_encoding"]  # fmt: skip


def _sin_cos(indices: Tensor, feat_dim: Dim, log_step: float, dtype: str) -> Tensor:
    """:return: ``[sin(i w_k)..., cos(i w_k)...]`` over ``indices.dims + [feat_dim]``, ``w_k = exp(-k log_step)``"""
    if not isinstance(feat_dim, Dim) or not feat_dim.dimension or feat_dim.dimension % 2:
        raise ValueError(f"positional encoding: feat_dim must be a static Dim of even size, got {feat_dim!r}")
    half = feat_dim.div_left(2)
    freq = exp(range_over_dim(half, like=indices, dtype=dtype) * -log_step)
    arg_sin = cast(indices, dtype) * freq
    arg_cos = arg_sin + math.pi / 2.0
    dims = tuple(d for d in arg_sin.dims if d is not half)
    raw = indices.backend.concat([align(arg_sin, dims + (half,)), align(arg_cos, dims + (half,))], len(dims))
    return sin(Tensor(raw, dims + (feat_dim,), feature_dim=feat_dim, backend=indices.backend))


def sinusoidal_encoding(indices: Tensor, *, feat_dim: Dim, base: float = 1e4, dtype: str | None = None) -> Tensor:
    """:return: the sinusoidal encoding of the positions ``indices`` (see the module doc): ``indices.dims + [feat_dim]``

    :param base: the largest wave length (over ``2 pi``)
    """
    half = feat_dim.dimension // 2 if isinstance(feat_dim, Dim) and feat_dim.dimension else 0
    if half < 2:
        raise ValueError(f"sinusoidal_encoding: feat_dim must be a static Dim of even size >= 4, got {feat_dim!r}")
    return _sin_cos(indices, feat_dim, math.log(base) / (half - 1), dtype or "float32")


def sinusoidal_positional_encoding(*, spatial_dim: Dim, feat_dim: Dim, offset: int | Tensor | None = None,
                                   base: float = 1e4, dtype: str | None = None, device: str | None = None) -> Tensor:
    """Absolute sinusoidal positions (Vaswani et al.): :func:`sinusoidal_encoding` of ``offset + [0, 1, ...]``.

    :param spatial_dim: the positions' dim; ``rf.single_step_dim``: one position, ``offset`` (needed)
    :param offset: added to the positions (an int or an integer Tensor, e.g. a decoder's step counter)
    :param device: where the result goes (default: where the positions are)
    :return: ``[spatial_dim, feat_dim]`` (``[feat_dim]`` for a single step; plus the dims of a Tensor ``offset``)

    Example: ``x = x + rf.sinusoidal_positional_encoding(spatial_dim=time_dim, feat_dim=model_dim)``
    """
    if spatial_dim is single_step_dim:
        if offset is None:
            raise ValueError("sinusoidal_positional_encoding: spatial_dim=single_step_dim needs an offset")
        indices = offset if isinstance(offset, Tensor) else convert_to_tensor(offset, dtype="int32")
    else:
        indices = range_over_dim(spatial_dim, like=offset if isinstance(offset, Tensor) else None)
        if offset is not None:
            indices = indices + offset
    out = sinusoidal_encoding(indices, feat_dim=feat_dim, base=base, dtype=dtype)
    return _to_device(out, device)


def _to_device(x: Tensor, device: str | None) -> Tensor:
    return x if device is None else x.copy_template(x.backend.to_device(x.raw_tensor, device))


def relative_positions(query_spatial_dim: Dim, key_value_spatial_dim: Dim, query_offset: Any = 0, *,
                       like: tuple[Tensor | None, Tensor | None] = (None, None)) -> tuple[Tensor, Dim]:  # fmt: skip
    """:return: the distances ``j - i - query_offset`` (key frame ``j``, query frame ``i``) from ``-(Tq - 1)`` to
    ``Tk - 1`` over a new dim of ``Tq + Tk - 1`` (padded lengths), and that dim; for ``single_step_dim`` queries
    (the last frame of the keys), the distances over the key dim itself

    :param like: tensors with the query dim and the key dim whose axis lengths are the padded lengths
    """
    kv_pos = range_over_dim(key_value_spatial_dim, like=like[1])
    if query_spatial_dim is single_step_dim:
        last = sizes_on(key_value_spatial_dim, kv_pos) - 1
        return kv_pos - last - query_offset, key_value_spatial_dim
    q_len, kv_len = dim_length(query_spatial_dim, like[0]), dim_length(key_value_spatial_dim, like[1])
    if isinstance(q_len, int) and isinstance(kv_len, int):
        out_dim = Dim(q_len + kv_len - 1, name=f"{query_spatial_dim.name}+{key_value_spatial_dim.name}-1")
        first = q_len - 1
    else:
        backend = kv_pos.backend
        q_len, kv_len = (Tensor(backend.cast(n, "int32"), (), backend=backend) if not isinstance(n, int)
                         else n for n in (q_len, kv_len))  # fmt: skip
        out_dim = dim_of_size(q_len + kv_len - 1, f"{query_spatial_dim.name}+{key_value_spatial_dim.name}-1")
        first = q_len - 1
    return range_over_dim(out_dim, like=kv_pos) - first - query_offset, out_dim


def relative_positional_encoding(*, query_spatial_dim: Dim, key_value_spatial_dim: Dim, feat_dim: Dim,
                                 query_offset: int = 0, dtype: str | None = None, device: str | None = None
                                 ) -> tuple[Tensor, Dim]:  # fmt: skip
    """Transformer-XL's sinusoidal encoding of relative positions (see the module doc).

    :return: ``[pos_dim, feat_dim]`` and ``pos_dim``: ``Tq + Tk - 1`` distances ``j - i``, from ``-(Tq - 1)``
        (first entry) to ``Tk - 1``; for a ``single_step_dim`` query, the distances of the key frames to the last
        one, over the key dim

    Example: ``emb, pos_dim = rf.relative_positional_encoding(query_spatial_dim=t, key_value_spatial_dim=t,
    feat_dim=model_dim)``
    """
    indices, out_dim = relative_positions(query_spatial_dim, key_value_spatial_dim, query_offset)
    emb = relative_encoding(indices, feat_dim, dtype)
    return _to_device(emb, device), out_dim


def relative_encoding(indices: Tensor, feat_dim: Dim, dtype: str | None = None) -> Tensor:
    """:return: the encoding of :func:`relative_positional_encoding` of the distances ``indices``"""
    if not isinstance(feat_dim, Dim) or not feat_dim.dimension:
        raise ValueError(f"relative_positional_encoding: feat_dim must be a static Dim, got {feat_dim!r}")
    return _sin_cos(indices, feat_dim, 2.0 * math.log(1e4) / feat_dim.dimension, dtype or "float32")


class LearnedRelativePositionalEncoding(Module):
    """A learned embedding per distance ``j - i``, clipped to ``[-clipping, clipping]`` (Shaw et al., 2018).

    Parameter (RETURNN's name): ``pos_emb`` ``[2 * clipping + 1, feat_dim]`` (``clipping + 1`` if ``causal``).

    :param feat_dim: the embedding dim
    :param clipping: the largest distance told apart
    :param dtype: of the parameter
    :param causal: only distances ``<= 0``
    """

    def __init__(self, feat_dim: Dim, *, clipping: int = 16, dtype: str | None = None, causal: bool = False):
        self.feat_dim = feat_dim
        self.clipping = clipping
        self.causal = causal
        self.clipped_spatial_dim = Dim((1 if causal else 2) * clipping + 1, name="learned-rel-pos")
        self.pos_emb = Parameter((self.clipped_spatial_dim, feat_dim), dtype=dtype or "float32",
                                 initial=init.Glorot())  # fmt: skip

    def __call__(self, *, query_spatial_dim: Dim, key_value_spatial_dim: Dim, query_offset: Any = None
                 ) -> tuple[Tensor, Dim]:  # fmt: skip
        """:return: as :func:`relative_positional_encoding`: ``[pos_dim, feat_dim]`` and ``pos_dim``"""
        indices, out_dim = relative_positions(query_spatial_dim, key_value_spatial_dim, query_offset or 0)
        return self.encode(indices), out_dim

    def encode(self, indices: Tensor) -> Tensor:
        """:return: the embeddings of the distances ``indices``: ``indices.dims + [feat_dim]``"""
        from returnn_ls.index_funcs import gather

        clipped = clip_by_value(indices, -self.clipping, 0 if self.causal else self.clipping) + self.clipping
        return gather(self.pos_emb, indices=cast(clipped, "int32"), axis=self.clipped_spatial_dim)
