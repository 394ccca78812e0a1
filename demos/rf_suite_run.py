"""``run_model`` of RETURNN's ``tests/rf_utils.py``, on the backends of :mod:`returnn_ls`.

:func:`run_model` fills the templates of ``extern_data`` with seeded random numpy data (see
:func:`rf_suite_shim.tensor_dict_fill_random_numpy_`), then on each backend (the first, ``torch``, is the
reference): selects it, turns the numpy data into :class:`returnn_ls.Tensor` objects (float inputs watched for
gradients), calls ``rf.set_random_seed(42)``, ``get_model(epoch=1, step=0)`` and ``forward_step(model=,
extern_data=)`` in a forward-step run context, and collects what was marked with ``mark_as_output``. The other
backends replay the reference run's draws of ``rf.random*`` (as RETURNN's random journal). If an
output ``"loss"`` exists, the gradient of its sum w.r.t. each float input is added as ``"<key>_grad"``. Padding
of the outputs is zeroed. The reference outputs must be finite; a run on one short sequence alone must give
the same values as its slice of the batched run; every other backend must give the same outputs (keys, shapes,
dtypes, sizes, values: ``|a - b| <= atol + rtol * |b|`` with ``atol = 1e-5 + 1e-5 * max|a|``, ``rtol = 1e-5``,
as RETURNN's current ``rf_utils``). :return: the reference outputs, as numpy (:class:`OutTensor`). Dims the
model code sized (not those of ``extern_data``) keep the reference run's sizes, as reference-backend Tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from rf_suite_shim import (
    SIZED_DIMS,
    TensorDict,
    TensorTemplate,
    all_dims,
    backend_names,
    batch_dim,
    reference_tensor,
    sizes_of,
)
from rf_suite_shim import tensor_dict_fill_random_numpy_ as fill_random

import frontend_backends
import returnn_ls as rf
from frontend_backends.train_base import get_trainer
from returnn_ls.random_funcs import random_journal_record, random_journal_replay

__all__ = ["CompareResultsMismatchException", "CompareResultsMismatchSingleVsMultiBatchException",
           "CompareResultsMismatchTfVsPtException", "NonFiniteValuesException", "OutTensor", "RunModelException",
           "backend_names", "run_model", "run_model_torch_train", "tf_scope"]  # fmt: skip

RTOL = ATOL = 1e-5


class RunModelException(Exception):
    """A check of :func:`run_model` failed."""


class NonFiniteValuesException(RunModelException):
    """An output of the reference backend is not finite."""


class CompareResultsMismatchException(RunModelException):
    """Two runs that should agree do not."""


class CompareResultsMismatchTfVsPtException(CompareResultsMismatchException):
    """A backend's outputs differ from the reference backend's."""


class CompareResultsMismatchSingleVsMultiBatchException(CompareResultsMismatchException):
    """One sequence run alone differs from its slice of the batched run."""


class OutTensor:
    """An output as numpy: ``raw_tensor``, ``dims``, ``dtype``, ``sparse_dim``, ``feature_dim``, and per dim the
    dynamic sizes as ``(size_dims, array)`` (None for a static dim)."""

    def __init__(self, name: str, tensor: Any, raw: np.ndarray):
        self.name, self.raw_tensor, self.dims, self.dtype = name, raw, tuple(tensor.dims), tensor.dtype
        self.sparse_dim, self.feature_dim = tensor.sparse_dim, tensor.feature_dim
        self.sizes = [_sizes(d) for d in self.dims]

    @property
    def dims_set(self) -> set:
        """:return: the dims as a set"""
        return set(self.dims)

    def get_dyn_size_tags(self) -> list:
        """:return: the dims (other than the batch dim) whose sizes vary along other dims"""
        return [d for d, size in zip(self.dims, self.sizes) if size is not None and size[0] and d is not batch_dim]

    def __repr__(self) -> str:
        return f"OutTensor({self.name!r}, {list(self.dims)}, {self.dtype!r}, shape {self.raw_tensor.shape})"


def _sizes(dim: Any) -> tuple[tuple, np.ndarray] | None:
    size = dim.dyn_size_ext if dim.dimension is None else None
    if isinstance(size, rf.Tensor):
        return tuple(size.dims), np.asarray(size.numpy())
    if isinstance(size, TensorTemplate) and size.raw_tensor is not None:
        return size.dims, np.asarray(size.raw_tensor)
    return None


def _index(dims: Sequence[Any], dim: Any) -> int | None:
    return next((i for i, d in enumerate(dims) if d is dim), None)


def _derived(dim: Any) -> bool:
    """:return: whether ``dim`` comes from Dim arithmetic (``time + 1``): its sizes follow its operands' sizes,
    so the harness never sets them"""
    return getattr(dim, "derived_from_op", None) is not None


def _mask_padding(out: OutTensor) -> None:
    """Zero the padding of ``out`` (each dynamic dim whose sizes are over dims of ``out``)."""
    raw, ndim = out.raw_tensor, out.raw_tensor.ndim
    for axis, size in enumerate(out.sizes):
        positions = [_index(out.dims, d) for d in size[0]] if size else []
        if not positions or None in positions:
            continue
        shape = [1] * ndim
        for p in positions:
            shape[p] = raw.shape[p]
        try:
            lens = np.transpose(size[1], np.argsort(positions)).reshape(shape)
            mask = np.arange(raw.shape[axis]).reshape([-1 if i == axis else 1 for i in range(ndim)]) < lens
            raw = np.where(mask, raw, np.zeros((), raw.dtype))
        except ValueError:
            continue
    out.raw_tensor = raw


def _slices(dims: tuple, sizes: list, batch_idx: int) -> tuple[slice, ...]:
    """:return: the slices that keep batch entry ``batch_idx`` (and cut dims sized over the batch to their max)"""
    out = []
    for dim, size in zip(dims, sizes):
        if dim is batch_dim:
            out.append(slice(batch_idx, batch_idx + 1))
        elif size is not None and _index(size[0], batch_dim) is not None:
            out.append(slice(0, int(size[1].max()) if size[1].size else 0))
        else:
            out.append(slice(None))
    return tuple(out)


class _Run:
    """One run on one backend: the numpy templates of ``extern_data`` and the sizes of the dynamic dims become
    :class:`returnn_ls.Tensor` objects on that backend for the run, and are put back after it (in a ``reference``
    run, sizes that the model code set are kept)."""

    def __init__(self, name: str, extern_data: TensorDict, reference: bool = False):
        self.name, self.extern_data, self.reference = name, extern_data, reference
        self.templates = dict(extern_data.data)
        self.dims: list = []
        for dim in all_dims(self.templates.values()) + SIZED_DIMS:
            if dim.dimension is None and not _derived(dim) and _index(self.dims, dim) is None:
                self.dims.append(dim)

    def __enter__(self) -> _Run:
        rf.select_backend(self.name)
        self.backend, self.trainer = frontend_backends.get_backend(self.name), get_trainer(self.name)
        self.saved = []
        for dim in self.dims:
            size, sizes = dim.dyn_size_ext, sizes_of(dim)
            if sizes is not None:
                dim.dyn_size_ext = rf.convert_to_tensor(sizes, dims=size.dims, dtype=size.dtype)
                self.saved.append((dim, size, dim.dyn_size_ext))
        for key, t in self.templates.items():
            self.extern_data.data[key] = self.tensor(t, t.raw_tensor)
        return self

    @staticmethod
    def tensor(template: TensorTemplate, raw: Any) -> Any:
        """:return: a :class:`returnn_ls.Tensor` of ``raw`` with the dims, sparse and feature dim of ``template``"""
        return rf.convert_to_tensor(raw, dims=template.dims, dtype=template.dtype, sparse_dim=template.sparse_dim,
                                    feature_dim=template.feature_dim)  # fmt: skip

    def __exit__(self, *exc: Any) -> None:
        rf.reset_run_ctx()
        for dim, size, given in self.saved:
            if dim.dyn_size_ext is given or not self.reference:
                dim.dyn_size_ext = size
        self.extern_data.data.update(self.templates)

    def step(self, step_fn: Callable[[], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Call ``step_fn`` (it reads ``extern_data``), with the float inputs watched.

        :return: what ``step_fn`` returned (a dict with ``"value"``, a raw scalar to differentiate, or None) and
            the gradients of that value w.r.t. the float inputs (empty without a value)
        """
        floats = [k for k, t in self.templates.items() if t.dtype.startswith(("float", "bfloat"))]
        result: dict[str, Any] = {}

        def total(variables: dict[str, Any]) -> Any:
            for key in floats:
                self.extern_data.data[key] = self.tensor(self.templates[key], variables[key])
            result.update(step_fn())
            if result.get("value") is not None:
                return result["value"]
            zero = 0.0
            for raw in variables.values():
                zero = zero + self.backend.reduce("sum", raw * 0, tuple(range(len(self.backend.shape(raw)))))
            return zero

        if not floats:
            result.update(step_fn())
            return result, {}
        _, grads = self.trainer.value_and_grad(total, {k: self.extern_data.data[k].raw_tensor for k in floats})
        return result, (grads if result.get("value") is not None else {})


