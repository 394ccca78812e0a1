"""Device-correctness without a GPU: nothing inside a call is created on the framework's default device.

Every function takes its device from its inputs. Two checks on a machine without a GPU, each able to fail:

- The inputs live on the CPU while ``torch.device("meta")`` is the default device: a tensor that the frontend creates
  without taking the device from the inputs (``torch.arange(n)``, ``torch.tensor(x)``) lands on the meta device, and
  the first operation that mixes it with the CPU inputs raises. The results must equal those without the meta
  default. (The default-device mode is not active inside custom ops and backward passes, hence the second check.)
- Every call of a torch factory function (``torch.arange``, ``torch.empty``, ``torch.tensor``, ...) made from this
  library's modules during the call, forward and backward, passes ``device=`` (``device=None`` is a deliberate
  "default device").

On a CUDA GPU the same mistakes would put tensors on the CPU next to CUDA inputs.
TensorFlow places each op on a device itself (there is no device argument to get wrong), so this is a torch test.

Also: the eager label check reads the host at most once per call, and can be switched off
(``rf.set_label_checks(False)``): then a bad label gives NaN for its frame, as in compiled code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

torch = pytest.importorskip("torch")  # the device checks are torch-specific; TF places ops itself

B, T, K, H = 3, 5, 6, 4
LENS = np.array([5, 3, 2])


def _inputs(rng: np.random.Generator) -> dict:
    """:return: CPU tensors (created with an explicit device) and the dims over them"""
    batch, vocab, hidden = Dim(B, name="batch"), Dim(K, name="vocab"), Dim(H, name="hidden")
    time = Dim(rf.convert_to_tensor(torch.tensor(LENS, device="cpu"), dims=[batch]), name="time")
    labels = Dim(rf.convert_to_tensor(torch.tensor([2, 1, 1], device="cpu"), dims=[batch]), name="labels")
    logits = torch.tensor(rng.standard_normal((B, T, K)), dtype=torch.float32, device="cpu", requires_grad=True)
    hid = torch.tensor(rng.standard_normal((B, T, H)), dtype=torch.float32, device="cpu", requires_grad=True)
    y = rng.integers(1, K, size=(B, T))
    y[1, 3:] = -100  # labels at padding frames may be anything
    return {
        "dims": (batch, time, vocab, hidden, labels),
        "logits": rf.convert_to_tensor(logits, dims=[batch, time, vocab], feature_dim=vocab),
        "hidden": rf.convert_to_tensor(hid, dims=[batch, time, hidden], feature_dim=hidden),
        "targets": rf.convert_to_tensor(torch.tensor(y, device="cpu"), dims=[batch, time], sparse_dim=vocab),
        "label_seq": rf.convert_to_tensor(torch.tensor([[1, 2], [3, 0], [4, 0]], device="cpu"), dims=[batch, labels],
                                          sparse_dim=vocab),  # fmt: skip
        "raw": [logits, hid],
    }


def _smoothing(x: dict) -> list:
    dense = rf.softmax(x["logits"], axis=x["dims"][2])
    return [rf.label_smoothing(x["targets"], 0.1), rf.label_smoothing(dense, 0.2),
            rf.smooth_one_hot(x["targets"], label_prob=0.7)]  # fmt: skip


def _gradient_path(x: dict) -> list:
    batch, time, vocab = x["dims"][:3]
    lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(x["logits"], axis=vocab), 0.1, exclude_labels=[0])
    ce = rf.cross_entropy(estimated=lp, target=x["targets"], axis=vocab, estimated_type="log-probs")
    scale = rf.convert_to_tensor(torch.full((K,), 0.5, device="cpu"), dims=[vocab])
    scaled = rf.scaled_gradient_ext(x["logits"], scale=scale, shift=0.01, scale_shift_by_sum_over_axis=vocab)
    return [rf.reduce_sum(ce, axis=[batch, time]), rf.reduce_mean(rf.reduce_sum(scaled, axis=vocab), axis=time)]


def _fused_losses(x: dict) -> list:
    batch, time, vocab, hidden = x["dims"][:4]
    weight = rf.convert_to_tensor(torch.linspace(0.5, 1.5, K, device="cpu"), dims=[vocab])
    fused = rf.label_smoothed_cross_entropy(logits=x["logits"], targets=x["targets"], axis=vocab, smoothing=0.1,
                                            convention="uniform", weight=weight, z_loss=1e-3)  # fmt: skip
    excluded = rf.label_smoothed_cross_entropy(logits=x["logits"], targets=x["targets"], axis=vocab, smoothing=0.2,
                                               exclude_labels=[0])  # fmt: skip
    relax = rf.label_relaxation_loss(logits=x["logits"], targets=x["targets"], axis=vocab, alpha=0.1)
    w = torch.tensor(np.linspace(-1, 1, H * K).reshape(H, K), dtype=torch.float32, device="cpu")
    w = rf.convert_to_tensor(w, dims=[hidden, vocab])
    linear = rf.linear_label_smoothed_cross_entropy(hidden=x["hidden"], weight=w, targets=x["targets"], axis=vocab,
                                                    smoothing=0.1)  # fmt: skip
    return [rf.reduce_sum(v, axis=[batch, time]) for v in (fused, excluded, relax, linear)]


def _ctc(x: dict) -> list:
    batch, time, vocab, _, labels = x["dims"]
    loss = rf.ctc_loss(logits=x["logits"], targets=x["label_seq"], input_spatial_dim=time, targets_spatial_dim=labels,
                       blank_index=0, label_smoothing=0.1)  # fmt: skip
    return [loss]


def _rf_functions(x: dict) -> list:
    """RETURNN's frontend functions that create tensors from dims or numbers (sizes, ranges, masks, constants)"""
    batch, time, vocab = x["dims"][:3]
    logits = x["logits"]
    mean, var = rf.moments(logits, axis=[time, vocab], correction=1)
    values, _, sorted_dim = rf.sort(logits, axis=time, descending=True)
    nucleus = rf.top_p_mask(rf.softmax(logits, axis=vocab), axis=vocab, p=0.5)
    merged, _ = rf.merge_dims(logits, dims=[time, vocab])
    labels, _ = rf.ctc_greedy_decode(logits, in_spatial_dim=time, blank_index=0)
    ys, last, _ = rf.scan(spatial_dim=time, initial=rf.reduce_sum(logits, axis=time) * 0.0,
                          xs=logits, body=lambda frame, h: (h * 0.5 + frame, h * 0.5 + frame))  # fmt: skip
    gated, _ = rf.gating(logits, axis=vocab)
    return [mean, var, rf.reduce_sum(values, axis=sorted_dim), nucleus, rf.linspace_over_dim(time) + mean, merged,
            labels, ys, last, rf.safe_log(rf.maximum(logits, 0.1)), gated, rf.one_hot(x["targets"])]  # fmt: skip


