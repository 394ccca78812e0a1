"""RETURNN's test-side API on top of :mod:`returnn_ls`, for running RETURNN's own ``tests/test_rf_*.py``.

:mod:`returnn_rf_suite` points the tests' ``from returnn.tensor import Tensor, Dim, TensorDict, batch_dim`` at
the ``rf_utils.py`` it writes, which re-exports this module and :mod:`rf_suite_run`. It provides:

- :class:`Tensor`: RETURNN's template form ``Tensor("data", [batch_dim, time_dim, in_dim], dtype="float32",
  sparse_dim=..., feature_dim=...)`` gives a :class:`TensorTemplate` (numpy data filled in later); with
  ``raw_tensor=`` it gives a :class:`returnn_ls.Tensor`;
- :class:`Dim`: ``Dim(Tensor("time", [batch_dim], dtype="int32"))`` gives a dynamic :class:`returnn_ls.Dim`
  whose ``dyn_size_ext`` is that template; any other form goes to :class:`returnn_ls.Dim` unchanged;
- :class:`TensorDict` and :func:`tensor_dict_fill_random_numpy_` (``run_model`` is in :mod:`rf_suite_run`).

Outside a run, the templates of ``extern_data`` hold numpy arrays (as in RETURNN after ``run_model``) and the
sizes of dynamic dims are :class:`returnn_ls.Tensor` objects on the reference backend (``torch``: returnn_ls has no
numpy tensors), so that ``dim.get_dim_value()`` works; inside a run, all are Tensors on the backend that runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

import frontend_backends
import returnn_ls as rf

__all__ = ["Dim", "HarnessLimitation", "Tensor", "TensorDict", "TensorTemplate", "batch_dim", "single_step_dim",
           "tensor_dict_fill_random_numpy_"]  # fmt: skip

batch_dim = rf.batch_dim
#: The dynamic dims whose sizes each run gets on its backend: those made from a template or filled by the shim,
#: the batch dim, and (added by :mod:`rf_suite_run`) those the model code sized in a reference run.
SIZED_DIMS: list = [batch_dim]
#: ``(dim, template of its sizes)``: what :func:`tensor_dict_fill_random_numpy_` fills (made from ``Dim(template)``)
SIZE_SPECS: list[tuple[Any, TensorTemplate]] = []


class HarnessLimitation(NotImplementedError):
    """Raised where this shim does not provide something RETURNN's test API has."""


class TensorTemplate:
    """RETURNN's ``Tensor(name, dims, dtype)`` without a framework tensor: ``raw_tensor`` is a numpy array or None.

    :param name: the name (``"data"``)
    :param dims: the dims, in order
    :param dtype: e.g. ``"float32"``, ``"int32"``, ``"bool"``
    :param sparse_dim: for class indices: the dim of the classes
    :param feature_dim: the feature dim (one of ``dims``)
    :param raw_tensor: a numpy array of the data, or None until filled
    """

    def __init__(self, name: str, dims: Sequence[Any], dtype: str = "float32", *, sparse_dim: Any = None,
                 feature_dim: Any = None, raw_tensor: np.ndarray | None = None):  # fmt: skip
        self.name = name
        self.dims = tuple(dims)
        self.dtype = dtype
        self.sparse_dim = sparse_dim
        self.feature_dim = feature_dim
        self._raw_tensor = raw_tensor

    @property
    def raw_tensor(self) -> np.ndarray | None:
        """The numpy data, or None. Set on the sizes template of a dim outside ``run_model`` (RETURNN's tests do
        ``dim.dyn_size_ext.raw_tensor = np.array(...)``), the dim's sizes become a Tensor on the reference backend."""
        return self._raw_tensor

    @raw_tensor.setter
    def raw_tensor(self, value: np.ndarray | None) -> None:
        self._raw_tensor = value
        if value is not None:
            for dim, spec in SIZE_SPECS:
                if spec is self and dim.dyn_size_ext is self:
                    dim.dyn_size_ext = reference_tensor(value, self.dims, self.dtype)

    @property
    def dims_set(self) -> set:
        """:return: the dims as a set"""
        return set(self.dims)

    @property
    def shape(self) -> tuple[int | None, ...]:
        """:return: the static sizes (None for dynamic dims), as RETURNN's ``Tensor.shape``"""
        return tuple(d.dimension for d in self.dims)

    def copy_template(self, name: str | None = None) -> TensorTemplate:
        """:return: the same template without data"""
        return TensorTemplate(name or self.name, self.dims, self.dtype, sparse_dim=self.sparse_dim,
                              feature_dim=self.feature_dim)  # fmt: skip

    def mark_as_output(self, *_args: Any, **_kwargs: Any) -> None:
        """:raise HarnessLimitation: a template has no framework tensor"""
        raise HarnessLimitation(f"template {self.name!r}: mark_as_output needs a returnn_ls Tensor (raw_tensor)")

    def __repr__(self) -> str:
        filled = "" if self.raw_tensor is None else f", filled {np.shape(self.raw_tensor)}"
        return f"TensorTemplate({self.name!r}, {list(self.dims)}, {self.dtype!r}{filled})"


