"""``LSTM``, ``LstmState`` and ``ZoneoutLSTM`` (as ``returnn.frontend``, same parameters); the LSTM on the
framework's fused kernel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls import _validate
from returnn_ls.array_funcs import expand_dim, squeeze
from returnn_ls.dim import Dim, single_step_dim
from returnn_ls.nn import _utils, init
from returnn_ls.nn.module import Module
from returnn_ls.nn.parameter import Parameter
from returnn_ls.nn.state import State
from returnn_ls.ops import align, cast, common_backend
from returnn_ls.tensor import Tensor

__all__ = ["LSTM", "LstmState", "ZoneoutLSTM"]


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
        :param spatial_dim: the dim to run over; its sizes (``dyn_size_ext``) give each sequence's length.
            ``rf.single_step_dim`` (``source`` without a time dim): one step from ``state`` (step-wise decoding, as
            RETURNN); the output then has no time dim either
        """
        if _is_single_step(source, spatial_dim):
            return _single_step(LSTM.__call__, self, source, state)
        backend, batch, lengths, (h0, c0) = self._prepare(source, state, spatial_dim, "LSTM")
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

    def _prepare(self, source: Tensor, state: Any, spatial_dim: Dim, func: str) -> tuple[Any, tuple, Any, tuple]:
        """Check the input; :return: the backend, the batch dims, the sequence lengths (or None) and ``(h0, c0)``"""
        _utils.check_input(source, func, ("in_dim", self.in_dim), ("spatial_dim", spatial_dim))
        if spatial_dim is self.in_dim:
            raise ValueError(f"{func}: spatial_dim must differ from in_dim {self.in_dim}")
        backend = common_backend(source, self.ff_weight)
        batch = tuple(d for d in source.dims if d not in (spatial_dim, self.in_dim))
        lengths = _utils.lengths_over(spatial_dim, batch, func, "spatial_dim")
        return backend, batch, lengths, self._initial(state, batch, source)

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


