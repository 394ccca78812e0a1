"""A network dict as a :class:`~returnn_ls.training.task.Task`: its ``rf.Module``
(:class:`~returnn_ls.training.network_module.NetworkModule`) and a train step, for the one engine.

The train step runs the network and marks, per loss layer, RETURNN's scores: ``score`` (the loss as optimized,
normalized per frame, or per target label for CTC) and ``error`` (the frame error rate, or the label error rate
of the greedy CTC decoding); with several loss layers ``score_<layer>`` / ``error_<layer>``. On dev it also
collects what ``compare`` plots: the loss with every label-smoothing option set to 0, the error rate, the expected
calibration error and the reliability bins of the first loss layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls.dim import batch_dim
from returnn_ls.ops import align
from returnn_ls.tensor import Tensor
from returnn_ls.training.config import Config
from returnn_ls.training.extern_data import ExternData
from returnn_ls.training.layers import LossOutput
from returnn_ls.training.metrics import MetricAccumulator, edit_alignment
from returnn_ls.training.network import Network
from returnn_ls.training.network_module import NetworkModule
from returnn_ls.training.task import Task

__all__ = ["NetworkTask", "network_task"]


def _frame_error(lo: LossOutput) -> Tensor:
    """:return: per frame 1.0 where the model's arg max is not the target (for a distribution: its arg max), as
    RETURNN's frame error (the first index among equal maxima)"""
    best = rf.reduce_argmax(lo.log_probs, axis=lo.vocab)
    target = lo.target if lo.target.sparse_dim is not None else rf.reduce_argmax(lo.target, axis=lo.vocab)
    return rf.cast(rf.cast(best, "int32") != rf.cast(target, "int32"), "float32")


def _time(x: Tensor) -> Any:
    return next(d for d in x.dims if d.is_padded())


