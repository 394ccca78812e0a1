"""Time one epoch of reading and batching (no model): the 12AX demo's training data, and an HDF file of the
same sequences, with returnn-ls and (if installed) with RETURNN's own datasets and batch generation.

The settings are the 12AX demo configs': 1000 sequences, ``batching = "random"``, ``batch_size = 5000``,
``max_seqs = 10`` (100 batches). The cases run alternately, ``--rounds`` times each, each round a new epoch.

    python demos/data_timing.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

from returnn_ls.training.batching import iterate_batches
from returnn_ls.training.datasets import make_dataset

NUM_SEQS, BATCH_SIZE, MAX_SEQS = 1000, 5000, 10


def write_hdf(path: str) -> None:
    """Write the 12AX sequences of epoch 1 in RETURNN's HDF layout (h5py)."""
    import h5py

    ds = make_dataset({"class": "Task12AXDataset", "num_seqs": NUM_SEQS}, name="train")
    ds.init_seq_order(1)
    seqs = [ds.get_seq(i) for i in range(ds.num_seqs)]
    with h5py.File(path, "w") as f:
        f.create_dataset("inputs", data=np.concatenate([s["data"] for s in seqs]))
        f.create_dataset("seqLengths", data=np.array([[len(s["data"])] * 2 for s in seqs], dtype="int32"))
        f.create_dataset("seqTags", data=[s["seq_tag"] for s in seqs], dtype=h5py.string_dtype())
        f.create_dataset("targets/data/classes", data=np.concatenate([s["classes"] for s in seqs]))
        f.create_dataset("targets/labels/classes", data=[b"L", b"R"])
        f.create_group("targets/size").attrs["classes"] = [2, 1]


def ours(opts: dict) -> Callable[[int], int]:
    """:return: ``run(epoch)``: one epoch with returnn-ls; returns the number of batches"""
    ds = make_dataset(opts, name="train", batching="random")

    def run(epoch: int) -> int:
        ds.init_seq_order(epoch)
        return sum(1 for _ in iterate_batches(ds, batch_size=BATCH_SIZE, max_seqs=MAX_SEQS))

    return run


def returnn(opts: dict) -> Callable[[int], int]:
    """:return: ``run(epoch)``: one epoch with RETURNN's dataset and ``_generate_batches``, padded into numpy
    arrays as RETURNN's feeding does"""
    from returnn.datasets.basic import init_dataset

    ds = init_dataset({**opts, "seq_ordering": "random"})

    def run(epoch: int) -> int:
        ds.init_seq_order(epoch=epoch)
        count = 0
        for batch in ds._generate_batches(recurrent_net=True, batch_size=BATCH_SIZE, max_seqs=MAX_SEQS):  # noqa: SLF001
            ds.load_seqs(batch.start_seq, batch.end_seq)
            for key in ("data", "classes"):
                arrays = [ds.get_data(part.seq_idx, key) for part in batch.seqs]
                padded = np.zeros((len(arrays), max(map(len, arrays))) + arrays[0].shape[1:], arrays[0].dtype)
                for i, array in enumerate(arrays):
                    padded[i, : len(array)] = array
            count += 1
        return count

    return run


def main() -> None:
    """Run the cases alternately and print the median seconds per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "12ax.hdf")
        write_hdf(path)
        task = {"class": "Task12AXDataset", "num_seqs": NUM_SEQS}
        hdf = {"class": "HDFDataset", "files": [path]}
        cases = {"returnn-ls 12AX": ours(task), "returnn-ls HDF": ours(hdf)}
        try:
            cases.update({"RETURNN 12AX": returnn(task), "RETURNN HDF": returnn({**hdf, "cache_byte_size": 0})})
        except ImportError:
            print("(RETURNN is not installed: timing returnn-ls only)")
        times: dict[str, list[float]] = {name: [] for name in cases}
        for epoch in range(1, args.rounds + 1):
            for name, run in cases.items():
                start = time.perf_counter()
                assert run(epoch) == NUM_SEQS // MAX_SEQS
                times[name].append(time.perf_counter() - start)
    print(f"load average {os.getloadavg()[0]:.2f}; median seconds per epoch ({NUM_SEQS} sequences, "
          f"{NUM_SEQS // MAX_SEQS} batches) over {args.rounds} rounds:")  # fmt: skip
    for name, values in times.items():
        print(f"  {name:16s} {statistics.median(values):.3f} s")


if __name__ == "__main__":
    main()
