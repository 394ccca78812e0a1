"""Network dicts (RETURNN style): validated, ordered by ``"from"``, and the output of every layer inferred.

The layer classes (:mod:`returnn_ls.training.layers`) know their options and what they compute; this module only
does what is common to all of them: the keys of a layer dict, ``"from"`` (default ``"data"``), ``target``
(default ``"classes"`` where the class has one), the order, and errors with the config's file and line. The
parameters and the forward computation are in :mod:`returnn_ls.training.network_module`.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from typing import Any

from returnn_ls.training.config import Config, ConfigError, suggest
from returnn_ls.training.extern_data import ExternData, error_factory
from returnn_ls.training.layers import (
    COMMON_KEYS,
    LAYER_CLASSES,
    NO_EFFECT_OPTIONS,
    REQUIRED,
    RETURNN_COMMON_OPTIONS,
    Layer,
    LayerClass,
    LayerError,
    Node,
    get_layer_class,
)

__all__ = ["ExternData", "Network", "replace_smoothing"]


class Network:
    """A network dict, validated and ordered by ``"from"``.

    Example: ``net = Network({"out": {"class": "softmax", "loss": "ce"}}, ExternData({"data": {"dim": 9},
    "classes": {"dim": 2, "sparse": True}}))``: ``net.layers["out"].sources == ["data"]``, target ``"classes"``.

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

    def error(self, name: str, message: str) -> ConfigError:
        """:return: a :class:`ConfigError` at the line of layer ``name``"""
        return self._err(name, message)

    def _parse(self, name: str, spec: Any) -> Layer:
        if not isinstance(spec, dict):
            raise self._err(name, f"layer {name!r} must be a dict with 'class' and 'from', got {spec!r}")
        try:
            cls = get_layer_class(spec.get("class"))
        except LayerError as exc:
            raise self._err(name, f"layer {name!r}: {exc}") from None
        try:
            opts = _options(cls, spec)
            sources = _sources(spec.get("from", "data"), cls.num_from)
            target = self._target(cls, spec)
            cls.check_loss(spec.get("loss"), opts)
        except LayerError as exc:
            raise self._err(name, f"layer {name!r} ({cls.name}): {exc}") from None
        return Layer(name, cls, opts, sources, target, spec.get("loss"))

    def _target(self, cls: LayerClass, spec: dict) -> str | None:
        if cls.target == "none":
            return None
        target = spec.get("target")
        default = target is None
        target = cls.default_target(spec) if default else target
        if target is None:
            if cls.target == "required":
                raise LayerError("missing option 'target' (an extern_data key)")
            return None
        if target not in self.extern.nodes or self.extern.nodes[target].kind != "sparse":
            known = [k for k, n in self.extern.nodes.items() if n.kind == "sparse"]
            what = f"the default target {target!r}" if default else f"target {target!r}"
            raise LayerError(f"{what} is not a sparse key of extern_data {known}{suggest(target, known)}")
        return target

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

    def node(self, name: str) -> Node:
        """:return: the output node of layer or ``extern_data`` key ``name``"""
        return self.layers[name].node if name in self.layers else self.extern.nodes[name]

    def _infer(self, layer: Layer) -> None:
        ins = [self.node(s) for s in layer.sources]
        target = self.extern.nodes[layer.target] if layer.target else None
        try:
            layer.in_node = layer.cls.input_node(layer, ins)
            layer.node = layer.cls.infer(layer, ins, target)
        except LayerError as exc:
            raise self._err(layer.name, f"layer {layer.name!r} ({layer.cls.name}): {exc}") from None
        for warning in layer.warnings:
            where = self._err(layer.name, "").args[0]
            print(f"returnn-ls: warning: {where}layer {layer.name!r}: {warning}", file=sys.stderr)

    def loss_layers(self) -> list[str]:
        """:return: the names of the layers that contribute to the training loss, in order"""
        return [n for n in self.order if self.layers[n].contributes]

    # -- label smoothing ---------------------------------------------------------------------------------------

    def smoothed(self) -> bool:
        """:return: whether any label-smoothing option of the network is not 0"""
        return any(layer.cls.is_smoothed(layer.opts, layer.loss) for layer in self.layers.values())

    def with_smoothing(self, value: float) -> Network:
        """:return: this network with every label-smoothing option set to ``value`` (the dev run computes the
        unsmoothed loss with it); the layers without one are the same objects, so their outputs can be reused"""
        other = copy.copy(self)
        other.layers = {}
        for name, layer in self.layers.items():
            opts = layer.cls.with_smoothing(layer.opts, layer.loss, value)
            other.layers[name] = layer if opts is None else dataclasses.replace(layer, opts=opts)
        return other


def _options(cls: LayerClass, spec: dict) -> dict[str, Any]:
    """:return: the class options of layer dict ``spec``, defaults filled in; :raise LayerError: for an unknown,
    unsupported or missing option"""
    allowed = {*COMMON_KEYS, *cls.options, *(("target",) if cls.target != "none" else ())}
    for key in spec:
        if key in allowed or key in NO_EFFECT_OPTIONS:
            continue
        if key in cls.returnn_options or key in RETURNN_COMMON_OPTIONS:
            raise LayerError(f"RETURNN's option {key!r} is not supported by returnn-ls for this layer class; "
                             f"supported: {sorted(allowed - {'class'})}")  # fmt: skip
        raise LayerError(f"unknown option {key!r}; known: {sorted(allowed - {'class'})}{suggest(key, allowed)}")
    missing = [k for k, v in cls.options.items() if v is REQUIRED and k not in spec]
    if missing:
        raise LayerError(f"missing option {missing[0]!r}")
    return {k: spec.get(k, v) for k, v in cls.options.items()}


def _sources(value: Any, counts: tuple[int, ...] | None) -> list[str]:
    """:return: the names in ``"from"`` (``"data:x"`` is ``"x"``); :raise LayerError: for a bad value"""
    sources = [value] if isinstance(value, str) else value
    valid = isinstance(sources, (list, tuple)) and sources and all(isinstance(s, str) for s in sources)
    if not valid or (counts is not None and len(sources) not in counts):
        many = "a list of names" if counts is None else f"{counts[-1]} names"
        raise LayerError(f"'from' must be a layer name (or {many}), got {value!r}")
    return [s[len("data:") :] if s.startswith("data:") else s for s in sources]


def replace_smoothing(network: dict, value: float) -> tuple[dict, int]:
    """Replace every label-smoothing option of a network dict by ``value`` (``compare`` uses this).

    The options are ``smoothing`` / ``label_smoothing`` of the smoothing and loss layer classes, ``label_prob``
    of ``smooth_one_hot`` (set to ``1 - value``) and ``loss_opts["label_smoothing"]`` of softmax layers with a
    loss (added when missing).

    Example: ``replace_smoothing({"out": {"class": "softmax", "loss": "ce"}}, 0.1)[0]["out"]["loss_opts"] ==
    {"label_smoothing": 0.1}``

    :return: a new network dict (the input is not modified) and the number of options set
    """
    out, count = {}, 0
    for name, spec in network.items():
        cls = LAYER_CLASSES.get(spec.get("class")) if isinstance(spec, dict) else None
        replaced = cls.with_smoothing(spec, spec.get("loss"), value) if cls is not None else None
        out[name] = spec if replaced is None else replaced
        count += replaced is not None
    return out, count
