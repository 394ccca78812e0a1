"""TensorFlow's side of ``returnn-ls bench`` (see :mod:`frontend_backends.bench_base`).

Each case runs in one of three modes, the ways TensorFlow training runs a step:

=============  ==========================================================================================
``eager``      the forward and backward pass op by op (``tf.GradientTape`` outside any ``tf.function``)
``function``   the whole fwd+bwd step in one ``tf.function`` (graph mode, as Keras ``fit`` runs it)
``xla``        the whole step in one ``tf.function(jit_compile=True)`` (XLA, as Keras 3 compiles it)
=============  ==========================================================================================

In the compiled modes the step is traced (and compiled) on its first call, the runner's warm-up. This project's
benchmark times TensorFlow on the CPU in float32 only (``--device cpu``, ``--dtype float32``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from frontend_backends.bench_base import BenchKit, LossFn, Step

__all__ = ["TensorFlowBench"]


class TensorFlowBench(BenchKit):
    """The TensorFlow kit: ``tf.nn.sparse_softmax_cross_entropy_with_logits`` and Keras's
    ``CategoricalCrossentropy(label_smoothing=a)`` on one-hot targets as the references, ``[H, K]`` weights as
    Keras's ``Dense`` stores its kernel (``h @ W + b``)."""

    modes = {"eager": ("eager",), "compiled": ("function", "xla")}
    keeps_buffers = True
    weight_hidden_first = True
    dtypes = ("float32",)

    def unavailable(self, case: str, device: str = "cpu") -> str | None:
        """:return: why ``case`` does not exist on TensorFlow (``returnn_path``; the PyTorch packages' losses), or
        None"""
        if case == "returnn_path":
            return "RETURNN's TF backend builds graph-mode layers; timed on torch only"
        if case in ("liger_ls", "liger_linear_ls", "cce_linear"):
            return "a PyTorch package's loss (Liger-Kernel, cut-cross-entropy); timed on torch only"
        return None

    def device_unavailable(self, device: str) -> str | None:
        """:return: why ``device`` is not timed here: anything but ``cpu`` (this project's bench times TensorFlow on
        the CPU only)"""
        if device == "cpu":
            return None
        return "TensorFlow is timed on cpu only in this project's bench (its GPU build is not set up here)"

    def set_threads(self, threads: int) -> None:
        """Set TensorFlow's intra-op and inter-op threads (before its first op)."""
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

    def params(self, arrays: Sequence[np.ndarray], dtype: str = "float32", device: str = "cpu") -> list[Any]:
        """:return: constants of ``arrays`` (the step's tape watches them); float32 on the CPU only"""
        if (dtype, device) != ("float32", "cpu"):
            raise ValueError(f"bench: tensorflow is timed in float32 on cpu only, got {dtype} on {device}")
        return [tf.constant(array) for array in arrays]

    def targets(self, labels: np.ndarray, device: str = "cpu") -> Any:
        """:return: a constant of ``labels``"""
        return tf.constant(labels)

    def reference_loss(self, case: str, targets: Any, frames: int, vocab: int, a: float) -> LossFn:
        """:return: the loss function of one of :attr:`reference_cases` (TF's sparse CE, Keras's smoothing)"""
        y = targets
        if case == "plain_ce":
            return lambda x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
        cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a, reduction=None)
        if case == "framework_ls":
            return lambda x: cce(tf.one_hot(y, vocab), x)
        if case == "linear_framework_ls":
            return lambda h, w, b: cce(tf.one_hot(y, vocab), tf.matmul(h, w) + b)
        raise ValueError(f"bench: tensorflow has no reference case {case!r}; it has {list(self.reference_cases)}")

    def step(self, loss_fn: LossFn, params: Sequence[Any], mode: str) -> Step:
        """:return: the step: the summed loss and its gradients w.r.t. all ``params`` (the loss too, as training
        reports it: XLA would drop it otherwise), waiting for the loss"""
        if mode not in self.execution_modes("all"):
            raise ValueError(f"bench: mode must be one of {list(self.execution_modes('all'))}, got {mode!r}")
        tf.zeros([])  # TF holds the numpy array of its last tf.constant until its next op: free it before the baseline

        def fwd_bwd(*inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                total = tf.reduce_sum(loss_fn(*inputs))
            return total, tape.gradient(total, inputs)

        if mode != "eager":
            fwd_bwd = tf.function(fwd_bwd, jit_compile=mode == "xla")

        def step() -> None:
            total, _ = fwd_bwd(*params)
            total.numpy()  # wait for the result (not the gradients': .numpy() would copy them)

        return step
