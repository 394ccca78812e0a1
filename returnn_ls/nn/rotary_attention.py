"""Self-attention with rotary positional encoding (RoPE, Su et al. 2021; as RETURNN's ``RotaryPosSelfAttention`` and
``RotaryPosCausalSelfAttention``, same parameters as :class:`~returnn_ls.nn.attention.SelfAttention`).

The key and query features of each head are taken as ``D/2`` complex numbers (consecutive pairs: real, imaginary),
rotated by the angle ``p * w_k`` of their frame's position ``p``, with the frequencies ``w_k`` of
:func:`~returnn_ls.nn.positional.sinusoidal_encoding` (base ``10000 ** (1 - 2/D)``, so that ``w_k = 10000 ** (-2k/D)``
as in Llama). The energies then depend on the distance of the two frames only. The causal variant keeps the keys
before the rotation in its state, and rotates them by their position in the history at each call.
"""

from __future__ import annotations

from returnn_ls.array_funcs import stack
from returnn_ls.dim import Dim, single_step_dim
from returnn_ls.index_funcs import gather
from returnn_ls.nn._att_utils import kv_copy, merge_dims, replace_dim, split, split_dims
from returnn_ls.nn.attention import CausalSelfAttention, CausalSelfAttentionState, SelfAttention, causal_kv
from returnn_ls.nn.positional import sinusoidal_encoding
from returnn_ls.ops import constant, range_over_dim
from returnn_ls.tensor import Tensor

__all__ = ["RotaryPosCausalSelfAttention", "RotaryPosSelfAttention", "apply_rope"]


def apply_rope(x: Tensor, pos_enc: Tensor, feat_dim: Dim) -> Tensor:
    """Rotate the feature pairs of ``x`` by the positions' angles.

    :param x: ``[..., feat_dim]``, pairs ``(real, imaginary)`` of consecutive features
    :param pos_enc: ``[..., feat_dim]``: the sines of the angles in the first half, the cosines in the second (as
        :func:`~returnn_ls.nn.positional.sinusoidal_encoding` gives them)
    :param feat_dim: the (static, even) feature dim
    :return: the dims of ``x`` and ``pos_enc``
    """
    half, two = feat_dim.div_left(2), Dim(2, name="complex")
    sin, cos = split(pos_enc, feat_dim, [half, half])
    pairs = split_dims(x, feat_dim, (half, two))
    real, imag = gather(pairs, indices=0, axis=two), gather(pairs, indices=1, axis=two)
    rotated, _ = stack([real * cos - imag * sin, real * sin + imag * cos], out_dim=two)
    return merge_dims(rotated, (half, two), feat_dim)


class _RopeMixin:
    """The rotation at given positions (for a module with ``key_dim_per_head``)."""

    def _rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        feat = self.key_dim_per_head
        if feat.dimension % 2 or feat.dimension < 4:
            raise ValueError(f"{type(self).__name__}: the key dim per head must be even and >= 4, got {feat}")
        enc = sinusoidal_encoding(positions, feat_dim=feat, base=10_000 ** (1 - 2 / feat.dimension))
        return apply_rope(x, enc, feat)


class RotaryPosSelfAttention(_RopeMixin, SelfAttention):
    """:class:`~returnn_ls.nn.attention.SelfAttention` with the queries and keys rotated by their frame's position
    (see the module doc).

    Example: ``att = rf.RotaryPosSelfAttention(d, d, key_dim_total=d, value_dim_total=d, num_heads=4)``
    """

    def __call__(self, source: Tensor, *, axis: Dim) -> Tensor:
        q, k, v = self.forward_qkv(source)
        positions = range_over_dim(axis, like=q)
        q, k = self._rotate(q, positions), self._rotate(k, positions)
        kv_axis = kv_copy(axis, f"{axis.name}:kv")
        return self.attention(q, replace_dim(k, axis, kv_axis), replace_dim(v, axis, kv_axis), kv_axis=kv_axis)


class RotaryPosCausalSelfAttention(_RopeMixin, CausalSelfAttention):
    """:class:`~returnn_ls.nn.attention.CausalSelfAttention` with rotary positions; also step by step with
    ``axis=rf.single_step_dim`` (the state holds the keys before the rotation)."""

    def __call__(self, source: Tensor, axis: Dim, *, state: CausalSelfAttentionState | None = None
                 ) -> tuple[Tensor, CausalSelfAttentionState]:  # fmt: skip
        q, k, v = self.forward_qkv(source)
        k, v, kv_axis, mask, offset, new_state = causal_kv(k, v, axis=axis, state=state, func=type(self).__name__)
        k = self._rotate(k, range_over_dim(kv_axis, like=k))
        if axis is single_step_dim:  # the step's frame is the last one of the history
            q_positions = offset if isinstance(offset, Tensor) else constant(offset, like=k, dtype="int32")
        else:
            q_positions = range_over_dim(axis, like=q) + offset
        q = self._rotate(q, q_positions)
        return self.attention(q, k, v, kv_axis=kv_axis, mask=mask), new_state
