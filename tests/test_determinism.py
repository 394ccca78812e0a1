"""Determinism: the same seed gives bit-identical training losses on CPU in two fresh processes.

Run as a script (``python tests/test_determinism.py BACKEND SEED...``) this file trains a small linear model for a
few steps with every label smoothing function, all randomness from the framework's seeded generator, and prints
the losses of each seed as exact hex floats, one line per seed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
B, T, STEPS = 3, 4, 3  # the model sizes F, K and the loss come from _dp_worker


def _losses_torch(seed: int) -> list[float]:
    import torch
    from _dp_worker import F, K, loss_sum

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    weights = (torch.randn(F, K) * 0.3).requires_grad_()
    features, labels = torch.randn(B, T, F), torch.randint(0, K, (B, T))
    lens = torch.randint(1, T + 1, (B,))
    losses = []
    for step in range(STEPS):
        loss = loss_sum(features @ weights, labels.numpy(), lens.numpy(), torch.tensor(0.1 * step)).raw_tensor
        (grad,) = torch.autograd.grad(loss, [weights])
        with torch.no_grad():
            weights -= 0.1 * grad
        losses.append(loss.item())
    return losses


def _losses_tensorflow(seed: int) -> list[float]:
    import keras
    import tensorflow as tf
    from _dp_worker import F, K, loss_sum

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    weights = tf.Variable(tf.random.normal((F, K)) * 0.3)
    features, labels = tf.random.normal((B, T, F)), tf.random.uniform((B, T), 0, K, dtype=tf.int64)
    lens = tf.random.uniform((B,), 1, T + 1, dtype=tf.int64)
    losses = []
    for step in range(STEPS):
        with tf.GradientTape() as tape:
            loss = loss_sum(tf.tensordot(features, weights, 1), labels, lens, tf.constant(0.1 * step)).raw_tensor
        weights.assign_sub(0.1 * tape.gradient(loss, weights))
        losses.append(float(loss))
    return losses


def _run(backend: str, seeds: list[int]) -> list[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="random")
    proc = subprocess.run(
        [sys.executable, __file__, backend, *map(str, seeds)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split("\n")[-1 - len(seeds) : -1]


@pytest.mark.parametrize("name", ["torch", "tensorflow"])
def test_same_seed_gives_bit_identical_losses_in_fresh_processes(name):
    pytest.importorskip(name)
    first, second = _run(name, [7, 8]), _run(name, [7, 8])
    assert first == second, "the same seeds must give the same hex-exact losses"
    assert first[0] != first[1], "different seeds must give different losses (the seed is used)"
    assert all(len(line.split()) == STEPS for line in first)


if __name__ == "__main__":
    sys.path[:0] = [HERE, os.path.dirname(HERE)]
    import returnn_ls as rf

    rf.select_backend(sys.argv[1])
    for seed in map(int, sys.argv[2:]):
        losses = {"torch": _losses_torch, "tensorflow": _losses_tensorflow}[sys.argv[1]](seed)
        print(" ".join(float(v).hex() for v in losses))
