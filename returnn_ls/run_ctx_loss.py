"""The reductions of a marked loss (:class:`Loss`, RETURNN's definitions) and the element count behind them.

- the *summed loss* is the sum over all dims of the loss (padding frames left out);
- the *inverse norm factor* is the number of elements of the loss's dims (padding left out), or the sum of
  ``custom_inv_norm_factor``;
- the loss the optimizer sees is ``scale * summed`` (``use_normalized_loss=False``) or ``scale * summed / inv_norm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.tensor import Tensor

__all__ = ["Loss", "as_tensor", "num_elements_of_shape"]


@dataclass
class Loss:
    """A loss marked with :meth:`RunCtx.mark_as_loss` and its reductions (RETURNN's definitions).

    Example: after ``ce.mark_as_loss("ce")`` with ``ce`` over ``[batch_dim, time]``,
    ``rf.get_run_ctx().losses["ce"].get_summed_loss() / get_inv_norm_factor()`` is the mean CE per frame.
    """

    loss: Tensor
    name: str
    scale: float = 1.0
    as_error: bool = False
    use_normalized_loss: bool = False
    use_flatten_frames: bool = True
    custom_inv_norm_factor: Tensor | None = None

    def get_summed_loss(self) -> Tensor:
        """:return: the sum of the loss over all its dims (padding left out), a scalar"""
        from returnn_ls.reduce import reduce_sum

        return reduce_sum(self.loss, axis=list(self.loss.dims)) if self.loss.dims else self.loss

    def get_inv_norm_factor(self) -> Tensor | int:
        """:return: the sum of ``custom_inv_norm_factor``, else the number of (non-padding) loss elements"""
        from returnn_ls.reduce import reduce_sum

        custom = self.custom_inv_norm_factor
        if custom is not None:
            return reduce_sum(custom, axis=list(custom.dims)) if custom.dims else custom
        return num_elements_of_shape(self.loss.dims)

    def get_mean_loss(self) -> Tensor:
        """:return: the summed loss divided by the inverse norm factor"""
        from returnn_ls.ops import cast

        norm = self.get_inv_norm_factor()
        summed = self.get_summed_loss()
        return summed / (cast(norm, summed.dtype) if isinstance(norm, Tensor) else float(norm))

    def get_scaled_reduced_loss(self) -> Tensor:
        """:return: ``scale`` times the mean (``use_normalized_loss``) or the summed loss: what is optimized"""
        loss = self.get_mean_loss() if self.use_normalized_loss else self.get_summed_loss()
        return loss * self.scale if self.scale != 1.0 else loss


def num_elements_of_shape(dims: Sequence[Dim]) -> Tensor | int:
    """:return: the number of elements of a tensor with ``dims``, padding left out: an int if all dims are
    static, else a scalar int Tensor (e.g. the number of frames of ``[batch_dim, time]``)

    Example: ``num_elements_of_shape([batch_dim, time])`` is ``sum(time.dyn_size_ext)``.
    """
    from returnn_ls.reduce import reduce_sum

    count: Tensor | int = 1
    postponed = []
    for dim in dims:
        if any(o is not dim and o.dyn_size_ext is not None and dim in o.dyn_size_ext.dims for o in dims):
            postponed.append(dim)  # e.g. the batch dim, which the time dim's sizes already run over
        elif dim.dimension is not None:
            count = count * dim.dimension
        elif dim.dyn_size_ext is not None:
            count = count * dim.dyn_size_ext
        else:
            raise ValueError(f"the sizes of {dim} are not known, so the elements of {list(dims)} cannot be counted")
    if postponed:
        count = reduce_sum(count, axis=postponed)
    return count


def as_tensor(value: Any, dims: Sequence[Dim] | None, where: str) -> Tensor:
    """:return: ``value`` if it is a Tensor, else the raw framework tensor wrapped with ``dims`` (or new dims)"""
    from frontend_backends import backend_name_of
    from returnn_ls import _backend

    if isinstance(value, Tensor):
        return value
    backend = _backend.backend_for_raw(value) if backend_name_of(value) is not None else _backend.selected_backend()
    if not backend.is_tensor(value):
        raise TypeError(f"{where}: expected a Tensor or a raw tensor of the backend {backend.name!r}, got "
                        f"{type(value).__name__}")  # fmt: skip
    if dims is None:
        dims = []
        for axis, size in enumerate(backend.shape(value)):
            dim = Dim(size if size is not None else None, name=f"{where}:dim{axis}")
            if size is None:  # unknown while compiling: the size of this axis, no padding
                dim.dyn_size_ext = Tensor(backend.axis_size(value, axis), (), backend=backend)
            dims.append(dim)
    from returnn_ls.tensor import convert_to_tensor

    return convert_to_tensor(value, dims=dims)
