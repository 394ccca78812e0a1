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
from returnn_ls.training.datasets import SyntheticDataset

NUM_FEATURES, NUM_LABELS = 16, 8  # label 0 is the blank


def batch_loss(model: torch.nn.Module, batch: dict, smoothing: float, ctc: bool) -> torch.Tensor:
    """:return: the scalar training loss of one padded numpy batch of the synthetic dataset"""
    batch_dim = rf.Dim(len(batch["data_len"]), name="batch")
    time = rf.Dim(rf.convert_to_tensor(batch["data_len"], dims=[batch_dim]), name="time")
    vocab = rf.Dim(NUM_LABELS, name="vocab")
    logits_raw = model(torch.from_numpy(batch["data"]))  # [B, T, K], a torch.Tensor with autograd history
    logits = rf.convert_to_tensor(logits_raw, dims=[batch_dim, time, vocab], feature_dim=vocab)
    if ctc:
        labels = rf.Dim(rf.convert_to_tensor(batch["classes_len"], dims=[batch_dim]), name="labels")
        targets = rf.convert_to_tensor(batch["classes"], dims=[batch_dim, labels], sparse_dim=vocab)
        loss = rf.ctc_loss(logits=logits, targets=targets, input_spatial_dim=time, targets_spatial_dim=labels,
                           blank_index=0, label_smoothing=smoothing)  # fmt: skip
        return rf.reduce_sum(loss, axis=batch_dim).raw_tensor / float(batch["classes_len"].sum())
    targets = rf.convert_to_tensor(batch["alignment"], dims=[batch_dim, time], sparse_dim=vocab)
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
    data = SyntheticDataset(input_dim=NUM_FEATURES, num_labels=NUM_LABELS, num_seqs=128, seed=1)
    for epoch in range(1, args.epochs + 1):
        losses = []
        for batch in data.batches(16, shuffle_seed=epoch):
            loss = batch_loss(model, batch, args.smoothing, args.ctc)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"epoch {epoch}: mean training loss {sum(losses) / len(losses):.4f}")


if __name__ == "__main__":
    main()
