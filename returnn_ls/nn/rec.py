"""``LSTM`` and ``LstmState`` (as ``returnn.frontend.LSTM``, same parameters), on the framework's fused kernel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.nn import _utils, init
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.nn.state import State
from returnn_ls.ops import align, cast, common_backend
from returnn_ls.tensor import Tensor

__all__ = ["LSTM", "LstmState"]


class LstmState(State):
    """The state of an :class:`LSTM`: ``h`` (the output) and ``c`` (the cell), each over ``batch dims + [out_dim]``.

    Example: ``state = rf.LstmState(h=h, c=c)``
    """

    def __init__(self, *args: Any, h: Tensor | None = None, c: Tensor | None = None):
        if args:
            super().__init__(*args)
        else:
            super().__init__(h=h, c=c)


class LSTM(Module):
    """One LSTM layer over a spatial (time) dim, on the framework's fused kernel (PyTorch's ``torch.nn.LSTM``
    kernel, TensorFlow's ``BlockLSTMV2``; see ``frontend_backends.base.Backend.lstm`` for the formula).

    Parameters (RETURNN's names and layout, also PyTorch's): ``ff_weight`` ``[4*out_dim, in_dim]``,
    ``rec_weight`` ``[4*out_dim, out_dim]`` (Glorot uniform), ``bias`` ``[4*out_dim]`` (zeros); the four gate
    blocks in the order input, forget, cell input, output (``i, f, g, o``). One bias (PyTorch's ``b_ih + b_hh``).

    Each sequence is processed over its own length only (padding frames never influence the state; the output
    there is 0); with ``reverse=True`` from its last frame back to its first (RETURNN's ``direction: -1``).

    :param in_dim: input features
    :param out_dim: the number of units
    :param with_bias: whether there is a bias
    :param reverse: process each sequence backwards (not in RETURNN's ``rf.LSTM``; its ``rec`` layer's
        ``direction: -1``)

    Example::

        lstm = rf.LSTM(in_dim, Dim(10, name="lstm"))
        y, state = lstm(x, state=lstm.default_initial_state(batch_dims=[batch_dim]), spatial_dim=time_dim)
        y, _ = lstm(x, spatial_dim=time_dim)  # state=None: zeros
    """

    def __init__(self, in_dim: Dim, out_dim: Dim, *, with_bias: bool = True, reverse: bool = False):
        self.in_dim = _utils.check_static_dim(in_dim, "in_dim", "LSTM")
        self.out_dim = _utils.check_static_dim(out_dim, "out_dim", "LSTM")
        gates_dim = Dim(4 * out_dim.dimension, name=f"4*{out_dim.name}" if out_dim.name else None)
        self.ff_weight = Parameter([gates_dim, in_dim], initial=init.Glorot())
        self.rec_weight = Parameter([gates_dim, out_dim], initial=init.Glorot())
        self.bias = Parameter([gates_dim], initial=0.0) if with_bias else None
        if not isinstance(reverse, bool):
            raise TypeError(f"LSTM: reverse must be a bool, got {type(reverse).__name__}")
        self.reverse = reverse

    def __call__(self, source: Tensor, *, state: LstmState | None = None, spatial_dim: Dim) -> tuple[Tensor, LstmState]:
        """:return: the output over the dims of ``source`` with ``out_dim`` instead of ``in_dim``, and the state
        after each sequence's last processed frame (``state`` for empty sequences)

        :param source: float Tensor with ``in_dim`` and ``spatial_dim``; all other dims are batch dims
        :param state: the initial state (``h``, ``c`` over batch dims and ``out_dim``; missing batch dims
            broadcast); None: zeros
        :param spatial_dim: the dim to run over; its sizes (``dyn_size_ext``) give each sequence's length
        """
        func = "LSTM"
        _utils.check_input(source, func, ("in_dim", self.in_dim), ("spatial_dim", spatial_dim))
        if spatial_dim is self.in_dim:
            raise ValueError(f"{func}: spatial_dim must differ from in_dim {self.in_dim}")
        backend = common_backend(source, self.ff_weight)
        batch = tuple(d for d in source.dims if d not in (spatial_dim, self.in_dim))
        lengths = _utils.lengths_over(spatial_dim, batch, func, "spatial_dim")
        h0, c0 = self._initial(state, batch, source)
        bias = _utils.raw_param(self.bias, source) if self.bias is not None else None
        out, h, c = backend.lstm(
            align(source, batch + (spatial_dim, self.in_dim)),
            align(lengths, batch) if lengths is not None else None, h0, c0,
            _utils.raw_param(self.ff_weight, source), _utils.raw_param(self.rec_weight, source), bias, self.reverse,
        )  # fmt: skip
        state_dims = batch + (self.out_dim,)
        new_state = LstmState(
            h=Tensor(h, state_dims, feature_dim=self.out_dim, backend=backend),
            c=Tensor(c, state_dims, feature_dim=self.out_dim, backend=backend),
        )
        return Tensor(out, batch + (spatial_dim, self.out_dim), feature_dim=self.out_dim, backend=backend), new_state

    def _initial(self, state: Any, batch: tuple[Dim, ...], source: Tensor) -> tuple[Any, Any]:
        """:return: raw ``h0``, ``c0`` aligned to ``batch + [out_dim]`` (size 1 where a batch dim is missing)"""
        if state is None:
            return None, None
        if not isinstance(state, State) or not {"h", "c"} <= set(state):
            raise TypeError(f"LSTM: state must be an rf.LstmState(h=..., c=...) or None, got {type(state).__name__}")
        raws = []
        for name in ("h", "c"):
            value = state[name]
            if not isinstance(value, Tensor):
                raise TypeError(f"LSTM: state.{name} must be a returnn_ls.Tensor, got {type(value).__name__}")
            if self.out_dim not in value.dims or any(d not in batch + (self.out_dim,) for d in value.dims):
                raise ValueError(
                    f"LSTM: state.{name} {value} must have out_dim {self.out_dim} and otherwise only batch dims of "
                    f"the source {list(batch)}"
                )
            value = value if value.dtype == source.dtype else cast(value, source.dtype)
            raws.append(align(value, batch + (self.out_dim,)))
        return raws[0], raws[1]

    def default_initial_state(self, *, batch_dims: Sequence[Dim]) -> LstmState:
        """:return: zeros for ``h`` and ``c`` over ``batch_dims + [out_dim]``"""
        dims = tuple(batch_dims) + (self.out_dim,)
        backend = self.ff_weight.backend
        dtype = self.ff_weight.dtype
        return LstmState(
            h=_utils.zeros(dims, dtype, backend, feature_dim=self.out_dim, like=self.ff_weight.raw_tensor),
            c=_utils.zeros(dims, dtype, backend, feature_dim=self.out_dim, like=self.ff_weight.raw_tensor),
        )

    def __repr__(self) -> str:
        return f"<LSTM {self.in_dim} -> {self.out_dim}{', reverse' if self.reverse else ''}>"
