"""Data-parallel training with PyTorch DistributedDataParallel and label smoothing from returnn_ls.

Run it with two processes on this machine (gloo, CPU)::

    torchrun --nproc_per_node 2 demos/data_parallel_torch.py

Each worker takes its shard of every global batch. DDP *averages* the workers' gradients, so each worker divides
its summed loss by the number of valid frames of the *global* batch and multiplies by the number of workers: then
the update equals that of one process on the whole batch.
"""

from __future__ import annotations

import gc

import numpy as np
import torch
import torch.distributed as dist

import returnn_ls as rf
from returnn_ls import Dim

num_features, num_classes, steps = 6, 5, 20


def my_shard_of_each_batch(rank: int, world_size: int):
    """Yield this worker's part of each global batch: features, labels, lengths and the global frame count."""
    rng = np.random.default_rng(0)  # every worker draws the same global batches and keeps its own shard
    prototypes = rng.standard_normal((num_classes, num_features)).astype("float32")
    for _ in range(steps):
        lens = rng.integers(2, 8, size=4 * world_size)
        labels = rng.integers(0, num_classes, size=(len(lens), int(lens.max())))
        features = prototypes[labels] + 0.5 * rng.standard_normal(labels.shape + (num_features,)).astype("float32")
        part = slice(rank * 4, (rank + 1) * 4)
        yield torch.tensor(features[part]), torch.tensor(labels[part]), lens[part], float(lens.sum())


def train() -> None:
    """Train on this worker's shards. The DDP model lives only in here: it must be gone before the process group
    is destroyed, or a worker may abort at exit."""
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(num_features, num_classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for features, labels, lens, global_num_frames in my_shard_of_each_batch(dist.get_rank(), dist.get_world_size()):
        batch, vocab = Dim(len(lens), name="batch"), Dim(num_classes, name="vocab")
        time = Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time")
        logits = rf.convert_to_tensor(model(features), dims=[batch, time, vocab], feature_dim=vocab)
        targets = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
        log_prob = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=vocab), 0.1)
        ce = rf.cross_entropy(estimated=log_prob, target=targets, axis=vocab, estimated_type="log-probs")
        loss = rf.reduce_sum(ce, axis=[batch, time]).raw_tensor  # padding frames are left out
        opt.zero_grad()
        (loss * dist.get_world_size() / global_num_frames).backward()
        opt.step()
    if dist.get_rank() == 0:
        print(f"rank 0: last loss per frame (own shard) {loss.detach().item() / float(lens.sum()):.4f}")


dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR/PORT from the launcher
rf.select_backend("torch")
train()
gc.collect()  # DDP's reducer sits in reference cycles: free it while the process group still exists
dist.barrier()
dist.destroy_process_group()
