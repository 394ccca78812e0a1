"""Our losses on RETURNN Tensors (via the bridge) next to RETURNN's own numbers, in a process of its own.

``python _returnn_bridge_worker.py OUT.npz`` runs every case twice: on RETURNN's torch frontend, then on RETURNN's
low-level TensorFlow frontend in graph mode (RETURNN switches TensorFlow to graph mode, which is why this runs
apart from the test process). It writes ``<backend>/<case>/<quantity>`` arrays, ours beside RETURNN's, and
``<backend>/facts/<name>`` booleans (shared raw tensors, dim identity); the tests compare them.
"""

from __future__ import annotations

import sys

import numpy as np
import returnn.frontend as rrf
from returnn.tensor import Dim, Tensor, batch_dim

import returnn_ls

SMOOTHING, BATCH, FRAMES, CLASSES, BLANK = 0.1, 3, 5, 6, 0
TIME_LENS, LABEL_LENS = np.array([5, 3, 4], "int32"), np.array([2, 1, 3], "int32")


def make_inputs() -> dict[str, np.ndarray]:
    """:return: logits [B, T, K], frame targets [B, T], CTC targets [B, L] (no blank) and masks"""
    rng = np.random.default_rng(9)
    return {
        "logits": rng.standard_normal((BATCH, FRAMES, CLASSES)).astype("float32"),
        "targets": rng.integers(0, CLASSES, size=(BATCH, FRAMES)).astype("int32"),
        "labels": np.array([[1, 2, 0], [4, 0, 0], [3, 3, 5]], "int32"),  # feasible: T >= L + repeats
        "frame_mask": (np.arange(FRAMES)[None, :] < TIME_LENS[:, None]).astype("float32"),
    }


class Torch:
    """Raw tensors and gradients on torch (eager: values are read at once)."""

    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch
        rrf.select_backend_torch()
        returnn_ls.select_backend("torch")

    def const(self, value: np.ndarray, *, requires_grad: bool = False, static_axes: tuple[int, ...] = ()):
        return self.torch.tensor(value, requires_grad=requires_grad)

    def grad(self, total, wrt):
        (grad,) = self.torch.autograd.grad(total, [wrt], retain_graph=True)
        return grad

    def total(self, raw, mask=None):
        return (raw if mask is None else raw * mask).sum()

    def fetch(self, values: dict) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in values.items()}


class TensorFlowGraph:
    """Raw tensors and gradients on TensorFlow in graph mode (RETURNN's low-level TF frontend)."""

    name = "tensorflow"

    def __init__(self):
        rrf.select_backend_tf()
        returnn_ls.select_backend("tensorflow")
        import tensorflow as tf

        assert not tf.executing_eagerly()
        self.tf = tf

    def const(self, value: np.ndarray, *, requires_grad: bool = False, static_axes: tuple[int, ...] = ()):
        """:return: ``value`` with unknown sizes except on ``static_axes`` (as RETURNN's graphs have them)"""
        shape = [n if i in static_axes else None for i, n in enumerate(np.shape(value))]
        return self.tf.compat.v1.placeholder_with_default(value, shape=shape)

    def grad(self, total, wrt):
        (grad,) = self.tf.gradients(total, [wrt])
        return grad

    def total(self, raw, mask=None):
        return self.tf.reduce_sum(raw if mask is None else raw * mask)

    def fetch(self, values: dict) -> dict[str, np.ndarray]:
        tensors = {k: v for k, v in values.items() if isinstance(v, (self.tf.Tensor, self.tf.Variable))}
        with self.tf.compat.v1.Session() as session:
            out = session.run(tensors)
        return {k: np.asarray(out.get(k, v)) for k, v in values.items()}


def returnn_dims(fw, data: dict[str, np.ndarray]) -> dict[str, Dim]:
    """:return: RETURNN's batch_dim (with its size), a time and a label dim with sizes, the class dim"""
    batch_dim.dyn_size_ext = Tensor("batch", dims=[], dtype="int32", raw_tensor=fw.const(np.array(BATCH, "int32")))
    time = Dim(Tensor("time", dims=[batch_dim], dtype="int32", raw_tensor=fw.const(TIME_LENS)), name="time")
    labels = Dim(Tensor("labels", dims=[batch_dim], dtype="int32", raw_tensor=fw.const(LABEL_LENS)), name="labels")
    return {"time": time, "labels": labels, "classes": Dim(CLASSES, name="classes")}


