"""A drop-in Keras loss: ``keras.losses.Loss`` for ``model.compile(loss=...)``/``fit`` on this library's fused
label-smoothed cross entropy (:func:`returnn_ls.label_smoothed_cross_entropy`), also under
``jit_compile=True``. Importing this module imports Keras; ``import returnn_ls`` does not. Keras must run on the
TensorFlow (or torch) backend, the frameworks this library has backends for.

Example (where ``keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)`` or
``SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)`` was)::

    from returnn_ls.keras_losses import LabelSmoothedCrossEntropy

    model.compile(optimizer="adam", loss=LabelSmoothedCrossEntropy(0.1, convention="uniform", ignore_class=-1))
    model.fit(x, labels, epochs=3)   # labels (batch, time) class indices, -1 at padding; or one-hot (..., K)

Padding: frames whose label is ``ignore_class``, or frames masked by Keras (a ``Masking`` layer or
``Embedding(mask_zero=True)`` upstream of ``y_pred``), get loss 0 and gradient 0 (their label may be anything),
and the ``"sum_over_batch_size"`` reduction averages over the other frames, as Keras does for its own losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls._optional import optional_import

keras = optional_import("keras", "returnn_ls.keras_losses")

import returnn_ls as rf  # noqa: E402 (after the framework check, so that a missing Keras names its extra)
from returnn_ls import _validate  # noqa: E402
from returnn_ls.dim import Dim  # noqa: E402

__all__ = ["LabelSmoothedCrossEntropy"]

_TINY = 1e-30


def _set_mask(losses: Any, mask: Any) -> None:
    """Attach ``mask`` to ``losses`` as Keras's own losses do for ``ignore_class`` (the reduction then averages
    over the frames inside the mask)."""
    try:
        from keras.src.backend import set_keras_mask
    except ImportError:  # older Keras 3 releases keep it as an attribute
        losses._keras_mask = mask
    else:
        set_keras_mask(losses, mask)


def _get_mask(tensor: Any) -> Any:
    try:
        from keras.src.backend import get_keras_mask
    except ImportError:
        return getattr(tensor, "_keras_mask", None)
    return get_keras_mask(tensor)


@keras.saving.register_keras_serializable(package="returnn_ls")
class LabelSmoothedCrossEntropy(keras.losses.Loss):
    """Label-smoothed cross entropy for Keras, dense (one-hot) or sparse (class index) targets, on the fused kernel.

    With ``convention="uniform"`` it equals ``keras.losses.CategoricalCrossentropy(from_logits=True,
    label_smoothing=smoothing)`` for one-hot targets, and with ``smoothing=0``
    ``SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class)``.

    :param smoothing: ``a`` in ``[0, 1]``: a float, or a scalar ``tf.Variable``/tensor (a schedule)
    :param convention: ``"returnn"`` (others ``a/(K-1)``, target ``1-a``) or ``"uniform"`` (Keras's: ``a/K``)
    :param exclude_labels: labels that get no smoothing mass
    :param ignore_class: the label of padding frames (Keras's name), or None
    :param from_logits: ``y_pred`` are logits (the default, what the fused kernel takes); with False they are
        probabilities (a softmax output), whose log is used as logits
    :param sparse: whether ``y_true`` holds class indices; None: decided by the shapes (``y_true`` with the shape
        of ``y_pred`` is one-hot; a one-hot target is reduced to its argmax)
    :param reduction: Keras's (``"sum_over_batch_size"``, ``"sum"``, ``"mean"``, ``"none"``, None)
    """

    def __init__(self, smoothing: float | Any = 0.0, *, convention: str = "returnn",
                 exclude_labels: Sequence[int] | None = None, ignore_class: int | None = None,
                 from_logits: bool = True, sparse: bool | None = None, reduction: str | None = "sum_over_batch_size",
                 name: str = "label_smoothed_cross_entropy", dtype: Any = None):  # fmt: skip
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        cls = type(self).__name__
        if isinstance(smoothing, (int, float)):
            smoothing = _validate.check_fraction(smoothing, "smoothing", cls)
        if ignore_class is not None and (not isinstance(ignore_class, int) or isinstance(ignore_class, bool)):
            raise TypeError(f"{cls}: ignore_class must be an int or None, got {ignore_class!r}")
        for flag, value in (("from_logits", from_logits), ("sparse", sparse)):
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"{cls}: {flag} must be a bool, got {value!r}")
        self.smoothing, self.convention, self.ignore_class = smoothing, convention, ignore_class
        self.exclude_labels = None if exclude_labels is None else [int(label) for label in exclude_labels]
        self.from_logits, self.sparse = from_logits, sparse

    def _labels(self, y_true: Any, y_pred: Any) -> Any:
        """:return: int32 class indices with the shape of ``y_pred`` without its last axis"""
        ops = keras.ops
        rank, num_classes = len(y_pred.shape), y_pred.shape[-1]
        sparse = self.sparse
        if sparse is None:
            sparse = not (len(y_true.shape) == rank and y_true.shape[-1] == num_classes)
        if not sparse:
            return ops.cast(ops.argmax(y_true, axis=-1), "int32")
        if len(y_true.shape) == rank and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        return ops.cast(y_true, "int32")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """:return: the per-frame loss (the shape of ``y_pred`` without its class axis)"""
        ops = keras.ops
        labels = self._labels(y_true, y_pred)
        valid = _get_mask(y_pred)
        if self.ignore_class is not None:
            keep = ops.not_equal(labels, self.ignore_class)
            valid = keep if valid is None else ops.logical_and(keep, ops.cast(valid, "bool"))
        if valid is not None:
            valid = ops.cast(valid, "bool")
            labels = ops.where(valid, labels, 0)  # padding may hold any label
        logits = y_pred if self.from_logits else ops.log(ops.maximum(y_pred, _TINY))
        frames = [Dim(size, name=f"d{i}") for i, size in enumerate(y_pred.shape[:-1])]
        classes = Dim(int(y_pred.shape[-1]), name="classes")
        smoothing = self.smoothing
        if not isinstance(smoothing, (int, float)):
            smoothing = rf.convert_to_tensor(ops.cast(ops.convert_to_tensor(smoothing), "float32"), dims=())
        loss = rf.label_smoothed_cross_entropy(
            logits=rf.convert_to_tensor(logits, dims=[*frames, classes], feature_dim=classes),
            targets=rf.convert_to_tensor(labels, dims=frames, sparse_dim=classes),
            axis=classes, smoothing=smoothing, convention=self.convention, exclude_labels=self.exclude_labels,
        ).copy_transpose(frames).raw_tensor  # fmt: skip
        if valid is not None:
            loss = ops.where(valid, loss, 0.0)
            _set_mask(loss, valid)
        return loss

    def get_config(self) -> dict[str, Any]:
        """:return: the constructor arguments (a float smoothing; a variable's current value)"""
        smoothing = self.smoothing
        if not isinstance(smoothing, (int, float)):
            smoothing = float(smoothing.numpy()) if hasattr(smoothing, "numpy") else float(smoothing)
        return {**super().get_config(), "smoothing": smoothing, "convention": self.convention,
                "exclude_labels": self.exclude_labels, "ignore_class": self.ignore_class,
                "from_logits": self.from_logits, "sparse": self.sparse}  # fmt: skip
