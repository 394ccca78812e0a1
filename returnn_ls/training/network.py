"""Network dicts (RETURNN style): validate, order by ``"from"``, create parameters, run.

Parameters are created in numpy from a seed (one generator per layer, seeded by the layer name), so the same
config gives the same initial parameters, and the same first loss, on every backend.
"""

from __future__ import annotations

import re
import sys
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.tensor import Tensor
from returnn_ls.training.config import Config, suggest
from returnn_ls.training.extern_data import ExternData, error_factory
from returnn_ls.training.layers import (
    ACTIVATIONS,
    COMMON_KEYS,
    LAYER_CLASSES,
    REQUIRED,
    SOFTMAX_LOSS_OPTS,
    Context,
    LossOutput,
    Node,
)

__all__ = ["ExternData", "Network", "NetOutput"]

_NEEDS = {  # layer class -> input kinds it accepts
    "linear": ("dense", "logits", "log-probs", "probs"),
    "softmax": ("dense", "logits", "log-probs", "probs"),
    "smooth_one_hot": ("sparse",),
    "label_smoothing": ("sparse", "probs"),
}
_DENSE = ("dense", "logits", "log-probs", "probs")


@dataclass
class Layer:
    """A validated layer: its class, options (defaults filled in), inputs, target and output node."""

    name: str
    cls: str
    opts: dict
    sources: list[str]
    target: str | None
    contributes: bool
    node: Node | None = None


@dataclass
class NetOutput:
    """The result of running a network: every layer's output, the loss layers' results and the total loss."""

    outputs: dict[str, Tensor]
    losses: dict[str, LossOutput]
    loss: Tensor


