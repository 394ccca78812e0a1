"""rf.transposed_conv / rf.TransposedConv1d against torch.nn.functional.conv_transpose1d (values and gradients),
RETURNN's output-size rule; rf.conv (the functional form) against F.conv1d and rf.Conv1d;
rf.make_conv_out_spatial_dims against the size formula."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

IN, OUT = 3, 2
LENGTHS = [5, 3, 1]


def _inputs(rng, lengths=LENGTHS):
    x = rng.normal(size=(len(lengths), max(lengths), IN)).astype("float32")
    mask = np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]
    x[~mask] = 100.0  # garbage in the padding: must not matter
    return x, mask


def _dims(lengths=LENGTHS):
    batch = Dim(len(lengths), name="batch")
    time = Dim(rf.convert_to_tensor(np.array(lengths, "int32"), dims=[batch]), name="time")
    return batch, time, Dim(IN, name="in"), Dim(OUT, name="out")


def _torch_transposed(x, mask, filt, bias, stride, output_padding):
    """:return: F.conv_transpose1d of the masked input ``[B, T, I]`` as ``[B, T', O]``, and its input/filter grads"""
    import torch

    xt = torch.tensor(np.where(mask[:, :, None], x, 0.0), requires_grad=True)
    ft = torch.tensor(filt, requires_grad=True)
    out = torch.nn.functional.conv_transpose1d(xt.transpose(1, 2), ft, torch.tensor(bias), stride=stride,
                                               output_padding=output_padding).transpose(1, 2)  # fmt: skip
    out.sum().backward()
    return out.detach().numpy(), np.where(mask[:, :, None], xt.grad.numpy(), 0.0), ft.grad.numpy()


@pytest.mark.parametrize("size,stride", [(4, 3), (3, 3), (2, 2), (2, 3), (5, 1)])
def test_transposed_conv_equals_torch_conv_transpose1d(backend, rng, size, stride):
    rf.select_backend(backend.name)
    x, mask = _inputs(rng)
    filt = rng.normal(size=(IN, OUT, size)).astype("float32")
    bias = rng.normal(size=OUT).astype("float32")
    batch, time, in_dim, out_dim = _dims()
    filter_dim = Dim(size, name="filter")
    result = {}

    def fn(raw_x, raw_filter):
        out, (out_time,) = rf.transposed_conv(
            rf.convert_to_tensor(raw_x, dims=[batch, time, in_dim]), in_dim=in_dim, out_dim=out_dim,
            in_spatial_dims=[time], filter=rf.convert_to_tensor(raw_filter, dims=[in_dim, out_dim, filter_dim]),
            filter_size=[filter_dim], padding="valid", strides=stride,
            bias=rf.convert_to_tensor(bias, dims=[out_dim]),
        )  # fmt: skip
        result["dim"] = out_time
        return out

    out, (grad_x, grad_filter) = backend.value_and_grad(fn, x, filt)
    ref, ref_grad_x, ref_grad_filter = _torch_transposed(x, mask, filt, bias, stride, max(stride - size, 0))
    lengths = np.array(LENGTHS) * stride + max(size - stride, 0)  # RETURNN's rule
    np.testing.assert_array_equal(result["dim"].dyn_size_ext.numpy(), lengths)
    assert out.shape == ref.shape == (3, lengths.max(), OUT)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.where(mask[:, :, None], grad_x, 0.0), ref_grad_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_filter, ref_grad_filter, rtol=1e-4, atol=1e-4)


def test_transposed_conv1d_module_has_returnns_parameters(backend, rng):
    rf.select_backend(backend.name)
    x, mask = _inputs(rng)
    batch, time, in_dim, out_dim = _dims()
    conv = rf.TransposedConv1d(in_dim, out_dim, 4, strides=3, padding="valid")
    assert conv.filter.dims[:2] == (in_dim, out_dim) and conv.filter.dims[2].dimension == 4
    assert conv.bias.dims == (out_dim,)
    filt = rng.normal(size=(IN, OUT, 4)).astype("float32")
    conv.filter.assign(filt)
    out, out_time = conv(rf.convert_to_tensor(x, dims=[batch, time, in_dim]), in_spatial_dim=time)
    assert out.dims == (batch, out_time, out_dim) and out.feature_dim is out_dim
    ref = _torch_transposed(x, mask, filt, np.zeros(OUT, "float32"), 3, 0)[0]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    default = rf.TransposedConv1d(in_dim, out_dim, 2, padding="valid")  # strides: the filter size
    _, up_time = default(rf.convert_to_tensor(x, dims=[batch, time, in_dim]), in_spatial_dim=time)
    np.testing.assert_array_equal(up_time.dyn_size_ext.numpy(), np.array(LENGTHS) * 2)


def test_transposed_conv_output_padding_and_remove_padding(backend, rng):
    rf.select_backend(backend.name)
    x, mask = _inputs(rng)
    batch, time, in_dim, out_dim = _dims()
    conv = rf.TransposedConv1d(in_dim, out_dim, 3, strides=2, padding="valid", output_padding=1, remove_padding=2)
    filt = rng.normal(size=(IN, OUT, 3)).astype("float32")
    conv.filter.assign(filt)
    out, out_time = conv(rf.convert_to_tensor(x, dims=[batch, time, in_dim]), in_spatial_dim=time)
    ref = _torch_transposed(x, mask, filt, np.zeros(OUT, "float32"), 2, 1)[0][:, :-2]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out_time.dyn_size_ext.numpy(), (np.array(LENGTHS) - 1) * 2 + 3 + 1 - 2)