CASES: dict[str, Callable[[dict], list]] = {
    "label_smoothing": _smoothing, "gradient_path": _gradient_path, "fused_losses": _fused_losses, "ctc": _ctc,
    "rf_functions": _rf_functions,
}  # fmt: skip


def _run(case: str) -> list[np.ndarray]:
    x = _inputs(np.random.default_rng(0))
    outs = CASES[case](x)
    total = sum(o.raw_tensor.float().sum() for o in outs)
    grads = torch.autograd.grad(total, x["raw"], allow_unused=True) if total.requires_grad else []
    result = [o.raw_tensor for o in outs] + [g for g in grads if g is not None]
    for r in result:
        assert r.device.type == "cpu", (case, r.device)
    return [r.detach().numpy() for r in result]


#: torch's factory functions that take ``device=``.
FACTORIES = ("arange", "empty", "zeros", "ones", "full", "tensor", "as_tensor", "scalar_tensor", "eye", "linspace",
             "rand", "randn", "randint", "empty_strided")  # fmt: skip


@pytest.fixture
def factories_need_a_device(monkeypatch):
    """A factory call from this library's modules without ``device=`` fails the test, naming module and line."""
    found = []

    def guard(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            frame = sys._getframe(1)
            module = frame.f_globals.get("__name__", "")
            if "device" not in kwargs and module.split(".")[0] in ("frontend_backends", "returnn_ls"):
                found.append(f"torch.{name} without device= in {module}:{frame.f_lineno}")
            return fn(*args, **kwargs)

        return wrapper

    for name in FACTORIES:
        monkeypatch.setattr(torch, name, guard(name, getattr(torch, name)))
    yield
    assert not found, found


@pytest.mark.parametrize("case", CASES)
def test_every_tensor_takes_the_device_of_the_inputs(restore_backend, factories_need_a_device, case):
    rf.select_backend("torch")
    expected = _run(case)
    with torch.device("meta"):  # a tensor created without the inputs' device would land here and fail
        got = _run(case)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _modules(batch: Dim, time: Dim, feat: Dim):
    out = Dim(5, name="out")
    return rf.Sequential(rf.Linear(feat, out), rf.LayerNorm(out)), rf.LSTM(out, out), rf.Conv1d(
        out, out, filter_size=3, padding="same")  # fmt: skip


def test_modules_take_the_device_of_their_parameters(restore_backend, factories_need_a_device):
    """Parameters built on the CPU (outside the meta default): every forward creates nothing of its own."""
    rf.select_backend("torch")
    rf.set_random_seed(1)
    x = _inputs(np.random.default_rng(1))
    batch, time, _, feat, _ = x["dims"]
    net, lstm, conv = _modules(batch, time, feat)

    def forward() -> np.ndarray:
        h = net(x["hidden"])
        h, _ = lstm(h, state=lstm.default_initial_state(batch_dims=[batch]), spatial_dim=time)
        h, _ = conv(h, in_spatial_dim=time)
        return rf.reduce_sum(rf.dropout(h, 0.0, axis=h.feature_dim), axis=[batch, time, h.feature_dim]).numpy()

    expected = forward()
    with torch.device("meta"):
        np.testing.assert_allclose(forward(), expected, rtol=1e-6)


def test_label_check_reads_the_host_once_and_can_be_switched_off(restore_backend, monkeypatch):
    rf.select_backend("torch")
    x = _inputs(np.random.default_rng(2))
    vocab = x["dims"][2]
    backend = x["logits"].backend
    reads = []
    for name in ("to_numpy", "concrete_value"):
        original = getattr(backend, name)
        monkeypatch.setattr(backend, name, lambda raw, _o=original, _n=name: reads.append(_n) or _o(raw))

    def loss(targets):
        return rf.label_smoothed_cross_entropy(logits=x["logits"], targets=targets, axis=vocab, smoothing=0.1)

    loss(x["targets"])
    assert reads == ["to_numpy"]  # one host read: whether any label inside the sequences is bad
    bad = x["targets"].raw_tensor.clone()
    bad[0, 1] = K
    bad_targets = rf.convert_to_tensor(bad, dims=x["targets"].dims, sparse_dim=vocab)
    message = r"label_smoothed_cross_entropy: targets has labels outside \[0, 6\): e.g. \[6\]"
    with pytest.raises(ValueError, match=message):
        loss(bad_targets)
    previous = rf.set_label_checks(False)
    try:
        reads.clear()
        values = loss(bad_targets).raw_tensor.detach()
    finally:
        rf.set_label_checks(previous)
    assert reads == []
    assert torch.isnan(values[0, 1]) and torch.isfinite(values[0, 0]) and torch.isfinite(values[1:]).all()
    with pytest.raises(TypeError, match="set_label_checks: enabled must be True or False"):
        rf.set_label_checks("no")


def test_module_to_device_keeps_the_parameter_objects(restore_backend):
    """``to_device`` sets each parameter's data (as ``torch.nn.Module.to`` does), so the objects an optimizer holds
    stay valid. Here CPU to CPU (the move to a GPU is in ``tests/gpu``); the values are unchanged."""
    rf.select_backend("torch")
    rf.set_random_seed(3)
    model = rf.Linear(Dim(3, name="in"), Dim(2, name="out"))
    before = {name: (p.raw_tensor, p.raw_tensor.detach().clone()) for name, p in model.named_parameters()}
    assert model.to_device("cpu") is model
    for name, p in model.named_parameters():
        assert p.raw_tensor is before[name][0] and p.raw_tensor.device.type == "cpu"
        assert torch.equal(p.raw_tensor.detach(), before[name][1])


def test_tensorflow_variables_stay_where_they_were_created(restore_backend):
    pytest.importorskip("tensorflow")
    rf.select_backend("tensorflow")
    model = rf.Linear(Dim(3, name="in"), Dim(2, name="out"))
    with pytest.raises(ValueError, match=r"tf.Variable stays on the device it was created on .*tf.device"):
        model.to_device("cuda")
