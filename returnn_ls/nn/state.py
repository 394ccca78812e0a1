"""``State``: the state of a recurrent module (as ``returnn.frontend.State``)."""

from __future__ import annotations

from typing import Any

__all__ = ["State"]


class State(dict):
    """A dict whose entries are also attributes: ``state.h`` is ``state["h"]``.

    Subclasses such as :class:`~returnn_ls.nn.rec.LstmState` name their entries. ``State(h=h, c=c)``,
    ``State({"h": h})`` and ``State([("h", h)])`` all work, so ``type(state)(state.items())`` copies a state.

    Example::

        state = rf.State(h=h, c=c)
        state.h = new_h
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if args and kwargs:
            raise TypeError(f"{type(self).__name__}: give the entries either as keywords or as one mapping")
        if len(args) > 1:
            raise TypeError(f"{type(self).__name__}: expected at most one positional argument, got {len(args)}")
        super().__init__(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no entry {name!r}; it has {sorted(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no entry {name!r}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.items())})"
