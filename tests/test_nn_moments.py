"""``rf.moments``, ``rf.normalize`` and ``rf.Normalize`` against numpy, with padded dynamic dims, Bessel's
correction and half-precision input, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


def _padded(rng):
    batch, feat = Dim(3, name="batch"), Dim(4, name="feat")
    lens = np.array([5, 2, 3])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[batch]), name="time")
    x = rng.normal(size=(3, 5, 4)) * 2 + 1
    return batch, time, feat, lens, x


@pytest.mark.parametrize("correction", [0, 1])
def test_moments_over_a_padded_dim_equal_numpy(backend, rng, correction):
    batch, time, feat, lens, x = _padded(rng)
    t = rf.convert_to_tensor(x, dims=[batch, time, feat])
    mean, var = rf.moments(t, axis=[time, feat], correction=correction)
    for b, n in enumerate(lens):
        np.testing.assert_allclose(mean.numpy()[b], x[b, :n].mean(), rtol=1e-12)
        np.testing.assert_allclose(var.numpy()[b], x[b, :n].var(ddof=correction), rtol=1e-12)
    mean, var = rf.moments(t, axis=feat, correction=correction)  # static axis
    np.testing.assert_allclose(var.copy_transpose([batch, time]).numpy(), x.var(-1, ddof=correction), rtol=1e-12)
    with pytest.raises(ValueError, match="distributed=True is not supported"):
        rf.moments(t, axis=feat, distributed=True)


def test_moments_of_half_precision_are_computed_in_float32(backend, rng):
    frames, feat = Dim(2, name="frames"), Dim(3, name="feat")
    x = (rng.normal(size=(2, 3)) * 300).astype("float16")  # squares above float16's maximum 65504
    mean, var = rf.moments(rf.convert_to_tensor(x, dims=[frames, feat]), axis=feat)
    assert mean.dtype == var.dtype == "float32"
    np.testing.assert_allclose(var.numpy(), x.astype("float64").var(-1), rtol=1e-5)


def test_normalize_and_the_normalize_module(backend, rng):
    batch, time, feat, lens, x = _padded(rng)
    t = rf.convert_to_tensor(x, dims=[batch, time, feat])
    out = rf.normalize(t, axis=feat).copy_transpose([batch, time, feat]).numpy()
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out, ref, rtol=1e-10)
    module = rf.Normalize(param_dims=feat)
    assert [name for name, _ in module.named_parameters()] == ["scale", "bias"]
    scale, bias = rng.normal(size=4), rng.normal(size=4)
    module.scale.initial, module.bias.initial = scale, bias
    got = module(t, axis=feat).copy_transpose([batch, time, feat]).numpy()
    np.testing.assert_allclose(got, ref * scale + bias, rtol=1e-5)  # float32 parameters


def test_group_norm_spatial_equals_torch_group_norm(backend, rng):
    torch = pytest.importorskip("torch")
    batch, channels, time = Dim(2, name="batch"), Dim(6, name="channels"), Dim(5, name="time")
    x = rng.normal(size=(2, 5, 6)) * 3 + 1
    scale, bias = rng.normal(size=6), rng.normal(size=6)
    norm = rf.GroupNormSpatial(channels, num_groups=3)
    assert [name for name, _ in norm.named_parameters()] == ["scale", "bias"]
    norm.scale.initial, norm.bias.initial = scale, bias
    got = norm(rf.convert_to_tensor(x, dims=[batch, time, channels]), spatial_dim=time)
    ref = torch.nn.functional.group_norm(torch.tensor(x).transpose(1, 2), 3, torch.tensor(scale), torch.tensor(bias),
                                         eps=1e-6).transpose(1, 2).numpy()  # fmt: skip
    np.testing.assert_allclose(got.copy_transpose([batch, time, channels]).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_group_norm_normalizes_each_position_over_its_group(backend, rng):
    frames, channels = Dim(4, name="frames"), Dim(6, name="channels")
    x = rng.normal(size=(4, 6)) * 2
    out = rf.GroupNorm(channels, num_groups=2)(rf.convert_to_tensor(x, dims=[frames, channels]))
    groups = x.reshape(4, 2, 3)
    ref = ((groups - groups.mean(-1, keepdims=True)) / np.sqrt(groups.var(-1, keepdims=True) + 1e-6)).reshape(4, 6)
    np.testing.assert_allclose(out.copy_transpose([frames, channels]).numpy(), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_groups must divide"):
        rf.GroupNorm(channels, num_groups=4)
