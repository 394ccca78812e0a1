"""HDFDataset: files written by RETURNN's own SimpleHDFWriter and by plain h5py read as RETURNN's HDFDataset reads
them (RETURNN in a subprocess), lazily; bad files get errors naming the file and the sequence."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from _data_helpers import random_seqs, run_returnn, write_hdf_h5py

from returnn_ls.training.datasets import DataKey, HDFDataset, make_dataset

SEQS = {name: random_seqs(np.random.default_rng(i), num, 4, 5) for i, (name, num) in enumerate(
    [("a", 12), ("b", 8), ("c", 5), ("e", 9), ("f", 6)])}  # fmt: skip
SPARSE_INPUTS = [np.random.default_rng(9).integers(0, 6, size=n).astype("int32") for n in (3, 7, 1, 5)]


def _tags(prefix: str, num: int) -> list[str]:
    return [f"{prefix}/seq{i}" for i in range(num)]


def _writer_jobs(folder) -> list[dict]:
    """Files by RETURNN's SimpleHDFWriter: a (classes), b (classes + words), c (classes without extra_type, so
    the writer records dim 1), d (sparse inputs)."""
    a, b, c = SEQS["a"], SEQS["b"], SEQS["c"]
    return [
        {"path": str(folder / "a.hdf"), "dim": 4, "inputs": a["inputs"], "tags": _tags("a", 12),
         "extra": {"classes": a["classes"]}, "extra_type": {"classes": (5, 1, "int32")}},
        {"path": str(folder / "b.hdf"), "dim": 4, "inputs": b["inputs"], "tags": _tags("b", 8),
         "extra": {"classes": b["classes"], "words": b["words"]},
         "extra_type": {"classes": (5, 1, "int32"), "words": (7, 1, "int32")}},
        {"path": str(folder / "c.hdf"), "dim": 4, "inputs": c["inputs"], "tags": _tags("c", 5),
         "extra": {"classes": c["classes"]}},
        {"path": str(folder / "d.hdf"), "dim": 6, "ndim": 1, "inputs": SPARSE_INPUTS, "tags": _tags("d", 4)},
    ]  # fmt: skip


def _write_h5py_files(folder) -> None:
    """Files by plain h5py: e (classes + words, [dim, ndim] sizes), f (fixed-length tags, scalar sizes),
    g (no targets), h (targets only, no inputs)."""
    e, f = SEQS["e"], SEQS["f"]
    write_hdf_h5py(folder / "e.hdf", e["inputs"], _tags("e", 9), {"classes": e["classes"], "words": e["words"]},
                   sizes={"classes": [5, 1], "words": [7, 1]})  # fmt: skip
    write_hdf_h5py(folder / "f.hdf", f["inputs"], _tags("f", 6), {"classes": f["classes"]}, sizes={"classes": 5},
                   fixed_length_tags=True)  # fmt: skip
    write_hdf_h5py(folder / "g.hdf", f["inputs"], _tags("g", 6))
    write_hdf_h5py(folder / "h.hdf", None, _tags("h", 9), {"classes": e["classes"], "words": e["words"]},
                   sizes={"classes": [5, 1], "words": [7, 1]})  # fmt: skip


#: (files, options, epoch) read by RETURNN and by us
READS = [
    (["a"], {}, 1),
    (["a", "b"], {"seq_ordering": "sorted"}, 1),
    (["a", "b"], {"seq_ordering": "random", "partition_epoch": 2}, 2),
    (["c"], {"seq_ordering": "sorted_reverse"}, 1),
    (["d"], {"seq_ordering": "reverse"}, 1),
    (["e"], {"seq_ordering": "laplace:2"}, 3),
    (["f", "e"], {"seq_ordering": "random"}, 4),
    (["g"], {}, 1),
    (["h"], {"seq_ordering": "sorted"}, 1),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The folder with the files, and RETURNN's reading of each of :data:`READS`."""
    folder = tmp_path_factory.mktemp("hdf")
    _write_h5py_files(folder)
    reads = [{"files": [str(folder / f"{n}.hdf") for n in names], "opts": opts, "epoch": epoch}
             for names, opts, epoch in READS]  # fmt: skip
    result = run_returnn({"write_hdf": _writer_jobs(folder), "read_hdf": reads}, folder)
    return folder, result["read_hdf"]


@pytest.mark.parametrize("case", range(len(READS)), ids=["+".join(r[0]) + str(r[1]) for r in READS])
def test_reads_what_returnn_reads(files, case):
    folder, reference = files[0], files[1][case]
    names, opts, epoch = READS[case]
    ds = HDFDataset(files=[str(folder / f"{n}.hdf") for n in names], **opts)
    ds.init_seq_order(epoch)
    assert {k: (v.dim, v.sparse, v.dtype) for k, v in ds.keys.items()} == reference["keys"]
    assert ds.num_seqs == len(reference["seqs"])
    for index, expected in enumerate(reference["seqs"]):
        seq = ds.get_seq(index)
        assert seq["seq_tag"] == expected["seq_tag"]
        for key in ds.keys:
            np.testing.assert_array_equal(seq[key], expected[key])
            assert seq[key].dtype == expected[key].dtype