class _TensorMeta(type):
    def __call__(cls, name: str = "tensor", dims: Sequence[Any] = (), dtype: str | None = None, *,
                 sparse_dim: Any = None, feature_dim: Any = None, raw_tensor: Any = None,
                 feature_dim_axis: int | None = None, **kwargs: Any) -> Any:  # fmt: skip
        if kwargs:
            raise HarnessLimitation(f"Tensor({name!r}): the shim does not take {sorted(kwargs)}")
        dims = tuple(dims)
        if feature_dim is None and feature_dim_axis is not None:
            feature_dim = dims[feature_dim_axis]
        if dtype is None:
            dtype = "int32" if sparse_dim is not None else "float32"
        if raw_tensor is None or isinstance(raw_tensor, np.ndarray):
            return TensorTemplate(name, dims, dtype, sparse_dim=sparse_dim, feature_dim=feature_dim,
                                  raw_tensor=raw_tensor)  # fmt: skip
        return rf.convert_to_tensor(raw_tensor, dims=dims, dtype=dtype, sparse_dim=sparse_dim,
                                    feature_dim=feature_dim)  # fmt: skip

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, (rf.Tensor, TensorTemplate))


class Tensor(metaclass=_TensorMeta):
    """RETURNN's ``Tensor`` constructor: a :class:`TensorTemplate`, or a :class:`returnn_ls.Tensor` when a framework
    ``raw_tensor`` is given. ``isinstance(x, Tensor)`` holds for both."""


class _DimMeta(type):
    def __call__(cls, dimension: Any = None, *, name: str | None = None, **kwargs: Any) -> Any:
        if isinstance(dimension, TensorTemplate):
            dim = rf.Dim(None, name=name or dimension.name, **kwargs)
            dim.dyn_size_ext = dimension
            SIZE_SPECS.append((dim, dimension))
            SIZED_DIMS.append(dim)
            return dim
        return rf.Dim(dimension, name=name, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, rf.Dim)

    def __getattr__(cls, item: str) -> Any:
        return getattr(rf.Dim, item)


class Dim(metaclass=_DimMeta):
    """RETURNN's ``Dim`` constructor; makes :class:`returnn_ls.Dim` objects (``isinstance`` holds for them)."""


