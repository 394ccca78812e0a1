"""rf.beam_search on toy models whose best sequences are known: a second-order Markov model over a small vocabulary
(its state, the label before the previous one, must be gathered along the beam), against exhaustive search in
numpy; greedy search fails where beam 2 finds the best sequence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from returnn_ls.decoding import map_state
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

V, EOS = 4, 0  # label 0 is BOS and EOS


def _random_tables(rng, batch: int) -> np.ndarray:
    """:return: log-prob tables [batch, prev2, prev1, next] of a second-order model"""
    logits = rng.standard_normal((batch, V, V, V)) * 2.0
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _score(table: np.ndarray, seq: tuple[int, ...], max_len: int) -> float:
    """:return: the log probability of ``seq`` then EOS (no EOS cost when the length reaches ``max_len``)"""
    prev2, prev1, total = EOS, EOS, 0.0
    for label in seq + ((EOS,) if len(seq) < max_len else ()):
        total += table[prev2, prev1, label]
        prev2, prev1 = prev1, label
    return total


def _exhaustive(table: np.ndarray, max_len: int) -> list[tuple[float, tuple[int, ...]]]:
    """:return: every output sequence with its score, best first"""
    seqs = [s for n in range(max_len + 1) for s in itertools.product(range(1, V), repeat=n)]
    return sorted(((_score(table, s, max_len), s) for s in seqs), key=lambda x: -x[0])


def _greedy(table: np.ndarray, max_len: int) -> tuple[int, ...]:
    prev2, prev1, out = EOS, EOS, []
    while len(out) < max_len:
        label = int(table[prev2, prev1].argmax())
        if label == EOS:
            break
        out.append(label)
        prev2, prev1 = prev1, label
    return tuple(out)


def _search(tables: np.ndarray, beam_size: int, max_len) -> tuple[list, np.ndarray]:
    """Run rf.beam_search on the model of ``tables``; :return: per batch entry the hypotheses (label tuples, best
    first) and their scores [batch, beam]"""
    batch = Dim(len(tables), name="batch")
    dims = [Dim(V, name=n) for n in ("prev2", "prev1", "vocab")]
    vocab = dims[2]
    table = rf.convert_to_tensor(tables.astype("float32"), dims=[batch, *dims])
    prev2_start = rf.convert_to_tensor(np.zeros(len(tables), "int32"), dims=[batch], sparse_dim=vocab)

    def step(labels: rf.Tensor, state: dict) -> tuple[rf.Tensor, dict]:
        prev2 = rf.Tensor(state["prev2"].raw_tensor, state["prev2"].dims, sparse_dim=dims[0])
        prev1 = rf.Tensor(labels.raw_tensor, labels.dims, sparse_dim=dims[1])
        rows = rf.gather(rf.gather(table, indices=prev2, axis=dims[0]), indices=prev1, axis=dims[1])
        return rows, {"prev2": labels, "unused": [None, (prev2_start,)]}

    if not isinstance(max_len, int):
        max_len = rf.convert_to_tensor(np.asarray(max_len, "int32"), dims=[batch])
    seqs, scores, out_dim, beam = rf.beam_search(
        step, initial_state={"prev2": prev2_start}, batch_dims=[batch], vocab_dim=vocab, beam_size=beam_size,
        max_seq_len=max_len, bos_idx=EOS, eos_idx=EOS,
    )  # fmt: skip
    assert seqs.sparse_dim is vocab and scores.dims == (batch, beam)
    labels = seqs.copy_transpose([batch, beam, out_dim]).numpy()
    lens = out_dim.dyn_size_ext.copy_transpose([batch, beam]).numpy()
    assert out_dim.dyn_size_ext.sparse_dim is None and out_dim.dyn_size_ext.dtype == "int32"
    assert labels.shape[2] == lens.max()
    hyps = [[tuple(labels[b, k, : lens[b, k]].tolist()) for k in range(beam.dimension)] for b in range(len(tables))]
    return hyps, scores.copy_transpose([batch, beam]).numpy()


@pytest.mark.parametrize("max_len", [3, [3, 2]], ids=["int", "per-seq"])
def test_large_beam_equals_exhaustive_search(backend, max_len):
    tables = _random_tables(np.random.default_rng(1), 2)
    hyps, scores = _search(tables, beam_size=64, max_len=max_len)
    lens = [max_len] * 2 if isinstance(max_len, int) else max_len
    for b in range(2):
        expected = _exhaustive(tables[b], lens[b])
        finite = np.isfinite(scores[b])
        assert finite.sum() == len(expected)
        assert hyps[b][: len(expected)] == [s for _, s in expected]
        np.testing.assert_allclose(scores[b][finite], [x for x, _ in expected], rtol=1e-5, atol=1e-5)


def test_beam_1_is_greedy_and_scores_are_the_sequences_scores(backend):
    tables = _random_tables(np.random.default_rng(2), 3)
    for beam_size in (1, 3):
        hyps, scores = _search(tables, beam_size=beam_size, max_len=4)
        for b in range(3):
            assert scores.shape[1] == beam_size and (np.diff(scores[b]) <= 0).all()
            np.testing.assert_allclose(scores[b], [_score(tables[b], h, 4) for h in hyps[b]], rtol=1e-5)
            if beam_size == 1:
                assert hyps[b][0] == _greedy(tables[b], 4)


def test_beam_2_finds_the_best_sequence_where_greedy_fails(backend):
    table = np.full((V, V, V), np.log(1e-3))
    table[EOS, EOS, 1], table[EOS, EOS, 2] = np.log(0.55), np.log(0.4)  # first label: 1 looks better ...
    table[EOS, 1, [1, 2, 3]] = np.log(0.33)  # ... but nothing after it is likely,
    table[EOS, 2, 3] = np.log(0.99)  # while 2 is followed by 3 with certainty,
    table[2, 3, EOS] = np.log(0.99)  # then the end
    table[:, :, EOS] = np.where(table[:, :, EOS] > np.log(1e-3), table[:, :, EOS], np.log(0.3))
    table = table - np.log(np.exp(table).sum(-1, keepdims=True))
    best = _exhaustive(table, 5)[0][1]
    assert best == (2, 3) and _greedy(table, 5) != best
    assert _search(table[None], beam_size=1, max_len=5)[0][0][0] != best
    assert _search(table[None], beam_size=2, max_len=5)[0][0][0] == best


def test_map_state_keeps_structure():
    state = {"a": rf.LstmState(h=1, c=[2, (3,)]), "b": None}
    out = map_state(lambda x: x, state)
    assert out == state and isinstance(out["a"], rf.LstmState)


def test_bad_arguments_raise(backend):
    vocab = Dim(3, name="vocab")
    kwargs = dict(initial_state=None, batch_dims=[], vocab_dim=vocab, max_seq_len=2, bos_idx=0, eos_idx=0)
    with pytest.raises(ValueError, match="beam_search: beam_size"):
        rf.beam_search(lambda labels, state: (labels, state), beam_size=0, **kwargs)
    with pytest.raises(ValueError, match="beam_search: eos_idx"):
        rf.beam_search(lambda labels, state: (labels, state), beam_size=2, **{**kwargs, "eos_idx": 3})
    with pytest.raises(ValueError, match="beam_search: step_fn must return log_probs"):
        rf.beam_search(lambda labels, state: (rf.cast(labels, "float32"), state), beam_size=2, **kwargs)
