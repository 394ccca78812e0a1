"""More of the Tensor/Dim API that model code from RETURNN uses: ``set_requires_gradient``/``gradient``,
``Tensor.device``, ``copy``, ``combine``, ``edit_distance``, ``copy_compatible_to``, ``Dim.declare_same_as``,
``Dim.copy_from`` and the mask cache, the static-traceable mode, and dims sized by a raw framework scalar."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests.test_devices import factories_need_a_device  # noqa: F401 (a fixture)


def _dims(n=3, t=4, k=5):
    return Dim(n, name="batch"), Dim(t, name="time"), Dim(k, name="vocab")


def test_gradient_of_scaled_gradient(backend, rng):
    batch, time, vocab = _dims()
    raw = rng.normal(size=(3, 4, 5)).astype("float32")
    x = rf.convert_to_tensor(raw, dims=[batch, time, vocab])
    rf.set_requires_gradient(x)
    y = rf.reduce_sum(rf.scaled_gradient(x * x, -0.5), axis=x.dims)
    grad = rf.gradient(y, x)
    assert grad.dims == x.dims and grad.dtype == "float32"
    np.testing.assert_allclose(grad.numpy(), -raw, rtol=1e-6)  # d/dx of x^2 is 2x, times -0.5


def test_gradient_can_be_differentiated_again(backend, rng):
    (time,) = _dims()[1:2]
    raw = rng.normal(size=(4,))

    def fn(raw_x):
        x = rf.convert_to_tensor(raw_x, dims=[time])
        rf.set_requires_gradient(x)
        grad = rf.gradient(rf.reduce_sum(x * x * x, axis=time), x)  # 3 x^2
        np.testing.assert_allclose(backend.numpy(grad), 3 * raw**2, rtol=1e-6)
        return grad

    _, (second,) = backend.value_and_grad(fn, raw)
    np.testing.assert_allclose(second, 6 * raw, rtol=1e-6)


def test_gradient_of_label_smoothed_log_prob_gradient_is_softmax_minus_smoothed_target(backend, rng):
    batch, time, vocab = _dims()
    logits = rng.normal(size=(3, 4, 5)).astype("float32")
    labels = rng.integers(0, 5, size=(3, 4))
    z = rf.convert_to_tensor(logits, dims=[batch, time, vocab], feature_dim=vocab)
    rf.set_requires_gradient(z)
    log_prob = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), 0.1)
    target = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
    loss = rf.cross_entropy(target=target, estimated=log_prob, estimated_type="log-probs", axis=vocab)
    grad = rf.gradient(rf.reduce_sum(loss, axis=loss.dims), z)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    one_hot = np.eye(5)[labels]
    expected = softmax - (one_hot * 0.9 + (1 - one_hot) * 0.1 / 4)
    np.testing.assert_allclose(grad.copy_transpose([batch, time, vocab]).numpy(), expected, atol=1e-6)


def test_gradient_is_zero_where_y_does_not_depend_on_x_and_checks_its_arguments(backend, rng):
    batch, time, _ = _dims()
    x = rf.convert_to_tensor(rng.normal(size=(3, 4)).astype("float32"), dims=[batch, time])
    other = rf.convert_to_tensor(rng.normal(size=(3,)).astype("float32"), dims=[batch])
    rf.set_requires_gradient(x)
    rf.set_requires_gradient(other)
    np.testing.assert_array_equal(rf.gradient(rf.reduce_sum(other, axis=batch), x).numpy(), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="y must be a scalar"):
        rf.gradient(x * 2.0, x)
    not_watched = rf.convert_to_tensor(np.ones(3, "float32"), dims=[batch])
    with pytest.raises(ValueError, match="set_requires_gradient"):
        rf.gradient(rf.reduce_sum(not_watched * 2.0, axis=batch), not_watched)
    with pytest.raises(TypeError, match="set_requires_gradient: source must have a float dtype"):
        rf.set_requires_gradient(rf.convert_to_tensor(np.arange(3), dims=[batch]))


def test_tensor_device_is_where_new_tensors_can_be_made(backend):
    (batch,) = _dims()[:1]
    x = rf.convert_to_tensor(np.zeros(3, "float32"), dims=[batch])
    assert x.device == "cpu"  # this machine's tests run on the CPU (tests/gpu has the device checks)
    noise = rf.random_uniform([batch], device=x.device)
    assert noise.device == x.device


def test_copy_keeps_the_value_of_a_parameter_before_assign(backend):
    param = rf.Parameter((), dtype="int32")
    param.initial = 2
    assert not param.trainable and param.dtype == "int32"
    before = rf.copy(param)
    param.assign(5)
    middle = rf.copy(param)
    param.assign_add(2)
    assert (before.numpy(), middle.numpy(), param.numpy()) == (2, 5, 7)
    with pytest.raises(ValueError, match="dtype int32 cannot be trainable"):
        rf.Parameter((), dtype="int32", trainable=True)


@pytest.mark.parametrize("kind, reference", [
    ("+", np.add), ("add", np.add), ("-", np.subtract), ("*", np.multiply), ("/", np.divide), ("**", np.power),
    ("max", np.maximum), ("minimum", np.minimum), ("squared_difference", lambda a, b: (a - b) ** 2),
    ("logaddexp", np.logaddexp),
])  # fmt: skip
def test_combine_matches_numpy_and_broadcasts_by_dims(backend, rng, kind, reference):
    batch, time, _ = _dims()
    a, b = rng.uniform(0.5, 2.0, size=(3, 4)).astype("float32"), rng.uniform(0.5, 2.0, size=(4,)).astype("float32")
    ta, tb = rf.convert_to_tensor(a, dims=[batch, time]), rf.convert_to_tensor(b, dims=[time])
    out = rf.combine(tb, kind, ta, dim_order=[batch, time])
    assert out.dims == (batch, time)
    np.testing.assert_allclose(out.numpy(), reference(b[None, :], a), rtol=1e-5)


def test_combine_rejects_an_unknown_kind(backend):
    x = rf.convert_to_tensor(np.ones(3, "float32"), dims=[Dim(3)])
    with pytest.raises(ValueError, match="combine: kind must be one of"):
        rf.combine(x, "plus", x)


def _edit_distance_np(a, b):
    row = np.arange(len(b) + 1)
    for i, label in enumerate(a):
        new = [i + 1]
        for j in range(len(b)):
            new.append(min(row[j + 1] + 1, new[j] + 1, row[j] + (label != b[j])))
        row = np.array(new)
    return row[-1]


def test_edit_distance_matches_a_numpy_reference(backend, rng):
    outer, inner = Dim(2, name="outer"), Dim(5, name="inner")
    a_lens, b_lens = rng.integers(0, 7, size=(2, 5)), rng.integers(0, 6, size=(5, 2))
    a_dim = Dim(rf.convert_to_tensor(a_lens.astype("int32"), dims=[outer, inner]), name="a_time")
    b_dim = Dim(rf.convert_to_tensor(b_lens.astype("int32"), dims=[inner, outer]), name="b_time")
    a, b = rng.integers(0, 4, size=(2, 5, a_lens.max())), rng.integers(0, 4, size=(b_lens.max(), 5, 2))
    ta = rf.convert_to_tensor(a, dims=[outer, inner, a_dim])
    tb = rf.convert_to_tensor(b, dims=[b_dim, inner, outer])  # other order of the batch dims
    out = rf.edit_distance(ta, a_dim, tb, b_dim)
    assert out.dims == (outer, inner) and out.dtype == "int32"
    expected = [[_edit_distance_np(a[i, j, : a_lens[i, j]], b[: b_lens[j, i], j, i]) for j in range(5)]
                for i in range(2)]  # fmt: skip
    np.testing.assert_array_equal(out.numpy(), expected)


def test_edit_distance_of_a_static_dim_and_bad_arguments(backend):
    batch, static = Dim(1, name="batch"), Dim(3, name="static")
    lens = Dim(rf.convert_to_tensor(np.array([2], "int32"), dims=[batch]), name="len")
    a = rf.convert_to_tensor(np.array([[1, 2, 3]]), dims=[batch, static])
    b = rf.convert_to_tensor(np.array([[1, 3]]), dims=[batch, lens])
    assert rf.edit_distance(a, static, b, lens, dtype="int64").numpy().tolist() == [1]
    with pytest.raises(TypeError, match="edit_distance: a must hold integer labels"):
        rf.edit_distance(rf.cast(a, "float32"), static, b, lens)
    with pytest.raises(ValueError, match="the same dims besides their spatial dims"):
        rf.edit_distance(a, batch, b, lens)


def test_copy_compatible_to_adds_broadcast_dims_or_unbroadcasts(backend, rng):
    batch, beam, hist = Dim(2, name="batch"), Dim(3, name="beam"), Dim(0, name="hist")
    raw = rng.integers(0, 9, size=(3, 2)).astype("int32")
    data = rf.convert_to_tensor(raw, dims=[beam, batch])
    template = rf.convert_to_tensor(np.zeros((2, 3, 0), "int32"), dims=[batch, beam, hist])
    out = data.copy_compatible_to(template)
    assert out.dims[:2] == (batch, beam) and out.dims[2] is not hist and out.dims[2].dimension == 1
    np.testing.assert_array_equal(out.numpy(), raw.T[:, :, None])
    full = data.copy_compatible_to(template, unbroadcast=True)
    assert full.dims == (batch, beam, hist) and full.numpy().shape == (2, 3, 0)
    assert backend.impl.shape(data.copy_compatible_to_dims_raw([batch, hist, beam])) == (2, 1, 3)
    with pytest.raises(ValueError, match="extra dims"):
        template.copy_compatible_to(data)
    with pytest.raises(ValueError, match="check_dtype"):
        rf.cast(data, "int64").copy_compatible_to(template)


def test_declare_same_as_takes_the_sizes_of_the_other_dim(backend):
    batch = Dim(2, name="batch")
    time = Dim(rf.convert_to_tensor(np.array([3, 1], "int32"), dims=[batch]), name="time")
    out = Dim(None, name="out")
    doubled = time * 2
    out.declare_same_as(doubled)
    np.testing.assert_array_equal(out.dyn_size_ext.numpy(), [6, 2])
    np.testing.assert_array_equal(out.dyn_size, backend.impl.convert(np.array([6, 2], "int32")))
    time.dyn_size_ext = rf.convert_to_tensor(np.array([4, 5], "int32"), dims=[batch])  # new sizes: followed
    np.testing.assert_array_equal(out.dyn_size_ext.numpy(), [8, 10])
    static = Dim(None, name="static")
    static.declare_same_as(Dim(7, name="seven"))
    assert static.dimension == 7 and static.dyn_size is None
    with pytest.raises(ValueError, match="is static; it cannot have the size"):
        Dim(3, name="three").declare_same_as(time)
    with pytest.raises(ValueError, match="already follows"):
        doubled.declare_same_as(out)


def test_mask_is_cached_per_sizes_and_shared_with_a_copy(backend):
    batch = Dim(2, name="batch")
    time = Dim(rf.convert_to_tensor(np.array([3, 1], "int32"), dims=[batch]), name="time")
    mask = time.get_mask()
    assert time.get_mask() is mask and mask.dims == (batch, time)
    np.testing.assert_array_equal(mask.numpy(), [[True, True, True], [True, False, False]])
    copy = Dim(None, name="time_copy")
    copy.copy_from(time)
    copy_mask = copy.get_mask()
    assert copy_mask is not mask and copy_mask.dims == (batch, copy) and copy_mask.raw_tensor is mask.raw_tensor
    assert rf.is_backend_raw_tensor_dim_tag_independent()
    time.dyn_size_ext = rf.convert_to_tensor(np.array([1, 2], "int32"), dims=[batch])  # new sizes: a new mask
    np.testing.assert_array_equal(time.get_mask().numpy(), [[True, False], [True, True]])


def test_static_traceable_mode_reads_capacities_not_sizes(backend):
    batch = Dim(3, name="batch")
    lens = rf.convert_to_tensor(np.array([3, 5, 2], "int32"), dims=[batch])
    time = Dim(lens, name="time")
    bounded = Dim(lens, name="bounded", bounded_by=time)
    assert not rf.is_static_traceable() and backend.numpy(bounded.get_dim_value()) == 5
    with rf.set_static_traceable_ctx():
        assert rf.is_static_traceable()
        with pytest.raises(ValueError, match="no \\(derivable\\) capacity"):
            time.get_dim_value_tensor()
        time.capacity = 100  # declared after bounded was made: still found
        assert time.get_dim_value() == 100 and bounded.get_dim_value() == 100
    assert not rf.is_static_traceable()
    with pytest.raises(TypeError, match="flag must be a bool"):
        rf.set_static_traceable(1)


def test_dim_sized_by_a_raw_scalar_or_a_scalar_tensor(backend, rng):
    raw = rng.normal(size=(4, 2)).astype("float32")
    feature = Dim(2, name="feature")
    for size in (backend.impl.convert(np.array(4, "int32")), rf.convert_to_tensor(np.array(4, "int32"))):
        time = Dim(size, name="time")
        assert time.dimension is None and not time.is_padded() and time.dyn_size_ext.dims == ()
        x = rf.convert_to_tensor(raw, dims=[time, feature])
        np.testing.assert_allclose(rf.reduce_sum(x, axis=time).numpy(), raw.sum(0), rtol=1e-6)
        np.testing.assert_array_equal(rf.range_over_dim(time).numpy(), np.arange(4))
    with pytest.raises(ValueError, match="must be a scalar"):
        Dim(backend.impl.convert(np.array([4, 2], "int32")), name="lens")


def test_dim_from_tf_shape_inside_tf_function(select):
    tf = pytest.importorskip("tensorflow")
    select("tensorflow")
    feature = Dim(2, name="feature")

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def total_and_positions(x):
        time = Dim(tf.shape(x)[0], name="time")  # a symbolic scalar while tracing
        t = rf.convert_to_tensor(x, dims=[time, feature])
        return rf.reduce_sum(t, axis=time).raw_tensor, rf.range_over_dim(time).raw_tensor

    for n in (3, 5):
        raw = np.arange(2 * n, dtype="float32").reshape(n, 2)
        total, positions = total_and_positions(tf.constant(raw))
        np.testing.assert_allclose(total.numpy(), raw.sum(0))
        np.testing.assert_array_equal(positions.numpy(), np.arange(n))
    assert total_and_positions.experimental_get_tracing_count() == 1


def test_dim_from_a_torch_scalar_inside_torch_compile(select):
    torch = pytest.importorskip("torch")
    select("torch")
    feature = Dim(2, name="feature")

    def total(x, n):
        time = Dim(n, name="time")  # a 0-dim tensor
        t = rf.convert_to_tensor(x, dims=[time, feature])
        return rf.reduce_sum(t * rf.cast(rf.range_over_dim(time), "float32"), axis=time).raw_tensor

    compiled = torch.compile(total, backend="aot_eager", fullgraph=True)
    raw = torch.arange(8, dtype=torch.float32).reshape(4, 2)
    expected = (raw * torch.arange(4.0)[:, None]).sum(0)
    torch.testing.assert_close(compiled(raw, torch.tensor(4)), expected)
    torch.testing.assert_close(total(raw, torch.tensor(4)), expected)


def test_gradient_inside_tf_function(select):
    tf = pytest.importorskip("tensorflow")
    select("tensorflow")
    time = Dim(3, name="time")

    @tf.function
    def grad_of_square(x):
        t = rf.convert_to_tensor(x, dims=[time])
        rf.set_requires_gradient(t)  # nothing to do in a graph
        return rf.gradient(rf.reduce_sum(t * t, axis=time), t).raw_tensor

    raw = np.array([1.0, -2.0, 0.5], "float32")
    np.testing.assert_allclose(grad_of_square(tf.constant(raw)).numpy(), 2 * raw)


def test_new_functions_take_the_device_of_their_inputs(restore_backend, factories_need_a_device):  # noqa: F811
    """With ``torch.device("meta")`` as the default device, a tensor made without the inputs' device fails."""
    torch = pytest.importorskip("torch")
    rf.select_backend("torch")
    batch = Dim(2, name="batch")

    def run():
        lens = rf.convert_to_tensor(torch.tensor([3, 1], device="cpu"), dims=[batch])
        a_dim, b_dim = Dim(lens, name="a"), Dim(lens + 1, name="b")
        a = rf.convert_to_tensor(torch.tensor([[1, 2, 3], [4, 0, 0]], device="cpu"), dims=[batch, a_dim])
        b = rf.convert_to_tensor(torch.tensor([[1, 3, 3, 0], [4, 4, 0, 0]], device="cpu"), dims=[batch, b_dim])
        x = rf.convert_to_tensor(torch.ones(2, 3, device="cpu"), dims=[batch, a_dim])
        rf.set_requires_gradient(x)
        grad = rf.gradient(rf.reduce_sum(rf.copy(x) * 3.0, axis=x.dims), x)
        template = rf.convert_to_tensor(torch.zeros(2, 3, 4, device="cpu"), dims=[batch, a_dim, b_dim])
        wide = x.copy_compatible_to(template, unbroadcast=True)
        return [rf.edit_distance(a, a_dim, b, b_dim), grad, wide, a_dim.get_mask()]

    expected = run()
    with torch.device("meta"):
        got = run()
    for e, g in zip(expected, got):
        assert g.device == "cpu"
        np.testing.assert_array_equal(g.numpy(), e.numpy())
    assert expected[0].numpy().tolist() == [2, 1]
    np.testing.assert_array_equal(expected[1].numpy(), [[3, 3, 3], [3, 0, 0]])  # no gradient to padding frames
