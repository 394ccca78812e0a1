"""Data-parallel training with TensorFlow's MirroredStrategy and label smoothing from returnn_ls.

Run it with ``python demos/data_parallel_tensorflow.py``: it splits this machine's CPU into 2 logical devices
and trains one replica on each. MirroredStrategy *sums* the replicas' gradients, so each replica divides its
summed loss by the number of valid frames of the *global* batch: then the update equals that of one process on
the whole batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import returnn_ls as rf
from returnn_ls import Dim

num_features, num_classes, num_replicas, steps = 6, 5, 2, 20
rng = np.random.default_rng(0)
prototypes = rng.standard_normal((num_classes, num_features)).astype("float32")
initial_w = (0.1 * rng.standard_normal((num_features, num_classes))).astype("float32")


def my_loss_sum(logits, labels, lens):
    """:return: the gradient-smoothed cross entropy summed over the valid frames of one replica's shard"""
    batch, vocab = Dim(int(labels.shape[0]), name="batch"), Dim(num_classes, name="vocab")
    time = Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time")
    logits = rf.convert_to_tensor(logits, dims=[batch, time, vocab], feature_dim=vocab)
    targets = rf.convert_to_tensor(labels, dims=[batch, time], sparse_dim=vocab)
    log_prob = rf.label_smoothed_log_prob_gradient(rf.log_softmax(logits, axis=vocab), 0.1)
    ce = rf.cross_entropy(estimated=log_prob, target=targets, axis=vocab, estimated_type="log-probs")
    return rf.reduce_sum(ce, axis=[batch, time]).raw_tensor


def global_batch():
    """:return: features, labels and lengths of one global batch (4 sequences per replica, padded to 7 frames)"""
    lens = rng.integers(2, 8, size=4 * num_replicas)
    labels = rng.integers(0, num_classes, size=(len(lens), 7))
    features = prototypes[labels] + 0.5 * rng.standard_normal(labels.shape + (num_features,)).astype("float32")
    return features, labels, lens


def my_shard(replica: int, batch):
    """:return: the part of ``batch`` that ``replica`` trains on"""
    part = slice(replica * 4, (replica + 1) * 4)
    return tuple(tf.constant(x[part]) for x in batch)


cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
rf.select_backend("tensorflow")
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
with strategy.scope():
    w = tf.Variable(initial_w)


def replica_grads(features, labels, lens, global_num_frames):
    with tf.GradientTape() as tape:
        loss = my_loss_sum(tf.tensordot(features, w, 1), labels, lens) / global_num_frames  # rf code as above
    return tape.gradient(loss, w)


@tf.function
def step(inputs, global_num_frames):
    grads = strategy.run(replica_grads, args=(*inputs, global_num_frames))
    w.assign_sub(0.1 * strategy.reduce(tf.distribute.ReduceOp.SUM, grads, axis=None))


for _ in range(steps):
    batch = global_batch()
    shards = [my_shard(replica, batch) for replica in range(num_replicas)]
    inputs = strategy.experimental_distribute_values_from_function(lambda c, s=shards: s[c.replica_id_in_sync_group])
    step(inputs, tf.constant(float(batch[2].sum())))
features, labels, lens = global_batch()
loss = float(my_loss_sum(tf.tensordot(features, w, 1), labels, lens)) / lens.sum()
print(f"loss per frame after training: {loss:.4f}")
