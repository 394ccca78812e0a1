"""Worker for tests/test_distributed.py: trains a small linear model with label smoothing for a few SGD steps,
data-parallel over 2 workers and in one process on the same global batch, and saves both parameter sets.

    python tests/_dp_worker.py torch OUT.npz        # run twice, with RANK=0/1, WORLD_SIZE=2, MASTER_PORT=...
    python tests/_dp_worker.py tensorflow OUT.npz   # MirroredStrategy over 2 logical CPU devices

Each worker's loss is the sum over its valid frames divided by the number of valid frames of the *global* batch,
so that the sum of the workers' gradients is the gradient of the single-process loss. DDP averages gradients over
workers, so there each worker's loss is multiplied by the number of workers.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import returnn_ls as rf  # noqa: E402
from returnn_ls import Dim  # noqa: E402

B, T, F, K, WORKERS, STEPS, LR = 4, 5, 6, 5, 2, 3, 0.5
_rng = np.random.default_rng(0)
FEATURES = _rng.standard_normal((B, T, F)).astype(np.float32)
LABELS = _rng.integers(0, K, size=(B, T))
LENS = np.array([5, 3, 4, 2])
INIT = {"w": (_rng.standard_normal((F, K)) * 0.3).astype(np.float32), "b": np.zeros(K, np.float32)}
NUM_FRAMES = float(LENS.sum())
SMOOTHING = [0.1, 0.2, 0.3]  # a schedule: one value per step


def shard(worker: int | None) -> slice:
    """:return: the sequences of ``worker`` (None: the whole global batch)"""
    return slice(None) if worker is None else slice(worker * B // WORKERS, (worker + 1) * B // WORKERS)


def loss_sum(logits_raw, labels, lens, smoothing) -> rf.Tensor:
    """:return: sum over the valid frames of gradient-smoothed CE plus the fused label-smoothed CE"""
    batch, vocab = Dim(len(lens), name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time")
    logits = rf.convert_to_tensor(logits_raw, dims=[batch, time, vocab], feature_dim=vocab)
    targets = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
    smoothing = rf.convert_to_tensor(smoothing, dims=())  # a raw scalar tensor: the schedule's value
    log_prob = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=vocab), smoothing, exclude_labels=[0])
    loss = rf.cross_entropy(estimated=log_prob, target=targets, axis=vocab, estimated_type="log-probs")
    loss = loss + rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=smoothing)
    return rf.reduce_sum(loss, axis=[batch, time])


def train_torch(out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rf.select_backend("torch")
    torch.use_deterministic_algorithms(True)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}", rank=rank,
                            world_size=world)  # fmt: skip

    def make_model():
        model = torch.nn.Linear(F, K)
        with torch.no_grad():
            model.weight.copy_(torch.tensor(INIT["w"].T))
            model.bias.copy_(torch.tensor(INIT["b"]))
        return model

    def train(model, worker, scale):
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for step in range(STEPS):
            part = shard(worker)
            logits = model(torch.tensor(FEATURES[part]))
            loss = loss_sum(logits, LABELS[part], LENS[part], torch.tensor(SMOOTHING[step])).raw_tensor
            opt.zero_grad()
            (loss * (scale / NUM_FRAMES)).backward()
            opt.step()
        linear = getattr(model, "module", model)
        return {"w": linear.weight.detach().numpy().T.copy(), "b": linear.bias.detach().numpy().copy()}

    parallel = train(DistributedDataParallel(make_model()), rank, world)  # DDP averages gradients over workers
    dist.destroy_process_group()
    if rank == 0:
        single = train(make_model(), None, 1.0)
        np.savez(
            out, **{f"parallel_{k}": v for k, v in parallel.items()}, **{f"single_{k}": v for k, v in single.items()}
        )


def train_tensorflow(out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * WORKERS)
    rf.select_backend("tensorflow")

    def replica_loss(variables, features, labels, lens, smoothing):
        logits = tf.tensordot(features, variables[0], axes=1) + variables[1]
        return loss_sum(logits, labels, lens, smoothing).raw_tensor / NUM_FRAMES

    def train(strategy, distributed: bool):
        with strategy.scope():
            variables = [tf.Variable(INIT["w"]), tf.Variable(INIT["b"])]

        def grads_of(inputs, smoothing):
            with tf.GradientTape() as tape:
                loss = replica_loss(variables, *inputs, smoothing)
            return tape.gradient(loss, variables)

        @tf.function
        def step(inputs, smoothing):
            if distributed:
                per_replica = strategy.run(grads_of, args=(inputs, smoothing))
                grads = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in per_replica]
            else:
                grads = grads_of(inputs, smoothing)
            for var, grad in zip(variables, grads):
                var.assign_sub(LR * grad)

        def replica_inputs(context):
            part = shard(context.replica_id_in_sync_group)
            return tf.constant(FEATURES[part]), tf.constant(LABELS[part]), tf.constant(LENS[part])

        if distributed:
            inputs = strategy.experimental_distribute_values_from_function(replica_inputs)
        else:
            inputs = (tf.constant(FEATURES), tf.constant(LABELS), tf.constant(LENS))
        for s in SMOOTHING[:STEPS]:
            step(inputs, tf.constant(s))
        return {"w": variables[0].numpy(), "b": variables[1].numpy()}

    mirrored = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    assert mirrored.num_replicas_in_sync == WORKERS
    parallel = train(mirrored, True)
    single = train(tf.distribute.get_strategy(), False)
    np.savez(out, **{f"parallel_{k}": v for k, v in parallel.items()}, **{f"single_{k}": v for k, v in single.items()})


if __name__ == "__main__":
    {"torch": train_torch, "tensorflow": train_tensorflow}[sys.argv[1]](sys.argv[2])