def _run(name: str, extern_data: TensorDict, get_model: Callable, forward_step: Callable,
         reference: bool = False) -> dict[str, OutTensor]:  # fmt: skip
    """One run on backend ``name``; :return: its outputs. ``reference``: keep the sizes the model code set on dims
    (its new dims join :data:`rf_suite_shim.SIZED_DIMS`)."""
    with _Run(name, extern_data, reference) as run:
        rf.set_random_seed(42)
        model = get_model(epoch=1, step=0)

        def step() -> dict[str, Any]:
            ctx = rf.init_forward_step_run_ctx(epoch=1, step=0)
            forward_step(model=model, extern_data=extern_data)
            outputs, loss = dict(ctx.outputs.items()), ctx.outputs.data.get("loss")
            value = None if loss is None else rf.reduce_sum(loss, axis=loss.dims).raw_tensor
            return {"outputs": outputs, "value": value}

        result, grads = run.step(step)
        if not result["outputs"]:
            raise RunModelException("forward_step marked no output (mark_as_output / mark_as_default_output)")
        out = {k: OutTensor(k, v, run.trainer.to_numpy(v.raw_tensor)) for k, v in result["outputs"].items()}
        for key, grad in grads.items():
            out[f"{key}_grad"] = OutTensor(f"{key}_grad", run.templates[key], run.trainer.to_numpy(grad))
        for o in out.values():
            for dim, size in zip(o.dims, o.sizes):
                if reference and size is not None and not _derived(dim) and _index(SIZED_DIMS, dim) is None:
                    SIZED_DIMS.append(dim)
            _mask_padding(o)
    return out


