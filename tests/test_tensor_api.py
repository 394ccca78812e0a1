"""The Tensor/Dim API that model code from RETURNN uses: sizes and dim values, capacity, ``Dim.copy``,
``copy_masked``, ``verify_out_shape``, ``dims_set``, names, ``%`` and ``//``, per-function train flags."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

LENS = np.array([3, 1, 4], "int32")


def _time(lens=LENS, **kwargs):
    batch = Dim(len(lens), name="batch")
    return batch, Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time", **kwargs)


def test_size_tensor_and_dim_value_of_static_and_dynamic_dims(backend):
    batch, time = _time()
    vocab = Dim(5, name="vocab")
    size = vocab.get_size_tensor()
    assert size.dims == () and size.dtype == "int32" and size.numpy() == 5 and size.backend_name == backend.name
    assert vocab.get_size_tensor_or_int() == 5 and vocab.get_dim_value() == 5 and vocab.get_dim_value_tensor() == 5
    assert time.get_size_tensor() is time.dyn_size_ext
    np.testing.assert_array_equal(time.get_size_tensor(device="cpu").numpy(), LENS)
    value = time.get_dim_value_tensor()
    assert isinstance(value, rf.Tensor) and value.dims == () and value.numpy() == 4
    assert backend.numpy(time.get_dim_value()) == 4
    with pytest.raises(ValueError, match="sizes of .*'late'.* are not known"):
        Dim(None, name="late").get_size_tensor()


def test_static_dynamic_size_and_need_masking(backend):
    batch, time = _time()
    vocab = Dim(5, name="vocab")
    assert vocab.is_static() and vocab.size == 5 and not vocab.need_masking()
    assert not time.is_static() and time.size is None and time.need_masking()
    assert not rf.batch_dim.need_masking() and Dim(None, name="late").need_masking()
    scalar = Dim(rf.convert_to_tensor(np.array(3, "int32")), name="scalar")  # one size for all: no padding
    assert not scalar.need_masking()


def test_capacity_and_bounded_by(backend):
    batch, time = _time(capacity=6)
    assert time.capacity == 6 and time.get_dim_value() == 6 and time.need_masking()
    assert rf.range_over_dim(time).numpy().tolist() == list(range(6))
    assert rf.sequence_mask(time).numpy().shape == (3, 6)
    assert Dim(4, name="v").capacity == 4 and Dim(4, name="v", capacity=4).capacity == 4
    with pytest.raises(ValueError, match="capacity of a static dim must be its dimension 4"):
        Dim(4, name="v", capacity=8)
    with pytest.raises(ValueError, match="capacity must be an int >= 0 or None"):
        Dim(None, name="t", capacity=-1)
    sub = Dim(None, name="sub", bounded_by=time)
    assert sub.bounded_by is time and sub.capacity is None
    with pytest.raises(TypeError, match="bounded_by must be a Dim or None, got int"):
        Dim(None, name="t", bounded_by=3)


def test_dim_copy(backend):
    batch, time = _time()
    assert time.copy() is time and time.copy(same_as_self=True, description="time") is time
    new = time.copy(same_as_self=False, description="new-dim")
    assert new is not time and new.name == "new-dim" and new.dyn_size_ext is time.dyn_size_ext
    assert Dim(5, name="v").copy(same_as_self=False, description="w").dimension == 5
    with pytest.raises(ValueError, match="needs a description"):
        time.copy(same_as_self=False)
    with pytest.raises(ValueError, match="same_as_self=False"):
        time.copy(description="other")


def test_range_over_dim_sparse_dim_only_for_integer_dtypes(backend):
    vocab = Dim(4, name="vocab")
    floats = rf.range_over_dim(vocab, dtype="float32")
    assert floats.sparse_dim is None and floats.dtype == "float32"
    np.testing.assert_array_equal(floats.numpy(), np.arange(4, dtype="float32"))
    assert rf.range_over_dim(vocab).sparse_dim is vocab and rf.range_over_dim(vocab, dtype="int64").sparse_dim is vocab


def test_copy_masked_equals_numpy(backend, rng):
    batch, time = _time()
    feat = Dim(2, name="feat")
    labels = Dim(rf.convert_to_tensor(np.array([2, 0, 1], "int32"), dims=[batch]), name="labels")
    x = rng.standard_normal((4, 3, 2, 2)).astype("float32")
    t = rf.convert_to_tensor(x, dims=[time, batch, labels, feat], feature_dim=feat, name="x")
    time_mask = (np.arange(4)[:, None] < LENS[None, :])[:, :, None, None]
    label_mask = (np.arange(2)[None, :] < np.array([2, 0, 1])[:, None])[None, :, :, None]
    out = t.copy_masked(-1.0)
    assert out.dims == t.dims and out.feature_dim is feat and out.name == "x"
    np.testing.assert_array_equal(out.numpy(), np.where(time_mask & label_mask, x, -1.0))
    only_time = t.copy_masked(0.0, dims=[time])
    np.testing.assert_array_equal(only_time.numpy(), np.where(time_mask, x, 0.0))
    np.testing.assert_array_equal(t.copy_masked(0.0, dims=[feat]).numpy(), x)  # static: nothing to mask
    with pytest.raises(ValueError, match="not one of the tensor's dims"):
        t.copy_masked(0.0, dims=[Dim(3, name="other")])


def test_copy_masked_keeps_sparse_integer_labels(backend):
    batch, time = _time()
    vocab = Dim(10, name="vocab")
    y = rf.convert_to_tensor(np.full((3, 4), 7), dims=[batch, time], sparse_dim=vocab)
    out = y.copy_masked(0)
    assert out.sparse_dim is vocab and out.dtype == y.dtype
    np.testing.assert_array_equal(out.numpy(), np.where(np.arange(4)[None, :] < LENS[:, None], 7, 0))


def test_astype_casts_like_numpy(backend):
    batch, time = _time()
    x = np.array([[1.7, -0.5, 2.0, 0.0]] * 3)
    t = rf.convert_to_tensor(x, dims=[batch, time])
    out = t.astype("int32")
    assert out.dtype == "int32" and out.dims == (batch, time)
    np.testing.assert_array_equal(out.numpy(), x.astype("int32"))


def test_verify_out_shape(backend):
    batch, time = _time()
    vocab = Dim(10, name="vocab")
    x = rf.convert_to_tensor(np.zeros((3, 4, 10), "float32"), dims=[batch, time, vocab])
    x.verify_out_shape({vocab, batch, time})  # the order does not matter
    y = rf.convert_to_tensor(np.zeros((3, 4), "int32"), dims=[batch, time], sparse_dim=vocab)
    y.verify_out_shape({batch, time})
    y.verify_out_shape({batch, time, vocab})  # an implicit dim may be named
    rf.convert_to_tensor(1.0).verify_out_shape(())
    with pytest.raises(ValueError, match=r"missing in out_shape: \{Dim\('vocab', 10\)\}"):
        x.verify_out_shape({batch, time})
    other = Dim(5, name="other")
    with pytest.raises(ValueError, match=r"not dims of the tensor: \{Dim\('other', 5\)\}"):
        x.verify_out_shape({batch, time, vocab, other})
    with pytest.raises(TypeError, match="must be a set of Dims, got list"):
        x.verify_out_shape([batch, time, vocab])
    with pytest.raises(TypeError, match="must hold Dims, got str"):
        x.verify_out_shape({"batch"})


def test_dims_set_and_names(backend):
    batch, time = _time()
    x = rf.convert_to_tensor(np.zeros((3, 4), "float32"), dims=[batch, time], name="features")
    assert x.dims_set == {batch, time} and x.name == "features"
    assert x.copy_transpose([time, batch]).name == "features"
    assert rf.convert_to_tensor(1.0).name is None


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_floordiv_and_mod_follow_python_for_negative_values(backend, dtype):
    n, m = Dim(6, name="n"), Dim(4, name="m")
    a = np.array([-7, -6, -1, 0, 5, 7]).astype(dtype)
    b = np.array([-3, -2, 2, 3]).astype(dtype)
    ta, tb = rf.convert_to_tensor(a, dims=[n]), rf.convert_to_tensor(b, dims=[m])
    np.testing.assert_array_equal((ta // tb).numpy(), a[:, None] // b[None, :])
    np.testing.assert_array_equal((ta % tb).numpy(), a[:, None] % b[None, :])
    np.testing.assert_array_equal((ta // 3).numpy(), a // 3)
    np.testing.assert_array_equal((ta % -3).numpy(), a % -3)
    np.testing.assert_array_equal((-7 // tb).numpy(), -7 // b)
    np.testing.assert_array_equal((7 % tb).numpy(), 7 % b)
    assert (ta // tb).dtype == dtype and (ta // tb).dims == (n, m)


def test_train_flag_per_function():
    def dropout():
        pass

    def other():
        pass

    ctx = rf.RunCtx(stage="train_step", train_flag=True)
    assert ctx.is_train_flag_enabled() and ctx.is_train_flag_enabled(func=dropout)
    with ctx.train_flag_ctx(False, func=dropout):
        assert not ctx.is_train_flag_enabled(func=dropout)
        assert ctx.is_train_flag_enabled(func=other) and ctx.train_flag
        with ctx.train_flag_ctx(True, func=[dropout, other]):
            assert ctx.is_train_flag_enabled(func=dropout)
        with ctx.train_flag_ctx(False):
            assert not ctx.train_flag and not ctx.is_train_flag_enabled(func=other)
    assert ctx.is_train_flag_enabled(func=dropout)
    with pytest.raises(TypeError, match="func must be a function or None, got int"):
        ctx.is_train_flag_enabled(func=3)
    with pytest.raises(TypeError, match="func must be a function"):
        with ctx.train_flag_ctx(False, func=[dropout, "x"]):
            pass
