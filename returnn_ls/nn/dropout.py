"""``dropout`` (as ``returnn.frontend.dropout``): active only while training, reproducible from the seed."""

from __future__ import annotations

from collections.abc import Sequence

from returnn_ls import _validate, random_funcs
from returnn_ls.dim import Dim
from returnn_ls.nn import init
from returnn_ls.run_ctx import get_run_ctx
from returnn_ls.tensor import Tensor

__all__ = ["dropout", "dropout_broadcast_default"]


def dropout(
    source: Tensor,
    drop_prob: float,
    *,
    axis: Dim | Sequence[Dim] | bool | None = None,
    on_forward: bool = False,
) -> Tensor:
    """Set each entry to 0 with probability ``drop_prob`` and scale the others by ``1 / (1 - drop_prob)``.

    As in RETURNN, dropout is applied only while training (``rf.get_run_ctx().train_flag``), or always with
    ``on_forward=True``; otherwise ``source`` is returned unchanged. The masks come from a framework generator
    seeded by :func:`returnn_ls.set_random_seed`, so a training run is reproducible.

    :param source: the input
    :param drop_prob: the probability to drop an entry, in ``[0, 1)``
    :param axis: the dims the mask varies along (it is shared along all other dims), e.g. ``x.feature_dim`` for
        one mask per feature shared over batch and time; None or False: all dims of ``source``
    :param on_forward: apply dropout also when not training
    :return: the dims of ``source``

    Example::

        x = rf.dropout(x, 0.1, axis=feature_dim)  # in a train_step: active; in evaluation: identity
    """
    func = "dropout"
    _validate.check_tensor(source, "source", func)
    if isinstance(drop_prob, Tensor):
        raise TypeError(f"{func}: drop_prob must be a float in [0, 1), not a Tensor")
    drop_prob = _validate.check_fraction(drop_prob, "drop_prob", func, upper_open=True)
    noise_dims = _noise_dims(source, axis)
    if drop_prob == 0.0 or not (on_forward or get_run_ctx().train_flag):
        return source
    _validate.check_float(source, "source", func)
    if random_funcs._journal is not None:  # a test's random journal (rf_suite): the mask from a journaled draw
        return _dropout_from_uniform(source, drop_prob, noise_dims)
    broadcast_axes = [i for i, d in enumerate(source.dims) if d not in noise_dims]
    generator = init.get_generator(source.backend)
    return source.copy_template(source.backend.dropout(source.raw_tensor, drop_prob, broadcast_axes, generator))


def _dropout_from_uniform(source: Tensor, drop_prob: float, noise_dims: tuple[Dim, ...]) -> Tensor:
    """:return: dropout with the mask from :func:`returnn_ls.random_uniform` over ``noise_dims`` (kept where the
    draw is >= ``drop_prob``), so that a random journal records or replays it"""
    from returnn_ls.ops import align, cast

    draw = random_funcs.random_uniform(noise_dims, dtype=source.dtype, device=source.device)
    mask = cast(draw >= drop_prob, source.dtype) * (1.0 / (1.0 - drop_prob))
    return source.copy_template(align(source * mask, source.dims))


def _noise_dims(source: Tensor, axis: Dim | Sequence[Dim] | bool | None) -> tuple[Dim, ...]:
    """:return: the dims along which the mask varies"""
    if axis is None or axis is False:
        return source.dims
    if axis is True:
        raise ValueError("dropout: axis=True is not valid; give a Dim, a sequence of Dims, None or False")
    dims = (axis,) if isinstance(axis, Dim) else tuple(axis)
    for dim in dims:
        if not isinstance(dim, Dim):
            raise TypeError(f"dropout: axis must be a Dim or a sequence of Dims, got {type(dim).__name__}")
        if dim not in source.dims:
            raise ValueError(f"dropout: axis {dim} is not one of the source's dims {list(source.dims)}")
    return dims


def dropout_broadcast_default() -> bool:
    """:return: True: model code that asks (``axis=rf.dropout_broadcast_default() and feature_dim``) shares one
    dropout mask per feature over the other dims, as RETURNN's historical dropout did. RETURNN reads the default from
    its global config option ``rf_dropout_broadcast``; here it is always RETURNN's default. :func:`dropout` itself
    never asks: without ``axis`` its mask varies along every dim.

    Example::

        x = rf.dropout(x, 0.1, axis=rf.dropout_broadcast_default() and x.feature_dim)
    """
    return True