class NotInReturnnLs:
    """A name of RETURNN's ``returnn.tensor`` that returnn_ls does not have (:func:`not_in_returnn_ls`): any attribute
    use raises an AttributeError naming it; returnn_ls functions reject it as a wrong type (its class is named
    ``<name>_not_in_returnn_ls``)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, item: str) -> Any:
        raise AttributeError(f"returnn_ls has no {self._name} (used: .{item})")

    def __repr__(self) -> str:
        return f"<missing {self._name}>"


def not_in_returnn_ls(name: str) -> NotInReturnnLs:
    """:return: a placeholder for ``name``, of a class ``<name>_not_in_returnn_ls``"""
    return type(f"{name}_not_in_returnn_ls", (NotInReturnnLs,), {})(name)


single_step_dim = getattr(rf, "single_step_dim", None)
if single_step_dim is None:
    single_step_dim = not_in_returnn_ls("single_step_dim")


class TensorDict(rf.TensorDict):
    """RETURNN's ``TensorDict`` of templates (:class:`TensorTemplate`); :func:`run_model` swaps in the
    :class:`returnn_ls.Tensor` objects while it runs and puts the templates back after."""

    def reset_content(self) -> None:
        """Drop the data of all templates and the sizes of their dims (dims stay the same objects)."""
        for value in self.data.values():
            if isinstance(value, TensorTemplate):
                value.raw_tensor = None
        for dim in all_dims(self.data.values()):
            spec = size_spec(dim)
            if spec is not None:
                dim.dyn_size_ext = spec

    def all_dims(self) -> list:
        """:return: the dims of all entries and of their sizes, each once, in order of appearance"""
        return all_dims(self.data.values())


def all_dims(tensors: Iterable[Any]) -> list:
    """:return: the dims of ``tensors`` and (recursively) of their dims' sizes, each once"""
    out: list = []
    queue = [d for t in tensors for d in getattr(t, "dims", ())]
    while queue:
        dim = queue.pop(0)
        if any(dim is d for d in out):
            continue
        out.append(dim)
        queue.extend(getattr(dim.dyn_size_ext, "dims", ()))
    return out


def _lookup(mapping: dict | None, dim: Any) -> int | None:
    return next((v for k, v in (mapping or {}).items() if k is dim), None)


def backend_names(test_tensorflow: bool = True) -> list[str]:
    """:return: our backends that can run here, the reference (``torch``) first; only it without TensorFlow"""
    names = []
    for name in frontend_backends.backend_names():
        try:
            frontend_backends.get_backend(name)
        except ImportError:
            continue
        names.append(name)
    names.sort(key=lambda n: n != "torch")
    return names[:1] if not test_tensorflow else names


def reference_tensor(raw: np.ndarray, dims: Sequence[Any], dtype: str) -> Any:
    """:return: ``raw`` as a :class:`returnn_ls.Tensor` on the reference backend (which gets selected)"""
    rf.select_backend(backend_names(False)[0])
    return rf.convert_to_tensor(np.asarray(raw), dims=dims, dtype=dtype)


def size_spec(dim: Any) -> TensorTemplate | None:
    """:return: the (unfilled) template of the sizes of a dynamic dim: the one it was made from, else one over
    ``[batch_dim]`` (``[]`` for the batch dim) or over the dims of its given sizes; None for a static dim"""
    if dim.dimension is not None:
        return None
    spec = next((t for d, t in SIZE_SPECS if d is dim), None)
    if spec is None:
        size = dim.dyn_size_ext
        spec = TensorTemplate(dim.name or "time", [] if dim is batch_dim else [batch_dim], "int32")
        if isinstance(size, (rf.Tensor, TensorTemplate)):
            spec = TensorTemplate(dim.name or "size", size.dims, size.dtype)
        SIZE_SPECS.append((dim, spec))
        if not any(d is dim for d in SIZED_DIMS):
            SIZED_DIMS.append(dim)
    return spec


def sizes_of(dim: Any) -> np.ndarray | None:
    """:return: the sizes of a dynamic dim as numpy (from its Tensor or its filled template), else None"""
    size = dim.dyn_size_ext
    if isinstance(size, rf.Tensor):
        return np.asarray(size.numpy())
    return size.raw_tensor if isinstance(size, TensorTemplate) else None


def dim_value(dim: Any) -> int:
    """:return: the static size, or the largest of the dynamic sizes"""
    if dim.dimension is not None:
        return dim.dimension
    sizes = sizes_of(dim)
    return int(np.max(sizes)) if np.size(sizes) else 0