def returnn_smoothed_ce(logits: Tensor, targets: Tensor, classes: Dim) -> Tensor:
    """RETURNN's own cross entropy against its label-smoothed targets."""
    target = rrf.label_smoothing(targets, SMOOTHING)
    return rrf.cross_entropy(estimated=logits, target=target, axis=classes, estimated_type="logits")


def fused_ce_case(fw, x, logits, targets, dims, mask) -> dict:
    ours = returnn_ls.to_returnn(
        returnn_ls.label_smoothed_cross_entropy(
            logits=returnn_ls.from_returnn(logits),
            targets=returnn_ls.from_returnn(targets),
            axis=returnn_ls.from_returnn(dims["classes"]),
            smoothing=SMOOTHING,
        )
    )
    ours_raw = ours.copy_transpose([batch_dim, dims["time"]]).raw_tensor
    ref_raw = returnn_smoothed_ce(logits, targets, dims["classes"]).copy_transpose([batch_dim, dims["time"]]).raw_tensor
    return {
        "ours_loss": ours_raw * mask,
        "ref_loss": ref_raw * mask,
        "ours_grad": fw.grad(fw.total(ours_raw), x),
        "ref_grad": fw.grad(fw.total(ref_raw, mask), x),
    }


def log_prob_gradient_case(fw, x, logits, targets, dims, mask, *, our_log_softmax: bool) -> dict:
    """CE (RETURNN's) on log-probs whose gradient our label_smoothed_log_prob_gradient smooths."""
    classes, order = dims["classes"], [batch_dim, dims["time"]]
    if our_log_softmax:  # our log_softmax: the fused backward path
        log_prob = returnn_ls.log_softmax(returnn_ls.from_returnn(logits), axis=returnn_ls.from_returnn(classes))
    else:
        log_prob = returnn_ls.from_returnn(rrf.log_softmax(logits, axis=classes))
    smoothed = returnn_ls.to_returnn(returnn_ls.label_smoothed_log_prob_gradient(log_prob, SMOOTHING))
    ours = rrf.cross_entropy(estimated=smoothed, target=targets, axis=classes, estimated_type="log-probs")
    plain = rrf.cross_entropy(estimated=logits, target=targets, axis=classes, estimated_type="logits")
    returnn_lp = rrf.label_smoothed_log_prob_gradient(rrf.log_softmax(logits, axis=classes), SMOOTHING)
    returnn_ce = rrf.cross_entropy(estimated=returnn_lp, target=targets, axis=classes, estimated_type="log-probs")
    ours_raw, returnn_raw = ours.copy_transpose(order).raw_tensor, returnn_ce.copy_transpose(order).raw_tensor
    smoothed_raw = returnn_smoothed_ce(logits, targets, classes).copy_transpose(order).raw_tensor
    return {
        "ours_loss": ours_raw * mask,
        "plain_loss": plain.copy_transpose(order).raw_tensor * mask,
        "returnn_loss": returnn_raw * mask,
        "ours_grad": fw.grad(fw.total(ours_raw, mask), x),
        "returnn_grad": fw.grad(fw.total(returnn_raw, mask), x),
        "smoothed_ce_grad": fw.grad(fw.total(smoothed_raw, mask), x),
    }


def ctc_case(fw, x, logits, labels, dims, smoothing: float) -> dict:
    """Our CTC; RETURNN's CTC; for the smoothed gradient also RETURNN's posterior, softmax and mask."""
    ours = returnn_ls.ctc_loss(
        logits=returnn_ls.from_returnn(logits),
        targets=returnn_ls.from_returnn(labels),
        input_spatial_dim=returnn_ls.from_returnn(dims["time"]),
        targets_spatial_dim=returnn_ls.from_returnn(dims["labels"]),
        blank_index=BLANK,
        label_smoothing=smoothing,
    )
    ours_raw = returnn_ls.to_returnn(ours).copy_transpose([batch_dim]).raw_tensor
    extra = {"use_native_op": False} if fw.name == "tensorflow" else {}
    ref = rrf.ctc_loss(
        logits=logits,
        targets=labels,
        input_spatial_dim=dims["time"],
        targets_spatial_dim=dims["labels"],
        blank_index=BLANK,
        **extra,
    )
    ref_raw = ref.copy_transpose([batch_dim]).raw_tensor
    softmax = rrf.softmax(logits, axis=dims["classes"]).copy_transpose([batch_dim, dims["time"], dims["classes"]])
    return {
        "ours_loss": ours_raw,
        "ref_loss": ref_raw,
        "ours_grad": fw.grad(fw.total(ours_raw), x),
        "ref_grad": fw.grad(fw.total(ref_raw), x),
        "softmax": softmax.raw_tensor,
    }


