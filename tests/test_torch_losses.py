"""The drop-in PyTorch losses against PyTorch's own: ``F.cross_entropy`` (label smoothing, weights, ignore_index,
every reduction, gradients; soft targets for the RETURNN convention and exclusion) and ``nn.CTCLoss`` (padded and
concatenated targets, reductions, zero_infinity; the smoothed gradient against the posterior recovered from it)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from returnn_ls.torch_losses import CTCLoss, LabelSmoothedCrossEntropyLoss  # noqa: E402


def _logits(shape, seed=0):
    return torch.tensor(np.random.default_rng(seed).normal(size=shape) * 2, dtype=torch.float64, requires_grad=True)


def _targets(shape, num_classes, seed=1, ignore_fraction=0.25):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=shape)
    labels[rng.random(size=shape) < ignore_fraction] = -100
    labels.reshape(-1)[1] = -100  # at least one ignored frame
    return torch.tensor(labels)


def _both(ours, theirs, logits, targets):
    """:return: (our loss, their loss, our gradient, their gradient) for the same logits"""
    mine = ours(logits, targets)
    (grad_mine,) = torch.autograd.grad(mine.sum(), logits)
    ref = theirs(logits, targets)
    (grad_ref,) = torch.autograd.grad(ref.sum(), logits)
    return mine, ref, grad_mine, grad_ref


@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4), (2, 5, 3, 2)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_uniform_convention_equals_pytorch_cross_entropy(shape, reduction, weighted):
    logits = _logits(shape)
    targets = _targets((shape[0], *shape[2:]), shape[1])
    weight = torch.tensor([0.5, 1.0, 2.0, 0.0, 1.5], dtype=torch.float64) if weighted else None
    ours = LabelSmoothedCrossEntropyLoss(weight, reduction=reduction, smoothing=0.2, convention="uniform")
    theirs = torch.nn.CrossEntropyLoss(weight, reduction=reduction, label_smoothing=0.2)
    mine, ref, grad_mine, grad_ref = _both(ours, theirs, logits, targets)
    assert mine.shape == ref.shape
    np.testing.assert_allclose(mine.detach().numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_mine.numpy(), grad_ref.numpy(), rtol=1e-10, atol=1e-12)
    ignored = (targets == -100).numpy()
    assert ignored.any() and (grad_mine.movedim(1, -1).numpy()[ignored] == 0).all()  # exactly 0 where ignored


def test_other_ignore_index_unbatched_input_and_a_tensor_smoothing():
    logits, targets = _logits((7, 4)), torch.tensor([0, 3, 9, 1, 9, 2, 3])
    ours = LabelSmoothedCrossEntropyLoss(ignore_index=9, smoothing=torch.tensor(0.3, dtype=torch.float64),
                                         convention="uniform")
    theirs = torch.nn.CrossEntropyLoss(ignore_index=9, label_smoothing=0.3)
    mine, ref, grad_mine, grad_ref = _both(ours, theirs, logits, targets)
    np.testing.assert_allclose(mine.detach().numpy(), ref.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(grad_mine.numpy(), grad_ref.numpy(), rtol=1e-10, atol=1e-12)
    single = _logits((4,), seed=3)
    unbatched = LabelSmoothedCrossEntropyLoss(smoothing=0.1, convention="uniform")(single, torch.tensor(2))
    expected = F.cross_entropy(single, torch.tensor(2), label_smoothing=0.1)
    np.testing.assert_allclose(unbatched.detach().numpy(), expected.detach().numpy(), rtol=1e-10)


def _soft_targets(labels, num_classes, smoothing, exclude=()):
    """RETURNN's convention as a dense target: 1-a on the label, a/(K-E-1) on the other included labels"""
    included = np.ones(num_classes, bool)
    included[list(exclude)] = False
    dense = np.zeros((len(labels), num_classes))
    for i, y in enumerate(labels):
        if y == -100:
            continue
        if not included[y]:  # an excluded target is not smoothed
            dense[i, y] = 1.0
            continue
        dense[i, included] = smoothing / (included.sum() - 1)
        dense[i, y] = 1 - smoothing
    return torch.tensor(dense)


@pytest.mark.parametrize("exclude", [(), (0,), (1, 3)])
def test_returnn_convention_and_exclusion_equal_cross_entropy_with_soft_targets(exclude):
    logits, targets = _logits((8, 6)), _targets((8,), 6, seed=5)
    ours = LabelSmoothedCrossEntropyLoss(reduction="none", smoothing=0.15, exclude_labels=exclude)
    mine = ours(logits, targets)
    (grad_mine,) = torch.autograd.grad(mine.sum(), logits)
    ref = F.cross_entropy(logits, _soft_targets(targets.numpy(), 6, 0.15, exclude), reduction="none")
    (grad_ref,) = torch.autograd.grad(ref.sum(), logits)
    np.testing.assert_allclose(mine.detach().numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_mine.numpy(), grad_ref.numpy(), rtol=1e-10, atol=1e-12)


