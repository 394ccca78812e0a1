"""The G2P scorer: edit distance against a brute-force reference, several references per word (word-correct if
equal to any, phone errors against the closest), PER/WER on hand-computed cases, NLL and ECE of posteriors."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from returnn_ls.training.g2p_scoring import closest_reference, edit_distance, posterior_scores, score_hypotheses


def _brute_force_distance(a: tuple, b: tuple) -> int:
    """The fewest edits by plain recursion over the first items (no dynamic-programming table)."""

    @functools.cache
    def dist(i: int, j: int) -> int:
        if i == len(a) or j == len(b):
            return len(a) - i + len(b) - j
        return min(dist(i + 1, j + 1) + (a[i] != b[j]), dist(i + 1, j) + 1, dist(i, j + 1) + 1)

    return dist(0, 0)


def test_edit_distance_hand_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["AH"]) == 1 and edit_distance(["AH"], []) == 1 and edit_distance([], []) == 0
    assert edit_distance(["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"]) == 1
    assert edit_distance("abcd", "bcda") == 2


def test_edit_distance_equals_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = (tuple(rng.integers(0, 3, size=rng.integers(0, 7))) for _ in range(2))
        assert edit_distance(a, b) == _brute_force_distance(a, b)
    for a, b in itertools.product(itertools.product("xy", repeat=3), repeat=2):
        assert edit_distance(a, b) == _brute_force_distance(a, b)


def test_several_references():
    refs = {
        "a": [["AH"], ["EY"]],
        "hello": [["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"]],
        "read": [["R", "IY", "D"], ["R", "EH", "D"]],
    }
    hyps = {"a": ["EY"], "hello": ["HH", "EH", "L"], "read": ["R", "AH", "D", "Z"]}
    # a: equals the second reference (0 errors); hello: 1 deletion against the second (4 phones);
    # read: 2 errors against either (the first listed counts: 3 phones)
    result = score_hypotheses(hyps, refs)
    assert (result["phone_errors"], result["ref_phones"], result["word_errors"], result["words"]) == (3, 8, 2, 3)
    assert result["per"] == pytest.approx(3 / 8) and result["wer"] == pytest.approx(2 / 3)
    assert closest_reference(["HH", "EH", "L"], refs["hello"]) == (1, refs["hello"][1])
    assert closest_reference(["R", "AH", "D", "Z"], refs["read"]) == (2, refs["read"][0])


def test_closest_reference_equals_minimum_over_references():
    rng = np.random.default_rng(1)
    for _ in range(100):
        refs = [tuple(rng.integers(0, 4, size=rng.integers(1, 6))) for _ in range(rng.integers(1, 4))]
        hyp = tuple(rng.integers(0, 4, size=rng.integers(0, 6)))
        distance, ref = closest_reference(hyp, refs)
        assert distance == min(_brute_force_distance(hyp, r) for r in refs) == _brute_force_distance(hyp, ref)


def test_mismatching_words_raise():
    with pytest.raises(ValueError, match="score_hypotheses: .* no hypothesis for 'b'"):
        score_hypotheses({"a": []}, {"a": [[]], "b": [["B"]]})
    with pytest.raises(ValueError, match="closest_reference"):
        closest_reference([], [])


def test_posterior_scores_hand_case():
    probs = np.array([[0.93, 0.07], [0.64, 0.36], [0.18, 0.82], [0.55, 0.45], [0.38, 0.62]])
    targets = np.array([0, 1, 1, 0, 1])
    result = posterior_scores(np.log(probs), targets)
    assert result["nll"] == pytest.approx(-np.mean(np.log([0.93, 0.36, 0.82, 0.55, 0.62])))
    assert result["accuracy"] == pytest.approx(0.8)
    # bins of width 0.1: [0.9, 1): 0.93 right; [0.8, 0.9): 0.82 right; [0.6, 0.7): 0.64 wrong and 0.62 right
    # (confidence 0.63, accuracy 0.5); [0.5, 0.6): 0.55 right
    expected_ece = (0.07 + 0.18 + 2 * abs(0.5 - 0.63) + 0.45) / 5
    assert result["ece"] == pytest.approx(expected_ece)
    assert result["reliability"]["count"] == [0, 0, 0, 0, 0, 1, 2, 0, 1, 1]
    with pytest.raises(ValueError, match="posterior_scores"):
        posterior_scores(np.zeros((3, 2)), np.zeros(2, dtype=int))
