"""rf.random_choice_with_replacement, the random journal (the draws of one run replayed in another, on another
backend too) and complex64 tensors in rf.abs, on every backend, against numpy references."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from returnn_ls.random_funcs import random_journal_record, random_journal_replay
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)


def test_random_choice_inverts_the_cumulative_distribution_at_the_uniform_draw(backend, rng):
    batch, time, feat = Dim(3, name="batch"), Dim(4, name="time"), Dim(5, name="feat")
    p = rng.random((3, 5)).astype("float32")
    p[:, 2] = 0.0  # never drawn
    probs = rf.convert_to_tensor(p, dims=[batch, feat])
    with random_journal_record() as journal:
        out = rf.random_choice_with_replacement([time, batch], probs=probs, axis=feat)
    assert out.dims == (time, batch) and out.sparse_dim is feat and out.dtype == "int64"
    (u,) = journal.entries  # one uniform draw over [time, batch]
    cdf = np.cumsum(p, axis=1)
    ref = np.stack([np.searchsorted(cdf[b], u[:, b] * cdf[b, -1], side="right") for b in range(3)], axis=1)
    np.testing.assert_array_equal(out.numpy(), np.minimum(ref, 4))
    assert not (out.numpy() == 2).any()


def test_random_choice_frequencies_follow_the_probabilities(backend):
    draws, feat = Dim(4000, name="draws"), Dim(3, name="feat")
    probs = rf.convert_to_tensor(np.array([0.2, 0.5, 0.3], dtype="float32"), dims=[feat])
    rf.set_random_seed(1)
    out = rf.random_choice_with_replacement([draws], probs=probs, axis=feat).numpy()
    np.testing.assert_allclose(np.bincount(out, minlength=3) / 4000, [0.2, 0.5, 0.3], atol=0.03)
    with pytest.raises(ValueError, match="random_choice_with_replacement: dims .* must have the other dims"):
        rf.random_choice_with_replacement([draws], probs=rf.expand_dim(probs, Dim(2, name="other")), axis=feat)


def test_random_journal_replays_draws_across_backends(backend):
    batch, feat = Dim(3, name="batch"), Dim(4, name="feat")
    rf.select_backend("torch")
    with random_journal_record() as journal:
        ints = rf.random_uniform([batch, feat], dtype="int32", minval=-10, maxval=10).numpy()
        floats = rf.random_normal([feat]).numpy()
    rf.select_backend(backend.name)
    with random_journal_replay(journal) as replay:
        again_ints = rf.random_uniform([batch, feat], dtype="int32", minval=-10, maxval=10)
        again_floats = rf.random_normal([feat])
        assert replay.reached_end()
    assert again_ints.backend_name == backend.name and again_ints.dtype == "int32"
    np.testing.assert_array_equal(again_ints.numpy(), ints)
    np.testing.assert_array_equal(again_floats.numpy(), floats)
    with random_journal_replay(journal), pytest.raises(ValueError, match="random journal: draw 1 has shape"):
        rf.random_uniform([feat], dtype="int32", minval=0, maxval=3)
    fresh = rf.random_uniform([batch, feat], dtype="int32", minval=-10, maxval=10)  # outside: drawn again
    assert fresh.numpy().shape == (3, 4)


def test_abs_of_complex64(backend, rng):
    time, feat = Dim(3, name="time"), Dim(2, name="feat")
    z = (rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))).astype("complex64")
    x = rf.convert_to_tensor(z, dims=[time, feat], dtype="complex64")
    assert x.dtype == "complex64"
    y = rf.abs(x)
    assert y.dtype == "float32" and y.dims == (time, feat)
    np.testing.assert_allclose(y.numpy(), np.abs(z), rtol=1e-6)


def test_random_choice_without_replacement_is_the_top_k_of_gumbel_perturbed_scores(backend, rng):
    batch, feat, k = Dim(2, name="batch"), Dim(6, name="feat"), Dim(3, name="k")
    lp = np.log(rng.random((2, 6)) + 0.01).astype("float32")
    with random_journal_record() as journal:
        out = rf.random_choice_without_replacement(log_probs=rf.convert_to_tensor(lp, dims=[batch, feat]), axis=feat,
                                                   num_samples_dim=k)  # fmt: skip
    assert out.dims == (batch, k) and out.sparse_dim is feat
    (u,) = journal.entries
    scores = lp - np.log(-np.log(u))
    np.testing.assert_array_equal(out.numpy(), np.argsort(-scores, axis=1)[:, :3])
    for row in out.numpy():
        assert len(set(row.tolist())) == 3
    top = rf.random_choice_without_replacement(log_probs=rf.convert_to_tensor(lp, dims=[batch, feat]), axis=feat,
                                               num_samples_dim=k, noise_scale=0.0)  # fmt: skip
    np.testing.assert_array_equal(top.numpy(), np.argsort(-lp, axis=1)[:, :3])
