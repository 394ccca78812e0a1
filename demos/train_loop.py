"""Call returnn_ls from your own PyTorch training code: a hand-written training loop, no config, no CLI.

The model and optimizer are plain PyTorch. Only the loss goes through returnn_ls, with named dims: the
framework's tensors are wrapped (not copied) by ``rf.convert_to_tensor``, and ``loss.raw_tensor`` is a
``torch.Tensor`` that ``backward()`` differentiates as usual.

    python demos/train_loop.py [--epochs 3] [--smoothing 0.1] [--ctc]
"""

from __future__ import annotations

import argparse

import torch

import returnn_ls as rf
from returnn_ls.training.batching import Batch, iterate_batches
from returnn_ls.training.datasets import make_dataset

NUM_FEATURES, NUM_LABELS = 16, 8  # label 0 is the blank


def batch_loss(model: torch.nn.Module, batch: Batch, smoothing: float, ctc: bool) -> torch.Tensor:
    """:return: the scalar training loss of one padded numpy batch of the synthetic dataset"""
    data, lengths = batch.data, batch.lengths
    batch_dim = rf.Dim(len(lengths["data"]), name="batch")
    time = rf.Dim(rf.convert_to_tensor(lengths["data"], dims=[batch_dim]), name="time")
    vocab = rf.Dim(NUM_LABELS, name="vocab")
    logits_raw = model(torch.from_numpy(data["data"]))  # [B, T, K], a torch.Tensor with autograd history
    logits = rf.convert_to_tensor(logits_raw, dims=[batch_dim, time, vocab], feature_dim=vocab)
    if ctc:
        labels = rf.Dim(rf.convert_to_tensor(lengths["classes"], dims=[batch_dim]), name="labels")
        targets = rf.convert_to_tensor(data["classes"], dims=[batch_dim, labels], sparse_dim=vocab)
        loss = rf.ctc_loss(logits=logits, targets=targets, input_spatial_dim=time, targets_spatial_dim=labels,
                           blank_index=0, label_smoothing=smoothing)  # fmt: skip
        return rf.reduce_sum(loss, axis=batch_dim).raw_tensor / float(lengths["classes"].sum())
    targets = rf.convert_to_tensor(data["alignment"], dims=[batch_dim, time], sparse_dim=vocab)
    loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=smoothing)
    return rf.reduce_mean(loss, axis=[batch_dim, time]).raw_tensor  # padding frames are not counted


def main() -> None:
    """Train a small MLP on the synthetic task and print the loss per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--smoothing", type=float, default=0.1)
    parser.add_argument("--ctc", action="store_true", help="train CTC on the label sequences instead of frame CE")
    args = parser.parse_args()
    rf.select_backend("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(NUM_FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, NUM_LABELS))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = make_dataset({"class": "synthetic", "num_seqs": 128, "seed": 1}, name="train", batching="random",
                        input_dim=NUM_FEATURES, num_labels=NUM_LABELS)  # fmt: skip
    for epoch in range(1, args.epochs + 1):
        losses = []
        data.init_seq_order(epoch)  # a new random order each epoch
        for batch in iterate_batches(data, batch_size=16):  # 16 sequences per batch (the synthetic dataset's unit)
            loss = batch_loss(model, batch, args.smoothing, args.ctc)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"epoch {epoch}: mean training loss {sum(losses) / len(losses):.4f}")


if __name__ == "__main__":
    main()
