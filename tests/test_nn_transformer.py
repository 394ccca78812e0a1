"""rf.TransformerDecoder (step by step against the whole sequence, a prefix then steps, cross-attention),
TransformerEncoder and ConformerEncoder (padding frames, one sequence against the batch), module options given as
classes, dicts and modules. (Against RETURNN's own modules: ``test_nn_attention_returnn.py``.)"""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import (
    outputs_and_grads,
    padded_dims,
    restore_global_state,  # noqa: F401 (an autouse fixture)
    time_mask,
)

LENGTHS = [5, 2, 4]
VOCAB, MODEL, ENC = Dim(7, name="vocab"), Dim(8, name="model"), Dim(5, name="enc")


def _decoder(**kwargs) -> rf.TransformerDecoder:
    opts = dict(num_layers=2, num_heads=2, dropout=0.0, att_dropout=0.0, **kwargs)
    return rf.TransformerDecoder(opts.pop("encoder_dim", ENC), VOCAB, MODEL, **opts)


@pytest.mark.parametrize("self_att", [None, "rel_pos"])
def test_decoder_step_by_step_equals_the_whole_sequence(backend, rng, self_att):
    layer_opts = {"self_att": rf.build_dict(rf.RelPosCausalSelfAttention, with_bias=False)} if self_att else None
    dec = _decoder(layer_opts=layer_opts, ff=rf.build_dict(rf.FeedForwardGated) if self_att else None)
    batch, time = padded_dims(LENGTHS)
    enc_time = Dim(rf.convert_to_tensor(np.array([3, 4, 1], "int32"), dims=[batch]), name="enc_time")
    labels = rf.convert_to_tensor(rng.integers(0, 7, size=(3, 5)).astype("int32"), dims=[batch, time],
                                  sparse_dim=VOCAB)  # fmt: skip
    enc = dec.transform_encoder(rf.convert_to_tensor(rng.normal(size=(3, 4, 5)).astype("f4"),
                                                     dims=[batch, enc_time, ENC]), axis=enc_time)  # fmt: skip
    full, state = dec(labels, spatial_dim=time, state=dec.default_initial_state(batch_dims=[batch]), encoder=enc)
    np.testing.assert_array_equal(state.pos.numpy(), LENGTHS)
    full = full.copy_transpose([batch, time, VOCAB]).numpy()
    state = dec.default_initial_state(batch_dims=[batch])
    for t in range(5):
        logits, state = dec(rf.gather(labels, indices=t, axis=time), spatial_dim=rf.single_step_dim, state=state,
                            encoder=enc)  # fmt: skip
        valid = np.array(LENGTHS) > t
        np.testing.assert_allclose(logits.copy_transpose([batch, VOCAB]).numpy()[valid], full[valid, t], rtol=1e-4,
                                   atol=1e-5)  # fmt: skip
    assert int(state.pos.numpy()) == 5


def test_decoder_prefix_then_steps_as_in_returnns_test(backend):
    """As RETURNN's ``test_transformer_prefix_single_step``: a language model (no encoder, no batch dim)."""
    lm = _decoder(encoder_dim=None)
    prefix_dim = Dim(7, name="prefix")
    prefix = rf.convert_to_tensor(np.array([3, 4, 5, 6, 1, 2, 1], "int32"), dims=[prefix_dim], sparse_dim=VOCAB)
    whole_dim = Dim(10, name="whole")
    whole = rf.convert_to_tensor(np.array([3, 4, 5, 6, 1, 2, 1, 6, 5, 4], "int32"), dims=[whole_dim],
                                 sparse_dim=VOCAB)  # fmt: skip
    ref, _ = lm(whole, spatial_dim=whole_dim, state=lm.default_initial_state(batch_dims=[]))
    ref = ref.copy_transpose([whole_dim, VOCAB]).numpy()
    last, state = lm(prefix, spatial_dim=prefix_dim, state=lm.default_initial_state(batch_dims=[]),
                     output_only_last_frame=True)  # fmt: skip
    assert last.dims == (VOCAB,) and state["0"].self_att.accum_axis is prefix_dim
    np.testing.assert_allclose(last.numpy(), ref[6], rtol=1e-4, atol=1e-5)
    for step, label in enumerate([6, 5, 4]):
        label = rf.convert_to_tensor(np.array(label, "int32"), dims=[], sparse_dim=VOCAB)
        logits, state = lm(label, spatial_dim=rf.single_step_dim, state=state)
        assert state["0"].self_att.accum_axis.dimension == 8 + step
        np.testing.assert_allclose(logits.numpy(), ref[7 + step], rtol=1e-4, atol=1e-5)


