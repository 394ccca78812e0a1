"""The benchmark protocol of the backends: a framework's side of ``returnn-ls bench``, over raw tensors only.

``returnn-ls bench`` (in ``returnn_ls.bench``) asks a backend's :class:`BenchKit` (its package's ``Bench``, found
with :func:`frontend_backends.bench_kit`) for everything that differs between frameworks: the execution modes, how
its allocator counts towards the peak memory, the layout of the projection weight, the raw inputs, the
framework's own reference losses, and one timed forward and backward step. The cases of our own losses are
framework-neutral and live in the benchmark; a kit only ever sees raw tensors and functions of them.

A *loss function* here is ``loss_fn(*params) -> per-frame loss`` over the raw parameters (the logits
``[F, K]``, or hidden ``[F, H]``, weight and bias of the projection cases), closing over the raw targets.

Devices and dtypes (``--device``, ``--dtype``): a kit names the devices it can time on (:meth:`BenchKit.devices`,
and why one is not usable here: :meth:`BenchKit.device_unavailable`) and the input dtypes (:attr:`BenchKit.dtypes`);
the inputs are drawn as float32 numpy arrays and :meth:`BenchKit.params` casts and places them. Where a device has
its own timers and memory counters, :meth:`BenchKit.measure` runs the warm-up and the timed steps there; else the
benchmark times with ``perf_counter`` and measures the peak resident set size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["DTYPES", "BenchKit", "LossFn", "Step"]

#: ``loss_fn(*params) -> per-frame loss`` (a raw tensor ``[F]``).
LossFn = Callable[..., Any]
#: A zero-argument function running one forward and backward pass; it may have a ``release()`` attribute that
#: frees the gradients it keeps between steps (called before the memory baseline is taken).
Step = Callable[[], Any]
#: The input dtypes a kit may support, by their numpy-style names (``--dtype``).
DTYPES = ("float32", "bfloat16", "float16")


class BenchKit(ABC):
    """A framework's side of ``returnn-ls bench``: the class attributes describe the framework, the methods build
    raw inputs, the framework's own reference losses, and the timed step."""

    #: ``--mode`` (``"eager"``, ``"compiled"``) -> this framework's execution modes under it, in the order they
    #: run and are plotted (e.g. ``{"eager": ("eager",), "compiled": ("function", "xla")}``).
    modes: dict[str, tuple[str, ...]] = {"eager": ("eager",), "compiled": ()}
    #: Whether the framework's allocator keeps the buffers of one step for the next (after a warm-up its steps
    #: would look free): then the memory baseline is taken before the warm-up.
    keeps_buffers: bool = False
    #: The projection weight's layout: ``[H, K]`` (Keras's ``Dense``) when True, ``[K, H]`` (``nn.Linear``) when
    #: False. Its values are drawn in that shape.
    weight_hidden_first: bool = False
    #: The cases :meth:`reference_loss` builds (the framework's own losses; RETURNN's where it has one).
    reference_cases: tuple[str, ...] = ("plain_ce", "framework_ls", "linear_framework_ls")
    #: The dtypes (of :data:`DTYPES`) the inputs can have on this framework.
    dtypes: tuple[str, ...] = ("float32",)

    def execution_modes(self, mode: str) -> tuple[str, ...]:
        """:param mode: ``"eager"``, ``"compiled"`` or ``"all"`` (both, eager first)
        :return: this framework's execution modes for ``--mode`` ``mode``
        """
        return self.modes["eager"] + self.modes["compiled"] if mode == "all" else self.modes[mode]

    def unavailable(self, case: str, device: str = "cpu") -> str | None:
        """:param case: a case name of the benchmark
        :param device: the device the case would run on (``--device``)
        :return: why ``case`` does not exist on this framework or device (an expected skip), or None if it runs
        """
        return None

    def devices(self) -> tuple[str, ...]:
        """:return: the devices (``"cpu"``, ``"cuda"``) this kit can time on, on this machine"""
        return ("cpu",)

    def device_unavailable(self, device: str) -> str | None:
        """:param device: a value of ``--device``
        :return: why this kit cannot time on ``device`` here (a usage error), or None if it can
        """
        if device in self.devices():
            return None
        return f"this kit times on {', '.join(self.devices())} only"

    def measure(self, step: Step, repeats: int, device: str) -> dict[str, Any] | None:
        """Time ``step`` on ``device`` with the device's own timers and memory counters, if it has them.

        :param step: from :meth:`step`; its first call here is the warm-up
        :param repeats: the number of timed steps after the warm-up
        :param device: the device of the inputs
        :return: ``{"times": [seconds per step], "peak_mb": MB above the memory held after the warm-up}``, or None
            (without running anything) to let the benchmark time with ``perf_counter`` and measure the peak RSS
        """
        return None

    @abstractmethod
    def set_threads(self, threads: int) -> None:
        """Limit the framework's intra-op (and inter-op) threads.

        :param threads: the number of threads
        """

    @abstractmethod
    def params(self, arrays: Sequence[np.ndarray], dtype: str = "float32", device: str = "cpu") -> list[Any]:
        """:param arrays: float32 numpy arrays (possibly read-only)
        :param dtype: one of :attr:`dtypes`: the arrays are cast to it
        :param device: one of :meth:`devices`
        :return: differentiable raw tensors of ``arrays`` (the parameters of a step) on ``device``, in that order
        """

    @abstractmethod
    def targets(self, labels: np.ndarray, device: str = "cpu") -> Any:
        """:param labels: integer numpy array ``[F]``
        :param device: one of :meth:`devices`
        :return: the raw integer tensor of ``labels`` on ``device``
        """

    @abstractmethod
    def reference_loss(self, case: str, targets: Any, frames: int, vocab: int, a: float) -> LossFn:
        """:param case: one of :attr:`reference_cases`
        :param targets: the raw targets ``[F]`` (from :meth:`targets`)
        :param frames: ``F``
        :param vocab: ``K``
        :param a: label smoothing
        :return: the loss function of ``case`` (see the module docstring): of the logits for the logit cases, of
            hidden, weight (laid out as :attr:`weight_hidden_first` says) and bias for ``linear_framework_ls``
        """

    @abstractmethod
    def step(self, loss_fn: LossFn, params: Sequence[Any], mode: str) -> Step:
        """:param loss_fn: the per-frame loss of ``params``
        :param params: the raw parameters (from :meth:`params`); the step differentiates w.r.t. all of them
        :param mode: one of this framework's execution modes (:attr:`modes`)
        :return: a zero-argument function that computes the summed loss and its gradients once and waits for them;
            its first call (the warm-up) traces and compiles in the compiled modes
        """
