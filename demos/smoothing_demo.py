"""Print, on every installed backend, what label smoothing does to a target and to a gradient.

Run with ``python demos/smoothing_demo.py`` (or ``make demo`` before the training command existed).
"""

from __future__ import annotations

import numpy as np

import frontend_backends
import returnn_ls as rf
from returnn_ls import Dim

np.set_printoptions(precision=3, suppress=True)


def grad_wrt_logits(backend: str, logits: np.ndarray, fn) -> np.ndarray:
    """:return: d sum(fn(logits)) / d logits, with the backend's own autograd"""
    if backend == "torch":
        import torch

        z = torch.tensor(logits, requires_grad=True)
        fn(z).raw_tensor.sum().backward()
        return z.grad.numpy()
    import tensorflow as tf

    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(fn(z).raw_tensor)
    return tape.gradient(total, z).numpy()


def show(backend: str) -> None:
    """Show smoothed targets and gradients for a 5-label example (label 0 plays the CTC blank)."""
    frame, vocab = Dim(1, name="frame"), Dim(5, name="vocab")
    logits = np.array([[2.0, 0.5, 0.1, -1.0, 0.3]], dtype="float32")
    rf.select_backend(backend)
    target = rf.convert_to_tensor(np.array([1]), dims=[frame], sparse_dim=vocab)
    print(f"== backend: {backend}")
    print("label_smoothing(target=1, 0.1):       ", rf.label_smoothing(target, 0.1).numpy()[0])

    def ce(z, smoothing=0.0, exclude=None):
        z = rf.convert_to_tensor(z, dims=[frame, vocab], feature_dim=vocab)
        lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), smoothing, exclude_labels=exclude)
        return rf.cross_entropy(estimated=lp, target=target, axis=vocab, estimated_type="log-probs")

    print("softmax(logits):                       ", np.exp(logits - np.log(np.exp(logits).sum())).ravel())
    print("CE gradient, no smoothing:             ", grad_wrt_logits(backend, logits, ce)[0])
    print("CE gradient, smoothing 0.1:            ", grad_wrt_logits(backend, logits, lambda z: ce(z, 0.1))[0])
    blank = rf.convert_to_tensor(np.array([0]), dims=[frame], sparse_dim=vocab)

    def ctc_like(z):  # a blank frame of a CTC-like loss: the blank keeps its gradient, no mass is added
        z = rf.convert_to_tensor(z, dims=[frame, vocab], feature_dim=vocab)
        lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), 0.1, exclude_labels=[0])
        return rf.cross_entropy(estimated=lp, target=blank, axis=vocab, estimated_type="log-probs")

    print("blank frame, smoothing 0.1, blank excl:", grad_wrt_logits(backend, logits, ctc_like)[0])

    def ctc_like_returnn(z):  # RETURNN's numbers: the shift's sum includes the blank, adding mass
        z = rf.convert_to_tensor(z, dims=[frame, vocab], feature_dim=vocab)
        lp = rf.log_softmax(z, axis=vocab)
        lp = rf.label_smoothed_log_prob_gradient(lp, 0.1, exclude_labels=[0], returnn_compat=True)
        return rf.cross_entropy(estimated=lp, target=blank, axis=vocab, estimated_type="log-probs")

    print("same, returnn_compat=True:             ", grad_wrt_logits(backend, logits, ctc_like_returnn)[0])


def main() -> None:
    """Run :func:`show` on every installed backend."""
    for backend in frontend_backends.available_backends():
        show(backend)


if __name__ == "__main__":
    main()
