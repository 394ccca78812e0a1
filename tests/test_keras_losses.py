"""The drop-in Keras loss against Keras's own: ``CategoricalCrossentropy(label_smoothing=...)`` on one-hot targets
and ``SparseCategoricalCrossentropy`` (``ignore_class``, Keras masks), called directly (values and gradients) and in
``model.compile``/``fit`` runs with and without ``jit_compile`` (the same losses and weights after training)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("these tests run Keras on its TensorFlow backend", allow_module_level=True)

from returnn_ls.keras_losses import LabelSmoothedCrossEntropy  # noqa: E402

K = 5


def _data(seed=0, batch=6, time=4, features=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features)).astype("float32")
    labels = rng.integers(0, K, size=(batch, time)).astype("int32")
    return x, labels


def _value_and_grad(loss_fn, y_true, logits):
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = loss_fn(y_true, logits)
    return loss.numpy(), tape.gradient(loss, logits).numpy()


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_one_hot_targets_equal_categorical_crossentropy(reduction):
    _, labels = _data()
    logits = np.random.default_rng(1).normal(size=(6, 4, K)).astype("float32")
    one_hot = np.eye(K, dtype="float32")[labels]
    ours = LabelSmoothedCrossEntropy(0.2, convention="uniform", reduction=reduction)
    theirs = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2, reduction=reduction)
    (mine, grad), (ref, grad_ref) = _value_and_grad(ours, one_hot, logits), _value_and_grad(theirs, one_hot, logits)
    np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-7)


def test_the_returnn_convention_equals_categorical_crossentropy_on_its_soft_target():
    _, labels = _data(seed=3)
    logits = np.random.default_rng(2).normal(size=(6, 4, K)).astype("float32")
    soft = np.full((6, 4, K), 0.1 / (K - 1), "float32")
    np.put_along_axis(soft, labels[..., None], 0.9, axis=-1)
    mine = LabelSmoothedCrossEntropy(0.1)(labels, logits)
    ref = keras.losses.CategoricalCrossentropy(from_logits=True)(soft, logits)
    np.testing.assert_allclose(mine.numpy(), ref.numpy(), rtol=1e-5)


def test_sparse_targets_with_a_pad_label_equal_sparse_categorical_crossentropy():
    _, labels = _data(seed=4)
    labels[:, -1] = -1
    logits = np.random.default_rng(5).normal(size=(6, 4, K)).astype("float32")
    ours = LabelSmoothedCrossEntropy(0.0, ignore_class=-1)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    (mine, grad), (ref, grad_ref) = _value_and_grad(ours, labels, logits), _value_and_grad(theirs, labels, logits)
    np.testing.assert_allclose(mine, ref, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-7)
    assert (grad[:, -1] == 0).all()


def _model(seed: int, mask: bool) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((4, 3))] + ([keras.layers.Masking(0.0)] if mask else [])
    return keras.Sequential(layers + [keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(K)])


def _fit(loss, x, y, *, jit: bool, mask: bool = False) -> tuple[list[float], list[np.ndarray]]:
    model = _model(7, mask)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=jit)
    history = model.fit(x, y, batch_size=3, epochs=3, shuffle=False, verbose=0)
    return history.history["loss"], model.get_weights()


def _same_training(ours, theirs) -> None:
    (loss, weights), (ref, ref_weights) = ours, theirs
    np.testing.assert_allclose(loss, ref, rtol=1e-4)
    assert loss[-1] < loss[0]  # it trains
    for w, r in zip(weights, ref_weights):
        np.testing.assert_allclose(w, r, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_fit_with_one_hot_targets_trains_as_categorical_crossentropy(jit):
    x, labels = _data(seed=8)
    one_hot = np.eye(K, dtype="float32")[labels]
    ours = _fit(LabelSmoothedCrossEntropy(0.1, convention="uniform"), x, one_hot, jit=jit)
    theirs = _fit(keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), x, one_hot, jit=jit)
    _same_training(ours, theirs)


@pytest.mark.parametrize("jit", [False, True])
def test_fit_with_sparse_targets_and_padding_trains_as_sparse_categorical_crossentropy(jit):
    x, labels = _data(seed=9)
    labels[:2, 2:] = -1  # padding by a pad label
    ours = _fit(LabelSmoothedCrossEntropy(ignore_class=-1), x, labels, jit=jit)
    theirs = _fit(keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1), x, labels, jit=jit)
    _same_training(ours, theirs)


@pytest.mark.parametrize("jit", [False, True])
def test_fit_with_a_keras_mask_ignores_the_labels_of_masked_frames(jit):
    x, labels = _data(seed=10)
    x[:2, 3:] = 0.0  # masked by the Masking layer
    garbage = labels.copy()
    garbage[:2, 3:] = 99  # out of range: the masked frames' labels must not be read
    ours = _fit(LabelSmoothedCrossEntropy(), x, garbage, jit=jit, mask=True)
    theirs = _fit(keras.losses.SparseCategoricalCrossentropy(from_logits=True), x, labels, jit=jit, mask=True)
    _same_training(ours, theirs)


def test_a_variable_smoothing_and_the_config_round_trip():
    smoothing = tf.Variable(0.0)
    loss_fn = LabelSmoothedCrossEntropy(smoothing, convention="uniform")
    _, labels = _data(seed=11)
    logits = np.random.default_rng(6).normal(size=(6, 4, K)).astype("float32")
    step = tf.function(lambda: loss_fn(labels, logits))
    plain = step().numpy()
    smoothing.assign(0.3)  # a schedule: the traced function sees the new value
    ref = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits).numpy()
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.3)(
        np.eye(K, dtype="float32")[labels], logits).numpy()  # fmt: skip
    np.testing.assert_allclose([plain, step().numpy()], [ref, smoothed], rtol=1e-5)
    clone = LabelSmoothedCrossEntropy.from_config(loss_fn.get_config())
    assert clone.smoothing == pytest.approx(0.3) and clone.convention == "uniform"
    with pytest.raises(ValueError, match="LabelSmoothedCrossEntropy: smoothing must be in"):
        LabelSmoothedCrossEntropy(1.5)
