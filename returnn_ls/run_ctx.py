"""The run context of a ``train_step`` or ``forward_step`` (as ``returnn.frontend.run_ctx``).

The training loop creates one per step (:func:`init_train_step_run_ctx`); model code reads ``get_run_ctx().epoch``,
``.step`` and ``.train_flag`` and reports losses with ``mark_as_loss``. Outside a step (e.g. while ``get_model``
builds the model) :func:`get_run_ctx` returns a context of stage ``"init"``.

How a marked loss is reduced (RETURNN's definitions, :class:`Loss`):

- the *summed loss* is the sum over all dims of the loss (padding frames left out);
- the *inverse norm factor* is the number of elements of the loss's dims (padding left out), or the sum of
  ``custom_inv_norm_factor``;
- the loss the optimizer sees is ``scale * summed`` (``use_normalized_loss=False``, the default) or
  ``scale * summed / inv_norm`` (``use_normalized_loss=True``); ``as_error`` losses and ``scale == 0`` are
  reported only;
- an epoch's score is the sum of the batches' summed losses over the sum of their inverse norm factors
  (unscaled), as RETURNN's engines accumulate it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.run_ctx_loss import Loss, as_tensor, num_elements_of_shape
from returnn_ls.tensor import Tensor
from returnn_ls.tensor_dict import TensorDict

__all__ = [
    "Loss",
    "RunCtx",
    "get_run_ctx",
    "init_forward_step_run_ctx",
    "init_train_step_run_ctx",
    "num_elements_of_shape",
    "reset_run_ctx",
]

_run_ctx: RunCtx | None = None
_init_run_ctx: RunCtx | None = None


class RunCtx:
    """Where model code runs: ``stage`` is ``"init"``, ``"train_step"`` (training and evaluation) or
    ``"forward_step"``.

    :param train_flag: whether this step trains (dropout on); False when the same ``train_step`` evaluates
    :param step: the global training step, from 0, not reset per epoch
    :param epoch: the epoch, from 1
    :param expected_outputs: for ``forward_step``: the outputs ``mark_as_output`` may set (``model_outputs``)
    """

    def __init__(
        self,
        *,
        stage: str,
        train_flag: bool = False,
        step: int = 0,
        epoch: int = 1,
        expected_outputs: TensorDict | None = None,
    ):
        self.stage = stage
        self._train_flags: list[dict[Callable | None, bool]] = [{None: train_flag}]  # None: for all functions
        self._step = step
        self._epoch = epoch
        self.losses: dict[str, Loss] = {}
        self.outputs = TensorDict()
        self.expected_outputs = expected_outputs
        #: which of ``"epoch"`` and ``"step"`` the model code read (a compiled step depends on them then)
        self.accessed: set[str] = set()

    @property
    def train_flag(self) -> bool:
        """:return: whether the model trains in this step (e.g. dropout is applied): ``is_train_flag_enabled()``"""
        return self.is_train_flag_enabled(func=None)

    def is_train_flag_enabled(self, *, func: Callable | None = None) -> bool:
        """:return: whether the train flag is on for ``func`` (as RETURNN's): the flag set for it by
        :meth:`train_flag_ctx`, else the global one

        :param func: e.g. ``rf.dropout``, or None for the global flag
        """
        if func is not None and not callable(func):
            raise TypeError(f"is_train_flag_enabled: func must be a function or None, got {type(func).__name__}")
        flags = self._train_flags[-1]
        return flags.get(func, flags[None])

    @contextmanager
    def train_flag_ctx(self, train_flag: bool, *, func: Callable | Sequence[Callable] | None = None) -> Iterator[None]:
        """Set ``train_flag`` inside the ``with`` block (e.g. ``False`` to switch dropout off).

        :param func: set it only for this function or these functions (e.g. ``rf.dropout``); None: globally
        """
        funcs = [None] if func is None else list(func) if isinstance(func, (list, tuple)) else [func]
        if not all(f is None or callable(f) for f in funcs):
            raise TypeError(f"train_flag_ctx: func must be a function, a list of functions or None, got {func!r}")
        self._train_flags.append({**self._train_flags[-1], **dict.fromkeys(funcs, train_flag)})
        try:
            yield
        finally:
            self._train_flags.pop()

    @property
    def step(self) -> int:
        """:return: the global train step, from 0, not reset per epoch"""
        self.accessed.add("step")
        return self._step

    @property
    def epoch(self) -> int:
        """:return: the epoch, from 1 (e.g. ``smoothing = 0.1 if rf.get_run_ctx().epoch > 2 else 0.0``)"""
        self.accessed.add("epoch")
        return self._epoch

    def get_step_tensor(self) -> Tensor:
        """:return: :attr:`step` as a scalar int Tensor"""
        from returnn_ls.tensor import convert_to_tensor

        return convert_to_tensor(self.step, dims=(), dtype="int64")

    def get_epoch_tensor(self) -> Tensor:
        """:return: :attr:`epoch` as a scalar int Tensor"""
        from returnn_ls.tensor import convert_to_tensor

        return convert_to_tensor(self.epoch, dims=(), dtype="int64")

    def mark_as_loss(
        self,
        loss: Any,
        name: str,
        *,
        dims: Sequence[Dim] | None = None,
        scale: float = 1.0,
        as_error: bool = False,
        use_normalized_loss: bool = False,
        use_flatten_frames: bool = True,
        custom_inv_norm_factor: Tensor | None = None,
    ) -> None:
        """Report ``loss`` under ``name``: it is optimized (unless ``as_error`` or ``scale == 0``) and reported.

        Example (frame-level CE over ``[batch, time]``, optimized as the mean over the frames)::

            ce = rf.cross_entropy(estimated=logits, target=targets, axis=vocab, estimated_type="logits")
            rf.get_run_ctx().mark_as_loss(ce, "ce", use_normalized_loss=True)

        :param loss: a :class:`Tensor`, or a raw ``torch.Tensor``/``tf.Tensor`` (then ``dims`` names its axes;
            without ``dims`` each axis gets a new dim). Do not reduce the dims the epoch score should average over.
        :param name: the score name (e.g. ``"ce"``), reported per epoch and usable by learning-rate control
        :param dims: the dims of a raw ``loss``
        :param scale: factor for the optimized loss only (not for reporting)
        :param as_error: report only (e.g. a frame error rate), never optimized
        :param use_normalized_loss: optimize ``summed / inv_norm`` instead of ``summed``
        :param use_flatten_frames: accepted for RETURNN compatibility; padding is always left out here
        :param custom_inv_norm_factor: the normalisation (summed over its dims) instead of the number of elements
        """
        if self.stage != "train_step":
            raise RuntimeError(f"mark_as_loss({name!r}) is only possible in a train_step, not in stage {self.stage!r}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"mark_as_loss: name must be a non-empty str, got {name!r}")
        if name in self.losses:
            raise ValueError(f"mark_as_loss: a loss named {name!r} was already marked in this step")
        loss = as_tensor(loss, dims, f"mark_as_loss({name!r})")
        if not loss.dtype.startswith(("float", "bfloat")):
            from returnn_ls.ops import cast

            loss = cast(loss, "float32")
        if custom_inv_norm_factor is not None:
            custom_inv_norm_factor = as_tensor(custom_inv_norm_factor, None, f"mark_as_loss({name!r})")
        self.losses[name] = Loss(
            loss, name, scale=scale, as_error=as_error, use_normalized_loss=use_normalized_loss,
            use_flatten_frames=use_flatten_frames, custom_inv_norm_factor=custom_inv_norm_factor,
        )  # fmt: skip

    def mark_as_output(self, tensor: Any, name: str, *, dims: Sequence[Dim] | None = None) -> None:
        """Report ``tensor`` as the output ``name`` of a ``forward_step`` (raw tensors as in :meth:`mark_as_loss`)."""
        if self.stage != "forward_step":
            raise RuntimeError(f"mark_as_output({name!r}) is only possible in a forward_step, not {self.stage!r}")
        if self.expected_outputs is not None and name not in self.expected_outputs:
            raise ValueError(
                f"mark_as_output: unexpected output {name!r}; model_outputs has {list(self.expected_outputs)}"
            )
        if dims is None and self.expected_outputs is not None and not isinstance(tensor, Tensor):
            dims = self.expected_outputs[name].dims
        tensor = as_tensor(tensor, dims, f"mark_as_output({name!r})")
        if dims is not None and set(map(id, dims)) != set(map(id, tensor.dims)):
            raise ValueError(f"mark_as_output({name!r}): the tensor has dims {list(tensor.dims)}, not {list(dims)}")
        if name in self.outputs:
            raise ValueError(f"mark_as_output: an output named {name!r} was already marked in this step")
        self.outputs[name] = tensor if dims is None else tensor.copy_transpose(dims)

    def mark_as_default_output(self, tensor: Any, *, shape: Sequence[Dim] | None = None) -> None:
        """``mark_as_output(tensor, "output", dims=shape)``"""
        self.mark_as_output(tensor, "output", dims=shape)

    def check_outputs_complete(self) -> None:
        """:raise ValueError: if ``model_outputs`` expects outputs that were not marked"""
        if self.expected_outputs is not None and set(self.expected_outputs) != set(self.outputs):
            raise ValueError(
                f"forward_step marked outputs {list(self.outputs)}, expected {list(self.expected_outputs)}"
            )

    def total_loss(self) -> Tensor | float:
        """:return: the loss the optimizer minimizes: the sum of the scaled reduced losses (see :class:`Loss`)"""
        if self.stage != "train_step":
            raise RuntimeError(f"total_loss is only defined in a train_step, not in stage {self.stage!r}")
        if not self.losses:
            raise ValueError(
                "train_step marked no loss: call rf.get_run_ctx().mark_as_loss(...) or loss.mark_as_loss()"
            )
        total: Tensor | float = 0.0
        for loss in self.losses.values():
            if loss.scale != 0.0 and not loss.as_error:
                total = total + loss.get_scaled_reduced_loss()
        return total

    def __repr__(self) -> str:
        return f"RunCtx(stage={self.stage!r}, train_flag={self.train_flag}, epoch={self._epoch}, step={self._step})"


def get_run_ctx() -> RunCtx:
    """:return: the run context of the current step (stage ``"init"`` outside a step)

    Example: ``smoothing = 0.0 if rf.get_run_ctx().epoch < 3 else 0.1`` (a schedule in one line)
    """
    global _init_run_ctx
    if _run_ctx is not None:
        return _run_ctx
    if _init_run_ctx is None:
        _init_run_ctx = RunCtx(stage="init")
    return _init_run_ctx


def init_train_step_run_ctx(*, train_flag: bool = True, step: int = 0, epoch: int = 1) -> RunCtx:
    """Start the run context of a ``train_step`` call (also used for evaluation, with ``train_flag=False``)."""
    global _run_ctx
    _run_ctx = RunCtx(stage="train_step", train_flag=train_flag, step=step, epoch=epoch)
    return _run_ctx


def init_forward_step_run_ctx(*, expected_outputs: TensorDict | None = None, step: int = 0, epoch: int = 1) -> RunCtx:
    """Start the run context of a ``forward_step`` call."""
    global _run_ctx
    _run_ctx = RunCtx(stage="forward_step", expected_outputs=expected_outputs, step=step, epoch=epoch)
    return _run_ctx


def reset_run_ctx() -> None:
    """End the current step's run context (a training loop of your own calls it after each ``train_step``).

    Example::

        ctx = rf.init_train_step_run_ctx(train_flag=True, step=step, epoch=epoch)
        train_step(model=model, extern_data=extern_data)
        loss = ctx.total_loss()
        rf.reset_run_ctx()
    """
    global _run_ctx
    _run_ctx = None