def facts(fw, x, logits, targets, dims) -> dict:
    """Booleans: raw tensors shared both ways, dims paired both ways, feature and sparse dims carried over."""
    ours, ours_targets = returnn_ls.from_returnn(logits), returnn_ls.from_returnn(targets)
    back = returnn_ls.to_returnn(ours)
    time = returnn_ls.from_returnn(dims["time"])
    fresh = returnn_ls.Dim(7, name="fresh")
    return {
        "raw_shared_from_returnn": ours.raw_tensor is x,
        "raw_shared_to_returnn": back.raw_tensor is x,
        "dims_back_are_returnn_dims": all(a is b for a, b in zip(back.dims, logits.dims)),
        "batch_dim_is_ours": ours.dims[0] is returnn_ls.batch_dim,
        "feature_dim_carried": ours.feature_dim is returnn_ls.from_returnn(dims["classes"])
        and back.feature_dim is dims["classes"],
        "sparse_dim_carried": ours_targets.sparse_dim is returnn_ls.from_returnn(dims["classes"]),
        "time_sizes_shared": time.dyn_size_ext.raw_tensor is dims["time"].dyn_size_ext.raw_tensor,
        "our_dim_round_trip": returnn_ls.from_returnn(returnn_ls.to_returnn(fresh)) is fresh,
        "returnn_dim_round_trip": returnn_ls.to_returnn(time) is dims["time"],
        "dtypes_kept": (ours.dtype, ours_targets.dtype, back.dtype) == ("float32", "int32", "float32"),
    }


def run(fw) -> dict[str, np.ndarray]:
    """:return: all cases on one framework, as ``<backend>/<case>/<quantity>`` arrays"""
    data = make_inputs()
    dims = returnn_dims(fw, data)
    x = fw.const(data["logits"], requires_grad=True, static_axes=(2,))
    logits = Tensor(
        "logits", dims=[batch_dim, dims["time"], dims["classes"]], dtype="float32", raw_tensor=x,
        feature_dim=dims["classes"],
    )  # fmt: skip
    targets = Tensor(
        "targets", dims=[batch_dim, dims["time"]], dtype="int32", raw_tensor=fw.const(data["targets"]),
        sparse_dim=dims["classes"],
    )  # fmt: skip
    labels = Tensor(
        "labels", dims=[batch_dim, dims["labels"]], dtype="int32", raw_tensor=fw.const(data["labels"]),
        sparse_dim=dims["classes"],
    )  # fmt: skip
    mask = fw.const(data["frame_mask"])
    cases = {
        "fused_ce": fused_ce_case(fw, x, logits, targets, dims, mask),
        "log_prob_gradient": log_prob_gradient_case(fw, x, logits, targets, dims, mask, our_log_softmax=False),
        "log_prob_gradient_fused": log_prob_gradient_case(fw, x, logits, targets, dims, mask, our_log_softmax=True),
        "ctc": ctc_case(fw, x, logits, labels, dims, 0.0),
        "ctc_smoothed": ctc_case(fw, x, logits, labels, dims, SMOOTHING),
        "facts": facts(fw, x, logits, targets, dims),
    }
    flat = {f"{fw.name}/{case}/{k}": v for case, values in cases.items() for k, v in values.items()}
    out = fw.fetch(flat)
    out[f"{fw.name}/frame_mask"] = data["frame_mask"]
    return out


def main(dst: str) -> None:
    """Run the cases on torch, then on TensorFlow in graph mode; write the results to ``dst``."""
    results = run(Torch())
    results.update(run(TensorFlowGraph()))
    np.savez(dst, **results)


if __name__ == "__main__":
    main(sys.argv[1])
