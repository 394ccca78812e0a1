"""A network dict as a :class:`~returnn_ls.training.task.Task`: an ``rf.Module`` of its parameters and a train step.

The train step runs the network and marks, per loss layer, RETURNN's scores: ``score`` (the loss as optimized,
normalized per frame, or per target label for CTC) and ``error`` (the frame error rate, or the label error rate
of the greedy CTC decoding); with several loss layers ``score_<layer>`` / ``error_<layer>``. On dev it also
collects what ``compare`` plots: the loss with every label-smoothing option set to 0, the error rate, the expected
calibration error and the reliability bins of the first loss layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls.dim import batch_dim
from returnn_ls.nn import Module, Parameter
from returnn_ls.ops import align
from returnn_ls.tensor import Tensor
from returnn_ls.training.config import Config
from returnn_ls.training.extern_data import ExternData
from returnn_ls.training.layers import SMOOTHING_OPTIONS, LossOutput
from returnn_ls.training.metrics import MetricAccumulator, edit_alignment
from returnn_ls.training.network import Network, replace_smoothing
from returnn_ls.training.task import Task

__all__ = ["NetworkModule", "NetworkTask", "network_task"]


class NetworkModule(Module):
    """The parameters of a network dict (``"layer/W"``, ``"layer/b"``) as :class:`~returnn_ls.Parameter` s, with the
    initial values of :meth:`Network.init_params` (the same on both backends)."""

    def __init__(self, network: Network, seed: int):
        dims = network.param_dims()
        self.params = {name: Parameter(dims[name], initial=value) for name, value in network.init_params(seed).items()}

    def _attributes(self) -> Iterable[tuple[str, Any]]:
        return self.params.items()

    def raw_params(self) -> dict[str, Any]:
        """:return: ``"layer/W" -> raw parameter``, as :class:`Network` takes them"""
        return {name: p.raw_tensor for name, p in self.params.items()}


def _frame_error(lo: LossOutput) -> Tensor:
    """:return: per frame 1.0 where the best label of the model is not the target (the target's best label)"""
    lp, vocab, target = lo.log_probs, lo.vocab, lo.target
    best = rf.reduce_max(lp, axis=vocab)
    if target.sparse_dim is not None:
        return rf.cast(rf.gather(lp, indices=target, axis=vocab) < best, "float32")
    hit = (lp >= best) & (target >= rf.reduce_max(target, axis=vocab))
    return rf.cast(rf.reduce_max(rf.cast(hit, "float32"), axis=vocab) < 0.5, "float32")


def _time(x: Tensor) -> Any:
    return next(d for d in x.dims if d.is_padded())


class NetworkTask(Task):
    """The task of a network dict (see the module docstring)."""

    def __init__(self, network: Network, eval_network: Network | None, seed: int):
        super().__init__(NetworkModule(network, seed), self._train_step, "network")
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
        out = self.network(model.raw_params(), tensors)
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
            plain = self.eval_network(model.raw_params(), tensors) if self.eval_network else out
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
        return {"dev_loss": dev_loss, "dev_error_rate": result["error_rate"], "dev_ece": result["ece"],
                "reliability": result["reliability"], "frame_level": self._acc.frame_level}  # fmt: skip


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
    """:return: the task of the config's ``network`` on ``extern``; parameters seeded by the config's seed

    :raise ConfigError: for an invalid network (see :class:`Network`)
    """
    spec = config.get("network")
    network = Network(spec, extern, config)
    eval_network = Network(replace_smoothing(spec, 0.0)[0], extern, config) if _smoothed(spec) else None
    return NetworkTask(network, eval_network, int(config.get("seed")))


def _smoothed(spec: dict) -> bool:
    """:return: whether any label-smoothing option of the network dict is not 0 (then dev runs it unsmoothed too)"""
    for layer in spec.values():
        cls = layer.get("class")
        if cls in SMOOTHING_OPTIONS:
            value = layer.get(SMOOTHING_OPTIONS[cls])
            if value not in (None, 0, 0.0) and not (SMOOTHING_OPTIONS[cls] == "label_prob" and value == 1.0):
                return True
        if cls == "softmax" and layer.get("loss") and (layer.get("loss_opts") or {}).get("label_smoothing"):
            return True
    return False