def test_decoder_gradients_reach_every_parameter_and_dropout_trains(backend, rng):
    dec = rf.TransformerDecoder(None, VOCAB, MODEL, num_layers=1, num_heads=2, dropout=0.3, att_dropout=0.3)
    batch, time = padded_dims(LENGTHS)
    labels = rng.integers(0, 7, size=(3, 5)).astype("int32")

    def fn(raw):
        x = rf.convert_to_tensor(raw, dims=[batch, time], sparse_dim=VOCAB)
        return [dec(x, spatial_dim=time, state=dec.default_initial_state(batch_dims=[batch]))[0]]

    rf.init_train_step_run_ctx(train_flag=True)
    try:
        (train,), _, grads = outputs_and_grads(backend.name, fn, [labels], dec)
    finally:
        rf.reset_run_ctx()
    (evaluation,), _, _ = outputs_and_grads(backend.name, fn, [labels], dec)
    assert set(grads) == {name for name, _ in dec.named_parameters()} and "logits.weight" not in grads
    assert all(np.abs(g).sum() > 0 for g in grads.values())
    assert not np.allclose(train, evaluation)


def test_conformer_padding_frames_and_batching_do_not_change_the_output(backend, rng):
    feat = Dim(6, name="feat")
    enc = rf.ConformerEncoder(feat, MODEL, num_layers=2, input_layer=None, conv_kernel_size=3, num_heads=2)
    batch, time = padded_dims(LENGTHS)
    x = rng.normal(size=(3, 5, 6)).astype("f4")
    outs = []
    for garbage in (0.0, 1e3):
        x[~time_mask(LENGTHS, 5)] = garbage
        y, out_time = enc(rf.convert_to_tensor(x, dims=[batch, time, feat]), in_spatial_dim=time)
        assert out_time is time and y.feature_dim is MODEL
        outs.append(y.copy_transpose([batch, time, MODEL]).numpy())
    np.testing.assert_array_equal(outs[0][time_mask(LENGTHS, 5)], outs[1][time_mask(LENGTHS, 5)])
    single = Dim(2, name="single")
    y1, _ = enc(rf.convert_to_tensor(x[1, :2], dims=[single, feat]), in_spatial_dim=single)
    np.testing.assert_allclose(y1.copy_transpose([single, MODEL]).numpy(), outs[0][1, :2], rtol=1e-4, atol=1e-5)
    names = [name for name, _ in enc.named_parameters()]
    for name in ("input_projection.weight", "layers.1.conv_block.depthwise_conv.filter",
                 "layers.0.self_att.linear_pos.weight", "layers.0.conv_block.norm.running_mean",
                 "layers.0.ffn2.linear_out.bias"):
        assert name in names


def test_layers_given_as_a_module_are_copied_with_shared_dims(backend, rng):
    layer = rf.TransformerEncoderLayer(MODEL, num_heads=2, dropout=0.0, att_dropout=0.0)
    enc = rf.TransformerEncoder(VOCAB, MODEL, num_layers=2, layer=layer, dropout=0.0)
    first, second = enc.layers[0], enc.layers[1]
    assert first is not layer and first.out_dim is MODEL and first.self_att.num_heads is layer.self_att.num_heads
    assert first.ff.linear_ff.weight is not second.ff.linear_ff.weight
    np.testing.assert_array_equal(first.ff.linear_ff.weight.numpy(), layer.ff.linear_ff.weight.numpy())
    batch, time = padded_dims(LENGTHS)
    labels = rf.convert_to_tensor(rng.integers(0, 7, size=(3, 5)).astype("int32"), dims=[batch, time],
                                  sparse_dim=VOCAB)  # fmt: skip
    assert enc(labels, spatial_dim=time).dims == (batch, time, MODEL)


def test_options_are_checked(backend):
    with pytest.raises(TypeError, match="TransformerDecoder: unexpected arguments"):
        rf.TransformerDecoder(None, VOCAB, MODEL, num_layers=1, bogus=1)
    with pytest.raises(TypeError, match="TransformerDecoderLayer: self_att must be"):
        rf.TransformerDecoderLayer(None, MODEL, self_att=3)
    with pytest.raises(ValueError, match="share_embedding needs"):
        rf.TransformerDecoder(None, VOCAB, MODEL, num_layers=1, share_embedding=True, logits_with_bias=True)