class Network:
    """A network dict, validated and ordered by ``"from"``.

    :param network: the ``network`` dict of a config
    :param extern: the :class:`ExternData` of the config
    :param config: the config, for file and line in error messages
    :raise ConfigError: for any invalid layer (unknown class or option, missing input or target, a cycle, ...)
    """

    def __init__(self, network: Any, extern: ExternData, config: Config | None = None):
        self.extern = extern
        self._err = error_factory(config, "network")
        if not isinstance(network, dict) or not network:
            raise self._err(None, "network must be a non-empty dict of layer dicts")
        self.layers = {name: self._parse(name, spec) for name, spec in network.items()}
        self.order = self._toposort()
        for name in self.order:
            self._infer(self.layers[name])
        if not any(layer.contributes for layer in self.layers.values()):
            raise self._err(
                None, "no layer with a loss: give a loss layer 'loss': True, or a softmax layer 'loss': 'ce'/'ctc'"
            )

    def _parse(self, name: str, spec: Any) -> Layer:
        if not isinstance(spec, dict):
            raise self._err(name, f"layer {name!r} must be a dict with 'class' and 'from', got {spec!r}")
        cls_name = spec.get("class")
        if cls_name not in LAYER_CLASSES:
            raise self._err(
                name, f"layer {name!r}: unknown layer class {cls_name!r}; known: {sorted(LAYER_CLASSES)}"
                f"{suggest(cls_name, LAYER_CLASSES)}"
            )  # fmt: skip
        cls = LAYER_CLASSES[cls_name]
        allowed = set(COMMON_KEYS) | set(cls.options) | ({"target"} if cls.target != "none" else set())
        for key in spec:
            if key not in allowed:
                raise self._err(name, f"layer {name!r} ({cls_name}): unknown option {key!r}{suggest(key, allowed)}")
        missing = [k for k, v in cls.options.items() if v is REQUIRED and k not in spec]
        if missing:
            raise self._err(name, f"layer {name!r} ({cls_name}): missing option {missing[0]!r}")
        opts = {k: spec.get(k, v) for k, v in cls.options.items()}
        sources = self._sources(name, spec.get("from"), cls.num_from)
        target = self._target(name, spec.get("target"), cls.target, cls_name)
        contributes = self._check_loss(name, cls_name, spec.get("loss"), opts, target)
        return Layer(name, cls_name, opts, sources, target, contributes)

    def _sources(self, name: str, value: Any, counts: tuple[int, ...]) -> list[str]:
        sources = [value] if isinstance(value, str) else value
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources) or len(sources) not in counts:
            raise self._err(name, f"layer {name!r}: 'from' must be a layer name (or {counts[-1]} names), got {value!r}")
        sources = [s[len("data:") :] if s.startswith("data:") else s for s in sources]
        return sources

    def _target(self, name: str, target: Any, need: str, cls_name: str) -> str | None:
        if target is None:
            if need == "required":
                raise self._err(name, f"layer {name!r} ({cls_name}): missing option 'target' (an extern_data key)")
            return None
        if target not in self.extern.nodes or self.extern.nodes[target].kind != "sparse":
            known = [k for k, n in self.extern.nodes.items() if n.kind == "sparse"]
            raise self._err(
                name, f"layer {name!r}: target {target!r} is not a sparse key of extern_data {known}"
                f"{suggest(target, known)}"
            )  # fmt: skip
        return target

    def _check_loss(self, name: str, cls_name: str, loss: Any, opts: dict, target: str | None) -> bool:
        cls = LAYER_CLASSES[cls_name]
        if cls_name == "softmax":
            if loss not in (None, "ce", "ctc"):
                raise self._err(name, f"layer {name!r}: softmax 'loss' must be 'ce' or 'ctc', got {loss!r}")
            if loss and target is None:
                raise self._err(name, f"layer {name!r}: softmax with loss {loss!r} needs a 'target'")
            if opts["n_out"] is None and target is None:
                raise self._err(name, f"layer {name!r}: softmax needs 'n_out' or a 'target'")
            bad = [k for k in (opts["loss_opts"] or {}) if k not in SOFTMAX_LOSS_OPTS]
            if bad:
                raise self._err(
                    name, f"layer {name!r}: unknown loss_opts key {bad[0]!r}{suggest(bad[0], SOFTMAX_LOSS_OPTS)}"
                )
            opts["loss"], opts["loss_opts"] = loss, dict(opts["loss_opts"] or {})
            return bool(loss)
        if loss not in (None, False, True):
            raise self._err(name, f"layer {name!r}: 'loss' must be True or False for class {cls_name}, got {loss!r}")
        if loss and not cls.is_loss:
            raise self._err(name, f"layer {name!r}: class {cls_name!r} computes no loss, so 'loss': True is invalid")
        if "activation" in opts and opts["activation"] not in (None, *ACTIVATIONS):
            raise self._err(name, f"layer {name!r}: unknown activation {opts['activation']!r}; known: {ACTIVATIONS}")
        return bool(loss)

    def _toposort(self) -> list[str]:
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                cycle = path[path.index(name) :] + [name]
                raise self._err(name, f"the network has a cycle: {' -> '.join(cycle)}")
            state[name] = "active"
            for src in self.layers[name].sources:
                if src in self.layers:
                    visit(src, path + [src])
                elif src not in self.extern.nodes:
                    known = list(self.layers) + list(self.extern.nodes)
                    raise self._err(name, f"layer {name!r}: 'from' names a missing layer {src!r}{suggest(src, known)}")
            state[name] = "done"
            order.append(name)

        for name in self.layers:
            visit(name, [name])
        return order

    def _node(self, name: str) -> Node:
        return self.layers[name].node if name in self.layers else self.extern.nodes[name]

    def _infer(self, layer: Layer) -> None:
        ins = [self._node(s) for s in layer.sources]
        accepted = _NEEDS.get(layer.cls, _DENSE)
        if ins[0].kind not in accepted:
            raise self._err(
                layer.name, f"layer {layer.name!r} ({layer.cls}): input {layer.sources[0]!r} is {ins[0].kind}, "
                f"expected one of {list(accepted)}"
            )  # fmt: skip
        target = self.extern.nodes[layer.target] if layer.target else None
        layer.node = LAYER_CLASSES[layer.cls].infer(layer.name, layer.opts, ins, target)
        if target and layer.cls != "softmax" and ins[0].dim.dimension != target.dim.dimension:
            raise self._err(
                layer.name, f"layer {layer.name!r}: input has {ins[0].dim.dimension} labels, target "
                f"{layer.target!r} has {target.dim.dimension}"
            )  # fmt: skip
        if layer.cls == "cross_entropy" and len(ins) == 1 and not target:
            raise self._err(layer.name, f"layer {layer.name!r}: cross_entropy needs a 'target' or a second 'from'")
        if layer.cls == "softmax" and target and layer.node.dim.dimension != target.dim.dimension:
            raise self._err(
                layer.name, f"layer {layer.name!r}: n_out {layer.node.dim.dimension} differs from the "
                f"{target.dim.dimension} labels of target {layer.target!r}"
            )  # fmt: skip
        source = self.layers.get(layer.sources[0])
        if layer.cls == "ctc_loss" and source and source.cls == "label_smoothed_log_prob_gradient":
            print(
                f"returnn-ls: warning: {self._err(layer.name, '').args[0]}layer {layer.name!r}: "
                "label_smoothed_log_prob_gradient in front of ctc_loss smooths exp(lp) - q, not the CTC "
                "posterior q; use ctc_loss's option label_smoothing instead",
                file=sys.stderr,
            )

    # -- parameters and running ------------------------------------------------------------------------------------

    def param_dims(self) -> dict[str, tuple[Dim, Dim] | tuple[Dim]]:
        """:return: parameter name (``"layer/W"``, ``"layer/b"``) -> its dims, in a fixed order"""
        dims: dict[str, Any] = {}
        for name in self.order:
            layer = self.layers[name]
            if layer.cls in ("linear", "softmax"):
                in_dim = self._node(layer.sources[0]).dim
                dims[f"{name}/W"] = (in_dim, layer.node.dim)
                dims[f"{name}/b"] = (layer.node.dim,)
        return dims

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """:return: float32 numpy parameters: Glorot-uniform weights, zero biases; one generator per layer"""
        params = {}
        for key, dims in self.param_dims().items():
            layer, kind = key.split("/")
            if kind == "b":
                params[key] = np.zeros([dims[0].dimension], dtype=np.float32)
                continue
            rng = np.random.default_rng([seed, zlib.crc32(layer.encode())])
            n_in, n_out = dims[0].dimension, dims[1].dimension
            limit = np.sqrt(6.0 / (n_in + n_out))
            params[key] = rng.uniform(-limit, limit, size=(n_in, n_out)).astype(np.float32)
        return params

    def __call__(self, params: dict[str, Any], batch: dict[str, Tensor]) -> NetOutput:
        """Run the network on ``batch`` (from :meth:`ExternData.tensors`).

        :param params: name -> raw tensor (e.g. trainable variables) or numpy array (converted)
        """
        values: dict[str, Any] = dict(batch)
        losses: dict[str, LossOutput] = {}
        param_dims = self.param_dims()
        for name in self.order:
            layer = self.layers[name]
            own = {
                k.split("/")[1]: rf.convert_to_tensor(v, dims=param_dims[k])
                for k, v in params.items()
                if k.split("/")[0] == name
            }
            target = values[layer.target] if layer.target else None
            ins = [values[s] for s in layer.sources]
            ctx = Context(name, layer.opts, own, target, layer.node, self._node(layer.sources[0]))
            if target is not None and ctx.node_in.dim is not None and layer.cls != "softmax":
                ctx.target = _relabel_target(target, ctx.node_in.dim)
            elif target is not None:
                ctx.target = _relabel_target(target, layer.node.dim)
            try:
                out = LAYER_CLASSES[layer.cls].forward(ctx, *ins)
            except (TypeError, ValueError) as exc:  # bad option values, reported by the library's functions
                raise self._err(name, f"layer {name!r} ({layer.cls}): {_user_names(layer.cls, exc)}") from exc
            if isinstance(out, tuple):
                out, losses[name] = out
            elif isinstance(out, LossOutput):
                losses[name] = out
                out = out.value
            values[name] = out
        contributing = [losses[n].normalized() for n in self.order if self.layers[n].contributes]
        total = contributing[0]
        for term in contributing[1:]:
            total = total + term
        return NetOutput({n: values[n] for n in self.order}, losses, total)

    def loss_layers(self) -> list[str]:
        """:return: the names of the layers that contribute to the training loss, in order"""
        return [n for n in self.order if self.layers[n].contributes]