def _allclose(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == bool or b.dtype == bool:
        return bool(np.array_equal(a, b))
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return bool(np.allclose(a, b, atol=ATOL + RTOL * scale, rtol=RTOL))


def _compare(ref: dict[str, OutTensor], other: dict[str, OutTensor], ref_name: str, name: str) -> None:
    """:raise CompareResultsMismatchTfVsPtException: where ``other`` differs from ``ref``"""
    def fail(msg: str) -> None:
        raise CompareResultsMismatchTfVsPtException(f"{name} vs {ref_name}: {msg}")

    if set(ref) != set(other):
        fail(f"outputs {sorted(other)} vs {sorted(ref)}")
    for key, a in ref.items():
        b = other[key]
        if a.raw_tensor.shape != b.raw_tensor.shape:
            fail(f"output {key!r} has shape {b.raw_tensor.shape} vs {a.raw_tensor.shape}")
        if a.dtype != b.dtype and not (a.dtype.startswith("int") and b.dtype.startswith("int")):
            fail(f"output {key!r} has dtype {b.dtype} vs {a.dtype}")
        if (a.sparse_dim is None) != (b.sparse_dim is None) or _index(a.dims, a.feature_dim) != _index(
                b.dims, b.feature_dim):
            fail(f"output {key!r}: sparse_dim/feature_dim differ ({b.sparse_dim}, {b.feature_dim})")
        for i, (sa, sb) in enumerate(zip(a.sizes, b.sizes)):
            if (sa is None) != (sb is None) or (sa and (sa[1].shape != sb[1].shape or not _allclose(sa[1], sb[1]))):
                fail(f"output {key!r}: the sizes of dim {i} ({a.dims[i]}) differ")
        if not _allclose(a.raw_tensor, b.raw_tensor):
            d = np.abs(a.raw_tensor.astype("complex128") - b.raw_tensor.astype("complex128"))
            fail(f"output {key!r} differs: max abs diff {np.nanmax(d) if d.size else 0:.3e} "
                 f"(max abs value {np.max(np.abs(a.raw_tensor)):.3e})")  # fmt: skip


def _single_batch_check(extern_data: TensorDict, get_model: Callable, forward_step: Callable, name: str,
                        ref: dict[str, OutTensor]) -> None:  # fmt: skip
    """Run the shortest sequence (of the first dim sized over ``[batch]`` with unequal sizes) alone; compare."""
    templates = list(extern_data.data.values())
    dims = [d for d in all_dims(templates) if d is not batch_dim and not _derived(d) and sizes_of(d) is not None]
    sized = [d for d in dims if len(d.dyn_size_ext.dims) == 1 and d.dyn_size_ext.dims[0] is batch_dim]
    sized = [d for d in sized if sizes_of(d).size and np.ptp(sizes_of(d)) > 0]
    if not sized:
        return
    idx = int(np.argmin(sizes_of(sized[0])))
    saved_sizes = [(d, d.dyn_size_ext) for d in [batch_dim, *dims]]
    saved_data = [(t, t.raw_tensor) for t in templates]
    try:
        for d in dims:
            size = d.dyn_size_ext
            sliced = sizes_of(d)[_slices(size.dims, [_sizes(x) for x in size.dims], idx)]
            d.dyn_size_ext = reference_tensor(sliced, size.dims, size.dtype)
        batch_dim.dyn_size_ext = reference_tensor(np.array(1, dtype="int32"), (), "int32")
        for t in templates:
            t.raw_tensor = t.raw_tensor[_slices(t.dims, [_sizes(x) for x in t.dims], idx)]
        single = _run(name, extern_data, get_model, forward_step)
    finally:
        for d, size in saved_sizes:
            d.dyn_size_ext = size
        for t, raw in saved_data:
            t.raw_tensor = raw
    for key, r in ref.items():
        axis = _index(r.dims, batch_dim)
        if axis is None:
            continue
        s = single[key]
        if len(s.dims) != len(r.dims) or s.dims[axis] is not batch_dim:
            raise CompareResultsMismatchSingleVsMultiBatchException(f"output {key!r}: dims {s.dims} vs {r.dims}")
        part = r.raw_tensor[_slices(s.dims, s.sizes, idx)]
        if part.shape != s.raw_tensor.shape or not np.allclose(part, s.raw_tensor, atol=ATOL, rtol=RTOL):
            raise CompareResultsMismatchSingleVsMultiBatchException(
                f"output {key!r} of batch entry {idx} alone differs from the batched run")


def run_model(extern_data: TensorDict, get_model: Callable, forward_step: Callable, *,
              dyn_dim_max_sizes: dict | None = None, dyn_dim_min_sizes: dict | None = None,
              test_tensorflow: bool = True, tf_low_level: bool = False, allow_inf_nan_in_output: bool = False,
              test_single_batch_entry: bool = True, data_rnd_seed: int = 42,
              data_fill_random: bool = True) -> TensorDict:  # fmt: skip
    """Run the model on our backends and compare them (see the module docstring).

    :param tf_low_level: accepted; our TensorFlow backend is the only one (no net dict)
    :return: the reference backend's outputs (``out["output"].raw_tensor`` is numpy)
    """
    if data_fill_random:
        extern_data.reset_content()
        fill_random(extern_data, rnd=data_rnd_seed, dyn_dim_max_sizes=dyn_dim_max_sizes,
                    dyn_dim_min_sizes=dyn_dim_min_sizes)  # fmt: skip
    names = backend_names(test_tensorflow)
    with random_journal_record() as journal:  # the other backends replay the reference's random draws (as RETURNN's)
        ref = _run(names[0], extern_data, get_model, forward_step, reference=True)
    if not allow_inf_nan_in_output:
        bad = [k for k, v in ref.items() if v.raw_tensor.dtype.kind in "fc" and not np.isfinite(v.raw_tensor).all()]
        if bad:
            raise NonFiniteValuesException(f"non-finite values in outputs {bad}")
    if test_single_batch_entry and any(d is batch_dim for d in all_dims(extern_data.data.values())):
        with random_journal_record():  # draws as in the reference run (dropout takes its journaled path there too)
            _single_batch_check(extern_data, get_model, forward_step, names[0], ref)
    for name in names[1:]:
        with random_journal_replay(journal):
            other = _run(name, extern_data, get_model, forward_step)
        _compare(ref, other, names[0], name)
    rf.select_backend(names[0])
    return TensorDict(ref)


def run_model_torch_train(extern_data: TensorDict, get_model: Callable, train_step: Callable, *,
                          dyn_dim_max_sizes: dict | None = None,
                          dyn_dim_min_sizes: dict | None = None) -> dict[str, float]:  # fmt: skip
    """Run ``train_step`` once on the reference backend and backpropagate the total loss.

    :return: ``total_loss`` and per loss ``"<name>:summed"``, ``":mean"``, ``":inv_norm_factor"``
    """
    extern_data.reset_content()
    fill_random(extern_data, dyn_dim_max_sizes=dyn_dim_max_sizes, dyn_dim_min_sizes=dyn_dim_min_sizes)
    name = backend_names(False)[0]
    with _Run(name, extern_data) as run:
        rf.set_random_seed(42)
        model = get_model(epoch=1, step=0)

        def step() -> dict[str, Any]:
            ctx = rf.init_train_step_run_ctx(train_flag=True, step=0, epoch=1)
            train_step(model=model, extern_data=extern_data)
            return {"ctx": ctx, "value": ctx.total_loss().raw_tensor}

        result, _ = run.step(step)

        def item(x: Any) -> float:
            return float(run.trainer.to_numpy(x.raw_tensor if isinstance(x, rf.Tensor) else x).sum())

        res = {"total_loss": item(result["value"])}
        for key, loss in result["ctx"].losses.items():
            res.update({f"{key}:summed": item(loss.get_summed_loss()), f"{key}:mean": item(loss.get_mean_loss()),
                        f"{key}:inv_norm_factor": item(loss.get_inv_norm_factor())})  # fmt: skip
    return res


@contextlib.contextmanager
def tf_scope() -> Iterator[Any]:
    """RETURNN's test helper: a TF1 graph and session of their own (for tests that compare with RETURNN's TF-layers
    backend, which runs RETURNN itself)."""
    import tensorflow as tf

    with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session().as_default() as session:
        yield session