def test_transposed_conv_errors_name_the_argument(backend):
    rf.select_backend(backend.name)
    _, _, in_dim, out_dim = _dims()
    with pytest.raises(ValueError, match="TransposedConv1d: padding must be 'valid'"):
        rf.TransposedConv1d(in_dim, out_dim, 3, padding="same")
    with pytest.raises(ValueError, match="TransposedConv1d: remove_padding must be an int >= 0"):
        rf.TransposedConv1d(in_dim, out_dim, 3, padding="valid", remove_padding=-1)
    static = Dim(4, name="static")
    (dim,) = rf.make_transposed_conv_out_spatial_dims([static], filter_size=3, padding="valid", strides=2)
    assert dim.dimension == 4 * 2 + 1


@pytest.mark.parametrize("padding,stride", [("same", 1), ("same", 3), ("valid", 1), ("valid", 2), (1, 2)])
def test_functional_conv_equals_torch_conv1d(backend, rng, padding, stride):
    import torch

    rf.select_backend(backend.name)
    x, mask = _inputs(rng, lengths=[7, 4])
    batch, time, in_dim, out_dim = _dims([7, 4])
    filter_dim = Dim(4, name="filter")
    filt = rng.normal(size=(4, IN, OUT)).astype("float32")  # RETURNN's test order: [filter, in, out]
    out, (out_time,) = rf.conv(
        rf.convert_to_tensor(x, dims=[batch, time, in_dim]), filter=rf.convert_to_tensor(filt, dims=[filter_dim, in_dim,
        out_dim]), in_dim=in_dim, out_dim=out_dim, in_spatial_dims=[time], filter_size=[filter_dim], strides=stride,
        padding=padding,
    )  # fmt: skip
    assert out.dims == (batch, out_time, out_dim)
    weight = torch.tensor(filt.transpose(2, 1, 0))  # [out, in, filter]
    for b, length in enumerate([7, 4]):  # each sequence alone: the output depends on its own frames only
        seq = torch.tensor(x[b : b + 1, :length]).transpose(1, 2)
        pads = {"valid": (0, 0), "same": (1, 2) if stride == 1 else (1, 2), 1: (1, 1)}[padding]
        ref = torch.nn.functional.conv1d(torch.nn.functional.pad(seq, pads), weight, stride=stride)[0].T.numpy()
        if padding == "same":
            ref = ref[: -(-length // stride)]
        np.testing.assert_array_equal(out_time.dyn_size_ext.numpy()[b] if out_time.dyn_size_ext is not None
                                      else out_time.dimension, len(ref))  # fmt: skip
        np.testing.assert_allclose(out.numpy()[b, : len(ref)], ref, rtol=1e-5, atol=1e-5)


def test_functional_conv_equals_the_conv1d_module(backend, rng):
    rf.select_backend(backend.name)
    x, _ = _inputs(rng)
    batch, time, in_dim, out_dim = _dims()
    module = rf.Conv1d(in_dim, out_dim, 3, padding="same", strides=2)
    module.bias.assign(rng.normal(size=OUT).astype("float32"))
    source = rf.convert_to_tensor(x, dims=[batch, time, in_dim])
    ref, ref_time = module(source, in_spatial_dim=time)
    out, (out_time,) = rf.conv(source, filter=module.filter, in_dim=in_dim, out_dim=out_dim, in_spatial_dims=[time],
                               filter_size=module.filter_size, padding="same", strides=2, bias=module.bias)  # fmt: skip
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(out_time.dyn_size_ext.numpy(), ref_time.dyn_size_ext.numpy())
    with pytest.raises(ValueError, match="conv: in_spatial_dims must be a list of one Dim"):
        rf.conv(source, filter=module.filter, in_dim=in_dim, out_dim=out_dim, in_spatial_dims=[time, time],
                filter_size=module.filter_size, padding="same")  # fmt: skip
    with pytest.raises(ValueError, match="conv: padding must be 'same', 'valid' or an int >= 0"):
        rf.conv(source, filter=module.filter, in_dim=in_dim, out_dim=out_dim, in_spatial_dims=[time],
                filter_size=module.filter_size, padding="full")  # fmt: skip


def test_make_conv_out_spatial_dims_of_a_sum_dim(backend):
    """RETURNN's test: the output of a valid convolution over ``time1 + time2 + time3`` has the summed sizes minus
    ``filter_size - 1``."""
    rf.select_backend(backend.name)
    batch = Dim(3, name="batch")
    times = [Dim(rf.convert_to_tensor(np.array(s, "int32"), dims=[batch]), name=f"time{i}")
             for i, s in enumerate([[5, 6, 7], [20, 21, 22], [10, 11, 12]])]  # fmt: skip
    (out,) = rf.make_conv_out_spatial_dims([times[0] + times[1] + times[2]], filter_size=17, strides=1,
                                           padding="valid")  # fmt: skip
    np.testing.assert_array_equal(out.dyn_size_ext.numpy(), np.array([35, 38, 41]) - 16)
    (same,) = rf.make_conv_out_spatial_dims([times[0]], filter_size=3, padding="same", strides=2)
    np.testing.assert_array_equal(same.dyn_size_ext.numpy(), [3, 3, 4])
    (padded,) = rf.make_conv_out_spatial_dims([Dim(9, name="t")], filter_size=3, padding=1, strides=2,
                                              description_prefix="c")  # fmt: skip
    assert padded.dimension == 5 and padded.name == "c:spatial0"