def test_the_weight_is_a_buffer_and_wrong_arguments_name_the_class():
    loss_fn = LabelSmoothedCrossEntropyLoss(torch.ones(3))
    assert "weight" in dict(loss_fn.named_buffers())
    with pytest.raises(ValueError, match="LabelSmoothedCrossEntropyLoss: reduction must be one of"):
        LabelSmoothedCrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="probability targets are not supported"):
        loss_fn(_logits((2, 3)), torch.rand(2, 3))
    with pytest.raises(ValueError, match="smoothing must be in"):
        LabelSmoothedCrossEntropyLoss(smoothing=1.5)(_logits((2, 3)), torch.tensor([0, 1]))


def _ctc_case(seed=0, num_classes=6, lengths=(7, 5, 6), target_lengths=(3, 2, 0)):
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(max(lengths), len(lengths), num_classes)), dtype=torch.float64,
                          requires_grad=True)  # fmt: skip
    targets = torch.tensor(rng.integers(1, num_classes, size=(len(lengths), max(max(target_lengths), 1))))
    return logits, targets, torch.tensor(lengths), torch.tensor(target_lengths)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("concatenated", [False, True])
def test_ctc_at_smoothing_0_equals_nn_ctc_loss(reduction, concatenated):
    logits, targets, lengths, target_lengths = _ctc_case()
    if concatenated:
        targets = torch.cat([targets[b, :n] for b, n in enumerate(target_lengths.tolist())])
    results = []
    for loss_fn in (CTCLoss(blank=0, reduction=reduction), torch.nn.CTCLoss(blank=0, reduction=reduction)):
        loss = loss_fn(F.log_softmax(logits, -1), targets, lengths, target_lengths)
        (grad,) = torch.autograd.grad(loss.sum(), logits)
        results.append((loss.detach().numpy(), grad.numpy()))
    (mine, grad_mine), (ref, grad_ref) = results
    np.testing.assert_allclose(mine, ref, rtol=1e-9)
    np.testing.assert_allclose(grad_mine, grad_ref, rtol=1e-8, atol=1e-10)


def test_ctc_zero_infinity_blank_and_unbatched():
    logits, targets, lengths, target_lengths = _ctc_case(lengths=(2, 5), target_lengths=(3, 2), seed=2)
    lp = F.log_softmax(logits, -1)
    for zero in (False, True):
        mine = CTCLoss(blank=5, reduction="none", zero_infinity=zero)(lp, targets - 1, lengths, target_lengths)
        ref = torch.nn.CTCLoss(blank=5, reduction="none", zero_infinity=zero)(lp, targets - 1, lengths, target_lengths)
        np.testing.assert_allclose(mine.detach().numpy(), ref.detach().numpy(), rtol=1e-9)
    one = CTCLoss()(lp[:, 1], targets[1, :2], 5, 2)
    expected = F.ctc_loss(lp[:, 1], targets[1, :2], torch.tensor(5), torch.tensor(2))
    np.testing.assert_allclose(one.detach().numpy(), expected.detach().numpy(), rtol=1e-9)


def test_ctc_smoothing_smooths_the_posterior_recovered_from_nn_ctc_loss():
    smoothing, num_classes = 0.2, 6
    logits, targets, lengths, target_lengths = _ctc_case(target_lengths=(3, 2, 1))
    ref = torch.nn.CTCLoss(reduction="sum")(F.log_softmax(logits, -1), targets, lengths, target_lengths)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    loss = CTCLoss(reduction="sum", smoothing=smoothing)(F.log_softmax(logits, -1), targets, lengths, target_lengths)
    (grad,) = torch.autograd.grad(loss, logits)
    np.testing.assert_allclose(loss.detach().numpy(), ref.detach().numpy(), rtol=1e-9)  # the value is unchanged
    softmax = F.softmax(logits, -1).detach().numpy()
    q = softmax - grad_ref.numpy()  # the CTC posterior per frame (0 on padding)
    f = smoothing / (num_classes - 2)
    nonblank = q[..., 1:].sum(-1, keepdims=True)
    smoothed = q.copy()
    smoothed[..., 1:] = (1 - (num_classes - 1) * f) * q[..., 1:] + f * nonblank
    inside = np.arange(logits.shape[0])[:, None] < lengths.numpy()[None, :]
    expected = np.where(inside[..., None], softmax - smoothed, 0.0)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-7, atol=1e-9)
    assert not np.allclose(grad.numpy(), grad_ref.numpy(), atol=1e-3)  # smoothing changed it: the test can fail


def test_the_cross_entropy_module_under_torch_compile_matches_eager():
    logits, targets = _logits((4, 5, 3)), _targets((4, 3), 5, seed=7)
    loss_fn = LabelSmoothedCrossEntropyLoss(torch.rand(5, dtype=torch.float64), smoothing=torch.tensor(0.1))
    compiled = torch.compile(loss_fn, backend="aot_eager")
    for fn in (loss_fn, compiled):
        loss = fn(logits, targets)
        (grad,) = torch.autograd.grad(loss, logits)
        if fn is loss_fn:
            expected = (loss.detach().numpy(), grad.numpy())
    np.testing.assert_allclose(loss.detach().numpy(), expected[0], rtol=1e-7)
    np.testing.assert_allclose(grad.numpy(), expected[1], rtol=1e-7, atol=1e-12)
