"""Batching: the batches RETURNN's own engines build (its TF engine's ``_generate_batches`` and its PyTorch engine's
pipeline, in a subprocess) for the 12AX demo settings, the rule against a plain reference, chunking, the config-key
parsers, and epochs that do not depend on the epochs before them."""

from __future__ import annotations

import numpy as np
import pytest
from _data_helpers import run_returnn

from returnn_ls.training.batching import (
    chunk_seq,
    iterate_batches,
    parse_batch_size,
    parse_batching,
    parse_chunking,
    parse_max_seqs,
)
from returnn_ls.training.datasets import DataKey, Dataset, SyntheticDataset, Task12AXDataset, make_dataset

#: (12AX options, epoch, batching options, chunking): the demo settings, a frame limit that binds, sequences
#: longer than the limit, chunks
CASES = [
    ({"num_seqs": 1000, "seq_ordering": "random"}, 1, {"batch_size": 5000, "max_seqs": 10}, None),
    ({"num_seqs": 1000, "seq_ordering": "random"}, 2, {"batch_size": 5000, "max_seqs": 10}, None),
    ({"num_seqs": 200, "seq_ordering": "random"}, 3, {"batch_size": 400, "max_seqs": -1}, None),
    ({"num_seqs": 60}, 1, {"batch_size": 50, "max_seqs": 3}, None),
    ({"num_seqs": 60, "seq_ordering": "random"}, 1, {"batch_size": 100, "max_seqs": 8}, "20:15"),
]
CHUNKINGS = ["0", "20:15", "10", 10, (10, 5), (10, 0), {"data": 10, "classes": 10},
             ({"data": 10, "classes": 5}, {"data": 5, "classes": 5}), (0, None)]  # fmt: skip


@pytest.fixture(scope="module")
def returnn_batches(tmp_path_factory):
    """RETURNN's batches of each case, from both engines, and RETURNN's parsing of :data:`CHUNKINGS`."""
    tf_jobs, torch_jobs = [], []
    for opts, epoch, batching, chunking in CASES:
        tf_jobs.append({"opts": {**opts, "chunking": chunking or "0"}, "epoch": epoch, "batching": batching})
        torch_jobs.append({"opts": opts, "epoch": epoch, "batching": batching, "chunking": chunking and
                           parse_chunking(chunking)})  # fmt: skip
    spec = {"tf_batches": tf_jobs, "torch_batches": torch_jobs, "parse_chunking": CHUNKINGS}
    return run_returnn(spec, tmp_path_factory.mktemp("batches"))


def _ours(case: int) -> list[list[tuple[str, int]]]:
    opts, epoch, batching, chunking = CASES[case]
    ds = Task12AXDataset(**opts)
    ds.init_seq_order(epoch)
    batches = iterate_batches(ds, **batching, chunking=parse_chunking(chunking))
    return [list(zip(b.seq_tags, b.lengths["data"].tolist())) for b in batches]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[2]}-chunking{c[3]}-epoch{c[1]}" for c in CASES])
def test_batches_equal_returnns_engines(returnn_batches, case):
    ours = _ours(case)
    tf = [[(tag, end - start) for tag, start, end in batch] for batch in returnn_batches["tf_batches"][case]]
    assert ours == tf
    assert ours == [[(tag, n) for tag, n in batch] for batch in returnn_batches["torch_batches"][case]]
    if case == 0:
        assert len(ours) == 100 and {len(b) for b in ours} == {10}  # the 12AX demo: 100 batches of 10


def test_parse_chunking_reads_returnns_forms(returnn_batches):
    for value, (size, step) in zip(CHUNKINGS, returnn_batches["parse_chunking"]):
        assert parse_chunking(value) == (None if size == 0 else (size, step)), value


def _reference_batches(lens: list[int], batch_size: int, max_seqs: int, unit: str) -> list[list[int]]:
    """The rule, plainly: add the next sequence unless the batch is non-empty and then the padded size (or the
    count) would exceed batch_size, or it has max_seqs sequences already."""
    batches: list[list[int]] = []
    for i, n in enumerate(lens):
        current = batches[-1] if batches else []
        size = len(current) + 1 if unit == "seqs" else max([lens[j] for j in current] + [n]) * (len(current) + 1)
        if not current or size > batch_size or len(current) == max_seqs:
            batches.append([i])
        else:
            current.append(i)
    return batches


