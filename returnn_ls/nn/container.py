"""``ModuleList``, ``Sequential`` and ``ParameterList`` (as ``returnn.frontend``): named lists of modules and
parameters. Built from a dict, the entries are named by its keys (``"0"``, ``"1"``, ... otherwise), so parameter names
and checkpoints are RETURNN's."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from returnn_ls.nn.module import Functional, Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.tensor import Tensor

__all__ = ["ModuleList", "ParameterList", "Sequential", "sequential"]


def _as_module(obj: Any) -> Module:
    if isinstance(obj, Module):
        return obj
    if callable(obj):
        return Functional(obj)
    raise TypeError(f"expected an rf.Module or a function, got {type(obj).__name__}")


def _as_parameter(obj: Any) -> Parameter:
    if isinstance(obj, Parameter):
        return obj
    raise TypeError(f"ParameterList: expected an rf.Parameter, got {type(obj).__name__}")


def _is_int_str(key: str) -> bool:
    try:
        int(key)
    except ValueError:
        return False
    return True


def _entries(items: tuple[Any, ...]) -> list[tuple[str | None, Any]]:
    """:return: ``(key, value)`` of the constructor arguments: a single dict or list of the same class gives its
    keys (keys that are numbers become the position, as RETURNN), anything else None (named by position)"""
    if len(items) == 1 and isinstance(items[0], dict):
        return [(str(i) if _is_int_str(str(k)) else str(k), v) for i, (k, v) in enumerate(items[0].items())]
    if len(items) == 1 and isinstance(items[0], (ModuleList, ParameterList)):
        return list(items[0].items())
    entries: list[tuple[str | None, Any]] = []
    for item in items:
        if _iterable(item):
            entries.extend((None, v) for v in (item.values() if isinstance(item, dict) else item))
        else:
            entries.append((None, item))
    return entries


def _iterable(obj: Any) -> bool:
    return isinstance(obj, (list, tuple, dict, ModuleList, ParameterList)) or (
        not isinstance(obj, (Module, Tensor)) and not callable(obj) and isinstance(obj, Iterable)
    )


class _NamedList(Module):
    """The entries of a list in a dict ``key -> value``; its entries come first in ``named_parameters()``."""

    _convert = staticmethod(_as_module)

    def __init__(self, *items: Any):
        self._entries: dict[str, Any] = {}
        for key, value in _entries(items):
            self._entries[key if key is not None else str(len(self._entries))] = self._convert(value)

    def _attributes(self) -> Iterable[tuple[str, Any]]:
        return list(self._entries.items()) + [(k, v) for k, v in super()._attributes() if k != "_entries"]

    def items(self) -> Iterable[tuple[str, Any]]:
        """:return: ``(name, entry)`` pairs in order"""
        return self._entries.items()

    def append(self, value: Any) -> _NamedList:
        """Add one entry, named by its position; :return: self"""
        self._entries[str(len(self._entries))] = self._convert(value)
        return self

    def extend(self, values: Iterable[Any]) -> _NamedList:
        """Add several entries; :return: self"""
        for value in values:
            self.append(value)
        return self

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries.values())

    def __getitem__(self, index: int | str | slice) -> Any:
        if isinstance(index, slice):
            return type(self)(dict(list(self._entries.items())[index]))
        if isinstance(index, str):
            return self._entries[index]
        return list(self._entries.values())[index]

    def __setitem__(self, index: int | str | slice, value: Any) -> None:
        """Replace one entry, or with a slice the entries it selects by those of the iterable ``value`` (as a
        list's slice assignment; entries named by a number are renamed to their new position, as RETURNN)."""
        if isinstance(index, slice):
            items: list[tuple[str | None, Any]] = list(self._entries.items())
            items[index] = [(None, self._convert(v)) for v in value]
            self._renumber(items)
            return
        if not isinstance(index, (int, str)):
            raise TypeError(f"{type(self).__name__}: index must be an int, a str or a slice, got {index!r}")
        key = index if isinstance(index, str) else list(self._entries)[index]
        self._entries[key] = self._convert(value)

    def __delitem__(self, index: int | slice) -> None:
        """Remove entries; those named by a number are renamed to their new position (as RETURNN)."""
        items: list[tuple[str | None, Any]] = list(self._entries.items())
        del items[index]
        self._renumber(items)

    def _renumber(self, items: list[tuple[str | None, Any]]) -> None:
        self._entries = {str(i) if k is None or _is_int_str(k) else k: v for i, (k, v) in enumerate(items)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {list(self._entries)}>"


class ModuleList(_NamedList):
    """A list of modules: ``ModuleList(a, b)``, ``ModuleList([a, b])`` (named ``"0"``, ``"1"``) or
    ``ModuleList({"enc": a, "dec": b})`` (named by the keys); ``items()``, indexing by position or name, slicing,
    ``append``, ``extend``, ``del``. A function is wrapped in :class:`~returnn_ls.nn.module.Functional`.

    Example: ``self.layers = rf.ModuleList([rf.Linear(d, d) for _ in range(3)])  # layers.0.weight, ...``
    """


class Sequential(ModuleList):
    """Modules called one after the other: ``Sequential(rf.Linear(a, b), rf.relu, rf.Linear(b, c))(x)``; from a
    dict its parameters are named by the keys (``Sequential({"proj": rf.Linear(a, b)})``: ``proj.weight``)."""

    def __call__(self, x: Any, *, collected_outputs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """:return: the last module's output; ``collected_outputs`` gets each module's output by name"""
        for name, module in self._entries.items():
            x = module(x, **kwargs)
            if collected_outputs is not None:
                collected_outputs[name] = x
        return x


class ParameterList(_NamedList):
    """A list of parameters, named as :class:`ModuleList` names modules (``"0"``, ``"1"``, ... or a dict's keys).

    Example: ``self.scales = rf.ParameterList([rf.Parameter([dim]) for _ in range(3)])  # scales.0, ...``
    """

    _convert = staticmethod(_as_parameter)


def sequential(source: Any, *modules: Any) -> Any:
    """:return: ``Sequential(*modules)(source)`` (modules or plain functions, applied in order)"""
    return Sequential(*modules)(source)