class NetworkTask(Task):
    """The task of a network dict (see the module docstring)."""

    def __init__(self, network: Network, eval_network: Network | None):
        super().__init__(NetworkModule(network), self._train_step, "network")
        self.network, self.eval_network = network, eval_network
        self.layers = network.loss_layers()
        self._extras: dict[str, Any] = {}
        self._acc: MetricAccumulator | None = None
        self._dev_sums: dict[str, list[float]] = {}
        self._blank: dict[str, int] = {}

    def _names(self, layer: str) -> tuple[str, str]:
        return ("score", "error") if len(self.layers) == 1 else (f"score_{layer}", f"error_{layer}")

    def _train_step(self, *, model: NetworkModule, extern_data: Any, **_: Any) -> None:
        tensors = dict(extern_data.items())
        out = model(tensors)
        ctx = rf.get_run_ctx()
        self._extras = {}
        for layer in self.layers:
            lo, (score, error) = out.losses[layer], self._names(layer)
            if lo.frame_level:
                ctx.mark_as_loss(lo.value, score, use_normalized_loss=True)
                ctx.mark_as_loss(_frame_error(lo), error, as_error=True)
            else:
                lengths = lo.target.dims[-1].dyn_size_ext
                ctx.mark_as_loss(lo.value, score, use_normalized_loss=True, custom_inv_norm_factor=lengths)
                self._extras.update(self._ctc_outputs(f"ctc:{layer}", lo))
                self._blank[f"ctc:{layer}"] = int(lo.blank_index or 0)
        if not ctx.train_flag:
            plain = model(tensors, network=self.eval_network, reuse=out) if self.eval_network else out
            self._extras.update(self._metric_outputs(plain.losses))

    def _ctc_outputs(self, prefix: str, lo: LossOutput) -> dict[str, Any]:
        time = _time(lo.log_probs)
        target_time = lo.target.dims[-1]
        return {
            f"{prefix}:lp": align(lo.log_probs, (batch_dim, time, lo.vocab)),
            f"{prefix}:len": time.dyn_size_ext.raw_tensor,
            f"{prefix}:targets": align(lo.target, (batch_dim, target_time)),
            f"{prefix}:target_len": target_time.dyn_size_ext.raw_tensor,
        }

    def _metric_outputs(self, losses: dict[str, LossOutput]) -> dict[str, Any]:
        main = self.layers[0] if self.eval_network is None else self.eval_network.loss_layers()[0]
        lo = losses[main]
        out = self._ctc_outputs("metrics", lo) if not lo.frame_level else {}
        self._blank["metrics"] = int(lo.blank_index or 0)
        if lo.frame_level:
            time = _time(lo.log_probs)
            target = lo.target
            dims = (batch_dim, time) if target.sparse_dim is not None else (batch_dim, time, lo.vocab)
            out = {
                "metrics:lp": align(lo.log_probs, (batch_dim, time, lo.vocab)),
                "metrics:targets": align(target, dims),
                "metrics:len": time.dyn_size_ext.raw_tensor,
            }
        for name, layer_lo in losses.items():
            norm = layer_lo.target.dims[-1].dyn_size_ext if not layer_lo.frame_level else None
            summed = rf.reduce_sum(layer_lo.value, axis=list(layer_lo.value.dims))
            count = (
                rf.num_elements_of_shape(layer_lo.value.dims) if norm is None else rf.reduce_sum(norm, axis=norm.dims)
            )
            out[f"dev_loss:{name}:sum"] = summed.raw_tensor
            out[f"dev_loss:{name}:norm"] = rf.convert_to_tensor(count, dims=(), dtype="int32").raw_tensor
        return out

    def extras(self, train: bool) -> dict[str, Any]:
        return dict(self._extras)

    def host_scores(self, outputs: dict[str, np.ndarray], train: bool) -> dict[str, tuple[float, float]]:
        scores = {}
        for layer in self.layers:
            if f"ctc:{layer}:lp" in outputs:
                errors, total = _ctc_errors(outputs, f"ctc:{layer}", self._blank[f"ctc:{layer}"])
                scores[self._names(layer)[1]] = (float(errors), float(total))
        if not train and "metrics:lp" in outputs:
            self._collect_metrics(outputs)
        return scores

    def _collect_metrics(self, outputs: dict[str, np.ndarray]) -> None:
        frame_level = "metrics:target_len" not in outputs
        self._acc = self._acc or MetricAccumulator(frame_level)
        targets = outputs["metrics:targets"]
        if targets.ndim == 3:
            targets = targets.argmax(-1)
        target_len = outputs["metrics:len"] if frame_level else outputs["metrics:target_len"]
        blank = None if frame_level else self._blank["metrics"]
        self._acc.add(outputs["metrics:lp"], outputs["metrics:len"], targets, target_len, blank)
        for key, value in outputs.items():
            if key.startswith("dev_loss:"):
                _, name, part = key.split(":")
                sums = self._dev_sums.setdefault(name, [0.0, 0.0])
                sums[part == "norm"] += float(value)

    def start_dev(self) -> None:
        self._acc, self._dev_sums = None, {}

    def dev_metrics(self) -> dict[str, Any]:
        if self._acc is None:
            return {}
        result = self._acc.result()
        dev_loss = sum(s / n for s, n in self._dev_sums.values() if n)
        return {"dev_loss": dev_loss, "dev_loss_terms": sorted(self._dev_sums), "dev_error_rate": result["error_rate"],
                "dev_ece": result["ece"], "reliability": result["reliability"],
                "frame_level": self._acc.frame_level}  # fmt: skip


def _ctc_errors(outputs: dict[str, np.ndarray], prefix: str, blank: int) -> tuple[int, int]:
    """:return: edit distance of the greedy decodings to the targets, and the number of target labels"""
    best, lens = outputs[f"{prefix}:lp"].argmax(-1), outputs[f"{prefix}:len"]
    targets, target_lens = outputs[f"{prefix}:targets"], outputs[f"{prefix}:target_len"]
    errors = 0
    for b in range(len(lens)):
        hyp = [int(x) for i, x in enumerate(best[b, : lens[b]]) if x != blank and (i == 0 or x != best[b, i - 1])]
        errors += edit_alignment(hyp, [int(x) for x in targets[b, : target_lens[b]]])[0]
    return errors, int(np.sum(target_lens))


def network_task(config: Config, extern: ExternData) -> NetworkTask:
    """:return: the task of the config's ``network`` on ``extern``; the parameters come from the generator that the
    caller seeded (``rf.set_random_seed``)

    Example: ``task = network_task(config, ExternData(extern_data_spec(config), config, data_keys=train.keys))``

    :raise ConfigError: for an invalid network (see :class:`Network`)
    """
    network = Network(config.get("network"), extern, config)
    return NetworkTask(network, network.with_smoothing(0.0) if network.smoothed() else None)