class _Frames(Dataset):
    """Sequences of given lengths: ``data`` holds the frame numbers, ``labels`` is half as long."""

    def __init__(self, lens, unit="frames"):
        super().__init__("frames")
        self.lens, self.batch_size_unit = lens, unit
        self.keys = {"data": DataKey(2, False, "float32"), "labels": DataKey(3, True, "int32")}

    def _total_num_seqs(self):
        return len(self.lens)

    def _corpus_seq(self, i):
        data = np.stack([np.arange(self.lens[i], dtype="float32"), np.full(self.lens[i], i, "float32")], axis=1)
        return {"data": data, "labels": np.full(self.lens[i] // 2, i % 3, "int32"), "seq_tag": f"s{i}"}


@pytest.mark.parametrize("unit", ["frames", "seqs"])
def test_batches_follow_the_rule_and_hold_the_padded_sequences(unit):
    rng = np.random.default_rng(1)
    lens = rng.integers(1, 40, size=300).tolist()
    lens[7] = 500  # longer than batch_size: a batch of its own
    ds = _Frames(lens, unit)
    ds.init_seq_order(1)
    for batch_size, max_seqs in ((120, -1), (120, 4), (1000, 7)) if unit == "frames" else ((5, -1), (9, 4)):
        batches = list(iterate_batches(ds, batch_size=batch_size, max_seqs=max_seqs))
        assert [[int(t[1:]) for t in b.seq_tags] for b in batches] == _reference_batches(lens, batch_size, max_seqs,
                                                                                         unit)  # fmt: skip
    for batch in batches:
        ids = [int(t[1:]) for t in batch.seq_tags]
        assert batch.lengths["data"].tolist() == [lens[i] for i in ids]
        assert batch.data["data"].shape == (len(ids), max(lens[i] for i in ids), 2)
        for row, i in enumerate(ids):
            np.testing.assert_array_equal(batch.data["data"][row, : lens[i]], ds._corpus_seq(i)["data"])
            assert not batch.data["data"][row, lens[i] :].any() and batch.lengths["labels"][row] == lens[i] // 2


def test_chunks_cut_all_keys_or_those_named():
    ds = SyntheticDataset(input_dim=3, num_labels=5, num_seqs=4, seed=2)
    ds.init_seq_order(1)
    seq = ds.get_seq(0)
    n = len(seq["data"])
    chunks = chunk_seq(seq, ds.keys, parse_chunking(({"data": 4, "alignment": 4}, {"data": 3, "alignment": 3})))
    assert [len(c["data"]) for c in chunks] == [min(4, n - s) for s in range(0, n, 3)]
    for c, start in zip(chunks, range(0, n, 3)):
        np.testing.assert_array_equal(c["alignment"], seq["alignment"][start : start + 4])
        np.testing.assert_array_equal(c["classes"], seq["classes"])  # not named: whole in every chunk
    with pytest.raises(ValueError, match=r"chunking: sequence 'seq-0': 'classes' has \d+ frames and 'data' \d+, "
                       r"which give different numbers of chunks"):  # fmt: skip
        chunk_seq(seq, ds.keys, (4, 3))
    with pytest.raises(ValueError, match=r"chunking names 'classez', which the dataset does not have"):
        chunk_seq(seq, ds.keys, ({"classez": 2}, {"classez": 2}))


def test_an_epochs_batches_do_not_depend_on_the_epochs_before():
    def epoch_batches(ds, epoch):
        ds.init_seq_order(epoch)
        return [(b.seq_tags, b.data["data"].tobytes()) for b in iterate_batches(ds, batch_size=300, max_seqs=6)]

    opts = {"class": "Task12AXDataset", "num_seqs": 50}
    running = make_dataset(opts, name="train", batching="random")
    before = [epoch_batches(running, epoch) for epoch in (1, 2, 3)]
    assert epoch_batches(make_dataset(opts, name="train", batching="random"), 3) == before[2] != before[1]


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (parse_batching, "rnd", r"batching must be one of \['default', .*got 'rnd'"),
        (parse_batch_size, 0, r"batch_size must be a positive int \(frames per batch, padding included\), got 0"),
        (parse_batch_size, "5000", r"batch_size must be a positive int .*got '5000'"),
        (parse_batch_size, {"data": 5000}, r"batch_size per data key .* is not supported by returnn-ls"),
        (parse_max_seqs, 0, r"max_seqs must be a positive int, or -1 for no limit, got 0"),
        (parse_max_seqs, 2.5, r"max_seqs must be a positive int, or -1 for no limit, got 2.5"),
        (parse_chunking, "10:x", r"chunking must be one of '0', 'size:step'.*got '10:x'"),
        (parse_chunking, (10, -2), r"chunking must be one of .* with positive ints .*got \(10, -2\)"),
        (parse_chunking, ({"data": 10}, {"classes": 5}), r"chunking must be one of .*dicts with the same keys"),
        (parse_chunking, lambda **_: None, r"chunking: a custom chunking function is not supported by returnn-ls"),
    ],
)
def test_config_keys_are_checked_with_the_key_in_the_message(parse, value, message):
    with pytest.raises(ValueError, match=message):
        parse(value)


def test_config_key_defaults():
    assert parse_batching(None) == "default" and parse_batching("laplace:.100") == "laplace:.100"
    assert parse_max_seqs(None) == parse_max_seqs(-1) == -1 and parse_max_seqs(10) == 10
    assert parse_batch_size(np.int64(5000)) == 5000
    assert parse_chunking(None) is None and parse_chunking("0") is None and parse_chunking("200:100") == (200, 100)
