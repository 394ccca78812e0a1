"""Argument checks shared by the public functions. Every failure names the function, the argument and what
is allowed. Checks that need a tensor's value run only where it can be read without tracing or compiling
(eager TensorFlow, PyTorch outside ``torch.compile``); inside compiled code, :func:`guard_labels` makes an
out-of-range label raise where the framework runs graph assertions, and give NaN everywhere else."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

import frontend_backends
from frontend_backends.common import FLOAT_DTYPES
from returnn_ls.dim import Dim
from returnn_ls.ops import align, valid_frames, where
from returnn_ls.tensor import Tensor, convert_to_tensor


def check_tensor(x: Any, name: str, func: str) -> Tensor:
    """:return: ``x`` if it is a Tensor, else raise a TypeError"""
    if not isinstance(x, Tensor):
        hint = " (wrap raw data with returnn_ls.convert_to_tensor(..., dims=[...]))" if x is not None else ""
        raise TypeError(f"{func}: {name} must be a returnn_ls.Tensor, got {type(x).__name__}{hint}")
    return x


def check_float(x: Tensor, name: str, func: str) -> None:
    """Raise a TypeError unless ``x`` has a floating-point dtype."""
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{func}: {name} must have a float dtype {list(FLOAT_DTYPES)}, got {x.dtype}")


#: What a float-or-scalar-Tensor argument may be, for messages.
SCALAR_KINDS = "a scalar Tensor (returnn_ls.Tensor with no dims, or a 0-d torch.Tensor, tf.Tensor or tf.Variable)"


def raw_scalar(value: Any, name: str, func: str) -> Any:
    """:return: ``value`` as a scalar :class:`Tensor` if it is a raw framework tensor (``torch.Tensor``,
    ``tf.Tensor``, ``tf.Variable``: kept on its backend and device; a variable is read where it is used, so a
    schedule that assigns it is seen inside ``tf.function``), a 0-d numpy array as a float, else ``value`` itself

    :raise ValueError: for a raw tensor that is not a scalar, naming its type and shape and the fix
    """
    if isinstance(value, np.ndarray):
        if value.ndim:
            raise ValueError(f"{func}: {name} must be a scalar, got a numpy.ndarray of shape {value.shape}")
        return value.item()
    backend_name = None if isinstance(value, (Tensor, numbers.Real)) else frontend_backends.backend_name_of(value)
    if backend_name is None:
        return value
    kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
    shape = tuple(getattr(value, "shape", ()))
    if shape:
        raise ValueError(
            f"{func}: {name} must be a scalar, got a {kind} of shape {shape} (reduce it to one value, e.g. "
            f"x.mean(), or index it: x[0])"
        )
    # the backend's copy: reads a variable (a custom gradient must not capture it), keeps the device and autograd
    return convert_to_tensor(frontend_backends.get_backend(backend_name).convert(value), dims=())


def check_fraction(value: Any, name: str, func: str, *, upper_open: bool = False) -> float | Tensor:
    """Check a float or scalar float Tensor in ``[0, 1]`` (``[0, 1)`` with ``upper_open``); NaN is rejected.

    Raw framework scalars (``torch.tensor(0.1)``, ``tf.constant(0.1)``, ``tf.Variable(0.1)``) are accepted and
    returned as scalar Tensors (see :func:`raw_scalar`).
    """
    allowed = "[0, 1)" if upper_open else "[0, 1]"
    value = raw_scalar(value, name, func)
    if isinstance(value, Tensor):
        if value.dims:
            raise ValueError(f"{func}: {name} must be a float or a scalar Tensor (no dims), got dims {value.dims}")
        check_float(value, name, func)
        concrete = value.concrete_value()
        values = [float(concrete)] if concrete is not None else []
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        values = [float(value)]
    else:
        raise TypeError(f"{func}: {name} must be a float in {allowed} or {SCALAR_KINDS}, got {_type_name(value)}")
    for v in values:
        # `v != v` is the NaN test: math.isnan would make torch.compile break the graph on a dynamic float
        if v != v or v < 0 or v > 1 or (upper_open and v == 1):
            raise ValueError(f"{func}: {name} must be in {allowed}, got {v}")
    return value if isinstance(value, Tensor) else float(value)


def _type_name(value: Any) -> str:
    """:return: the type of ``value`` with its top-level module, e.g. ``numpy.ndarray``, ``str``"""
    module = type(value).__module__.split(".")[0]
    return type(value).__name__ if module == "builtins" else f"{module}.{type(value).__name__}"


def resolve_axis(x: Tensor, axis: Dim | None, func: str, *, name: str = "axis") -> Dim:
    """:return: ``axis``, or the default (sparse dim, else feature dim), checked to be a static dim of size >= 2"""
    if axis is None:
        axis = x.sparse_dim or x.feature_dim
        if axis is None:
            raise ValueError(f"{func}: no {name} given and the tensor {x} has no feature_dim or sparse_dim")
    if not isinstance(axis, Dim):
        raise TypeError(f"{func}: {name} must be a Dim, got {type(axis).__name__}")
    if axis not in x.dims and axis is not x.sparse_dim:
        raise ValueError(f"{func}: {name} {axis} is not one of the tensor's dims {list(x.dims)}")
    if axis.dimension is None:
        raise ValueError(f"{func}: {name} {axis} must be a static dim (the label axis), not a dynamic one")
    if axis.dimension < 2:
        raise ValueError(f"{func}: {name} {axis} must have at least 2 labels, got {axis.dimension}")
    return axis


def check_exclude_labels(labels: Sequence[int] | None, num_labels: int, func: str) -> tuple[int, ...]:
    """:return: the excluded labels as a tuple; they must be distinct ints in ``[0, num_labels)`` leaving >= 2"""
    if labels is None:
        return ()
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise TypeError(f"{func}: exclude_labels must be a sequence of ints, got {type(labels).__name__}")
    for label in labels:
        if not isinstance(label, numbers.Integral) or isinstance(label, bool):
            raise TypeError(f"{func}: exclude_labels must hold ints, got {label!r}")
        if not 0 <= label < num_labels:
            raise ValueError(f"{func}: exclude_labels entry {label} is out of range [0, {num_labels})")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{func}: exclude_labels has duplicates: {list(labels)}")
    if num_labels - len(labels) < 2:
        raise ValueError(
            f"{func}: exclude_labels {list(labels)} leaves {num_labels - len(labels)} of {num_labels} labels; "
            "at least 2 must stay included"
        )
    return tuple(int(label) for label in labels)


#: Whether eager calls check label ranges (see :func:`set_label_checks`).
_label_checks = True


def set_label_checks(enabled: bool) -> bool:
    """Switch the eager check of label ranges on or off for the whole process; :return: the previous setting.

    With the check on (the default), an eager call with a label outside ``[0, K)`` inside the sequences raises a
    ``ValueError`` naming the function, the argument and the labels. It costs one host synchronisation per call
    (reading whether any label is bad; on a GPU that waits for the queued work). With it off, eager calls behave
    as compiled code does: the frames with a bad label get a NaN loss and gradient (a graph assertion under
    ``tf.function``). Example: ``previous = rf.set_label_checks(False)``, then ``rf.set_label_checks(previous)``.
    """
    global _label_checks
    if not isinstance(enabled, bool):
        raise TypeError(f"set_label_checks: enabled must be True or False, got {enabled!r}")
    previous, _label_checks = _label_checks, enabled
    return previous


def _bad_labels(labels: Tensor, num_labels: int) -> tuple[Tensor, Tensor]:
    """:return: (bool Tensor: the label is outside ``[0, num_labels)``; the same, only on frames inside the
    sequences), both over ``labels.dims``, computed on the labels' device"""
    out_of_range = (labels < 0) | (labels >= num_labels)
    mask = valid_frames(labels)  # labels at padding frames may be anything (-100 is common)
    if mask is None or any(d not in labels.dims for d in mask.dims):
        return out_of_range, out_of_range
    return out_of_range, (out_of_range & mask).copy_transpose(labels.dims)


