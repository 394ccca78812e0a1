"""RETURNN's own datasets, sequence orders, batches and HDF writer, run in a process of their own.

``python _returnn_data_reference.py SPEC.pkl OUT.pkl``: SPEC is a dict of jobs (each optional), OUT the results
under the same names. RETURNN runs in a subprocess as in the other parity tests (its backend selection changes an
imported TensorFlow; the dataset code itself needs no framework, only the PyTorch pipeline part imports torch).
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import numpy as np
from returnn.datasets.basic import Dataset
from returnn.datasets.generating import Task12AXDataset
from returnn.datasets.hdf import HDFDataset, SimpleHDFWriter


def seq_orders(jobs: list[dict]) -> list[list[int]]:
    """:return: ``Dataset.get_seq_order_for_epoch`` for each job (dataset options, epoch, seq_lens)"""
    out = []
    for job in jobs:
        dataset = Dataset(**job["opts"])
        lens = np.asarray(job["seq_lens"])
        order = dataset.get_seq_order_for_epoch(job["epoch"], len(lens), get_seq_len=lambda i, lens=lens: lens[i])
        out.append([int(i) for i in order])
    return out


def _epoch_seqs(dataset: Any, keys: list[str]) -> list[dict[str, Any]]:
    dataset.load_seqs(0, dataset.num_seqs)
    seqs = []
    for i in range(dataset.num_seqs):
        seq = {key: np.array(dataset.get_data(i, key)) for key in keys}
        seq["seq_tag"] = dataset.get_tag(i)
        seqs.append(seq)
    return seqs


def task12ax(jobs: list[dict]) -> list[list[dict]]:
    """:return: the sequences of ``Task12AXDataset(**opts)`` in epoch ``epoch`` for each job"""
    out = []
    for job in jobs:
        dataset = Task12AXDataset(**job["opts"])
        dataset.initialize()
        dataset.init_seq_order(epoch=job["epoch"])
        out.append(_epoch_seqs(dataset, ["data", "classes"]))
    return out


def tf_batches(jobs: list[dict]) -> list[list[list[tuple[str, int, int]]]]:
    """:return: the batches of RETURNN's ``Dataset._generate_batches`` (its TF engine's batching) for 12AX:
    per batch the (tag, start, end) of each sequence or chunk"""
    out = []
    for job in jobs:
        dataset = Task12AXDataset(**job["opts"])
        dataset.initialize()
        dataset.init_seq_order(epoch=job["epoch"])
        dataset.load_seqs(0, dataset.num_seqs)
        batches = dataset._generate_batches(recurrent_net=True, **job["batching"])  # noqa: SLF001
        out.append(
            [
                [(dataset.get_tag(p.seq_idx), p.seq_start_frame["data"], p.seq_end_frame["data"]) for p in b.seqs]
                for b in batches
            ]
        )
    return out


def torch_batches(jobs: list[dict]) -> list[list[list[tuple[str, int]]]]:
    """:return: the batches of RETURNN's PyTorch engine pipeline (``ChunkingIterDataPipe`` if ``chunking``, then
    ``BatchingIterDataPipe``) over RETURNN's 12AX sequences of the epoch: per batch the (tag, length) of each item"""
    from returnn.torch.data.pipeline import BatchingIterDataPipe, ChunkingIterDataPipe

    out = []
    for job in jobs:
        seqs = task12ax([job])[0]
        items = [{**seq, "seq_tag": np.array(seq["seq_tag"])} for seq in seqs]
        if job.get("chunking"):
            items = list(ChunkingIterDataPipe(items, job["chunking"]))
        batches = BatchingIterDataPipe(items, **job["batching"])
        out.append([[(str(item["seq_tag"]), len(item["data"])) for item in batch] for batch in batches])
    return out


def parse_chunking(values: list) -> list:
    """:return: RETURNN's ``Dataset._parse_chunking`` of each value as (size, step): ints, or dicts per key"""
    out = []
    for value in values:
        size, step, _ = Dataset._parse_chunking(value)  # noqa: SLF001
        out.append(tuple(n.dict if n.dict else n.value for n in (size, step)))
    return out


def write_hdf(jobs: list[dict]) -> None:
    """Write each job's sequences with ``SimpleHDFWriter``, one sequence per ``insert_batch``."""
    for job in jobs:
        writer = SimpleHDFWriter(job["path"], dim=job["dim"], ndim=job.get("ndim"), extra_type=job.get("extra_type"))
        for i, inputs in enumerate(job["inputs"]):
            extra = {key: values[i][None] for key, values in job.get("extra", {}).items()}
            writer.insert_batch(inputs[None], seq_len=[len(inputs)], seq_tag=[job["tags"][i]], extra=extra or None)
        writer.close()


def read_hdf(jobs: list[dict]) -> list[dict]:
    """:return: for each job, what ``HDFDataset(files=..., **opts)`` gives in ``epoch``: the keys with dim,
    sparse and dtype, and the sequences in order"""
    out = []
    for job in jobs:
        dataset = HDFDataset(files=job["files"], cache_byte_size=0, **job.get("opts", {}))
        dataset.initialize()
        dataset.init_seq_order(epoch=job["epoch"])
        keys = dataset.get_data_keys()
        info = {k: (dataset.get_data_dim(k), dataset.is_data_sparse(k), dataset.get_data_dtype(k)) for k in keys}
        out.append({"keys": info, "seqs": _epoch_seqs(dataset, keys)})
    return out


JOBS = {
    "seq_orders": seq_orders,
    "task12ax": task12ax,
    "tf_batches": tf_batches,
    "torch_batches": torch_batches,
    "parse_chunking": parse_chunking,
    "write_hdf": write_hdf,
    "read_hdf": read_hdf,
}


def main(src: str, dst: str) -> None:
    """Run the jobs of ``src`` (in the order of :data:`JOBS`), write the results to ``dst``."""
    with open(src, "rb") as f:
        spec = pickle.load(f)
    results = {name: fn(spec[name]) for name, fn in JOBS.items() if name in spec}
    with open(dst, "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
