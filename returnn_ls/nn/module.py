"""``Module`` and ``Functional``: model code in RETURNN's frontend style (the lists are in :mod:`.container`).

A module holds parameters (:class:`~returnn_ls.nn.Parameter`) and sub-modules as attributes; ``__call__`` computes
its output. Parameters and sub-modules are found by walking the attributes, so no registration is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from returnn_ls.nn.parameter import Parameter

__all__ = ["Functional", "Module"]


class Module:
    """Base class of model code (``class Model(rf.Module)``): attributes that are modules or parameters make up
    the model; ``__call__`` is the forward computation.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _attributes(self) -> Iterable[tuple[str, Any]]:
        """:return: the attributes that may hold parameters and sub-modules; a parametrized parameter (see
        :mod:`returnn_ls.nn.parametrize`) under its name, as the original :class:`Parameter`"""
        items = [(k, v) for k, v in vars(self).items() if k != "_parametrizations"]
        for name, (orig, _, before) in (vars(self).get("_parametrizations") or {}).items():  # at their old place
            names = [k for k, _ in items]
            items.insert(names.index(before) if before in names else len(items), (name, orig))
        return items

    def __getattr__(self, name: str) -> Any:
        # Called only for names not found otherwise: a parametrized parameter gives its parametrization's result.
        parametrized = vars(self).get("_parametrizations")
        if parametrized is not None and name in parametrized:
            orig, parametrization, _ = parametrized[name]
            return parametrization(orig)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        parametrized = vars(self).get("_parametrizations")
        if parametrized is not None and name in parametrized:  # replaces the original parameter
            if not isinstance(value, Parameter):
                raise TypeError(f"{type(self).__name__}.{name} is parametrized: it takes an rf.Parameter, got "
                                f"{type(value).__name__} (remove_parametrization first)")  # fmt: skip
            parametrized[name] = (value, *parametrized[name][1:])
            return
        object.__setattr__(self, name, value)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """:return: the direct sub-modules with their attribute names"""
        for name, value in self._attributes():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        """:return: the direct sub-modules"""
        return (module for _, module in self.named_children())

    def named_modules(self, *, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """:return: this module (named ``prefix``) and all modules below it, each once, with dotted names"""
        seen: set[int] = set()
        queue = [(prefix, self)]
        while queue:
            name, module = queue.pop(0)
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            queue.extend((f"{name}.{child}" if name else child, sub) for child, sub in module.named_children())

    def modules(self) -> Iterator[Module]:
        """:return: this module and all modules below it"""
        return (module for _, module in self.named_modules())

    def named_parameters(self, *, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """:return: the parameters with dotted names (``"layers.0.weight"``), each parameter once"""
        seen: set[int] = set()
        modules = self.named_modules() if recurse else iter([("", self)])
        for prefix, module in modules:
            for name, value in module._attributes():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{prefix}.{name}" if prefix else name), value

    def parameters(self, *, recurse: bool = True) -> Iterator[Parameter]:
        """:return: the parameters, each once"""
        return (param for _, param in self.named_parameters(recurse=recurse))

    def to_device(self, device: str) -> Module:
        """Move every parameter to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) in place, keeping the parameter
        objects (do it before an optimizer is built over them); :return: self.

        Parameters are created on the framework's default device, so ``with torch.device("cuda"): model = Model()``
        builds a model on the GPU directly. On TensorFlow a variable stays where it was created: build the model
        inside ``with tf.device(...)``; this raises a ValueError there.
        """
        for param in self.parameters():
            param.backend.move_parameter(param.raw_tensor, device)
        return self

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every module (children first); :return: self"""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self


class Functional(Module):
    """A module without parameters around a function, e.g. ``Functional(rf.relu)`` inside a :class:`Sequential`."""

    def __init__(self, func: Callable[..., Any]):
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Functional {getattr(self.func, '__name__', self.func)!r}>"