#: softmax layer: function argument -> the ``loss_opts`` key the user wrote
_LOSS_OPTS = {"smoothing": "label_smoothing", "convention": "label_smoothing_convention", "exclude_labels": None,
              "blank_index": None}  # fmt: skip


def _user_names(cls: str, exc: Exception) -> str:
    """:return: the message of ``exc`` with a function argument replaced by the layer option the user wrote"""
    message = str(exc)
    for argument, key in _LOSS_OPTS.items() if cls == "softmax" else ():
        message = re.sub(rf"^\w+: {argument}\b", f"loss_opts[{key or argument!r}]", message)
    return message


def _relabel_target(target: Tensor, vocab: Dim) -> Tensor:
    from returnn_ls.training.layers import relabel

    return relabel(target, target.sparse_dim, vocab)


def replace_smoothing(network: dict, value: float) -> tuple[dict, int]:
    """Replace every label-smoothing option of a network dict by ``value`` (``compare`` uses this).

    The options are ``smoothing`` / ``label_smoothing`` of the smoothing and loss layer classes, ``label_prob``
    of ``smooth_one_hot`` (set to ``1 - value``) and ``loss_opts["label_smoothing"]`` of softmax layers with a
    loss (added when missing).

    :return: a new network dict and the number of options set
    """
    from returnn_ls.training.layers import SMOOTHING_OPTIONS

    out, count = {}, 0
    for name, spec in network.items():
        if isinstance(spec, dict):
            spec, cls = dict(spec), spec.get("class")
            if cls in SMOOTHING_OPTIONS:
                option = SMOOTHING_OPTIONS[cls]
                spec[option] = 1.0 - value if option == "label_prob" else value
                count += 1
            if cls == "softmax" and spec.get("loss"):
                spec["loss_opts"] = {**(spec.get("loss_opts") or {}), "label_smoothing": value}
                count += 1
        out[name] = spec
    return out, count