def check_labels_in_range(labels: Tensor, num_labels: int, name: str, func: str) -> None:
    """Raise a ValueError if a label inside the sequences (padding excluded) is outside ``[0, num_labels)``.

    Runs where the values can be read (eager) and the check is on (:func:`set_label_checks`): the test runs on the
    labels' device, and one host synchronisation reads whether it failed; the labels are copied only for the
    message.
    """
    backend = labels.backend
    if not _label_checks or not backend.is_concrete(labels.raw_tensor):
        return
    _, bad = _bad_labels(labels, num_labels)
    if not backend.to_numpy(backend.reduce("any", bad.raw_tensor, tuple(range(len(bad.dims))))):
        return
    values = labels.numpy()[bad.numpy()]
    raise ValueError(f"{func}: {name} has labels outside [0, {num_labels}): e.g. {values[:5].tolist()}")


def guard_labels(labels: Tensor, num_labels: int, name: str, func: str) -> tuple[Tensor, Tensor | None]:
    """Check class indices ``labels`` against ``[0, num_labels)``, also inside compiled code.

    Eager (the values can be read) with the check on (:func:`set_label_checks`): a label outside the range inside
    the sequences raises a ValueError (see :func:`check_labels_in_range`); :return: ``(labels, None)``.

    Traced (``tf.function``, ``tf.function(jit_compile=True)``, ``torch.compile``), where Python cannot look at
    the values, or with the check off: the graph checks them. Where the framework executes assertions in a graph
    (``tf.function`` without XLA) a bad label raises at run time with a message naming ``func`` and ``name``.
    Elsewhere (XLA, ``torch.compile``, eager with the check off) the callers make the output of each frame with a
    bad label NaN (:func:`poison_bad_frames`), and, as the upstream gradient of that frame is then NaN too, the
    gradients it reaches. :return: ``(labels with every out-of-range entry replaced by 0 (safe to index with), bool
    Tensor over labels.dims: True on frames inside the sequences whose label is out of range)``.
    """
    if _label_checks and labels.backend.is_concrete(labels.raw_tensor):
        check_labels_in_range(labels, num_labels, name, func)
        return labels, None
    out_of_range, bad = _bad_labels(labels, num_labels)
    labels.backend.assert_none_in_graph(
        bad.raw_tensor,
        f"{func}: {name} has labels outside [0, {num_labels}) (found by the check inside the compiled graph; "
        "an eager call names them)",
    )
    return labels.copy_template(align(where(out_of_range, 0, labels), labels.dims)), bad


def poison_bad_frames(x: Tensor | float, bad: Tensor | None) -> Tensor | float:
    """:return: ``x`` (a Tensor or a number) times 1, or NaN on the frames where ``bad`` (from :func:`guard_labels`)
    is True, so that the upstream gradient of those frames is NaN as well; ``x`` itself when ``bad`` is None"""
    if bad is None:
        return x
    factor = where(bad, float("nan"), 1.0)
    if not isinstance(x, Tensor):
        return factor * x
    out = x * factor
    return out.copy_transpose(x.dims + tuple(d for d in out.dims if d not in x.dims))
