"""rf.dot_attention, SelfAttention, CausalSelfAttention, RelPos(Causal)SelfAttention, CrossAttention and the positional
encodings: against torch's ``scaled_dot_product_attention`` and numpy (same weights), step by step against the
whole sequence, and padding frames against valid ones. (RETURNN's own modules: ``test_nn_attention_returnn.py``.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import (
    outputs_and_grads,
    padded_dims,
    restore_global_state,  # noqa: F401 (an autouse fixture)
    time_mask,
)

LENGTHS = [5, 2, 4]
HEADS, KEY, VALUE = Dim(2, name="heads"), Dim(3, name="key"), Dim(4, name="value")


def _sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, **kwargs) -> torch.Tensor:
    return torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(a, dtype=torch.float64) for a in (q, k, v)),
                                                            **kwargs)  # fmt: skip


def test_dot_attention_equals_torch_sdpa_with_padded_keys(backend, rng):
    batch, kv_time = padded_dims(LENGTHS)
    q_time = Dim(3, name="q")
    q = rng.normal(size=(3, 2, 3, 3)).astype("f4")
    k = rng.normal(size=(3, 2, 5, 3)).astype("f4")
    v = rng.normal(size=(3, 2, 5, 4)).astype("f4")
    k[~time_mask(LENGTHS, 5)[:, None, :].repeat(2, 1)] = 1e4  # garbage at padding frames must not matter
    mask = torch.tensor(time_mask(LENGTHS, 5))[:, None, None, :]

    def fn(q_raw, k_raw, v_raw):
        out = rf.dot_attention(rf.convert_to_tensor(q_raw, dims=[batch, HEADS, q_time, KEY]),
                               rf.convert_to_tensor(k_raw, dims=[batch, HEADS, kv_time, KEY]),
                               rf.convert_to_tensor(v_raw, dims=[batch, HEADS, kv_time, VALUE], feature_dim=VALUE),
                               key_dim=KEY, axis=kv_time)  # fmt: skip
        assert out.feature_dim is VALUE and set(out.dims) == {batch, HEADS, q_time, VALUE}
        return [out.copy_transpose([batch, HEADS, q_time, VALUE])]

    (y,), (gq, _, gv), _ = outputs_and_grads(backend.name, fn, [q, k, v])
    qt, kt, vt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)
    ref.backward(torch.tensor(np.random.default_rng(0).normal(size=y.shape)))  # the weights outputs_and_grads uses
    np.testing.assert_allclose(y, ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gq, qt.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gv, vt.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_dot_attention_causal_and_self_attention_over_the_query_axis(backend, rng):
    time = Dim(4, name="time")
    q, k, v = (rng.normal(size=(2, 4, 3)).astype("f4") for _ in range(3))
    qt, kt, vt = (rf.convert_to_tensor(a, dims=[HEADS, time, KEY]) for a in (q, k, v))
    full = rf.dot_attention(qt, kt, vt, key_dim=KEY, axis=time, scale=0.5)
    causal = rf.dot_attention(qt, kt, vt, key_dim=KEY, axis=time, causal_query_spatial_dim=time)
    np.testing.assert_allclose(full.copy_transpose([HEADS, time, KEY]).numpy(), _sdpa(q, k, v, scale=0.5), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(causal.copy_transpose([HEADS, time, KEY]).numpy(), _sdpa(q, k, v, is_causal=True),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_dot_attention_rejects_bad_dims(backend, rng):
    time = Dim(4, name="time")
    x = rf.convert_to_tensor(rng.normal(size=(4, 3)).astype("f4"), dims=[time, KEY])
    with pytest.raises(ValueError, match="dot_attention: key_dim"):
        rf.dot_attention(x, x, x, key_dim=VALUE, axis=time)
    with pytest.raises(ValueError, match="dot_attention: axis"):
        rf.dot_attention(x, x, x, key_dim=KEY, axis=HEADS)
    with pytest.raises(TypeError, match="dot_attention: axis must be a Dim"):
        rf.dot_attention(x, x, x, key_dim=KEY, axis=4)


def _numpy_mha(x: np.ndarray, att: rf.SelfAttention, causal: bool = False) -> np.ndarray:
    """Multi-head attention of one sequence ``x`` ``[T, in]`` in float64 with ``att``'s weights (RETURNN's layout:
    ``qkv`` columns per head ``[q | k | v]``)."""
    heads, kd, vd = att.num_heads.dimension, att.key_dim_per_head.dimension, att.value_dim_per_head.dimension
    qkv = (x @ att.qkv.weight.numpy() + att.qkv.bias.numpy()).reshape(len(x), heads, 2 * kd + vd)
    q, k, v = qkv[..., :kd], qkv[..., kd : 2 * kd], qkv[..., 2 * kd :]
    energy = np.einsum("ihd,jhd->hij", q, k) / np.sqrt(kd)
    if causal:
        energy = np.where(np.tril(np.ones((len(x), len(x)), bool)), energy, -np.inf)
    weights = np.exp(energy - energy.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("hij,jhd->ihd", weights, v).reshape(len(x), heads * vd)
    return out @ att.proj.weight.numpy() + att.proj.bias.numpy()


@pytest.mark.parametrize("cls", [rf.SelfAttention, rf.CausalSelfAttention])
def test_self_attention_equals_numpy_per_sequence(backend, rng, cls):
    in_dim, out_dim = Dim(5, name="in"), Dim(6, name="out")
    att = cls(in_dim, out_dim, key_dim_total=Dim(6, name="k"), value_dim_total=Dim(8, name="v"), num_heads=2)
    att.qkv.bias.assign(rng.normal(size=att.qkv.bias.numpy().shape))
    batch, time = padded_dims(LENGTHS)
    x = rng.normal(size=(3, 5, 5)).astype("f4")
    x[~time_mask(LENGTHS, 5)] = 1e3
    out = att(rf.convert_to_tensor(x, dims=[batch, time, in_dim]), axis=time)
    out = (out[0] if isinstance(out, tuple) else out).copy_transpose([batch, time, out_dim]).numpy()
    for b, n in enumerate(LENGTHS):
        expected = _numpy_mha(x[b, :n].astype("f8"), att, causal=cls is rf.CausalSelfAttention)
        np.testing.assert_allclose(out[b, :n], expected, rtol=1e-4, atol=1e-5)


def _att_modules(in_dim: Dim) -> dict[str, rf.Module]:
    opts = dict(key_dim_total=Dim(8, name="k"), value_dim_total=Dim(4, name="v"), num_heads=2, att_dropout=0.0)
    return {"causal": rf.CausalSelfAttention(in_dim, Dim(3, name="out"), **opts),
            "rel_pos_causal": rf.RelPosCausalSelfAttention(in_dim, Dim(3, name="out"), **opts),
            "rope_causal": rf.RotaryPosCausalSelfAttention(in_dim, Dim(3, name="out"), **opts)}  # fmt: skip


@pytest.mark.parametrize("name", ["causal", "rel_pos_causal", "rope_causal"])
def test_causal_attention_step_by_step_equals_the_whole_sequence(backend, rng, name):
    in_dim = Dim(4, name="in")
    att = _att_modules(in_dim)[name]
    batch, time = padded_dims(LENGTHS)
    x = rf.convert_to_tensor(rng.normal(size=(3, 5, 4)).astype("f4"), dims=[batch, time, in_dim])
    full, state = att(x, axis=time)
    assert state.accum_axis is time and time in state.k_accum.dims
    full = full.copy_transpose([batch, time, att.out_dim]).numpy()
    state = att.default_initial_state(batch_dims=[batch])
    again, _ = att(x, axis=time, state=state)  # an empty initial state: the same as no state
    np.testing.assert_allclose(again.copy_transpose([batch, time, att.out_dim]).numpy(), full, rtol=1e-6)
    for t in range(5):
        y, state = att(rf.gather(x, indices=t, axis=time), rf.single_step_dim, state=state)
        assert state.accum_axis.dimension == t + 1
        valid = np.array(LENGTHS) > t
        np.testing.assert_allclose(y.copy_transpose([batch, att.out_dim]).numpy()[valid], full[valid, t], rtol=1e-5,
                                   atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("name", ["causal", "rel_pos_causal", "rope_causal"])
def test_causal_attention_continues_from_a_state(backend, rng, name):
    """First part of each sequence, then the rest on the state (padded dims both), then single steps: as one
    sequence."""
    in_dim = Dim(4, name="in")
    att = _att_modules(in_dim)[name]
    first, rest = [2, 3, 1], [3, 1, 2]
    batch, time1 = padded_dims(first)
    time2 = Dim(rf.convert_to_tensor(np.array(rest, "int32"), dims=[batch]), name="t2")
    x1, x2 = rng.normal(size=(3, 3, 4)).astype("f4"), rng.normal(size=(3, 3, 4)).astype("f4")
    x3 = rng.normal(size=(3, 4)).astype("f4")
    whole = np.zeros((3, 6, 4), "f4")
    for b in range(3):
        whole[b, : first[b] + rest[b]] = np.concatenate([x1[b, : first[b]], x2[b, : rest[b]]])
        whole[b, first[b] + rest[b]] = x3[b]
    joined = Dim(rf.convert_to_tensor(np.array(first) + np.array(rest) + 1, dims=[batch]), name="joined")
    ref, _ = att(rf.convert_to_tensor(whole, dims=[batch, joined, in_dim]), axis=joined)
    ref = ref.copy_transpose([batch, joined, att.out_dim]).numpy()
    y1, state = att(rf.convert_to_tensor(x1, dims=[batch, time1, in_dim]), axis=time1)
    y2, state = att(rf.convert_to_tensor(x2, dims=[batch, time2, in_dim]), axis=time2, state=state)
    y3, _ = att(rf.convert_to_tensor(x3, dims=[batch, in_dim]), axis=rf.single_step_dim, state=state)
    y1, y2 = (y.copy_transpose([batch, d, att.out_dim]).numpy() for y, d in ((y1, time1), (y2, time2)))
    for b in range(3):
        np.testing.assert_allclose(y1[b, : first[b]], ref[b, : first[b]], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y2[b, : rest[b]], ref[b, first[b] : first[b] + rest[b]], rtol=1e-5, atol=1e-6)
    last = np.array(first) + np.array(rest)  # the single step: the last frame of each joined sequence
    np.testing.assert_allclose(y3.copy_transpose([batch, att.out_dim]).numpy(), ref[np.arange(3), last], rtol=1e-5,
                               atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("cls", [rf.SelfAttention, rf.RelPosSelfAttention])
def test_padding_frames_do_not_change_the_valid_frames(backend, rng, cls):
    in_dim = Dim(4, name="in")
    att = cls(in_dim, None, key_dim_total=Dim(4, name="k"), value_dim_total=Dim(4, name="v"), num_heads=2)
    batch, time = padded_dims(LENGTHS)
    x = rng.normal(size=(3, 5, 4)).astype("f4")
    outs = []
    for garbage in (0.0, 1e4):
        x[~time_mask(LENGTHS, 5)] = garbage
        y = att(rf.convert_to_tensor(x, dims=[batch, time, in_dim]), axis=time)
        assert y.feature_dim is att.value_dim_total
        outs.append(y.copy_transpose([batch, time, att.out_dim]).numpy()[time_mask(LENGTHS, 5)])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.isfinite(outs[0]).all()


def test_cross_attention_equals_dot_attention_of_its_projections(backend, rng):
    enc_dim, q_dim = Dim(5, name="enc"), Dim(4, name="q")
    att = rf.CrossAttention(enc_dim, q_dim, None, key_dim_total=Dim(6, name="k"), value_dim_total=Dim(4, name="v"),
                            num_heads=2)  # fmt: skip
    batch, enc_time = padded_dims(LENGTHS)
    enc = rf.convert_to_tensor(rng.normal(size=(3, 5, 5)).astype("f4"), dims=[batch, enc_time, enc_dim])
    x = rf.convert_to_tensor(rng.normal(size=(3, 4)).astype("f4"), dims=[batch, q_dim])
    state = att.transform_encoder(enc, axis=enc_time)
    out = att(x, state).copy_transpose([batch, att.out_dim]).numpy()
    kv = enc.copy_transpose([batch, enc_time, enc_dim]).numpy() @ att.kv.weight.numpy() + att.kv.bias.numpy()
    kv = kv.reshape(3, 5, 2, 5)  # per head: key 3, value 2
    q = (x.numpy() @ att.q.weight.numpy() + att.q.bias.numpy()).reshape(3, 2, 1, 3)
    mask = torch.tensor(time_mask(LENGTHS, 5))[:, None, None, :]
    ref = _sdpa(q, kv[..., :3].transpose(0, 2, 1, 3), kv[..., 3:].transpose(0, 2, 1, 3), attn_mask=mask)
    np.testing.assert_allclose(out, ref.numpy().reshape(3, 4), rtol=1e-5, atol=1e-6)


def test_attention_modules_reject_bad_options(backend):
    in_dim = Dim(4, name="in")
    with pytest.raises(ValueError, match="SelfAttention: key_dim_total must be .* a multiple of num_heads 3"):
        rf.SelfAttention(in_dim, None, key_dim_total=Dim(4, name="k"), value_dim_total=Dim(6, name="v"), num_heads=3)
    att = rf.CausalSelfAttention(in_dim, None, key_dim_total=in_dim, value_dim_total=in_dim, num_heads=2)
    x = rf.convert_to_tensor(np.zeros((2, 4), "f4"), dims=[Dim(2, name="b"), in_dim])
    with pytest.raises(ValueError, match="CausalSelfAttention: axis=single_step_dim needs a state"):
        att(x, rf.single_step_dim)


def test_sinusoidal_positional_encoding_equals_numpy(backend):
    time, feat = Dim(7, name="time"), Dim(6, name="feat")
    enc = rf.sinusoidal_positional_encoding(spatial_dim=time, feat_dim=feat, offset=2)
    pos = np.arange(2, 9)[:, None] * np.exp(-np.log(1e4) * np.arange(3) / 2)[None]
    expected = np.concatenate([np.sin(pos), np.cos(pos)], -1)
    np.testing.assert_allclose(enc.copy_transpose([time, feat]).numpy(), expected, rtol=1e-5, atol=1e-6)
    step = rf.sinusoidal_positional_encoding(spatial_dim=rf.single_step_dim, feat_dim=feat, offset=4)
    np.testing.assert_allclose(step.numpy(), expected[2], rtol=1e-5, atol=1e-6)
    assert step.dims == (feat,) and enc.feature_dim is feat
    with pytest.raises(ValueError, match="needs an offset"):
        rf.sinusoidal_positional_encoding(spatial_dim=rf.single_step_dim, feat_dim=feat)


def test_relative_positional_encoding_equals_numpy(backend):
    q, kv, feat = Dim(3, name="q"), Dim(4, name="kv"), Dim(6, name="feat")
    enc, pos_dim = rf.relative_positional_encoding(query_spatial_dim=q, key_value_spatial_dim=kv, feat_dim=feat)
    assert pos_dim.dimension == 6
    angles = np.arange(-2, 4)[:, None] * np.exp(-2 * np.log(1e4) * np.arange(3) / 6)[None]
    expected = np.concatenate([np.sin(angles), np.cos(angles)], -1)
    np.testing.assert_allclose(enc.copy_transpose([pos_dim, feat]).numpy(), expected, rtol=1e-5, atol=1e-6)
