"""RETURNN's own TF network (network dicts) on given parameters and inputs, in a process of its own.

``python _network_returnn_reference.py IN.npz OUT.npz`` runs the networks of ``_network_cases.RETURNN_CASES``.
``IN.npz`` holds ``data`` ``[B, T, F]`` (garbage at
padding frames), ``lengths`` ``[B]``, ``classes`` ``[B, T]``, ``num_classes``, and the variables of the networks
below in RETURNN's layout as ``<case>/<variable name>`` (e.g. ``lstm/fw/rec/lstm_cell/kernel``). ``OUT.npz`` gets
RETURNN's results as ``<case>/<layer>`` (outputs, batch major) and ``<case>/score``, ``<case>/error`` (the output
layer's loss and frame error per frame, as RETURNN's engine reports them for the batch).
"""

from __future__ import annotations

import sys

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()

from _network_cases import RETURNN_CASES as CASES  # noqa: E402 - this folder is on the path of a script
from returnn.config import Config  # noqa: E402 - after switching TensorFlow to graph mode
from returnn.tf.network import TFNetwork  # noqa: E402


def run_case(case: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:return: the fetched layer outputs, score and error of ``case``"""
    network, train_flag, fetch = CASES[case]
    num_inputs, num_classes = inputs["data"].shape[-1], int(inputs["num_classes"])
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        config = Config({"extern_data": {"data": {"dim": num_inputs}, "classes": {"dim": num_classes, "sparse": True}}})
        net = TFNetwork(config=config, train_flag=train_flag, eval_flag=True)
        net.construct_from_dict(network)
        session.run(tf.compat.v1.global_variables_initializer())
        for var in net.get_params_list():
            session.run(var.assign(inputs[f"{case}/{var.name[:-2]}"]))
        feed = {}
        for key in ("data", "classes"):
            data = net.extern_data.data[key]
            feed[data.placeholder] = inputs[key]
            feed[data.get_sequence_lengths()] = inputs["lengths"]
        holder = net.get_losses_initialized()[0]["output"]
        ops = {name: net.layers[name].output.copy_as_batch_major().placeholder for name in fetch}
        ops.update(loss=holder.get_loss_value(), error=holder.get_error_value(), norm=holder.get_norm_factor())
        values = session.run(ops, feed_dict=feed)
    out = {f"{case}/{name}": values[name] for name in fetch}
    out[f"{case}/score"] = values["loss"] * values["norm"]
    out[f"{case}/error"] = values["error"] * values["norm"]
    return out


def main(src: str, dst: str) -> None:
    """Read the inputs from ``src``, write RETURNN's results to ``dst``."""
    inputs = dict(np.load(src))
    results = {}
    for case in CASES:
        results.update(run_case(case, inputs))
    np.savez(dst, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
