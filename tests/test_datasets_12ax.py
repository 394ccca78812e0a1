"""Task12AXDataset: RETURNN's sequences for the same options and epoch (RETURNN in a subprocess), new ones every
epoch unless ``fixed_random_seed``, and targets that follow the 12AX rule."""

from __future__ import annotations

import numpy as np
import pytest
from _data_helpers import run_returnn

from returnn_ls.training.datasets import Task12AXDataset, make_dataset
from returnn_ls.training.datasets.task12ax import SYMBOLS, targets_12ax

#: (options, epoch)
CASES = [
    ({"num_seqs": 30}, 1),
    ({"num_seqs": 30}, 2),
    ({"num_seqs": 20, "fixed_random_seed": 1}, 3),
    ({"num_seqs": 25, "seq_ordering": "random"}, 4),
    ({"num_seqs": 23, "seq_ordering": "random:2", "partition_epoch": 2}, 3),
    ({"num_seqs": 12, "seq_ordering": "sorted"}, 1),
    ({"num_seqs": 10, "seq_ordering": "random", "random_seed_offset": 5}, 2),
    ({"num_seqs": 9, "seq_ordering": "reverse", "repeat_epoch": 2}, 1),
]


@pytest.fixture(scope="module")
def returnn_seqs(tmp_path_factory):
    """RETURNN's sequences of each case."""
    jobs = [{"opts": opts, "epoch": epoch} for opts, epoch in CASES]
    return run_returnn({"task12ax": jobs}, tmp_path_factory.mktemp("ax"))["task12ax"]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{o}-epoch{e}" for o, e in CASES])
def test_sequences_equal_returnns(returnn_seqs, case):
    opts, epoch = CASES[case]
    ds = Task12AXDataset(**opts)
    ds.init_seq_order(epoch)
    assert ds.num_seqs == len(returnn_seqs[case])
    for index, expected in enumerate(returnn_seqs[case]):
        seq = ds.get_seq(index)
        assert seq["seq_tag"] == expected["seq_tag"]
        for key in ("data", "classes"):
            np.testing.assert_array_equal(seq[key], expected[key])
            assert seq[key].dtype == expected[key].dtype


def _reference_targets(symbols: str) -> list[int]:
    """R (1) at an X whose last digit is 1 and whose last A/B since the previous X/Y is A; likewise 2, B, Y."""
    out = []
    for t, symbol in enumerate(symbols):
        before = symbols[:t]
        digit = next((c for c in reversed(before) if c in "12"), "")
        since_reset = before[max(before.rfind("X"), before.rfind("Y")) + 1 :]
        letter = next((c for c in reversed(since_reset) if c in "AB"), "")
        out.append(int(symbol in "XY" and digit + letter + symbol in ("1AX", "2BY")))
    return out


def test_targets_follow_the_12ax_rule():
    rng = np.random.default_rng(0)
    for _ in range(200):
        symbols = "".join(rng.choice(list(SYMBOLS), size=rng.integers(1, 40)))
        assert targets_12ax([SYMBOLS.index(c) for c in symbols]).tolist() == _reference_targets(symbols)
    ds = Task12AXDataset(num_seqs=50)
    ds.init_seq_order(1)
    for i in range(ds.num_seqs):
        seq = ds.get_seq(i)
        symbols = "".join(SYMBOLS[k] for k in seq["data"].argmax(-1))
        assert seq["data"].sum(-1).tolist() == [1.0] * len(symbols) and 10 <= len(symbols) <= 99
        assert seq["classes"].tolist() == _reference_targets(symbols)


def test_new_sequences_every_epoch_unless_fixed_random_seed():
    train = make_dataset({"class": "Task12AXDataset", "num_seqs": 40}, name="train", batching="random")
    dev = make_dataset({"class": "Task12AXDataset", "num_seqs": 40, "fixed_random_seed": 1}, name="dev")
    assert (train.seq_ordering, dev.seq_ordering) == ("random", "default")  # RETURNN: 12AX keeps "sorted" unsorted
    seen = {}
    for epoch in (1, 2):
        for name, ds in (("train", train), ("dev", dev)):
            ds.init_seq_order(epoch)
            seen[name, epoch] = {ds.get_seq(i)["seq_tag"]: ds.get_seq(i)["data"] for i in range(ds.num_seqs)}
    assert not any(np.array_equal(seen["train", 1][t], seen["train", 2][t]) for t in seen["train", 1])
    assert all(np.array_equal(seen["dev", 1][t], seen["dev", 2][t]) for t in seen["dev", 1])


def test_an_epoch_is_the_same_in_a_fresh_dataset():
    """A run resumed at epoch 3 sees what an uninterrupted run sees."""
    opts = {"num_seqs": 15, "seq_ordering": "random", "partition_epoch": 2}
    running = Task12AXDataset(**opts)
    for epoch in (1, 2, 3):
        running.init_seq_order(epoch)
    fresh = Task12AXDataset(**opts)
    fresh.init_seq_order(3)
    assert fresh.num_seqs == running.num_seqs == 8  # the first half of 15
    for i in range(fresh.num_seqs):
        assert all(np.array_equal(a, b) for a, b in zip(fresh.get_seq(i).values(), running.get_seq(i).values()))


def test_options_are_checked():
    with pytest.raises(ValueError, match=r"train: Task12AXDataset needs the option 'num_seqs'"):
        make_dataset({"class": "Task12AXDataset"}, name="train")
    with pytest.raises(ValueError, match=r"unknown Task12AXDataset option 'num_seq'.*did you mean 'num_seqs'"):
        make_dataset({"class": "Task12AXDataset", "num_seq": 3}, name="train")
    with pytest.raises(ValueError, match=r"Task12AXDataset: num_seqs must be an int >= 1, got 0"):
        make_dataset({"class": "Task12AXDataset", "num_seqs": 0}, name="train")
    with pytest.raises(ValueError, match=r"seq_ordering 'laplace:10' needs the sequence lengths before the epoch"):
        make_dataset({"class": "Task12AXDataset", "num_seqs": 5}, name="train", batching="laplace:10")
    with pytest.raises(ValueError, match=r"^batching must be one of \['default', .*got 'rnd'"):
        make_dataset({"class": "Task12AXDataset", "num_seqs": 5}, name="train", batching="rnd")
    with pytest.raises(ValueError, match=r"option window=3 is not supported by returnn-ls \(only 1\)"):
        make_dataset({"class": "Task12AXDataset", "num_seqs": 5, "window": 3}, name="train")
    ds = Task12AXDataset(num_seqs=3)
    with pytest.raises(RuntimeError, match=r"call init_seq_order\(epoch\) before reading sequences"):
        ds.get_seq(0)
    ds.init_seq_order(1)
    with pytest.raises(IndexError, match=r"sequence index 3 out of range \[0, 3\)"):
        ds.get_seq(3)
