"""The public functions under ``torch.compile`` and ``tf.function(jit_compile=True)`` (XLA): same values and
gradients as eager mode, no graph break, and no retrace/recompile when a tensor-valued smoothing changes.

torch.compile mostly uses the ``aot_eager`` backend: it traces forward and backward through dynamo and AOTAutograd
like ``inductor`` does, but skips inductor's C++ code generation, which takes ~17 s per graph on this 2-core CPU;
one test compiles the fused kernels with ``inductor`` itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

B, T, K = 2, 3, 5
LENS = np.array([3, 2])
SMOOTHINGS = [0.1, 0.35, 0.0]
_rng = np.random.default_rng(0)
LOGITS = _rng.standard_normal((B, T, K)).astype(np.float32)
LABELS = _rng.integers(0, K, size=(B, T))
Q = _rng.dirichlet(np.ones(K), size=(B, T)).astype(np.float32)


def _ce(estimated, target, vocab, estimated_type="logits"):
    return rf.cross_entropy(estimated=estimated, target=target, axis=vocab, estimated_type=estimated_type)


def _lsg(z, y, a, vocab, **kwargs):
    log_prob = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), a, **kwargs)
    return _ce(log_prob, y, vocab, "log-probs")


#: name -> per-frame loss of (logits z, sparse labels y, dense distribution q, smoothing a, vocab dim)
PROGRAMS = {
    "label_smoothing_dense": lambda z, y, q, a, v: _ce(z, rf.label_smoothing(q, a), v),
    "label_smoothing_sparse": lambda z, y, q, a, v: _ce(z, rf.label_smoothing(y, a), v),
    "smooth_one_hot": lambda z, y, q, a, v: _ce(z, rf.smooth_one_hot(y, label_prob=1.0 - a), v),
    "label_smoothed_log_prob_gradient": lambda z, y, q, a, v: _lsg(z, y, a, v),
    "label_smoothed_log_prob_gradient_dense_target": lambda z, y, q, a, v: _ce(
        rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=v), a), q, v, "log-probs"
    ),
    "label_smoothed_log_prob_gradient_excluded": lambda z, y, q, a, v: _lsg(z, y, a, v, exclude_labels=[0]),
    "label_smoothed_log_prob_gradient_returnn_compat": lambda z, y, q, a, v: _lsg(
        z, y, a, v, exclude_labels=[0], returnn_compat=True
    ),
    "scaled_gradient_ext": lambda z, y, q, a, v: _ce(
        rf.scaled_gradient_ext(z, scale=1.0 - a, shift=-a, scale_shift_by_sum_over_axis=v), y, v
    ),
    "scaled_gradient_and_stop_gradient": lambda z, y, q, a, v: (
        _ce(rf.scaled_gradient(z, a), y, v) + _ce(z, rf.stop_gradient(rf.softmax(z, axis=v)), v)
    ),
}

PROGRAMS["label_smoothed_cross_entropy"] = lambda z, y, q, a, v: rf.label_smoothed_cross_entropy(
    logits=z, targets=y, axis=v, smoothing=a, exclude_labels=[0]
)


def _ctc(z, y, q, a, v):
    batch, time = z.dims[:2]
    labels = Dim(rf.convert_to_tensor(np.array([1, 1]), dims=[batch]), name="labels")
    targets = rf.convert_to_tensor(LABELS[:, :1] % (K - 1) + 1, dims=[batch, labels], sparse_dim=v)
    return rf.ctc_loss(logits=z, targets=targets, input_spatial_dim=time, targets_spatial_dim=labels,
                       blank_index=0, label_smoothing=a)  # fmt: skip


PROGRAMS["ctc_loss"] = _ctc


def _loss(program: str, z_raw, a_raw) -> rf.Tensor:
    """:return: the program's loss summed over the valid frames, a scalar Tensor"""
    batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(LENS, dims=[batch]), name="time")
    z = rf.convert_to_tensor(z_raw, dims=[batch, time, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(LABELS, dims=[batch, time], sparse_dim=vocab)
    q = rf.convert_to_tensor(Q, dims=[batch, time, vocab], feature_dim=vocab)
    a = rf.convert_to_tensor(a_raw, dims=())
    loss = PROGRAMS[program](z, y, q, a, vocab)
    return rf.reduce_sum(loss, axis=loss.dims)  # per frame, or per sequence for CTC


def _raw_loss(program: str):
    """:return: ``(raw logits, raw smoothing) -> raw scalar loss`` of ``program``, the function to compile"""
    return lambda z, a: _loss(program, z, a).raw_tensor


def _assert_compiled_matches_eager(torch, loss, compiled) -> None:
    """Value and gradient of ``compiled`` equal those of ``loss`` for every smoothing (a 0-dim tensor)."""
    for smoothing in SMOOTHINGS:
        results = []
        for fn in (loss, compiled):  # the backward pass of the compiled loss is compiled by AOTAutograd
            z = torch.tensor(LOGITS, requires_grad=True)
            value = fn(z, torch.tensor(smoothing))
            results.append([value.detach().numpy(), torch.autograd.grad(value, [z])[0].numpy()])
        for e, g in zip(*results):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("program", PROGRAMS)
def test_torch_compile_matches_eager_without_graph_breaks_or_recompiles(select, program):
    torch = pytest.importorskip("torch")
    from torch._dynamo.testing import CompileCounterWithBackend

    select("torch")

    loss = _raw_loss(program)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(loss, backend=counter, fullgraph=True)  # fullgraph: a graph break fails
    _assert_compiled_matches_eager(torch, loss, compiled)
    assert counter.frame_count == 1, "a new smoothing value must not recompile"


def test_inductor_compiles_the_fused_kernels_in_one_graph(select):
    """The default backend (inductor, C++ code generation): the fused CE and CTC custom ops and the fused
    gradient-smoothing path in one ``fullgraph`` graph, forward and backward, equal to eager."""
    torch = pytest.importorskip("torch")
    select("torch")
    programs = ("label_smoothed_cross_entropy", "ctc_loss", "label_smoothed_log_prob_gradient_excluded")

    def loss(z, a):
        return sum(_loss(program, z, a).raw_tensor for program in programs)

    torch._dynamo.reset()
    _assert_compiled_matches_eager(torch, loss, torch.compile(loss, fullgraph=True))


def test_torch_compile_of_a_training_step_matches_eager(select):
    torch = pytest.importorskip("torch")
    from torch._dynamo.testing import CompileCounterWithBackend

    select("torch")

    def train_step(z, a):
        loss = _loss("label_smoothed_log_prob_gradient_excluded", z, a).raw_tensor
        loss.backward()
        return loss.detach()

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(train_step, backend=counter)
    for smoothing in SMOOTHINGS:
        z_eager, z_compiled = (torch.tensor(LOGITS, requires_grad=True) for _ in range(2))
        np.testing.assert_allclose(compiled(z_compiled, torch.tensor(smoothing)), train_step(z_eager, smoothing))
        np.testing.assert_allclose(z_compiled.grad, z_eager.grad, rtol=1e-6, atol=1e-6)
    assert counter.frame_count <= 2, "the .backward() call may split the step in two graphs, not more"


def test_torch_compile_with_changing_float_smoothing_has_no_graph_break(select):
    torch = pytest.importorskip("torch")
    select("torch")
    batch, vocab = Dim(B * T, name="frames"), Dim(K, name="vocab")

    def loss(z, smoothing: float):
        log_prob = rf.log_softmax(rf.convert_to_tensor(z, dims=[batch, vocab], feature_dim=vocab), axis=vocab)
        return rf.label_smoothed_log_prob_gradient(log_prob, smoothing, exclude_labels=[0]).raw_tensor[:, 1].sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)  # a float that became dynamic must not break
    for smoothing in SMOOTHINGS:
        grads = []
        for fn in (loss, compiled):
            z = torch.tensor(LOGITS.reshape(B * T, K), requires_grad=True)
            grads.append(torch.autograd.grad(fn(z, smoothing), [z])[0].numpy())
        np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("program", PROGRAMS)
def test_xla_matches_eager_without_retrace(select, program):
    tf = pytest.importorskip("tensorflow")
    select("tensorflow")

    def value_and_grad(z, a):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = _loss(program, z, a).raw_tensor
        return loss, tape.gradient(loss, z)

    compiled = tf.function(value_and_grad, jit_compile=True)
    for smoothing in SMOOTHINGS:
        z, a = tf.constant(LOGITS), tf.constant(smoothing)
        expected = [t.numpy() for t in value_and_grad(z, a)]
        got = [t.numpy() for t in compiled(z, a)]
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
    assert compiled.experimental_get_tracing_count() == 1, "a new smoothing value must not retrace"


def test_xla_training_step_with_variable_smoothing_schedule(select):
    tf = pytest.importorskip("tensorflow")
    select("tensorflow")
    smoothing = tf.Variable(0.0)
    z = tf.Variable(LOGITS)
    traces = []

    @tf.function(jit_compile=True)
    def train_step():
        traces.append(1)
        with tf.GradientTape() as tape:
            loss = _loss("label_smoothed_log_prob_gradient_excluded", z, smoothing).raw_tensor
        z.assign_sub(0.1 * tape.gradient(loss, z))
        return loss

    losses = []
    for step in range(3):
        smoothing.assign(0.1 * step)
        losses.append(float(train_step()))
    assert len(traces) == 1
    # eager replay of the same schedule gives the same parameters
    z_eager = tf.Variable(LOGITS)
    for step in range(3):
        with tf.GradientTape() as tape:
            loss = _loss("label_smoothed_log_prob_gradient_excluded", z_eager, tf.constant(0.1 * step)).raw_tensor
        z_eager.assign_sub(0.1 * tape.gradient(loss, z_eager))
        assert abs(float(loss) - losses[step]) < 1e-5
    np.testing.assert_allclose(z.numpy(), z_eager.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_torch_compile_of_the_fused_projection_matches_eager(select, compiler):
    """``linear_label_smoothed_cross_entropy`` under ``torch.compile(fullgraph=True)``: gradients of hidden, weight
    and bias equal eager mode for an upstream gradient that is the same on every frame (the precomputed
    gradients, scaled in place) and one that differs per frame (the weight's gradient recomputed)."""
    torch = pytest.importorskip("torch")
    select("torch")
    rng = np.random.default_rng(5)
    h0, w0, b0 = (rng.standard_normal(s).astype(np.float32) for s in ((B, T, 4), (K, 4), (K,)))
    frame_weights = torch.tensor(rng.uniform(0.5, 2.0, (B, T)).astype(np.float32))

    def loss(h, w, b, per_frame: bool):
        batch, vocab, hid = Dim(B, name="batch"), Dim(K, name="vocab"), Dim(4, name="hidden")
        time = Dim(rf.convert_to_tensor(LENS, dims=[batch]), name="time")
        value = rf.linear_label_smoothed_cross_entropy(
            hidden=rf.convert_to_tensor(h, dims=[batch, time, hid]), weight=rf.convert_to_tensor(w, dims=[vocab, hid]),
            bias=rf.convert_to_tensor(b, dims=[vocab]), axis=vocab, smoothing=0.1, chunk_size=2,
            targets=rf.convert_to_tensor(LABELS, dims=[batch, time], sparse_dim=vocab),
        ).raw_tensor  # fmt: skip
        return (value * frame_weights).sum() if per_frame else value.sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, backend=compiler, fullgraph=True)
    for per_frame in (False, True):
        results = []
        for fn in (loss, compiled):
            params = [torch.tensor(x, requires_grad=True) for x in (h0, w0, b0)]
            value = fn(*params, per_frame)
            results.append([value.detach().numpy()] + [g.numpy() for g in torch.autograd.grad(value, params)])
        for got, want in zip(results[1], results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
