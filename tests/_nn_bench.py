"""Time of rf.LSTM forward + backward on a 12AX-sized batch (and LayerNorm fused vs composed), per backend.

Not a test: ``PYTHONPATH=$PWD python tests/_nn_bench.py --rounds 5``. A 12AX batch of RETURNN's demos: 10
sequences of 10-100 frames, 9 input features, an LSTM of 10 units. The cases run alternating, ``--rounds`` times;
the medians are printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import returnn_ls as rf
from returnn_ls import Dim


def _batch(rng: np.random.Generator, feature: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(10, 101, size=10).astype("int32")
    return rng.normal(size=(10, int(lengths.max()), feature)).astype("float32"), lengths


def _lstm_case(name: str, compiled: bool):
    """:return: a function running one forward + backward step of an LSTM 9 -> 10 on a given batch"""
    rf.select_backend(name)
    in_dim, out_dim = Dim(9, name="in"), Dim(10, name="lstm")
    lstm = rf.LSTM(in_dim, out_dim)
    params = [p.raw_tensor for p in lstm.parameters()]
    batch, time_dim = Dim(10, name="batch"), Dim(None, name="time")

    def loss(x, lengths):
        time_dim.dyn_size_ext = rf.convert_to_tensor(lengths, dims=[batch])
        out, _ = lstm(rf.convert_to_tensor(x, dims=[batch, time_dim, in_dim]), spatial_dim=time_dim)
        return out.raw_tensor

    if name == "torch":
        import torch

        def step(x, lengths):
            (loss(torch.tensor(x), torch.tensor(lengths)) ** 2).sum().backward()

        return step
    import tensorflow as tf

    def tf_step(x, lengths):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(loss(x, lengths) ** 2)
        return tape.gradient(total, params)

    if compiled:
        spec = [tf.TensorSpec([10, None, 9], tf.float32), tf.TensorSpec([10], tf.int32)]
        tf_step = tf.function(tf_step, input_signature=spec)
    return lambda x, lengths: [g.numpy() for g in tf_step(tf.constant(x), tf.constant(lengths))]


def _layer_norm_case(name: str, fused: bool):
    """:return: forward + backward of LayerNorm over 512 features of a [32, 50, 512] batch, fused or composed"""
    rf.select_backend(name)
    feature = Dim(512, name="feature")
    norm = rf.LayerNorm(feature)
    batch, time_dim = Dim(32, name="batch"), Dim(50, name="time")

    def composed(x):
        mean = rf.reduce_mean(x, axis=feature)
        centered = x - mean
        var = rf.reduce_mean(centered * centered, axis=feature)
        return centered * (var + norm.eps) ** -0.5 * norm.scale + norm.bias

    def loss(raw):
        x = rf.convert_to_tensor(raw, dims=[batch, time_dim, feature])
        return (norm(x) if fused else composed(x)).raw_tensor

    rng = np.random.default_rng(0)
    raw = rng.normal(size=(32, 50, 512)).astype("float32")
    if name == "torch":
        import torch

        def step():
            x = torch.tensor(raw, requires_grad=True)
            (loss(x) ** 2).sum().backward()

        return step
    import tensorflow as tf

    def tf_step():
        x = tf.constant(raw)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(loss(x) ** 2)
        return tape.gradient(total, x).numpy()

    return tf_step


def main() -> None:
    """Run the cases alternating and print the median milliseconds per step."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = parser.parse_args()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(0)
    batches = [_batch(rng, 9) for _ in range(args.steps)]
    cases = {
        "lstm torch eager": _lstm_case("torch", False),
        "lstm tensorflow eager": _lstm_case("tensorflow", False),
        "lstm tensorflow tf.function": _lstm_case("tensorflow", True),
    }
    ln_cases = {
        f"layer_norm {name} {'fused' if fused else 'composed'}": _layer_norm_case(name, fused)
        for name in ("torch", "tensorflow")
        for fused in (True, False)
    }
    times: dict[str, list[float]] = {k: [] for k in list(cases) + list(ln_cases)}
    for fn in cases.values():
        fn(*batches[0])  # warm up (and trace)
    for fn in ln_cases.values():
        fn()
    for _ in range(args.rounds):
        for key, fn in cases.items():
            start = time.perf_counter()
            for x, lengths in batches:
                fn(x, lengths)
            times[key].append((time.perf_counter() - start) / len(batches) * 1e3)
        for key, fn in ln_cases.items():
            start = time.perf_counter()
            for _ in range(5):
                fn()
            times[key].append((time.perf_counter() - start) / 5 * 1e3)
    for key, values in times.items():
        print(f"{key:36s} {np.median(values):8.2f} ms per step (median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