def test_frame_aligned_targets_are_time_like_data(files):
    folder = files[0]
    ds = HDFDataset(files=[str(folder / "a.hdf"), str(folder / "b.hdf")])
    assert ds.keys["classes"] == DataKey(dim=5, sparse=True, dtype="int32", time_like="data")
    ds = HDFDataset(files=[str(folder / "e.hdf")])
    assert ds.keys["classes"].time_like == "data" and ds.keys["words"].time_like is None
    # the data written is what the writer got (independent of both readers)
    ds.init_seq_order(1)
    np.testing.assert_array_equal(ds.get_seq(3)["words"], SEQS["e"]["words"][3])
    np.testing.assert_array_equal(ds.get_seq(3)["data"], SEQS["e"]["inputs"][3])


def test_reads_one_slice_per_sequence_from_the_open_file(files):
    ds = make_dataset({"class": "HDFDataset", "files": [str(files[0] / "e.hdf")]}, name="train")
    handle = ds._files[0].handle
    reads = []

    class Recording:
        def __init__(self, array):
            self.array = array

        def __getitem__(self, index):
            reads.append(index)
            return self.array[index]

    ds._files[0].arrays["data"] = Recording(ds._files[0].arrays["data"])
    ds.init_seq_order(1)
    ds.get_seq(4)
    lens = [len(x) for x in SEQS["e"]["inputs"]]
    assert reads == [slice(sum(lens[:4]), sum(lens[:5]))]
    assert ds._files[0].handle is handle and handle.id.valid
    ds.close()
    assert not handle.id.valid


def _broken(folder, name: str, edit) -> str:
    path = folder / f"{name}.hdf"
    write_hdf_h5py(path, SEQS["f"]["inputs"], _tags("f", 6), {"classes": SEQS["f"]["classes"]},
                   sizes={"classes": [5, 1]})  # fmt: skip
    with h5py.File(path, "r+") as f:
        edit(f)
    return str(path)


def _replace(f, name: str, data) -> None:
    del f[name]
    f.create_dataset(name, data=data)


def _size_without_data(f):
    f["targets/size"].attrs["orth"] = [1, 1]
    lengths = f["seqLengths"][...]
    _replace(f, "seqLengths", np.concatenate([lengths, lengths[:, 1:]], axis=1))


BROKEN = {
    "no_seq_lengths": (lambda f: f.__delitem__("seqLengths"), r"has no dataset 'seqLengths'"),
    "wrong_columns": (
        lambda f: _replace(f, "seqLengths", np.ones((6, 3), "int32")),
        r"seqLengths has shape \(6, 3\).*\['data', 'classes'\]",
    ),
    "short_inputs": (
        lambda f: _replace(f, "inputs", f["inputs"][:-2]),
        r"sequence 'f/seq5': seqLengths gives 'data' \d+ frames, but only \d+ are stored",
    ),
    "long_classes": (
        lambda f: _replace(f, "targets/data/classes", np.concatenate([f["targets/data/classes"][...]] * 2)),
        r"'classes' stores \d+ frames, but seqLengths adds up to \d+",
    ),
    "tags": (
        lambda f: _replace(f, "seqTags", np.array([b"x"])),
        r"seqTags has shape \(1,\), seqLengths has 6 sequences",
    ),
    "size_without_data": (_size_without_data, r"targets/size names 'orth', but there is no dataset targets/data/orth"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_file_gets_an_error_naming_the_file(tmp_path, case):
    edit, message = BROKEN[case]
    path = _broken(tmp_path, case, edit)
    with pytest.raises(ValueError, match=rf"^train: HDFDataset: file '{path}': {message}"):
        make_dataset({"class": "HDFDataset", "files": [path]}, name="train")


def test_missing_or_non_hdf_file_gets_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=rf"dev: HDFDataset: file '{tmp_path}/nope.hdf' does not exist"):
        make_dataset({"class": "HDFDataset", "files": [str(tmp_path / "nope.hdf")]}, name="dev")
    (tmp_path / "text.hdf").write_text("not hdf5")
    with pytest.raises(ValueError, match=rf"HDFDataset: '{tmp_path}/text.hdf' is not a readable HDF5 file"):
        HDFDataset(files=[str(tmp_path / "text.hdf")])
    with pytest.raises(ValueError, match=r"files must be a non-empty list of file names.*got 'x.hdf'"):
        HDFDataset(files="x.hdf")


def test_files_that_do_not_fit_together_get_an_error_naming_the_file(files, tmp_path):
    folder = files[0]
    with pytest.raises(ValueError, match=rf"file '{folder}/a.hdf': has no \['words'\], which '{folder}/b.hdf' has"):
        HDFDataset(files=[str(folder / "b.hdf"), str(folder / "a.hdf")])
    with pytest.raises(ValueError, match=rf"file '{folder}/c.hdf': 'classes' is .*dim=1.*, but in '{folder}/a.hdf'"):
        HDFDataset(files=[str(folder / "a.hdf"), str(folder / "c.hdf")])


def test_string_targets_are_left_out(tmp_path):
    f = SEQS["f"]
    path = tmp_path / "orth.hdf"
    write_hdf_h5py(path, f["inputs"], _tags("f", 6), {"classes": f["classes"]}, sizes={"classes": [5, 1]})
    with h5py.File(path, "r+") as h5:
        h5.create_dataset("targets/data/orth", data=[f"words {i}" for i in range(6)], dtype=h5py.string_dtype())
        lengths = h5["seqLengths"][...]
        _replace(h5, "seqLengths", np.concatenate([lengths, np.ones((6, 1), "int32")], axis=1))
    ds = HDFDataset(files=[str(path)])
    assert sorted(ds.keys) == ["classes", "data"]
    ds.init_seq_order(1)
    np.testing.assert_array_equal(ds.get_seq(2)["classes"], f["classes"][2])
