"""The dataset interface: RETURNN's sequence orders and epoch seeds (against RETURNN in a subprocess), the registry's
messages, and the synthetic dataset on the interface."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from _data_helpers import run_returnn

from returnn_ls.training.batching import collate_batch
from returnn_ls.training.datasets import DataKey, Dataset, SyntheticDataset, make_dataset

METHODS = [
    "default", "reverse", "sorted", "sorted_reverse", "default_every_n:3", "random", "random:3", "random_sample",
    "random_sample:2", "laplace", "laplace:3", "laplace:.7", "laplace:4:2", "sort_bin_shuffle", "sort_bin_shuffle:3",
    "sort_bin_shuffle:.5:2", "sort_bin_shuffle_x2", "sort_bin_shuffle_x2:4",
]  # fmt: skip
SHARED = [{}, {"fixed_random_seed": 7}, {"partition_epoch": 3}, {"repeat_epoch": 2}, {"random_seed_offset": 11}]
EPOCHS = (1, 2, 5)
LENS = np.random.default_rng(3).integers(1, 9, size=31)  # with ties, so stable sorting matters


class _Lengths(Dataset):
    """Sequences that are only lengths; ``seq_tag`` is the corpus index."""

    def __init__(self, lens: np.ndarray, **opts):
        super().__init__("lengths", **opts)
        self.lens = lens

    def _total_num_seqs(self) -> int:
        return len(self.lens)

    def _corpus_seq_lens(self) -> np.ndarray:
        return self.lens

    def _corpus_seq(self, corpus_index: int) -> dict:
        return {"seq_tag": str(corpus_index)}


def _cases() -> list[tuple[dict, int]]:
    cases = [({"seq_ordering": m}, e) for m in METHODS for e in EPOCHS]
    return cases + [({"seq_ordering": m, **s}, e) for m in ("random", "laplace:.5") for s in SHARED[1:] for e in EPOCHS]


@pytest.fixture(scope="module")
def returnn_orders(tmp_path_factory):
    jobs = [{"opts": opts, "epoch": epoch, "seq_lens": LENS.tolist()} for opts, epoch in _cases()]
    return run_returnn({"seq_orders": jobs}, tmp_path_factory.mktemp("orders"))["seq_orders"]


def test_seq_orders_equal_returnns(returnn_orders):
    for (opts, epoch), expected in zip(_cases(), returnn_orders):
        ds = _Lengths(LENS, **opts)
        ds.init_seq_order(epoch)
        order = [int(ds.get_seq(i)["seq_tag"]) for i in range(ds.num_seqs)]
        assert order == expected, (opts, epoch)


def test_orders_differ_between_epochs_and_are_pure():
    ds = _Lengths(LENS, seq_ordering="laplace:.5")
    orders = []
    for epoch in (1, 2, 1):
        ds.init_seq_order(epoch)
        orders.append([ds.get_seq(i)["seq_tag"] for i in range(ds.num_seqs)])
    assert orders[0] != orders[1] and orders[0] == orders[2]


@pytest.mark.parametrize(
    "value", ["rand", "laplace:0", "random:x", "sorted:2", "default_every_n", 3, None, lambda epoch: "random"]
)
def test_bad_seq_ordering_names_the_option(value):
    with pytest.raises(ValueError, match=r"lengths: seq_ordering( must be one of \['default', 'reverse'|: a function)"):
        _Lengths(LENS, seq_ordering=value)


def test_unknown_class_or_option_names_it_and_the_closest():
    with pytest.raises(ValueError, match=r"^dev: unknown dataset class 'HDFDataSet'; known: \['CMUDictDataset', "
                       r"'HDFDataset', 'Task12AXDataset', 'synthetic'\]; did you mean 'HDFDataset'\?$"):  # fmt: skip
        make_dataset({"class": "HDFDataSet", "files": ["x"]}, name="dev")
    with pytest.raises(ValueError, match=r"^train: RETURNN's dataset class 'OggZipDataset' is not supported"):
        make_dataset({"class": "OggZipDataset"}, name="train")
    with pytest.raises(ValueError, match=r"^train: unknown HDFDataset option 'file'; known: \[.*'files'.*\]; "
                       r"did you mean 'files'\?$"):  # fmt: skip
        make_dataset({"class": "HDFDataset", "file": ["x"]}, name="train")
    with pytest.raises(ValueError, match=r"^train: HDFDataset option context_window=3 is not supported"):
        make_dataset({"class": "HDFDataset", "files": ["x"], "context_window": 3}, name="train")
    with pytest.raises(ValueError, match=r"^train: a dataset must be a dict with a 'class'"):
        make_dataset("config:train_data", name="train")
    with pytest.raises(ValueError, match=r"^train: Task12AXDataset: partition_epoch must be an int >= 1, got 0"):
        make_dataset({"class": "Task12AXDataset", "num_seqs": 3, "partition_epoch": 0}, name="train")


def test_make_dataset_applies_returnns_order_defaults_and_keeps_the_dict():
    opts = {"class": "synthetic", "num_seqs": 5, "noise": 0.5}
    before = copy.deepcopy(opts)
    kinds = {"input_dim": 3, "num_labels": 4}
    assert make_dataset(opts, name="train", batching="random", **kinds).seq_ordering == "random"
    assert make_dataset(opts, name="train", **kinds).seq_ordering == "default"
    assert make_dataset(opts, name="dev", batching="random", **kinds).seq_ordering == "sorted"
    assert make_dataset({**opts, "seq_ordering": "reverse"}, name="dev", **kinds).seq_ordering == "reverse"
    assert opts == before


def test_synthetic_dataset_on_the_interface_gives_its_sequences():
    ds = make_dataset({"class": "synthetic", "num_seqs": 9, "seed": 4}, name="dev", input_dim=5, num_labels=6)
    assert ds.batch_size_unit == "seqs"
    assert ds.keys == {
        "data": DataKey(5, False, "float32"),
        "classes": DataKey(6, True, "int32"),
        "alignment": DataKey(6, True, "int32", time_like="data"),
    }
    ds.init_seq_order(1)
    lens = [len(ds.get_seq(i)["data"]) for i in range(ds.num_seqs)]
    assert lens == sorted(lens)  # dev data is sorted by length, as in RETURNN
    same = SyntheticDataset(input_dim=5, num_labels=6, num_seqs=9, seed=4, seq_ordering="default")
    same.init_seq_order(1)
    batch = collate_batch([same.get_seq(i) for i in range(9)], same.keys)
    for i, seq in enumerate(same.seqs):  # the sequences in the order drawn, padded with 0
        for key in ("data", "classes", "alignment"):
            np.testing.assert_array_equal(batch.data[key][i, : len(seq[key])], seq[key])
            assert not batch.data[key][i, len(seq[key]) :].any() and batch.lengths[key][i] == len(seq[key])
    assert batch.seq_tags == [f"seq-{i}" for i in range(9)]
    with pytest.raises(ValueError, match="read-only"):
        same.get_seq(0)["data"][0, 0] = 1.0


def test_synthetic_needs_its_dims():
    with pytest.raises(ValueError, match=r"^train: synthetic: input_dim \(the dim of extern_data 'data'\) must be"):
        make_dataset({"class": "synthetic"}, name="train", num_labels=4)
    with pytest.raises(ValueError, match=r"synthetic: num_labels \(blank \+ at least 2 labels\) must be an int >= 3"):
        make_dataset({"class": "synthetic"}, name="train", input_dim=3, num_labels=2)
