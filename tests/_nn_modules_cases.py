"""The cases of test_nn_returnn_modules.py, shared with the RETURNN process of _nn_returnn_modules_reference.py."""

from __future__ import annotations

#: the cases by name: the arguments of Conv1d(IN, OUT, ...), pool1d(x, ...) and ZoneoutLSTM(IN, ZONEOUT, ...)
CONVS = {
    "conv_groups": dict(filter_size=3, padding="same", groups=2),
    "conv_groups_strided": dict(filter_size=4, padding="same", strides=2, groups=2),
    "conv_strided": dict(filter_size=3, padding="same", strides=2),
}
POOLS = {
    "max_pool": dict(mode="max", pool_size=2),
    "max_same": dict(mode="max", pool_size=3, strides=2, padding="same"),
    "max_same_even": dict(mode="max", pool_size=4, strides=2, padding="same"),
    "max_dilated": dict(mode="max", pool_size=2, strides=1, dilation_rate=2),
    "avg_valid": dict(mode="avg", pool_size=3, strides=2),
    "avg_same": dict(mode="avg", pool_size=3, strides=2, padding="same"),
}
ZONEOUTS = {
    "zoneout": dict(zoneout_factor_cell=0.15, zoneout_factor_output=0.05),
    "zoneout_icfo": dict(zoneout_factor_cell=0.2, zoneout_factor_output=0.1, use_zoneout_output=False,
                         forget_bias=1.0, parts_order="icfo"),
}  # fmt: skip
