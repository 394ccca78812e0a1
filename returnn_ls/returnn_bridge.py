"""Use returnn_ls inside RETURNN's own engine: convert RETURNN's Tensors and Dims to ours and back.

An rf-style config run by RETURNN itself gets RETURNN Tensors (``returnn.tensor``) in its ``train_step``.
:func:`from_returnn` wraps one as a :class:`~returnn_ls.Tensor` and :func:`to_returnn` wraps ours as RETURNN's,
so a RETURNN config can call the fused losses of this library and mark the result as a loss::

    import returnn_ls

    def train_step(*, model, extern_data, **_kwargs):
        targets = extern_data["classes"]
        logits = model(extern_data["data"], spatial_dim=time_dim)
        loss = returnn_ls.label_smoothed_cross_entropy(
            logits=returnn_ls.from_returnn(logits),
            targets=returnn_ls.from_returnn(targets),
            axis=returnn_ls.from_returnn(out_dim),
            smoothing=0.1,
        )
        returnn_ls.to_returnn(loss).mark_as_loss("ce")

Both directions share the raw tensor (the same ``torch.Tensor``/``tf.Tensor`` object, so no copy, and the
framework's autograd connects the two). Dims are paired by identity: one RETURNN Dim always gives the same Dim
of ours and back, so ``from_returnn(to_returnn(d)) is d`` and ``to_returnn(from_returnn(rd)) is rd``.
RETURNN's global ``batch_dim`` is paired with :data:`returnn_ls.batch_dim`; :func:`from_returnn` gives ours
RETURNN's current batch size (none where RETURNN has none), :func:`to_returnn` changes neither.

Sizes of dynamic dims are copied on every conversion, from the side the pair was made from to the other:
RETURNN's engine keeps one Dim object per ``extern_data`` dim and gives it new ``dyn_size_ext`` sizes for
every batch, so a cached copy would be stale after the first batch. The sizes tensor itself is shared, not
copied.

Why this is hand-written: RETURNN has no hook to hand its tensors to another named-dim library, and ours must
not import RETURNN (``import returnn_ls`` imports no framework; RETURNN is imported here, inside the functions).
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from typing import Any

from frontend_backends import backend_name_of
from returnn_ls.dim import Dim, batch_dim
from returnn_ls.tensor import Tensor, convert_to_tensor

__all__ = ["from_returnn", "to_returnn"]

_ACCEPTED = "a RETURNN Tensor or Dim (from returnn.tensor)"


@dataclass
class _Pair:
    """A RETURNN Dim (held weakly) and ours (held strongly, so it lives as long as RETURNN's does)."""

    returnn_ref: weakref.ref
    ours: Dim
    returnn_is_origin: bool  # which side the pair was made from; sizes flow from there


class _DimPairs:
    """The pairs, found by the identity of either dim.

    Our :class:`Dim` has no weak-reference slot, so both tables are keyed by ``id`` and emptied by a callback
    when the RETURNN Dim dies. Our Dim is held by its pair until then, so its ``id`` cannot be reused while its
    entry exists. Nothing here keeps a RETURNN Dim alive.
    """

    def __init__(self) -> None:
        self._by_returnn: dict[int, _Pair] = {}
        self._by_ours: dict[int, _Pair] = {}

    def find_by_returnn(self, returnn_dim: Any) -> _Pair | None:
        pair = self._by_returnn.get(id(returnn_dim))
        return pair if pair is not None and pair.returnn_ref() is returnn_dim else None

    def find_by_ours(self, dim: Dim) -> _Pair | None:
        pair = self._by_ours.get(id(dim))
        return pair if pair is not None and pair.ours is dim and pair.returnn_ref() is not None else None

    def add(self, returnn_dim: Any, dim: Dim, *, returnn_is_origin: bool) -> _Pair:
        key_returnn, key_ours = id(returnn_dim), id(dim)
        tables = self  # the callback must not hold the RETURNN Dim

        def forget(ref: weakref.ref) -> None:
            if tables._by_returnn.get(key_returnn) is not None and tables._by_returnn[key_returnn].returnn_ref is ref:
                pair = tables._by_returnn.pop(key_returnn)
                if tables._by_ours.get(key_ours) is pair:
                    del tables._by_ours[key_ours]

        pair = _Pair(weakref.ref(returnn_dim, forget), dim, returnn_is_origin)
        self._by_returnn[key_returnn] = pair
        self._by_ours[key_ours] = pair
        return pair


_PAIRS = _DimPairs()


def _returnn_tensor_module() -> Any:
    """:return: ``returnn.tensor`` if RETURNN is imported (a RETURNN object exists only then), else None"""
    return sys.modules.get("returnn.tensor")


def _import_returnn_tensor() -> Any:
    try:
        import returnn.tensor
    except ImportError as exc:
        raise ImportError(f"to_returnn needs RETURNN (pip install returnn): {exc}") from exc
    return returnn.tensor


def from_returnn(x: Any) -> Tensor | Dim:
    """Convert a RETURNN ``Tensor`` or ``Dim`` (``returnn.tensor``) into ours, sharing the raw tensor.

    A Tensor keeps its raw tensor (the same object: no copy, gradients flow through), dtype, ``feature_dim`` and
    ``sparse_dim``; its dims are converted as Dims are. A Dim is paired with one Dim of ours for as long as it
    lives (static: the same size; dynamic: its current ``dyn_size_ext`` sizes, re-read on every call, converted
    like a Tensor). RETURNN's ``batch_dim`` gives :data:`returnn_ls.batch_dim`.

    Example, in the ``train_step`` of an rf-style config that RETURNN runs::

        ce = returnn_ls.label_smoothed_cross_entropy(
            logits=returnn_ls.from_returnn(logits), targets=returnn_ls.from_returnn(targets),
            axis=returnn_ls.from_returnn(out_dim), smoothing=0.1)

    :param x: a RETURNN Tensor holding a ``torch.Tensor`` or ``tf.Tensor``, or a RETURNN Dim
    :return: our Tensor or Dim
    """
    module = _returnn_tensor_module()
    if module is not None and isinstance(x, module.Dim):
        return _dim_from_returnn(x, module)
    if module is not None and isinstance(x, module.Tensor):
        return _tensor_from_returnn(x, module, f"RETURNN Tensor {x.name!r}")
    hint = "; to convert ours to RETURNN's use returnn_ls.to_returnn" if isinstance(x, (Tensor, Dim)) else ""
    raise TypeError(f"from_returnn: x must be {_ACCEPTED}, got {type(x).__module__}.{type(x).__qualname__}{hint}")


def to_returnn(x: Tensor | Dim, *, name: str = "returnn_ls") -> Any:
    """Convert our :class:`~returnn_ls.Tensor` or :class:`~returnn_ls.Dim` into RETURNN's (``returnn.tensor``).

    The inverse of :func:`from_returnn`: the RETURNN Tensor holds the same raw tensor, with our dtype,
    ``feature_dim`` and ``sparse_dim``; a Dim that came from RETURNN gives that RETURNN Dim back, any other Dim a
    RETURNN Dim paired with it (with its sizes, shared). RETURNN takes TensorFlow tensors only in graph mode (as
    in RETURNN's TensorFlow code); an eager TensorFlow tensor gets a ValueError, because RETURNN would switch the
    whole process to graph mode.

    Example, in the ``train_step`` of an rf-style config that RETURNN runs::

        returnn_ls.to_returnn(ce).mark_as_loss("ce")

    :param x: our Tensor or Dim
    :param name: the name of the RETURNN Tensor (shown in RETURNN's messages)
    :return: a ``returnn.tensor.Tensor`` or ``returnn.tensor.Dim``
    """
    if not isinstance(name, str):
        raise TypeError(f"to_returnn: name must be a str, got {type(name).__name__}")
    if isinstance(x, Dim):
        return _dim_to_returnn(x, _import_returnn_tensor())
    if isinstance(x, Tensor):
        return _tensor_to_returnn(x, _import_returnn_tensor(), name)
    module = _returnn_tensor_module()
    is_returnn = module is not None and isinstance(x, (module.Tensor, module.Dim))
    hint = "; to convert RETURNN's to ours use returnn_ls.from_returnn" if is_returnn else ""
    raise TypeError(
        f"to_returnn: x must be a returnn_ls Tensor or Dim, got {type(x).__module__}.{type(x).__qualname__}{hint}"
    )


# -- RETURNN -> ours


def _dim_from_returnn(returnn_dim: Any, module: Any) -> Dim:
    if returnn_dim is module.batch_dim:
        _copy_sizes_to_ours(returnn_dim, batch_dim, module)
        return batch_dim
    pair = _PAIRS.find_by_returnn(returnn_dim)
    if pair is None:
        dim = Dim(returnn_dim.dimension, name=returnn_dim.name)
        pair = _PAIRS.add(returnn_dim, dim, returnn_is_origin=True)
    _refresh(pair, returnn_dim, module)
    return pair.ours


def _copy_sizes_to_ours(returnn_dim: Any, dim: Dim, module: Any) -> None:
    """Give ``dim`` the current sizes of ``returnn_dim`` (None where RETURNN has none yet)."""
    sizes = returnn_dim.dyn_size_ext if returnn_dim.dimension is None else None
    if sizes is None or sizes.raw_tensor is None:
        dim.dyn_size_ext = None
    elif dim.dyn_size_ext is None or dim.dyn_size_ext.raw_tensor is not sizes.raw_tensor:
        converted = _tensor_from_returnn(sizes, module, f"the sizes of RETURNN Dim {returnn_dim.name!r}")
        if not converted.dtype.startswith("int"):
            raise TypeError(
                f"from_returnn: the sizes of RETURNN Dim {returnn_dim.name!r} must be integers, got {converted.dtype}"
            )
        dim.dyn_size_ext = converted


def _tensor_from_returnn(x: Any, module: Any, what: str) -> Tensor:
    raw = x.raw_tensor
    if raw is None:
        raise ValueError(f"from_returnn: {what} has no raw tensor (it is a template); convert it once it holds data")
    if backend_name_of(raw) is None:
        raw_type = f"{type(raw).__module__}.{type(raw).__qualname__}"
        raise TypeError(
            f"from_returnn: the raw tensor of {what} is a {raw_type}; returnn_ls shares only torch.Tensor and "
            "tf.Tensor raw tensors (in a RETURNN config: backend = 'torch' or 'tensorflow'; 'tensorflow-net-dict' "
            "builds layers, not tensors)"
        )
    if len(set(map(id, x.dims))) != len(x.dims):
        raise ValueError(
            f"from_returnn: {what} has a dim more than once: {list(x.dims)}; returnn_ls needs distinct dims"
        )
    dims = [_dim_from_returnn(d, module) for d in x.dims]
    sparse_dim = _dim_from_returnn(x.sparse_dim, module) if x.sparse_dim is not None else None
    feature_dim = x.feature_dim if sparse_dim is None else None
    feature_dim = _dim_from_returnn(feature_dim, module) if feature_dim is not None else None
    return convert_to_tensor(raw, dims=dims, sparse_dim=sparse_dim, feature_dim=feature_dim)


# -- ours -> RETURNN


def _dim_to_returnn(dim: Dim, module: Any) -> Any:
    if dim is batch_dim:  # its sizes are RETURNN's engine's to set: neither side is changed here
        return module.batch_dim
    pair = _PAIRS.find_by_ours(dim)
    if pair is None:
        returnn_dim = module.Dim(dim.dimension, name=dim.name or "returnn_ls")
        pair = _PAIRS.add(returnn_dim, dim, returnn_is_origin=False)
    returnn_dim = pair.returnn_ref()
    _refresh(pair, returnn_dim, module)
    return returnn_dim


def _copy_sizes_to_returnn(dim: Dim, returnn_dim: Any, module: Any) -> None:
    """Give ``returnn_dim`` the current sizes of ``dim``, resetting RETURNN's caches of the old ones."""
    if dim.dimension is not None:
        return
    sizes, current = dim.dyn_size_ext, returnn_dim.dyn_size_ext
    if sizes is None and current is None:
        return
    if sizes is not None and current is not None and current.raw_tensor is sizes.raw_tensor:
        return
    converted = None if sizes is None else _tensor_to_returnn(sizes, module, f"{dim.name}:size")
    returnn_dim.reset_raw(only_self=True)  # RETURNN caches the max size and masks per Dim
    returnn_dim.dyn_size_ext = converted


def _refresh(pair: _Pair, returnn_dim: Any, module: Any) -> None:
    if pair.returnn_is_origin:
        _copy_sizes_to_ours(returnn_dim, pair.ours, module)
    else:
        _copy_sizes_to_returnn(pair.ours, returnn_dim, module)


def _check_graph_mode(x: Tensor) -> None:
    """RETURNN switches TensorFlow to graph mode when it first sees a TensorFlow tensor: refuse eager tensors."""
    if x.backend.has_graph_mode and not x.backend.in_graph_mode():
        raise ValueError(
            "to_returnn: RETURNN takes TensorFlow tensors only in graph mode (its TensorFlow code calls "
            "tf.compat.v1.disable_eager_execution() when it first sees one, which would switch this whole "
            f"program to graph mode); this {x.backend.name} program runs eagerly. Use RETURNN's torch backend, or "
            "convert inside a graph-mode RETURNN setup"
        )


def _tensor_to_returnn(x: Tensor, module: Any, name: str) -> Any:
    _check_graph_mode(x)
    dims = [_dim_to_returnn(d, module) for d in x.dims]
    sparse_dim = _dim_to_returnn(x.sparse_dim, module) if x.sparse_dim is not None else None
    feature_dim = None
    if sparse_dim is None and x.feature_dim is not None and x.feature_dim in x.dims:
        feature_dim = _dim_to_returnn(x.feature_dim, module)
    return module.Tensor(
        name, dims=dims, dtype=x.dtype, sparse_dim=sparse_dim, feature_dim=feature_dim, raw_tensor=x.raw_tensor
    )
