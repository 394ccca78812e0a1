"""``TensorDict``: named tensors, e.g. the ``extern_data`` a ``train_step`` gets (as ``returnn.tensor.TensorDict``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from returnn_ls.tensor import Tensor

__all__ = ["TensorDict"]


class TensorDict:
    """A dict of :class:`Tensor` by name: ``extern_data["data"]``.

    :param data: the initial entries
    """

    def __init__(self, data: Mapping[str, Tensor] | None = None):
        self.data: dict[str, Tensor] = dict(data or {})

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.data[name]
        except KeyError:
            raise KeyError(f"TensorDict has no entry {name!r}; it has {sorted(self.data)}") from None

    def __setitem__(self, name: str, value: Tensor) -> None:
        self.data[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self):  # noqa: D102
        return self.data.keys()

    def values(self):  # noqa: D102
        return self.data.values()

    def items(self):  # noqa: D102
        return self.data.items()

    def __repr__(self) -> str:
        return f"TensorDict({self.data!r})"