class ZoneoutLSTM(LSTM):
    """An LSTM with zoneout (Krueger et al. 2016): while training, each unit of the cell (output) state keeps its
    previous value with probability ``zoneout_factor_cell`` (``_output``) per frame; in evaluation the new state is
    ``(1 - factor) * new + factor * previous``. Frame by frame (``Backend.zoneout_lstm``), not on the fused kernel.

    Parameters as :class:`LSTM` (RETURNN's names): ``ff_weight`` ``[4*out_dim, in_dim]``, ``rec_weight``
    ``[4*out_dim, out_dim]``, ``bias`` ``[4*out_dim]``; the gate blocks in the order ``parts_order``. As RETURNN,
    the masks vary along ``out_dim`` only and are shared over the batch dims while ``dropout_broadcast`` is True
    (RETURNN's default ``rf_dropout_broadcast``; set the attribute to False for masks over all dims).

    :param in_dim: input features
    :param out_dim: the number of units
    :param with_bias: whether there is a bias
    :param zoneout_factor_cell: the zoneout probability of the cell state (0: none; 0.15 is common)
    :param zoneout_factor_output: the zoneout probability of the output state (0: none; 0.05 is common)
    :param use_zoneout_output: True: the output is the zoned-out ``h`` (the paper's); False: the ``h`` before zoneout
        (older RETURNN)
    :param forget_bias: added to the forget gate (RETURNN's TF ``ZoneoutLSTM`` used 1.0)
    :param parts_order: the order of the gate blocks: ``i`` input gate, ``f`` forget gate, ``o`` output gate,
        ``c``/``g``/``j`` cell input; ``"ifco"`` (PyTorch's and :class:`LSTM`'s), ``"icfo"`` (RETURNN's TF
        ``ZoneoutLSTM``), ``"cifo"`` (RETURNN's ``NativeLstm2``)

    Example::

        lstm = rf.ZoneoutLSTM(in_dim, Dim(10, name="lstm"), zoneout_factor_cell=0.15, zoneout_factor_output=0.05)
        y, state = lstm(x, state=lstm.default_initial_state(batch_dims=[batch_dim]), spatial_dim=time_dim)
    """

    def __init__(self, in_dim: Dim, out_dim: Dim, *, with_bias: bool = True, zoneout_factor_cell: float = 0.0,
                 zoneout_factor_output: float = 0.0, use_zoneout_output: bool = True, forget_bias: float = 0.0,
                 parts_order: str = "ifco"):  # fmt: skip
        func = "ZoneoutLSTM"
        super().__init__(in_dim, out_dim, with_bias=with_bias)
        for name, factor in (("zoneout_factor_cell", zoneout_factor_cell), ("zoneout_factor_output",
                                                                            zoneout_factor_output)):
            if isinstance(factor, Tensor):
                raise TypeError(f"{func}: {name} must be a float in [0, 1), not a Tensor")
        self.zoneout_factor_cell = _validate.check_fraction(zoneout_factor_cell, "zoneout_factor_cell", func,
                                                            upper_open=True)  # fmt: skip
        self.zoneout_factor_output = _validate.check_fraction(zoneout_factor_output, "zoneout_factor_output", func,
                                                              upper_open=True)  # fmt: skip
        self.use_zoneout_output = bool(use_zoneout_output)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)):
            raise TypeError(f"{func}: forget_bias must be a float, got {type(forget_bias).__name__}")
        self.forget_bias = float(forget_bias)
        order = parts_order.replace("c", "j").replace("g", "j") if isinstance(parts_order, str) else None
        if order is None or len(order) != 4 or set(order) != set("ijfo"):
            raise ValueError(f"{func}: parts_order must be a permutation of 'ifco' ('c', 'g' or 'j': the cell input), "
                             f"got {parts_order!r}")  # fmt: skip
        self.parts_order = order
        self.dropout_broadcast = True

    def __call__(self, source: Tensor, *, state: LstmState | None = None, spatial_dim: Dim) -> tuple[Tensor, LstmState]:
        """:return: the output over the dims of ``source`` with ``out_dim`` instead of ``in_dim`` (0 at padding
        frames), and the state after each sequence's last frame; arguments as :meth:`LSTM.__call__`"""
        func = "ZoneoutLSTM"
        if _is_single_step(source, spatial_dim):
            return _single_step(ZoneoutLSTM.__call__, self, source, state)
        backend, batch, lengths, (h0, c0) = self._prepare(source, state, spatial_dim, func)
        ff_weight = backend.transpose(_utils.raw_param(self.ff_weight, source), [1, 0])  # [in, 4*out]
        bias = _utils.raw_param(self.bias, source) if self.bias is not None else None
        x = backend.linear(align(source, batch + (spatial_dim, self.in_dim)), ff_weight, bias)
        out, h, c = backend.zoneout_lstm(
            x, align(lengths, batch) if lengths is not None else None, h0, c0,
            _utils.raw_param(self.rec_weight, source), gate_order=self.parts_order, forget_bias=self.forget_bias,
            cell_keep=self._keep(self.zoneout_factor_cell, x, len(batch)),
            output_keep=self._keep(self.zoneout_factor_output, x, len(batch)), zoneout_output=self.use_zoneout_output,
        )  # fmt: skip
        state_dims = batch + (self.out_dim,)
        new_state = LstmState(h=Tensor(h, state_dims, feature_dim=self.out_dim, backend=backend),
                              c=Tensor(c, state_dims, feature_dim=self.out_dim, backend=backend))  # fmt: skip
        return Tensor(out, batch + (spatial_dim, self.out_dim), feature_dim=self.out_dim, backend=backend), new_state

    def _keep(self, factor: float, x: Any, num_batch: int) -> Any:
        """:return: the weight of the new state: ``1 - factor`` in evaluation, a 0/1 mask ``[*B or 1s, T, H]`` (1 with
        probability ``1 - factor``, new per frame) while training"""
        if factor == 0.0 or not _utils.train_flag(ZoneoutLSTM.__call__):
            return 1.0 - factor
        backend = common_backend(self.ff_weight)
        shape = [backend.axis_size(x, i) if not self.dropout_broadcast else 1 for i in range(num_batch)]
        shape += [backend.axis_size(x, num_batch), self.out_dim.dimension]
        ones = backend.full(shape, 1.0, backend.dtype(x), like=x)
        kept = backend.dropout(ones, factor, [], init.get_generator(backend))
        return backend.cast(backend.binary("gt", kept, 0.0), backend.dtype(x))

    def __repr__(self) -> str:
        return f"<ZoneoutLSTM {self.in_dim} -> {self.out_dim}>"


def _is_single_step(source: Any, spatial_dim: Any) -> bool:
    """:return: whether a call is one step (``spatial_dim`` is ``rf.single_step_dim`` and ``source`` lacks it)"""
    return spatial_dim is single_step_dim and isinstance(source, Tensor) and single_step_dim not in source.dims


def _single_step(call: Any, module: LSTM, source: Tensor, state: Any) -> tuple[Tensor, LstmState]:
    """:return: ``call`` over ``source`` with a time dim of one frame added, that dim removed from the output"""
    out, new_state = call(module, expand_dim(source, single_step_dim), state=state, spatial_dim=single_step_dim)
    return squeeze(out, single_step_dim), new_state
