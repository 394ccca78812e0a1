"""rf.full/zeros/ones(_like), expand_dim(s), squeeze, reshape, stack, pad, slice, shift_right/left,
reverse_sequence and concat along dynamic dims, on every backend, against numpy references (padded batches: padding
frames never reach a frame inside a sequence, in values or gradients)."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import padded_dims, restore_global_state, time_mask  # noqa: F401 (an autouse fixture)

LENS = [4, 1, 3]
T = 5  # padded a frame beyond the longest sequence: the functions must use the sizes, not the buffer


def _batch(rng, lens=LENS, time=T, feat=2, dtype="float32"):
    """:return: (batch, time, feat dims, numpy data [B, T, F] with NaN in the padding, Tensor)"""
    batch, tdim = padded_dims(lens)
    fdim = Dim(feat, name="feat")
    x = rng.standard_normal((len(lens), time, feat)).astype(dtype)
    x[~time_mask(lens, time)] = np.nan  # padding that leaks shows up
    return batch, tdim, fdim, x, rf.convert_to_tensor(x, dims=[batch, tdim, fdim], feature_dim=fdim)


def _valid(out: np.ndarray, lens, axis: int = 1) -> list[np.ndarray]:
    """:return: per batch entry the frames inside its sequence (``out`` is ``[B, T, ...]``)"""
    return [np.take(out[b], np.arange(n), axis=axis - 1) for b, n in enumerate(lens)]


# -- creation -----------------------------------------------------------------------------------------------------


def test_full_zeros_ones_and_their_dtypes(backend):
    batch, time = padded_dims(LENS)
    vocab = Dim(3, name="vocab")
    z = rf.zeros([batch, time, vocab])
    assert z.dims == (batch, time, vocab) and z.dtype == "float32" and z.numpy().shape == (3, 4, 3)
    assert not z.numpy().any() and (rf.ones([vocab], dtype="int64").numpy() == 1).all()
    assert rf.full(dims=[vocab], fill_value=True).dtype == "bool"
    assert rf.full(dims=[vocab], fill_value=7).dtype == "int32"
    f = rf.full(dims=[batch, vocab], fill_value=2.5, feature_dim=vocab)
    assert f.dtype == "float32" and f.feature_dim is vocab and (f.numpy() == 2.5).all()
    s = rf.zeros([batch], dtype="int32", sparse_dim=vocab)
    assert s.sparse_dim is vocab
    value = rf.convert_to_tensor(np.float32(-1.5))
    t = rf.full(dims=[batch, vocab], fill_value=value)
    assert t.numpy().shape == (3, 3) and (t.numpy() == -1.5).all()
    on_cpu = rf.full(dims=[vocab], fill_value=1.0, device="cpu")
    assert (on_cpu.numpy() == 1.0).all() and backend.impl.device_name(on_cpu.raw_tensor) == "cpu"


def test_zeros_like_and_ones_like_keep_dims_dtype_and_special_dims(backend, rng):
    _, _, fdim, _, x = _batch(rng)
    for fn, value in ((rf.zeros_like, 0), (rf.ones_like, 1)):
        y = fn(x)
        assert y.dims == x.dims and y.dtype == x.dtype and y.feature_dim is fdim
        assert (y.numpy() == value).all()
    labels = rf.convert_to_tensor(np.array([1, 2]), dims=[Dim(2, name="n")], sparse_dim=fdim)
    assert rf.zeros_like(labels).sparse_dim is fdim


def test_creation_errors(backend):
    vocab = Dim(3, name="vocab")
    with pytest.raises(TypeError, match="full: dims must be a sequence of Dims"):
        rf.full(dims=vocab, fill_value=0)
    with pytest.raises(ValueError, match="full: dtype must be one of"):
        rf.zeros([vocab], dtype="complex64")
    with pytest.raises(TypeError, match="full: fill_value must be a number, a bool or a scalar Tensor"):
        rf.full(dims=[vocab], fill_value="x")
    with pytest.raises(TypeError, match="full: sparse_dim needs an integer dtype"):
        rf.zeros([vocab], sparse_dim=vocab)
    with pytest.raises(ValueError, match="full: fill_value must be a scalar Tensor"):
        rf.full(dims=[vocab], fill_value=rf.zeros([vocab]))


# -- dims -----------------------------------------------------------------------------------------------------------


def test_expand_dim_squeeze_reshape_and_stack(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    beam = Dim(3, name="beam")
    e = rf.expand_dim(xt, beam)
    assert e.dims == (batch, time, beam, feat)  # RETURNN's place: before the feature dim
    np.testing.assert_array_equal(e.numpy(), np.repeat(x[:, :, None], 3, axis=2))
    one = Dim(1, name="one")
    assert rf.squeeze(rf.expand_dim(xt, one), one).dims == xt.dims
    assert rf.expand_dims(xt, [beam, one]).dims == (batch, time, beam, one, feat)
    merged = Dim(3 * 2, name="batch*feat")
    r = rf.reshape(xt, in_dims=[batch, feat], out_dims=[merged])
    assert r.dims == (merged, time)
    np.testing.assert_array_equal(r.numpy(), x.transpose(0, 2, 1).reshape(6, T))
    back = rf.reshape(r, in_dims=[merged], out_dims=[batch, feat])
    np.testing.assert_array_equal(back.copy_transpose([batch, time, feat]).numpy(), x)
    other = rf.convert_to_tensor(x.transpose(2, 0, 1).copy(), dims=[feat, batch, time])
    s, pair = rf.stack([xt, other])
    assert s.dims == (pair, batch, time, feat) and pair.dimension == 2
    np.testing.assert_array_equal(s.numpy(), np.stack([x, x]))


def test_shape_function_errors(backend, rng):
    batch, time, feat, _, xt = _batch(rng)
    with pytest.raises(ValueError, match="expand_dim: source .* has dim"):
        rf.expand_dim(xt, feat)
    with pytest.raises(ValueError, match="squeeze: axis must be a static dim of size 1"):
        rf.squeeze(xt, feat)
    with pytest.raises(ValueError, match="reshape: in_dims .* and out_dims .* differ in total size"):
        rf.reshape(xt, in_dims=[batch, feat], out_dims=[Dim(5, name="five")])
    with pytest.raises(ValueError, match="stack: sources\\[1\\] has dims"):
        rf.stack([xt, rf.zeros([batch])])
    with pytest.raises(ValueError, match=r"stack: out_dim must be a Dim of \(padded\) size 2"):
        rf.stack([xt, xt], out_dim=Dim(3, name="three"))


def test_stack_onto_a_dynamic_dim_of_that_padded_length(backend, rng):
    frames, feat = Dim(2, name="frames"), Dim(3, name="feat")
    lens = np.array([3, 1])
    time = Dim(rf.convert_to_tensor(lens.astype("int32"), dims=[frames]), name="time")  # padded length 3
    x = rng.normal(size=(3, 3))
    parts = [rf.convert_to_tensor(x[i], dims=[feat]) for i in range(3)]
    out, out_dim = rf.stack(parts, out_dim=time)
    assert out_dim is time and out.dims == (time, feat)
    np.testing.assert_array_equal(out.numpy(), x)
    with pytest.raises(ValueError, match=r"padded\) size 2"):
        rf.stack(parts[:2], out_dim=time)


def test_shape_functions_pass_the_gradient_through(backend, rng):
    batch, beam, feat = Dim(2, name="batch"), Dim(3, name="beam"), Dim(4, name="feat")
    x = rng.standard_normal((2, 4))
    merged = Dim(8, name="merged")

    def fn(raw):
        t = rf.convert_to_tensor(raw, dims=[batch, feat])
        e = rf.reshape(rf.expand_dim(t, beam), in_dims=[batch, feat], out_dims=[merged])
        return rf.stack([e, e * 2.0])[0]

    _, (grad,) = backend.value_and_grad(fn, x)
    np.testing.assert_allclose(grad, np.full((2, 4), 9.0))  # 3 beams, once with weight 1 and once with 2


# -- pad ------------------------------------------------------------------------------------------------------------


def _pad_reference(x, lens, left, right, mode, value=0.0):
    """:return: per sequence np.pad of its frames, and the frames beyond filled with ``value`` (constant mode)"""
    np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    out = np.full((len(lens), left + x.shape[1] + right, x.shape[2]), value, x.dtype)
    for b, n in enumerate(lens):
        kwargs = {"constant_values": value} if mode == "constant" else {}
        out[b, : left + n + right] = np.pad(x[b, :n], ((left, right), (0, 0)), mode=np_mode, **kwargs)
    return out


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_dynamic_axis_pads_each_sequence(backend, rng, mode):
    batch, time, feat, x, xt = _batch(rng, lens=[4, 2, 3])
    value = 1.5 if mode == "constant" else None
    y, (padded,) = rf.pad(xt, axes=[time], padding=[(2, 1)], mode=mode, value=value)
    assert y.dims == (batch, padded, feat) and y.feature_dim is feat
    np.testing.assert_array_equal(padded.dyn_size_ext.numpy(), [7, 5, 6])
    expected = _pad_reference(x, [4, 2, 3], 2, 1, mode, value or 0.0)
    got = y.numpy()
    if mode == "constant":
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    for b, n in enumerate([4, 2, 3]):
        np.testing.assert_allclose(got[b, : n + 3], expected[b, : n + 3], rtol=1e-6)


def test_pad_static_dims_and_tensor_value(backend, rng):
    a, b = Dim(3, name="a"), Dim(4, name="b")
    x = rng.standard_normal((3, 4)).astype("float32")
    xt = rf.convert_to_tensor(x, dims=[a, b])
    y, (pa, pb) = rf.pad(xt, axes=[a, b], padding=[(1, 2), (0, 3)], value=-1.0)
    assert (pa.dimension, pb.dimension) == (6, 7)
    np.testing.assert_array_equal(y.numpy(), np.pad(x, ((1, 2), (0, 3)), constant_values=-1.0))
    for mode, np_mode in (("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")):
        y, _ = rf.pad(xt, axes=[b], padding=[(2, 3)], mode=mode)
        np.testing.assert_array_equal(y.numpy(), np.pad(x, ((0, 0), (2, 3)), mode=np_mode), err_msg=mode)
    value = rf.convert_to_tensor(np.array([10.0, 20.0, 30.0], "float32"), dims=[a])
    y, (pb,) = rf.pad(xt, axes=[b], padding=[(1, 1)], value=value)
    expected = np.concatenate([[[10.0], [20.0], [30.0]], x, [[10.0], [20.0], [30.0]]], axis=1)
    np.testing.assert_array_equal(y.copy_transpose([a, pb]).numpy(), expected)
    y, (pb,) = rf.pad(xt, axes=[b], padding=[(1, Dim(2, name="two"))])
    assert pb.dimension == 7 and y.numpy().shape == (3, 7)


def test_pad_right_of_a_dynamic_axis_with_a_tensor_value_and_bool(backend, rng):
    batch, time, feat, x, xt = _batch(rng, lens=[4, 2, 3])
    value = rf.convert_to_tensor(np.array([7.0, 8.0, 9.0], "float32"), dims=[batch])
    y, (padded,) = rf.pad(xt, axes=[time], padding=[(0, 1)], value=value)
    got = y.copy_transpose([batch, padded, feat]).numpy()
    for b, n in enumerate([4, 2, 3]):
        np.testing.assert_array_equal(got[b, :n], x[b, :n])
        assert (got[b, n:] == [7.0, 8.0, 9.0][b]).all()
    mask = rf.sequence_mask(time)
    y, (padded,) = rf.pad(mask, axes=[time], padding=[(0, 1)], value=False)
    assert y.dtype == "bool"
    np.testing.assert_array_equal(y.numpy(), time_mask([4, 2, 3], 5))  # False from each sequence's end on


def test_pad_without_dynamic_handling_pads_the_buffer(backend, rng):
    batch, time, feat, x, xt = _batch(rng, lens=[4, 2, 3], time=4)
    y, (padded,) = rf.pad(xt, axes=[time], padding=[(0, 1)], value=0.0, handle_dynamic_dims=False)
    assert padded.dimension is None and not padded.is_padded()
    got = y.numpy()
    np.testing.assert_array_equal(got[:, 4], 0.0)
    np.testing.assert_array_equal(got[0, :4], x[0])


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pad_gradient_reaches_only_the_frames_inside_the_sequences(backend, rng, mode):
    lens = [4, 2, 3]
    batch, time, feat, x, _ = _batch(rng, lens=lens)
    x = np.nan_to_num(x).astype("float64")

    def fn(raw):
        y, (padded,) = rf.pad(rf.convert_to_tensor(raw, dims=[batch, time, feat]), axes=[time], padding=[(1, 1)],
                              mode=mode)  # fmt: skip
        return rf.where(rf.sequence_mask(padded, y), y, 0.0)

    out, (grad,) = backend.value_and_grad(fn, x)
    expected = np.zeros_like(x)
    for b, n in enumerate(lens):  # each output frame inside the sequence counts once for its source frame
        index = np.arange(n)
        sources = np.pad(index, (1, 1), constant_values=-1) if mode == "constant" else np.pad(index, 1, "reflect")
        for s in sources[sources >= 0]:
            expected[b, s] += 1
    np.testing.assert_allclose(grad, expected)


def test_pad_errors(backend, rng):
    batch, time, feat, _, xt = _batch(rng)
    with pytest.raises(ValueError, match="pad: mode must be one of"):
        rf.pad(xt, axes=[time], padding=[(1, 1)], mode="symmetric")
    with pytest.raises(ValueError, match="pad: padding must hold one \\(left, right\\) pair per axis"):
        rf.pad(xt, axes=[time, feat], padding=[(1, 1)])
    with pytest.raises(ValueError, match="pad: each padding pair must be"):
        rf.pad(xt, axes=[time], padding=[(-1, 1)])
    with pytest.raises(ValueError, match="pad: value is only for mode='constant'"):
        rf.pad(xt, axes=[time], padding=[(1, 1)], mode="reflect", value=0.0)
    with pytest.raises(ValueError, match="pad: left padding .* is a dynamic dim"):
        rf.pad(xt, axes=[feat], padding=[(time, 0)])
    with pytest.raises(TypeError, match="pad: axes must be a sequence of Dims"):
        rf.pad(xt, axes=time, padding=[(1, 1)])


# -- slice, shift, reverse ------------------------------------------------------------------------------------------


def test_slice_static_axis(backend, rng):
    a, b = Dim(2, name="a"), Dim(7, name="b")
    x = rng.standard_normal((2, 7)).astype("float32")
    xt = rf.convert_to_tensor(x, dims=[a, b])
    cases = [({"start": 2}, x[:, 2:]), ({"start": 1, "end": 5}, x[:, 1:5]), ({"start": 1, "end": -2}, x[:, 1:-2]),
             ({"start": -3}, x[:, -3:]), ({"start": 1, "step": 2}, x[:, 1::2]), ({"start": 2, "size": 3}, x[:, 2:5]),
             ({"end": 4, "step": 3}, x[:, :4:3]), ({"start": -4, "end": -1}, x[:, -4:-1])]  # fmt: skip
    for kwargs, expected in cases:
        y, out_dim = rf.slice(xt, axis=b, **kwargs)
        assert y.dims == (a, out_dim) and out_dim.dimension == expected.shape[1], kwargs
        np.testing.assert_array_equal(y.numpy(), expected, err_msg=str(kwargs))
    same, dim = rf.slice(xt, axis=b)
    assert same is xt and dim is b


def test_slice_dynamic_axis_and_tensor_start(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    y, rest = rf.slice(xt, axis=time, start=1)
    np.testing.assert_array_equal(rest.dyn_size_ext.numpy(), [3, 0, 2])
    for b, frames in enumerate(_valid(y.numpy(), [3, 0, 2])):
        np.testing.assert_array_equal(frames, x[b, 1 : 1 + len(frames)])
    start = rf.convert_to_tensor(np.array([1, 0, 2], "int32"), dims=[batch])
    two = Dim(2, name="two")
    y, out = rf.slice(xt, axis=time, start=start, size=two)
    assert out is two
    got = y.copy_transpose([batch, two, feat]).numpy()
    for b, (s, n) in enumerate(zip([1, 0, 2], LENS)):
        expected = x[b, np.clip(np.arange(s, s + 2), 0, n - 1)]  # clipped into the sequence
        np.testing.assert_array_equal(got[b], expected)
    size = rf.convert_to_tensor(np.array([2, 1, 1], "int32"), dims=[batch])
    y, out = rf.slice(xt, axis=time, start=1, size=size)
    np.testing.assert_array_equal(out.dyn_size_ext.numpy(), [2, 1, 1])
    np.testing.assert_array_equal(y.copy_transpose([batch, out, feat]).numpy()[0], x[0, 1:3])


def test_slice_errors(backend, rng):
    _, time, _, _, xt = _batch(rng)
    with pytest.raises(ValueError, match="slice: step must be an int > 0"):
        rf.slice(xt, axis=time, step=-1)
    with pytest.raises(TypeError, match="slice: start must be an int, Tensor or None"):
        rf.slice(xt, axis=time, start=1.5)
    with pytest.raises(ValueError, match="slice: size cannot be combined with end"):
        rf.slice(xt, axis=time, size=2, end=3)
    a = Dim(4, name="a")
    with pytest.raises(ValueError, match="slice: the slice has 2 frames of .* but out_dim .* has 3"):
        rf.slice(rf.zeros([a]), axis=a, start=2, out_dim=Dim(3, name="three"))


def test_shift_right_and_left_per_sequence(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    right = rf.shift_right(xt, axis=time, pad_value=0.0, amount=2)
    left = rf.shift_left(xt, axis=time, pad_value=-1.0)
    assert right.dims == left.dims == xt.dims
    for b, n in enumerate(LENS):
        expected_right = np.concatenate([np.zeros((2, 2)), x[b, :n]])[:n]
        expected_left = np.concatenate([x[b, 1:n], -np.ones((1, 2))])
        np.testing.assert_array_equal(right.numpy()[b, :n], expected_right)
        np.testing.assert_array_equal(left.numpy()[b, :n], expected_left)
    labels = rf.convert_to_tensor(np.array([[3, 1, 2]]), dims=[Dim(1, name="b"), Dim(3, name="l")],
                                  sparse_dim=Dim(5, name="vocab"))  # fmt: skip
    shifted = rf.shift_right(labels, axis=labels.dims[1], pad_value=0)
    np.testing.assert_array_equal(shifted.numpy(), [[0, 3, 1]])
    assert shifted.sparse_dim is labels.sparse_dim and shifted.dtype == labels.dtype


def test_reverse_sequence_reverses_each_sequence_and_its_gradient(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    y = rf.reverse_sequence(xt, axis=time)
    assert y.dims == xt.dims and y.feature_dim is feat
    for b, n in enumerate(LENS):
        np.testing.assert_array_equal(y.numpy()[b, :n], x[b, :n][::-1])
    flipped = rf.reverse_sequence(xt, axis=time, handle_dynamic_dims=False)
    np.testing.assert_array_equal(flipped.numpy(), x[:, ::-1])
    np.testing.assert_array_equal(rf.reverse_sequence(xt, axis=feat).numpy(), x[:, :, ::-1])
    clean = np.nan_to_num(x).astype("float64")

    def fn(raw):
        out = rf.reverse_sequence(rf.convert_to_tensor(raw, dims=[batch, time, feat]), axis=time)
        return rf.where(rf.sequence_mask(time, out), out, 0.0)

    _, (grad,) = backend.value_and_grad(fn, clean)
    np.testing.assert_array_equal(grad, np.broadcast_to(time_mask(LENS, T)[:, :, None], x.shape))


# -- concat along dynamic dims --------------------------------------------------------------------------------------


def test_concat_joins_the_sequences_without_padding(backend, rng):
    batch, time, feat, x, xt = _batch(rng)
    time2 = Dim(rf.convert_to_tensor(np.array([1, 2, 0], "int32"), dims=[batch]), name="time2")
    y2 = rng.standard_normal((3, 2, 2)).astype("float32")
    yt = rf.convert_to_tensor(y2, dims=[batch, time2, feat])
    out, out_dim = rf.concat((xt, time), (yt, time2))
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), [5, 3, 3])
    assert out.dims == (batch, out_dim, feat) and out.feature_dim is feat
    got = out.numpy()
    for b, (n, m) in enumerate(zip(LENS, [1, 2, 0])):
        np.testing.assert_array_equal(got[b, : n + m], np.concatenate([x[b, :n], y2[b, :m]]))
    static = Dim(2, name="static")
    s = rf.convert_to_tensor(np.ones((3, 2, 2), "float32"), dims=[batch, static, feat])
    out, out_dim = rf.concat((s, static), (xt, time))  # only the last dim is dynamic: no masking needed
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), [6, 3, 5])
    np.testing.assert_array_equal(out.numpy()[0, :6], np.concatenate([np.ones((2, 2)), x[0, :4]]))
    raw, raw_dim = rf.concat((xt, time), (yt, time2), handle_dynamic_dims=False)
    assert not raw_dim.is_padded() and raw.numpy().shape == (3, 7, 2)


def test_concat_dynamic_gradient(backend, rng):
    batch, time, feat, x, _ = _batch(rng)
    clean = np.nan_to_num(x).astype("float64")

    def fn(raw):
        t = rf.convert_to_tensor(raw, dims=[batch, time, feat])
        out, out_dim = rf.concat((t, time), (t * 2.0, time))
        return rf.where(rf.sequence_mask(out_dim, out), out, 0.0)

    _, (grad,) = backend.value_and_grad(fn, clean)
    np.testing.assert_array_equal(grad, 3.0 * np.broadcast_to(time_mask(LENS, T)[:, :, None], x.shape))


def test_slice_and_shift_gradients_count_each_source_frame_once(backend, rng):
    batch, time, feat, x, _ = _batch(rng)
    clean = np.nan_to_num(x).astype("float64")
    start = rf.convert_to_tensor(np.array([1, 0, 2], "int32"), dims=[batch])
    two = Dim(2, name="two")

    def fn(raw):
        t = rf.convert_to_tensor(raw, dims=[batch, time, feat])
        shifted = rf.shift_right(t, axis=time, pad_value=0.0)
        return rf.reduce_sum(shifted, axis=time) + rf.reduce_sum(rf.slice(t, axis=time, start=start, size=two)[0],
                                                                 axis=two)  # fmt: skip

    _, (grad,) = backend.value_and_grad(fn, clean)
    expected = np.zeros((3, T))
    for b, (n, s) in enumerate(zip(LENS, [1, 0, 2])):
        expected[b, : n - 1] += 1  # shifted right by one: the last frame of each sequence drops out
        for i in np.clip(np.arange(s, s + 2), 0, n - 1):
            expected[b, i] += 1
    np.testing.assert_array_equal(grad, np.broadcast_to(expected[..., None], x.shape))


def test_constant_fill_unstack_and_scalar_creation(backend):
    pair = Dim(2, name="pair")
    both = rf.convert_to_tensor(np.array([[1.0, 2.0], [3.0, 4.0]], "float32"), dims=[pair, Dim(2, name="x")])
    first, second = rf.unstack(both, axis=pair)
    np.testing.assert_array_equal(first.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(second.numpy(), [3.0, 4.0])
    scalar = rf.zeros((), dtype="bool")
    assert scalar.dims == () and scalar.numpy() == np.False_
    assert rf.constant(4.5, dims=()).numpy() == np.float32(4.5) and rf.fill is rf.full
    assert rf.zeros([pair], dtype="bool").numpy().tolist() == [False, False]
    batch, time = padded_dims(LENS)
    with pytest.raises(ValueError, match="unstack: axis must be a static dim"):
        rf.unstack(rf.zeros([batch, time]), axis=time)
