"""A network dict as one ``rf.Module``: the layers' modules (``rf.LSTM``, ``rf.Linear``, ...) and the forward.

The parameters of the network are the ``rf.Parameter`` s of its layers' modules, named ``<layer>.<parameter>``
(e.g. ``fw0.ff_weight``, ``output.weight``). They are created in the order of the layers (by ``"from"``) from
the generator that ``rf.set_random_seed`` seeds, so the same config and seed give the same parameters on both
backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from returnn_ls.nn import Module
from returnn_ls.tensor import Tensor
from returnn_ls.training.layers import Context, Layer, LayerError, LossOutput, relabel
from returnn_ls.training.network import Network

__all__ = ["NetOutput", "NetworkModule"]


@dataclass
class NetOutput:
    """The result of running a network: every layer's output and the loss layers' results."""

    outputs: dict[str, Tensor]
    losses: dict[str, LossOutput]
    loss_layers: list[str]

    @property
    def loss(self) -> Tensor:
        """:return: the training loss: the sum of the loss layers' normalized losses"""
        terms = [self.losses[name].normalized() for name in self.loss_layers]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total


class NetworkModule(Module):
    """The modules of a :class:`Network`'s layers and its forward computation.

    Example::

        rf.set_random_seed(0)
        model = NetworkModule(Network(config.get("network"), extern))
        out = model(extern.tensors(batch))  # out.losses["output"].value: the loss per frame
    """

    def __init__(self, network: Network):
        self.network = network
        self.layers: dict[str, Module] = {}
        for name in network.order:
            layer = network.layers[name]
            try:
                module = layer.cls.build(layer)
            except (LayerError, TypeError, ValueError) as exc:
                raise network.error(name, f"layer {name!r} ({layer.cls.name}): {exc}") from exc
            if module is not None:
                self.layers[name] = module

    def _attributes(self) -> Iterable[tuple[str, Any]]:
        return self.layers.items()

    def __call__(self, extern_data: Mapping[str, Tensor], *, network: Network | None = None,
                 reuse: NetOutput | None = None) -> NetOutput:  # fmt: skip
        """Run the network on one batch.

        :param extern_data: the batch's tensors by ``extern_data`` key
        :param network: a variant of the network with other option values (:meth:`Network.with_smoothing`)
        :param reuse: the output of this module on the same batch; layers that the variant shares with the network
            (and whose inputs are shared) take their output from there instead of computing it again
        """
        network = network or self.network
        values: dict[str, Any] = dict(extern_data)
        losses: dict[str, LossOutput] = {}
        shared = set(extern_data)
        for name in network.order:
            layer = network.layers[name]
            if reuse is not None and layer is self.network.layers[name] and all(s in shared for s in layer.sources):
                shared.add(name)
                values[name] = reuse.outputs[name]
                if name in reuse.losses:
                    losses[name] = reuse.losses[name]
                continue
            out = self._forward(network, layer, values)
            if isinstance(out, tuple):
                out, losses[name] = out
            elif isinstance(out, LossOutput):
                losses[name] = out
                out = out.value
            values[name] = out
        return NetOutput({n: values[n] for n in network.order}, losses, network.loss_layers())

    def _forward(self, network: Network, layer: Layer, values: dict[str, Any]) -> Any:
        cls = layer.cls
        target = None
        if layer.target is not None:
            target = values[layer.target]
            target = relabel(target, target.sparse_dim, cls.target_vocab(layer))
        ctx = Context(layer, self.layers.get(layer.name), target)
        try:
            return cls.forward(ctx, *cls.prepare(ctx, [values[s] for s in layer.sources]))
        except (TypeError, ValueError) as exc:  # bad option values, reported by the library's functions
            raise network.error(layer.name, f"layer {layer.name!r} ({cls.name}): {cls.user_message(exc)}") from exc