def _fill(x: TensorTemplate, rnd: np.random.RandomState, max_sizes: dict | None, min_sizes: dict | None,
          min_val: int = 0, max_val: int | None = None) -> bool:  # fmt: skip
    """Fill ``x`` (and first its dims' sizes, which become Tensors on the reference backend) with random numpy
    data as RETURNN's test utils do; :return: whether it filled something"""
    filled = False
    for dim in x.dims:
        spec = size_spec(dim)
        if spec is None or sizes_of(dim) is not None:
            continue
        dim_max, dim_min = _lookup(max_sizes, dim), _lookup(min_sizes, dim)
        low = dim_min if dim_min is not None else min(2, dim_max if dim_max is not None else 2)
        _fill(spec, rnd, max_sizes, min_sizes, min_val=low, max_val=dim_max)
        sizes, spec.raw_tensor = spec.raw_tensor, None
        if dim_max is not None:  # one sequence reaches the max size (and another the min size, if given)
            i = rnd.randint(0, sizes.size)
            sizes.flat[i] = dim_max
            if dim_min is not None and sizes.size > 1:
                j = rnd.randint(0, sizes.size - 1)
                sizes.flat[j + int(j >= i)] = dim_min
        elif dim_min is not None:
            raise ValueError(f"{dim}: dyn_dim_min_sizes needs an entry in dyn_dim_max_sizes too")
        dim.dyn_size_ext = reference_tensor(sizes, spec.dims, spec.dtype)
        filled = True
    if x.raw_tensor is None:
        shape = [dim_value(d) for d in x.dims]
        if x.dtype.startswith(("int", "uint")):
            if max_val is None:
                max_val = rnd.randint(5, 20)
            if x.sparse_dim is not None and x.sparse_dim.dimension is not None:
                max_val = x.sparse_dim.dimension - 1
            x.raw_tensor = rnd.randint(min_val, max_val + 1, size=shape).astype(x.dtype)
        elif x.dtype == "bool":
            x.raw_tensor = rnd.randint(0, 2, size=shape).astype(bool)
        elif x.dtype.startswith(("float", "bfloat")):
            x.raw_tensor = rnd.normal(0.0, 1.0, size=shape).astype("float32" if x.dtype == "bfloat16" else x.dtype)
        elif x.dtype.startswith("complex"):
            x.raw_tensor = (rnd.normal(0.0, 1.0, size=shape) + 1j * rnd.normal(0.0, 1.0, size=shape)).astype(x.dtype)
        else:
            raise HarnessLimitation(f"cannot fill {x} of dtype {x.dtype}")
        filled = True
    return filled


def tensor_dict_fill_random_numpy_(tensor_dict: TensorDict, *, rnd: int | np.random.RandomState = 42,
                                   dyn_dim_max_sizes: dict | None = None,
                                   dyn_dim_min_sizes: dict | None = None) -> None:  # fmt: skip
    """Fill the templates of ``tensor_dict`` and their dims' sizes with seeded random numpy data, as RETURNN's
    ``tensor_dict_fill_random_numpy_``: sizes from 2 (or the given min) to a random max of 5..19 (or the given
    max, which one sequence reaches), class indices below ``sparse_dim``, floats standard normal, bools 0/1."""
    if not isinstance(rnd, np.random.RandomState):
        rnd = np.random.RandomState(rnd)
    for key, value in list(tensor_dict.data.items()):
        if isinstance(value, rf.Tensor):  # given as a framework tensor: keep its values
            value = TensorTemplate(key, value.dims, value.dtype, sparse_dim=value.sparse_dim,
                                   feature_dim=value.feature_dim, raw_tensor=np.asarray(value.numpy()))  # fmt: skip
            tensor_dict.data[key] = value
        _fill(value, rnd, dyn_dim_max_sizes, dyn_dim_min_sizes)

